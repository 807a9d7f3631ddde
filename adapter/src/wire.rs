//! The JSON documents of the custom metrics API, exactly as `docs/reference/custom-metrics-api.md`
//! specifies them: `MetricValueList` in v1beta1 and v1beta2, discovery, and `metav1.Status`.

use std::fmt::Write as _;

use axum::http::StatusCode;
use serde_json::{Value, json};

/// API group served.
pub const GROUP: &str = "custom.metrics.k8s.io";

/// A version of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `v1beta1`: `metricName`, `selector` and `window` on the item.
    V1beta1,
    /// `v1beta2`: `metric {name, selector}` and `windowSeconds`.
    V1beta2,
}

impl Version {
    /// Both versions, preferred first.
    pub const ALL: [Version; 2] = [Version::V1beta2, Version::V1beta1];

    /// `v1beta1` or `v1beta2`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1beta1 => "v1beta1",
            Version::V1beta2 => "v1beta2",
        }
    }

    /// Parses a path segment.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        Version::ALL.into_iter().find(|v| v.as_str() == text)
    }

    /// `custom.metrics.k8s.io/<version>`.
    #[must_use]
    pub fn group_version(self) -> String {
        format!("{GROUP}/{}", self.as_str())
    }
}

/// The object a value describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedObject {
    /// `Pod`, `Deployment`, `Namespace`.
    pub kind: &'static str,
    /// `v1`, `apps/v1`.
    pub api_version: &'static str,
    /// Its namespace; `None` for cluster-scoped objects (a Namespace).
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
}

/// One value of a `MetricValueList`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricValue {
    /// What it describes.
    pub object: DescribedObject,
    /// The metric's name.
    pub metric: String,
    /// The metric selector asked for, echoed as a `LabelSelector`, or `None` (`null`).
    pub selector: Option<Value>,
    /// When the data was measured (ms since the epoch) — not when it was asked for.
    pub timestamp_millis: u64,
    /// The window the value covers, in seconds.
    pub window_seconds: Option<u64>,
    /// The value as a quantity string.
    pub quantity: String,
}

