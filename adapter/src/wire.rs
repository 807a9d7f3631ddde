//! The JSON documents of the custom metrics API, exactly as `docs/reference/custom-metrics-api.md`
//! specifies them: `MetricValueList` in v1beta1 and v1beta2, discovery, and `metav1.Status`.
//!
//! The value lists are serde structs whose fields are declared in the order Go writes them;
//! discovery and `Status` are k8s-openapi's types, except the groups inside `APIGroupList`,
//! which Go writes without `kind` and `apiVersion`.

use axum::http::StatusCode;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIResource, APIResourceList, GroupVersionForDiscovery, ListMeta, Status,
};
use serde::Serialize;
use serde_json::Value;

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

/// The object a value describes (`v1.ObjectReference`; fields in Go's order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribedObject {
    /// `Pod`, `Deployment`, `Namespace`.
    pub kind: &'static str,
    /// Its namespace; `None` for cluster-scoped objects (a Namespace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// `v1`, `apps/v1`.
    pub api_version: &'static str,
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
    /// The window the value covers, in seconds; `None` when the data does not say (the field is
    /// then left out, never guessed).
    pub window_seconds: Option<u64>,
    /// The value as a quantity string.
    pub quantity: String,
}

/// A `MetricValueList` document of `version`, as JSON text.
#[must_use]
pub fn metric_value_list(version: Version, values: &[MetricValue]) -> String {
    let document = |items| List {
        kind: "MetricValueList",
        api_version: version.group_version(),
        metadata: ListMeta::default(),
        items,
    };
    match version {
        Version::V1beta2 => to_json(&document(Items::V1beta2(
            values.iter().map(ItemV1beta2::from).collect(),
        ))),
        Version::V1beta1 => to_json(&document(Items::V1beta1(
            values.iter().map(ItemV1beta1::from).collect(),
        ))),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct List<'a> {
    kind: &'static str,
    api_version: String,
    metadata: ListMeta,
    items: Items<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Items<'a> {
    V1beta2(Vec<ItemV1beta2<'a>>),
    V1beta1(Vec<ItemV1beta1<'a>>),
}

/// An item of v1beta2 (`custom_metrics/v1beta2.MetricValue`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ItemV1beta2<'a> {
    described_object: &'a DescribedObject,
    metric: MetricIdentifier<'a>,
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    window_seconds: Option<u64>,
    value: &'a str,
}

/// `custom_metrics/v1beta2.MetricIdentifier`: the selector is `null` when absent.
#[derive(Serialize)]
struct MetricIdentifier<'a> {
    name: &'a str,
    selector: &'a Option<Value>,
}

impl<'a> From<&'a MetricValue> for ItemV1beta2<'a> {
    fn from(value: &'a MetricValue) -> Self {
        ItemV1beta2 {
            described_object: &value.object,
            metric: MetricIdentifier {
                name: &value.metric,
                selector: &value.selector,
            },
            timestamp: rfc3339_seconds(value.timestamp_millis),
            window_seconds: value.window_seconds,
            value: &value.quantity,
        }
    }
}

/// An item of v1beta1 (`custom_metrics/v1beta1.MetricValue`): the window is `window`, the
/// selector comes last.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ItemV1beta1<'a> {
    described_object: &'a DescribedObject,
    metric_name: &'a str,
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    window: Option<u64>,
    value: &'a str,
    selector: &'a Option<Value>,
}

impl<'a> From<&'a MetricValue> for ItemV1beta1<'a> {
    fn from(value: &'a MetricValue) -> Self {
        ItemV1beta1 {
            described_object: &value.object,
            metric_name: &value.metric,
            timestamp: rfc3339_seconds(value.timestamp_millis),
            window: value.window_seconds,
            value: &value.quantity,
            selector: &value.selector,
        }
    }
}

/// `APIResourceList` of `version`: one entry per `(<resource>/<metric>, namespaced)` served.
#[must_use]
pub fn api_resource_list(version: Version, resources: &[(String, bool)]) -> String {
    let list = APIResourceList {
        group_version: version.group_version(),
        resources: resources
            .iter()
            .map(|(name, namespaced)| APIResource {
                name: name.clone(),
                singular_name: String::new(),
                namespaced: *namespaced,
                kind: "MetricValueList".into(),
                verbs: vec!["get".into()],
                ..APIResource::default()
            })
            .collect(),
    };
    to_json(&list)
}

