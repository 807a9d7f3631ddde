//! Kubernetes label selectors in their string form (`labelSelector=app=web,tier in (fe,be)`).
//!
//! The grammar of `k8s.io/apimachinery/pkg/labels.Parse`: requirements joined by commas, each
//! one of `key`, `!key`, `key=value`, `key==value`, `key!=value`, `key in (v1,v2)`,
//! `key notin (v1,v2)`, `key>N`, `key<N`; spaces around tokens are ignored. An empty selector
//! selects everything. Keys are an optional DNS-subdomain prefix and `/`, then a name of at most
//! 63 characters; values are at most 63 characters of `[A-Za-z0-9._-]`, starting and ending
//! alphanumeric, or empty.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{Value, json};

/// A parsed selector: all requirements must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

/// One requirement on one label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Exists,
    DoesNotExist,
    Equals,
    NotEquals,
    In,
    NotIn,
    GreaterThan,
    LessThan,
}

/// Why a selector does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement: {0}")]
pub struct Error(String);

impl Selector {
    /// Parses the string form; `""` selects everything.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut parser = Parser { rest: text };
        let mut requirements = Vec::new();
        parser.skip_spaces();
        if parser.rest.is_empty() {
            return Ok(Selector::default());
        }
        loop {
            requirements.push(parser.requirement()?);
            parser.skip_spaces();
            if parser.rest.is_empty() {
                break;
            }
            parser.expect(",")?;
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector { requirements })
    }

    /// The selector a `metav1.LabelSelector` stands for, as `LabelSelectorAsSelector` reads it
    /// (a Deployment's `spec.selector`): `matchLabels` are equalities, `In`/`NotIn` need values,
    /// `Exists`/`DoesNotExist` take none; an empty selector selects everything.
    pub fn from_label_selector(selector: &LabelSelector) -> Result<Self, Error> {
        let mut requirements: Vec<Requirement> = selector
            .match_labels
            .iter()
            .flatten()
            .map(|(key, value)| Requirement {
                key: key.clone(),
                op: Op::Equals,
                values: vec![value.clone()],
            })
            .collect();
        for expression in selector.match_expressions.iter().flatten() {
            let mut values = expression.values.clone().unwrap_or_default();
            values.sort();
            let (key, operator) = (&expression.key, expression.operator.as_str());
            let op = match (operator, values.is_empty()) {
                ("In", false) => Op::In,
                ("NotIn", false) => Op::NotIn,
                ("Exists", true) => Op::Exists,
                ("DoesNotExist", true) => Op::DoesNotExist,
                ("In" | "NotIn", true) => {
                    return Err(Error(format!(
                        "{key}: values must be non-empty for operator {operator}"
                    )));
                }
                ("Exists" | "DoesNotExist", false) => {
                    return Err(Error(format!(
                        "{key}: values must be empty for operator {operator}"
                    )));
                }
                _ => {
                    return Err(Error(format!(
                        "{key}: {operator:?} is not a valid label selector operator"
                    )));
                }
            };
            requirements.push(Requirement {
                key: key.clone(),
                op,
                values,
            });
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector { requirements })
    }

    /// Whether it selects everything.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `labels` satisfy every requirement.
    #[must_use]
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements
            .iter()
            .all(|r| r.matches(labels.get(&r.key).map(String::as_str)))
    }

    /// The selector as a `metav1.LabelSelector` (`matchLabels` / `matchExpressions`), as the
    /// custom metrics API echoes a metric selector. `>` and `<` have no such form and are
    /// written as `Gt` / `Lt` expressions.
    #[must_use]
    pub fn to_label_selector(&self) -> Value {
        let mut match_labels = serde_json::Map::new();
        let mut expressions = Vec::new();
        for r in &self.requirements {
            let operator = match r.op {
                Op::Equals => {
                    match_labels.insert(r.key.clone(), json!(r.values[0]));
                    continue;
                }
                Op::Exists => "Exists",
                Op::DoesNotExist => "DoesNotExist",
                Op::NotEquals | Op::NotIn => "NotIn",
                Op::In => "In",
                Op::GreaterThan => "Gt",
                Op::LessThan => "Lt",
            };
            let mut expression = json!({ "key": r.key, "operator": operator });
            if !r.values.is_empty() {
                expression["values"] = json!(r.values);
            }
            expressions.push(expression);
        }
        let mut selector = serde_json::Map::new();
        if !match_labels.is_empty() {
            selector.insert("matchLabels".into(), Value::Object(match_labels));
        }
        if !expressions.is_empty() {
            selector.insert("matchExpressions".into(), Value::Array(expressions));
        }
        Value::Object(selector)
    }
}