/// A `MetricValueList` document of `version`, as JSON text. Written field by field, in the
/// order Go emits them, without building a JSON tree: a list of thousands of pods is one string.
#[must_use]
pub fn metric_value_list(version: Version, values: &[MetricValue]) -> String {
    let mut out = String::with_capacity(128 + values.len() * 280);
    out.push_str(r#"{"kind":"MetricValueList","apiVersion":"#);
    push_str(&mut out, &version.group_version());
    out.push_str(r#","metadata":{},"items":["#);
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_item(&mut out, version, value);
    }
    out.push_str("]}");
    out
}

fn push_item(out: &mut String, version: Version, value: &MetricValue) {
    let object = &value.object;
    out.push_str(r#"{"describedObject":{"kind":"#);
    push_str(out, object.kind);
    if let Some(namespace) = &object.namespace {
        out.push_str(r#","namespace":"#);
        push_str(out, namespace);
    }
    out.push_str(r#","name":"#);
    push_str(out, &object.name);
    out.push_str(r#","apiVersion":"#);
    push_str(out, object.api_version);
    out.push_str("},");
    let selector = value
        .selector
        .as_ref()
        .map_or_else(|| "null".to_owned(), Value::to_string);
    let window_key = match version {
        Version::V1beta2 => {
            out.push_str(r#""metric":{"name":"#);
            push_str(out, &value.metric);
            out.push_str(r#","selector":"#);
            out.push_str(&selector);
            out.push_str("},");
            "windowSeconds"
        }
        Version::V1beta1 => {
            out.push_str(r#""metricName":"#);
            push_str(out, &value.metric);
            out.push(',');
            "window"
        }
    };
    out.push_str(r#""timestamp":"#);
    push_str(out, &rfc3339_seconds(value.timestamp_millis));
    if let Some(window) = value.window_seconds {
        let _ = write!(out, r#","{window_key}":{window}"#);
    }
    out.push_str(r#","value":"#);
    push_str(out, &value.quantity);
    if version == Version::V1beta1 {
        out.push_str(r#","selector":"#);
        out.push_str(&selector);
    }
    out.push('}');
}

/// Appends `text` as a JSON string literal.
fn push_str(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `APIResourceList` of `version`: one entry per `<resource>/<metric>` served.
#[must_use]
pub fn api_resource_list(version: Version, resources: &[(String, bool)]) -> Value {
    let resources: Vec<Value> = resources
        .iter()
        .map(|(name, namespaced)| {
            json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": "MetricValueList", "verbs": ["get"]})
        })
        .collect();
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": version.group_version(),
        "resources": resources,
    })
}

/// The `APIGroup` of the custom metrics group, without `kind`/`apiVersion` when `bare`.
#[must_use]
pub fn api_group(bare: bool) -> Value {
    let version = |v: Version| json!({"groupVersion": v.group_version(), "version": v.as_str()});
    let mut group = json!({
        "name": GROUP,
        "versions": Version::ALL.map(version),
        "preferredVersion": version(Version::V1beta2),
    });
    if !bare {
        group["kind"] = json!("APIGroup");
        group["apiVersion"] = json!("v1");
    }
    group
}

/// The `APIGroupList` of `/apis`.
#[must_use]
pub fn api_group_list() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group(true)]})
}

/// A `metav1.Status` failure for `code`.
#[must_use]
pub fn status(code: StatusCode, message: &str) -> Value {
    let reason = match code.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        _ => "InternalError",
    };
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    })
}

pub use framescale_core::timefmt::rfc3339_seconds;

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_value() -> MetricValue {
        MetricValue {
            object: DescribedObject {
                kind: "Pod",
                api_version: "v1",
                namespace: Some("shop".into()),
                name: "web-7d9c-abcde".into(),
            },
            metric: "http_requests_per_second".into(),
            selector: None,
            timestamp_millis: 1_714_564_800_000,
            window_seconds: Some(60),
            quantity: "1500m".into(),
        }
    }

    #[test]
    fn v1beta2_list_matches_the_reference_example() {
        let got: Value =
            serde_json::from_str(&metric_value_list(Version::V1beta2, &[pod_value()])).unwrap();
        let want: Value = serde_json::from_str(
            r#"{"kind":"MetricValueList","apiVersion":"custom.metrics.k8s.io/v1beta2","metadata":{},
             "items":[{"describedObject":{"kind":"Pod","namespace":"shop","name":"web-7d9c-abcde","apiVersion":"v1"},
               "metric":{"name":"http_requests_per_second","selector":null},
               "timestamp":"2024-05-01T12:00:00Z","windowSeconds":60,"value":"1500m"}]}"#,
        )
        .unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn v1beta1_list_matches_the_reference_example() {
        let got: Value =
            serde_json::from_str(&metric_value_list(Version::V1beta1, &[pod_value()])).unwrap();
        let want: Value = serde_json::from_str(
            r#"{"kind":"MetricValueList","apiVersion":"custom.metrics.k8s.io/v1beta1","metadata":{},
             "items":[{"describedObject":{"kind":"Pod","namespace":"shop","name":"web-7d9c-abcde","apiVersion":"v1"},
               "metricName":"http_requests_per_second","timestamp":"2024-05-01T12:00:00Z","window":60,
               "value":"1500m","selector":null}]}"#,
        )
        .unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn namespace_objects_have_no_namespace_field() {
        let value = MetricValue {
            object: DescribedObject {
                kind: "Namespace",
                api_version: "v1",
                namespace: None,
                name: "shop".into(),
            },
            window_seconds: None,
            ..pod_value()
        };
        let got: Value =
            serde_json::from_str(&metric_value_list(Version::V1beta2, &[value])).unwrap();
        assert_eq!(
            got["items"][0]["describedObject"],
            json!({"kind": "Namespace", "name": "shop", "apiVersion": "v1"})
        );
        assert!(got["items"][0].get("windowSeconds").is_none());
    }

    #[test]
    fn field_order_and_escaping() {
        let value = MetricValue {
            object: DescribedObject {
                kind: "Pod",
                api_version: "v1",
                namespace: Some("a\"b".into()),
                name: "c\\d\n".into(),
            },
            selector: Some(json!({"matchLabels": {"queue": "orders"}})),
            ..pod_value()
        };
        let text = metric_value_list(Version::V1beta2, &[value]);
        assert!(text.starts_with(r#"{"kind":"MetricValueList","apiVersion":"custom.metrics.k8s.io/v1beta2","metadata":{},"items":[{"describedObject":{"kind":"Pod","namespace":"a\"b","name":"c\\d\u000a","apiVersion":"v1"},"metric":{"name":"#), "{text}");
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["items"][0]["describedObject"]["name"], "c\\d\n");
        assert_eq!(
            parsed["items"][0]["metric"]["selector"]["matchLabels"]["queue"],
            "orders"
        );
        assert_eq!(
            metric_value_list(Version::V1beta1, &[]),
            r#"{"kind":"MetricValueList","apiVersion":"custom.metrics.k8s.io/v1beta1","metadata":{},"items":[]}"#
        );
    }

    #[test]
    fn status_document() {
        let got = status(
            StatusCode::NOT_FOUND,
            "the server could not find the metric nope for pods",
        );
        let want: Value = serde_json::from_str(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
             "message":"the server could not find the metric nope for pods","reason":"NotFound","code":404}"#,
        )
        .unwrap();
        assert_eq!(got, want);
    }
}