fn group_version(version: Version) -> GroupVersionForDiscovery {
    GroupVersionForDiscovery {
        group_version: version.group_version(),
        version: version.as_str().into(),
    }
}

/// The `APIGroup` of the custom metrics group (v1beta2 preferred).
#[must_use]
pub fn api_group() -> String {
    to_json(&APIGroup {
        name: GROUP.into(),
        versions: Version::ALL.map(group_version).into(),
        preferred_version: Some(group_version(Version::V1beta2)),
        ..APIGroup::default()
    })
}

/// The `APIGroupList` of `/apis`: the group without `kind` and `apiVersion`, as Go writes it.
#[must_use]
pub fn api_group_list() -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct GroupList {
        kind: &'static str,
        api_version: &'static str,
        groups: [Group; 1],
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Group {
        name: &'static str,
        versions: [GroupVersionForDiscovery; 2],
        preferred_version: GroupVersionForDiscovery,
    }
    to_json(&GroupList {
        kind: "APIGroupList",
        api_version: "v1",
        groups: [Group {
            name: GROUP,
            versions: Version::ALL.map(group_version),
            preferred_version: group_version(Version::V1beta2),
        }],
    })
}

/// A `metav1.Status` failure for `code`.
#[must_use]
pub fn status(code: StatusCode, message: &str) -> String {
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
    to_json(&Status {
        code: Some(i32::from(code.as_u16())),
        message: Some(message.to_owned()),
        reason: Some(reason.to_owned()),
        status: Some("Failure".to_owned()),
        ..Status::default()
    })
}

fn to_json(document: &impl Serialize) -> String {
    serde_json::to_string(document)
        .expect("API documents serialize: strings, numbers and lists only")
}

pub use framescale_core::timefmt::rfc3339_seconds;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod_value() -> MetricValue {
        MetricValue {
            object: DescribedObject {
                kind: "Pod",
                namespace: Some("shop".into()),
                name: "web-7d9c-abcde".into(),
                api_version: "v1",
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
                namespace: None,
                name: "shop".into(),
                api_version: "v1",
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
                namespace: Some("a\"b".into()),
                name: "c\\d\n".into(),
                api_version: "v1",
            },
            selector: Some(json!({"matchLabels": {"queue": "orders"}})),
            ..pod_value()
        };
        let text = metric_value_list(Version::V1beta2, &[value]);
        assert!(text.starts_with(r#"{"kind":"MetricValueList","apiVersion":"custom.metrics.k8s.io/v1beta2","metadata":{},"items":[{"describedObject":{"kind":"Pod","namespace":"a\"b","name":"c\\d\n","apiVersion":"v1"},"metric":{"name":"#), "{text}");
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
        let got: Value = serde_json::from_str(&status(
            StatusCode::NOT_FOUND,
            "the server could not find the metric nope for pods",
        ))
        .unwrap();
        let want: Value = serde_json::from_str(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
             "message":"the server could not find the metric nope for pods","reason":"NotFound","code":404}"#,
        )
        .unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn discovery_documents_match_the_reference() {
        let list: Value = serde_json::from_str(&api_group_list()).unwrap();
        let version =
            |v: &str| json!({"groupVersion": format!("custom.metrics.k8s.io/{v}"), "version": v});
        let bare = json!({
            "name": "custom.metrics.k8s.io",
            "versions": [version("v1beta2"), version("v1beta1")],
            "preferredVersion": version("v1beta2"),
        });
        assert_eq!(
            list,
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [bare.clone()]}),
            "the groups inside the list have no kind or apiVersion"
        );
        let mut group = bare;
        group["kind"] = json!("APIGroup");
        group["apiVersion"] = json!("v1");
        assert_eq!(serde_json::from_str::<Value>(&api_group()).unwrap(), group);
        let resources: Value = serde_json::from_str(&api_resource_list(
            Version::V1beta1,
            &[("pods/m".into(), true), ("namespaces/m".into(), false)],
        ))
        .unwrap();
        assert_eq!(
            resources,
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "custom.metrics.k8s.io/v1beta1",
                   "resources": [
                       {"name": "pods/m", "singularName": "", "namespaced": true, "kind": "MetricValueList", "verbs": ["get"]},
                       {"name": "namespaces/m", "singularName": "", "namespaced": false, "kind": "MetricValueList", "verbs": ["get"]}]})
        );
    }
}