/// A set's values as they parse back: a set of only the empty value is `(,)` — `()` is an
/// empty set, refused (found by fuzzing: `app notin (,)` printed as `app notin ()`).
fn set_values(values: &[String]) -> String {
    if values.iter().all(String::is_empty) {
        ",".to_owned()
    } else {
        values.join(",")
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match r.op {
                Op::Exists => write!(f, "{}", r.key)?,
                Op::DoesNotExist => write!(f, "!{}", r.key)?,
                Op::Equals => write!(f, "{}={}", r.key, r.values[0])?,
                Op::NotEquals => write!(f, "{}!={}", r.key, r.values[0])?,
                Op::In => write!(f, "{} in ({})", r.key, set_values(&r.values))?,
                Op::NotIn => write!(f, "{} notin ({})", r.key, set_values(&r.values))?,
                Op::GreaterThan => write!(f, "{}>{}", r.key, r.values[0])?,
                Op::LessThan => write!(f, "{}<{}", r.key, r.values[0])?,
            }
        }
        Ok(())
    }
}

impl Requirement {
    fn matches(&self, value: Option<&str>) -> bool {
        match (self.op, value) {
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
            (Op::Equals | Op::In, Some(v)) => self.values.iter().any(|x| x == v),
            (Op::Equals | Op::In | Op::GreaterThan | Op::LessThan, None) => false,
            (Op::NotEquals | Op::NotIn, v) => v.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            (Op::GreaterThan | Op::LessThan, Some(v)) => {
                let (Ok(have), Ok(bound)) = (v.parse::<i64>(), self.values[0].parse::<i64>())
                else {
                    return false;
                };
                if self.op == Op::GreaterThan {
                    have > bound
                } else {
                    have < bound
                }
            }
        }
    }
}

struct Parser<'a> {
    rest: &'a str,
}

impl Parser<'_> {
    fn requirement(&mut self) -> Result<Requirement, Error> {
        self.skip_spaces();
        if self.eat("!") {
            let key = self.key()?;
            return Ok(Requirement {
                key,
                op: Op::DoesNotExist,
                values: vec![],
            });
        }
        let key = self.key()?;
        self.skip_spaces();
        let (op, values) = if self.rest.is_empty() || self.rest.starts_with(',') {
            (Op::Exists, vec![])
        } else if self.eat("==") || self.eat("=") {
            (Op::Equals, vec![self.value()?])
        } else if self.eat("!=") {
            (Op::NotEquals, vec![self.value()?])
        } else if self.eat(">") {
            (Op::GreaterThan, vec![self.integer()?])
        } else if self.eat("<") {
            (Op::LessThan, vec![self.integer()?])
        } else if self.eat_word("notin") {
            (Op::NotIn, self.set()?)
        } else if self.eat_word("in") {
            (Op::In, self.set()?)
        } else {
            return Err(self.error("expected an operator (=, ==, !=, in, notin, >, <) or ','"));
        };
        Ok(Requirement { key, op, values })
    }

    fn key(&mut self) -> Result<String, Error> {
        self.skip_spaces();
        let end = self
            .rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || "-_./".contains(c)))
            .unwrap_or(self.rest.len());
        let key = &self.rest[..end];
        let (prefix, name) = match key.split_once('/') {
            Some((prefix, name)) => (Some(prefix), name),
            None => (None, key),
        };
        let prefix_ok = prefix
            .is_none_or(|p| !p.is_empty() && p.len() <= 253 && p.split('.').all(is_dns_label));
        if !prefix_ok || !is_name(name) || name.is_empty() {
            return Err(self.error(&format!("invalid label key {key:?}")));
        }
        self.rest = &self.rest[end..];
        Ok(key.to_owned())
    }

    fn value(&mut self) -> Result<String, Error> {
        self.skip_spaces();
        let end = self
            .rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
            .unwrap_or(self.rest.len());
        let value = &self.rest[..end];
        if !(value.is_empty() || is_name(value)) {
            return Err(self.error(&format!("invalid label value {value:?}")));
        }
        self.rest = &self.rest[end..];
        Ok(value.to_owned())
    }

    fn integer(&mut self) -> Result<String, Error> {
        let value = self.value()?;
        if value.parse::<i64>().is_err() {
            return Err(self.error(&format!("{value:?} is not an integer")));
        }
        Ok(value)
    }

    fn set(&mut self) -> Result<Vec<String>, Error> {
        self.skip_spaces();
        self.expect("(")?;
        self.skip_spaces();
        if self.rest.starts_with(')') {
            return Err(self.error("the value set of in/notin cannot be empty"));
        }
        let mut values = vec![self.value()?];
        loop {
            self.skip_spaces();
            if self.eat(")") {
                break;
            }
            self.expect(",")?;
            values.push(self.value()?);
        }
        values.sort();
        values.dedup();
        Ok(values)
    }

    fn skip_spaces(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn eat(&mut self, token: &str) -> bool {
        match self.rest.strip_prefix(token) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// Eats a keyword only when it is a whole word (`in` but not `inner`).
    fn eat_word(&mut self, word: &str) -> bool {
        let Some(rest) = self.rest.strip_prefix(word) else {
            return false;
        };
        if rest.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return false;
        }
        self.rest = rest;
        true
    }

    fn expect(&mut self, token: &str) -> Result<(), Error> {
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.error(&format!("expected {token:?}")))
        }
    }

    fn error(&self, what: &str) -> Error {
        let at: String = self.rest.chars().take(20).collect();
        Error(format!("{what} at {at:?}"))
    }
}

