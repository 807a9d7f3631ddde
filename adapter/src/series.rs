//! Series selectors (`name{label="value",other!="x"}`) and the Prometheus text format, for the
//! direct backend, which reads exporters' `/metrics` itself instead of asking Prometheus.

use std::collections::BTreeMap;

/// A PromQL instant-vector selector restricted to a metric name and `=` / `!=` matchers; the
/// same text is a valid PromQL selector for the Prometheus backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesSelector {
    /// Metric name.
    pub name: String,
    matchers: Vec<(String, bool, String)>,
}

/// Why a series selector or an exposition line does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Error(String);

impl SeriesSelector {
    /// Parses `name` or `name{label="value",label!="value"}`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let text = text.trim();
        let (name, labels) = match text.split_once('{') {
            Some((name, rest)) => {
                let inner = rest
                    .strip_suffix('}')
                    .ok_or_else(|| Error(format!("{text:?}: missing closing brace")))?;
                (
                    name.trim(),
                    parse_labels(inner, true).map_err(|e| Error(format!("{text:?}: {}", e.0)))?,
                )
            }
            None => (text, Vec::new()),
        };
        if !is_metric_name(name) {
            return Err(Error(format!("{name:?} is not a metric name")));
        }
        Ok(SeriesSelector {
            name: name.to_owned(),
            matchers: labels,
        })
    }

    /// The selector as PromQL with one more `label="value"` matcher (a matcher of the same
    /// label already there is replaced).
    #[must_use]
    pub fn with_matcher(&self, label: &str, value: &str) -> String {
        let mut matchers: Vec<String> = self
            .matchers
            .iter()
            .filter(|(l, _, _)| l != label)
            .map(format_matcher)
            .collect();
        matchers.push(format!("{label}=\"{}\"", escape(value)));
        format!("{}{{{}}}", self.name, matchers.join(","))
    }

    /// Whether a sample of `name` with `labels` is selected.
    #[must_use]
    pub fn matches(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        name == self.name
            && self.matchers.iter().all(|(label, equal, value)| {
                let have = labels.get(label).map_or("", String::as_str);
                (have == value) == *equal
            })
    }
}

/// The selector as PromQL.
impl std::fmt::Display for SeriesSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        if !self.matchers.is_empty() {
            let matchers: Vec<String> = self.matchers.iter().map(format_matcher).collect();
            write!(f, "{{{}}}", matchers.join(","))?;
        }
        Ok(())
    }
}

fn format_matcher((label, equal, value): &(String, bool, String)) -> String {
    format!(
        "{label}{}\"{}\"",
        if *equal { "=" } else { "!=" },
        escape(value)
    )
}

/// One sample of an exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
    /// The sample's own timestamp, ms since the epoch, when the exposition gives one.
    pub timestamp_millis: Option<u64>,
}

/// Reads the samples of a Prometheus text (0.0.4) or OpenMetrics exposition, skipping comments;
/// a line that does not parse is an error naming it.
pub fn parse_exposition(text: &str) -> Result<Vec<Sample>, Error> {
    parse_exposition_of(text, |_| true)
}

/// As [`parse_exposition`], keeping only samples whose metric name `keep` accepts; the others
/// are skipped before their labels are read, so a large scrape costs little beyond its text.
pub fn parse_exposition_of(text: &str, keep: impl Fn(&str) -> bool) -> Result<Vec<Sample>, Error> {
    let mut samples = Vec::new();
    visit_exposition(text.as_bytes(), keep, |sample| samples.push(sample))?;
    Ok(samples)
}

/// Reads an exposition line by line from `reader`, handing each sample whose metric name `keep`
/// accepts to `visit`; the text is never held whole, so memory stays flat however many series
/// an exporter serves.
pub fn visit_exposition(
    reader: impl std::io::BufRead,
    keep: impl Fn(&str) -> bool,
    mut visit: impl FnMut(Sample),
) -> Result<(), Error> {
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|e| Error(format!("line {number}: {e}")))?;
        visit_line(number, &line, &keep, &mut visit)?;
    }
    Ok(())
}

/// Reads line `number` of an exposition: hands its sample to `visit` if `keep` accepts its
/// metric name; comments and blank lines are skipped.
pub fn visit_line(
    number: usize,
    line: &str,
    keep: impl Fn(&str) -> bool,
    mut visit: impl FnMut(Sample),
) -> Result<(), Error> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(());
    }
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    if keep(&line[..name_end]) {
        visit(parse_sample(line).map_err(|e| Error(format!("line {number}: {}", e.0)))?);
    }
    Ok(())
}

fn parse_sample(line: &str) -> Result<Sample, Error> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or_else(|| Error("no value".into()))?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(Error(format!("{name:?} is not a metric name")));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let close =
            find_closing_brace(after).ok_or_else(|| Error("missing closing brace".into()))?;
        for (key, _, value) in parse_labels(&after[..close], false)? {
            labels.insert(key, value);
        }
        rest = &after[close + 1..];
    }
    let mut fields = rest.split_whitespace();
    let value_text = fields.next().ok_or_else(|| Error("no value".into()))?;
    let timestamp_millis = fields.next().map(parse_timestamp).transpose()?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        text => text
            .parse()
            .map_err(|_| Error(format!("{text:?} is not a number")))?,
    };
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
        timestamp_millis,
    })
}