fn is_name(text: &str) -> bool {
    text.len() <= 63
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text.ends_with(|c: char| c.is_ascii_alphanumeric())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && text.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn matching() {
        let web = labels(&[
            ("app", "web"),
            ("tier", "fe"),
            ("rank", "3"),
            ("example.com/team", "render"),
        ]);
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app = web ,tier=fe", true),
            ("app=db", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("tier in (fe,be)", true),
            ("tier in (be)", false),
            ("tier notin (be, db)", true),
            ("missing notin (x)", true),
            ("missing in (x)", false),
            ("rank>2", true),
            ("rank<3", false),
            ("app>2", false),
            ("example.com/team=render", true),
            ("app=web,tier in (be)", false),
            ("app=", false),
        ];
        for (text, want) in cases {
            let selector = Selector::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(selector.matches(&web), want, "{text}");
        }
    }

    #[test]
    fn bad_selectors() {
        for text in [
            "app=web,",
            ",app",
            "app=we b",
            "app in fe",
            "app in (fe",
            "app in ()",
            "-app=x",
            "app=-x",
            "Example.com/app=x",
            "/app=x",
            "app>x",
            "app=web;rm",
            &format!("app={}", "v".repeat(64)),
            "app ~ x",
            "inner in",
        ] {
            assert!(Selector::parse(text).is_err(), "{text} parsed");
        }
    }

    #[test]
    fn from_label_selector_reads_a_deployment_selector() {
        let selector: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "w"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["fe", "be"]},
                {"key": "canary", "operator": "DoesNotExist"},
            ]
        }))
        .unwrap();
        let selector = Selector::from_label_selector(&selector).unwrap();
        assert_eq!(
            selector,
            Selector::parse("app=w,tier in (fe,be),!canary").unwrap()
        );
        assert!(selector.matches(&labels(&[("app", "w"), ("tier", "fe")])));
        assert!(!selector.matches(&labels(&[("app", "w"), ("tier", "fe"), ("canary", "1")])));
        assert!(
            Selector::from_label_selector(&LabelSelector::default())
                .unwrap()
                .is_empty()
        );
        for (bad, reason) in [
            (json!({"key": "a", "operator": "In"}), "must be non-empty"),
            (
                json!({"key": "a", "operator": "Exists", "values": ["x"]}),
                "must be empty",
            ),
            (
                json!({"key": "a", "operator": "Gt", "values": ["1"]}),
                "not a valid",
            ),
        ] {
            let selector: LabelSelector =
                serde_json::from_value(json!({ "matchExpressions": [bad] })).unwrap();
            let error = Selector::from_label_selector(&selector).unwrap_err();
            assert!(error.to_string().contains(reason), "{error}");
        }
    }

    #[test]
    fn label_selector_json() {
        let selector = Selector::parse("queue=orders,tier in (fe,be),!legacy").unwrap();
        assert_eq!(
            selector.to_label_selector(),
            json!({
                "matchLabels": {"queue": "orders"},
                "matchExpressions": [
                    {"key": "legacy", "operator": "DoesNotExist"},
                    {"key": "tier", "operator": "In", "values": ["be", "fe"]},
                ]
            })
        );
        assert_eq!(selector.to_string(), "!legacy,queue=orders,tier in (be,fe)");
    }

    /// Found by fuzzing (`fuzz/regressions/label_selector/`).
    #[test]
    fn a_set_of_the_empty_value_prints_as_it_parses() {
        for (text, printed) in [
            ("app notin (,)", "app notin (,)"),
            ("app in (,a)", "app in (,a)"),
        ] {
            let selector = Selector::parse(text).unwrap();
            assert_eq!(selector.to_string(), printed);
            assert_eq!(Selector::parse(printed).unwrap(), selector);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,60}") {
            let _ = Selector::parse(&text);
        }

        #[test]
        fn display_parses_back(text in "[a-z]{1,5}(=|!=| in \\(|>)[a-z0-9]{1,4}\\)?") {
            if let Ok(selector) = Selector::parse(&text) {
                prop_assert_eq!(Selector::parse(&selector.to_string()).unwrap(), selector);
            }
        }
    }
}