/// A sample's timestamp: whole milliseconds in the Prometheus text format, seconds with a
/// fraction in OpenMetrics. One before 1970 is taken as 0 (older than any max age).
fn parse_timestamp(text: &str) -> Result<u64, Error> {
    let invalid = || Error(format!("{text:?} is not a timestamp"));
    if let Ok(millis) = text.parse::<i64>() {
        return Ok(u64::try_from(millis).unwrap_or(0));
    }
    let seconds: f64 = text.parse().map_err(|_| invalid())?;
    if !seconds.is_finite() {
        return Err(invalid());
    }
    Ok((seconds * 1000.0).max(0.0) as u64)
}

/// The index of the `}` that closes a label set, skipping quoted values.
fn find_closing_brace(text: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '}' if !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

/// Parses `a="x",b!="y"` (the `!=` form only when `allow_not_equal`).
fn parse_labels(text: &str, allow_not_equal: bool) -> Result<Vec<(String, bool, String)>, Error> {
    let mut labels = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let op_at = rest
            .find(['=', '!'])
            .ok_or_else(|| Error(format!("expected label=\"value\" at {rest:?}")))?;
        let key = rest[..op_at].trim();
        let (equal, after_op) = if let Some(after) = rest[op_at..].strip_prefix("!=") {
            (false, after)
        } else if let Some(after) = rest[op_at..].strip_prefix('=') {
            if after.starts_with('~') {
                return Err(Error(
                    "regular-expression matchers are not supported".into(),
                ));
            }
            (true, after)
        } else {
            return Err(Error(format!("expected = or != at {rest:?}")));
        };
        if !equal && !allow_not_equal {
            return Err(Error(format!("unexpected != at {rest:?}")));
        }
        if !is_label_name(key) {
            return Err(Error(format!("{key:?} is not a label name")));
        }
        let quoted = after_op
            .trim_start()
            .strip_prefix('"')
            .ok_or_else(|| Error(format!("value of {key} is not quoted")))?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err(Error(format!("unterminated value of {key}"))),
                },
                Some((_, c)) => value.push(c),
                None => return Err(Error(format!("unterminated value of {key}"))),
            }
        };
        labels.push((key.to_owned(), equal, value));
        rest = quoted[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(labels)
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn is_metric_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exposition_samples() {
        let text = "# HELP x y\n# TYPE framescale_frame_duration_seconds summary\n\
            framescale_frame_duration_seconds{namespace=\"render\",pod=\"a\",container=\"c\",quantile=\"0.95\"} 0.040031\n\
            framescale_exporter_pods_tracked 2\n\
            weird{v=\"a\\\"}b\\\\\"} +Inf 1700000000000\n# EOF\n";
        let samples = parse_exposition(text).unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].labels["quantile"], "0.95");
        assert!((samples[0].value - 0.040_031).abs() < 1e-12);
        assert_eq!(samples[1].labels.len(), 0);
        assert_eq!(samples[2].labels["v"], "a\"}b\\");
        assert!(samples[2].value.is_infinite());
        let kept =
            parse_exposition_of(text, |name| name == "framescale_exporter_pods_tracked").unwrap();
        assert_eq!(kept.len(), 1);
        assert!(
            parse_exposition("x{a=\"b\"} nope")
                .unwrap_err()
                .to_string()
                .contains("line 1")
        );
    }

    #[test]
    fn selectors() {
        let selector = SeriesSelector::parse(
            r#"framescale_frame_duration_seconds{quantile="0.95", container!="sidecar"}"#,
        )
        .unwrap();
        let labels = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert!(selector.matches(
            "framescale_frame_duration_seconds",
            &labels(&[("quantile", "0.95"), ("container", "c")])
        ));
        assert!(!selector.matches(
            "framescale_frame_duration_seconds",
            &labels(&[("quantile", "0.95"), ("container", "sidecar")])
        ));
        assert!(!selector.matches(
            "framescale_frame_duration_seconds",
            &labels(&[("quantile", "0.5")])
        ));
        assert!(!selector.matches("other", &labels(&[("quantile", "0.95")])));
        assert!(SeriesSelector::parse("DCGM_FI_DEV_GPU_UTIL").is_ok());
        assert_eq!(
            selector.with_matcher("namespace", "a\"b"),
            r#"framescale_frame_duration_seconds{quantile="0.95",container!="sidecar",namespace="a\"b"}"#
        );
        assert_eq!(
            selector.to_string(),
            r#"framescale_frame_duration_seconds{quantile="0.95",container!="sidecar"}"#
        );
        assert_eq!(
            SeriesSelector::parse("DCGM_FI_DEV_GPU_UTIL")
                .unwrap()
                .to_string(),
            "DCGM_FI_DEV_GPU_UTIL"
        );
        assert_eq!(
            selector.with_matcher("quantile", "0.5"),
            r#"framescale_frame_duration_seconds{container!="sidecar",quantile="0.5"}"#
        );
        for bad in ["", "1x", "x{a=\"b\"", "x{a=~\"b\"}", "x{a=b}", "x{=\"b\"}"] {
            assert!(SeriesSelector::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,80}") {
            let _ = parse_exposition(&text);
            let _ = SeriesSelector::parse(&text);
        }
    }
}
