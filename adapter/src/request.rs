//! Turning a request path and query into what is asked (`docs/reference/custom-metrics-api.md` §2).
//!
//! Paths below `/apis/custom.metrics.k8s.io/<version>/`, percent-decoded segment by segment
//! (Go clients send `*` as `%2A`):
//!
//! | form | path | [`Target`] |
//! |---|---|---|
//! | 1 | `namespaces/{ns}/{resource}/*/{metric}?labelSelector=…` | [`Target::Selected`] |
//! | 2 | `namespaces/{ns}/{resource}/{name}/{metric}` | [`Target::Object`] |
//! | 3 | `namespaces/{ns}/metrics/{metric}` | [`Target::Namespace`] |
//! | 4 | `{resource}/{name}/{metric}` | [`Target::ClusterObject`] |
//! | 5 | `{resource}/*/{metric}?labelSelector=…` | [`Target::ClusterSelected`] |

use crate::selector::{self, Selector};

/// The object or objects a request describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Namespaced objects of `resource` picked by a label selector.
    Selected {
        /// Namespace.
        namespace: String,
        /// Group-qualified resource (`pods`, `deployments.apps`).
        resource: String,
        /// The `labelSelector` (empty selects all).
        selector: Selector,
    },
    /// One namespaced object.
    Object {
        /// Namespace.
        namespace: String,
        /// Group-qualified resource.
        resource: String,
        /// Its name.
        name: String,
    },
    /// A Namespace object itself.
    Namespace {
        /// The namespace.
        namespace: String,
    },
    /// One cluster-scoped object.
    ClusterObject {
        /// Group-qualified resource.
        resource: String,
        /// Its name.
        name: String,
    },
    /// Cluster-scoped objects picked by a label selector.
    ClusterSelected {
        /// Group-qualified resource.
        resource: String,
        /// The `labelSelector`.
        selector: Selector,
    },
}

impl Target {
    /// The group-qualified resource, for messages (`pods`, `namespaces`).
    #[must_use]
    pub fn resource(&self) -> &str {
        match self {
            Target::Selected { resource, .. } | Target::Object { resource, .. } => resource,
            Target::ClusterObject { resource, .. } | Target::ClusterSelected { resource, .. } => {
                resource
            }
            Target::Namespace { .. } => "namespaces",
        }
    }
}

/// A metric request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricRequest {
    /// What it describes.
    pub target: Target,
    /// The metric's name.
    pub metric: String,
    /// The `metricLabelSelector`, when given and not empty.
    pub metric_selector: Option<Selector>,
}

/// What a path under a version asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The version's discovery document (`APIResourceList`).
    Discovery,
    /// Metric values.
    Metric(MetricRequest),
}

/// Why a request cannot be understood (answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The path is none of the five forms, or badly encoded.
    #[error("invalid request path")]
    InvalidPath,
    /// A selector does not parse.
    #[error("invalid {param}: {source}")]
    BadSelector {
        /// `labelSelector` or `metricLabelSelector`.
        param: &'static str,
        /// Why.
        source: selector::Error,
    },
    /// A query string value is badly encoded.
    #[error("invalid query string")]
    BadQuery,
}

/// Parses the path after `/apis/custom.metrics.k8s.io/<version>` (with or without its leading
/// `/`) and the raw query string.
pub fn parse(rest: &str, query: Option<&str>) -> Result<Request, Error> {
    let rest = rest.trim_start_matches('/');
    if rest.is_empty() {
        return Ok(Request::Discovery);
    }
    let segments: Vec<String> = rest
        .split('/')
        .map(|s| percent_decode(s, false).ok_or(Error::InvalidPath))
        .collect::<Result<_, _>>()?;
    if segments.iter().any(String::is_empty) {
        return Err(Error::InvalidPath);
    }
    let params = query_params(query.unwrap_or(""))?;
    let selector = |param: &'static str| -> Result<Selector, Error> {
        let text = params
            .iter()
            .find(|(k, _)| k == param)
            .map_or("", |(_, v)| v.as_str());
        Selector::parse(text).map_err(|source| Error::BadSelector { param, source })
    };
    let metric_selector = Some(selector("metricLabelSelector")?).filter(|s| !s.is_empty());
    let (target, metric) = match segments.as_slice() {
        // `namespaces/{ns}/{metric}` is no form: the reference server answers it 400.
        [first, _, _] if first == "namespaces" => return Err(Error::InvalidPath),
        [first, namespace, metrics, metric] if first == "namespaces" && metrics == "metrics" => (
            Target::Namespace {
                namespace: namespace.clone(),
            },
            metric.clone(),
        ),
        [first, namespace, resource, name, metric] if first == "namespaces" => {
            let target = if name == "*" {
                Target::Selected {
                    namespace: namespace.clone(),
                    resource: resource.clone(),
                    selector: selector("labelSelector")?,
                }
            } else {
                Target::Object {
                    namespace: namespace.clone(),
                    resource: resource.clone(),
                    name: name.clone(),
                }
            };
            (target, metric.clone())
        }
        [resource, name, metric] => {
            let target = if name == "*" {
                Target::ClusterSelected {
                    resource: resource.clone(),
                    selector: selector("labelSelector")?,
                }
            } else {
                Target::ClusterObject {
                    resource: resource.clone(),
                    name: name.clone(),
                }
            };
            (target, metric.clone())
        }
        _ => return Err(Error::InvalidPath),
    };
    Ok(Request::Metric(MetricRequest {
        target,
        metric,
        metric_selector,
    }))
}

/// Splits a query string into decoded `(key, value)` pairs (`+` is a space, as Go reads it).
fn query_params(query: &str) -> Result<Vec<(String, String)>, Error> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((
                percent_decode(key, true).ok_or(Error::BadQuery)?,
                percent_decode(value, true).ok_or(Error::BadQuery)?,
            ))
        })
        .collect()
}

/// Decodes `%XX` escapes (and `+` as a space in query strings); `None` for a bad escape or
/// bytes that are not UTF-8.
pub(crate) fn percent_decode(text: &str, plus_is_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(target: Target, metric: &str) -> Request {
        Request::Metric(MetricRequest {
            target,
            metric: metric.into(),
            metric_selector: None,
        })
    }

    #[test]
    fn every_path_form() {
        let web = Selector::parse("app=web").unwrap();
        let cases: Vec<(&str, Option<&str>, Request)> = vec![
            ("", None, Request::Discovery),
            ("/", None, Request::Discovery),
            (
                "/namespaces/shop/pods/%2A/render_scaling_score",
                Some("labelSelector=app%3Dweb"),
                metric(
                    Target::Selected {
                        namespace: "shop".into(),
                        resource: "pods".into(),
                        selector: web.clone(),
                    },
                    "render_scaling_score",
                ),
            ),
            (
                "/namespaces/shop/pods/*/m",
                Some("labelSelector=app=web"),
                metric(
                    Target::Selected {
                        namespace: "shop".into(),
                        resource: "pods".into(),
                        selector: web.clone(),
                    },
                    "m",
                ),
            ),
            (
                "/namespaces/shop/pods/*/m",
                None,
                metric(
                    Target::Selected {
                        namespace: "shop".into(),
                        resource: "pods".into(),
                        selector: Selector::default(),
                    },
                    "m",
                ),
            ),
            (
                "/namespaces/shop/deployments.apps/worker/m",
                None,
                metric(
                    Target::Object {
                        namespace: "shop".into(),
                        resource: "deployments.apps".into(),
                        name: "worker".into(),
                    },
                    "m",
                ),
            ),
            (
                "/namespaces/shop/metrics/m",
                None,
                metric(
                    Target::Namespace {
                        namespace: "shop".into(),
                    },
                    "m",
                ),
            ),
            (
                "/nodes/node-1/m",
                None,
                metric(
                    Target::ClusterObject {
                        resource: "nodes".into(),
                        name: "node-1".into(),
                    },
                    "m",
                ),
            ),
            (
                "/nodes/%2a/m",
                Some("labelSelector=zone+in+(a,b)"),
                metric(
                    Target::ClusterSelected {
                        resource: "nodes".into(),
                        selector: Selector::parse("zone in (a,b)").unwrap(),
                    },
                    "m",
                ),
            ),
        ];
        for (path, query, want) in cases {
            assert_eq!(parse(path, query).unwrap(), want, "{path}");
        }
    }

    #[test]
    fn metric_selector_is_kept() {
        let Request::Metric(request) = parse(
            "/namespaces/shop/metrics/m",
            Some("metricLabelSelector=queue%3Dorders"),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            request.metric_selector,
            Some(Selector::parse("queue=orders").unwrap())
        );
        let Request::Metric(request) =
            parse("/namespaces/shop/metrics/m", Some("metricLabelSelector=")).unwrap()
        else {
            panic!()
        };
        assert_eq!(request.metric_selector, None);
    }

    #[test]
    fn bad_requests() {
        let cases: [(&str, Option<&str>, &str); 7] = [
            ("/namespaces/ns/foo", None, "invalid request path"),
            ("/a/b/c/d/e/f", None, "invalid request path"),
            ("/namespaces/ns/pods//m", None, "invalid request path"),
            ("/namespaces/ns/pods/%zz/m", None, "invalid request path"),
            (
                "/namespaces/ns/pods/*/m",
                Some("labelSelector=app%3D%3D%3Dx"),
                "invalid labelSelector",
            ),
            (
                "/namespaces/ns/metrics/m",
                Some("metricLabelSelector=a+in"),
                "invalid metricLabelSelector",
            ),
            (
                "/namespaces/ns/metrics/m",
                Some("labelSelector=%"),
                "invalid query string",
            ),
        ];
        for (path, query, want) in cases {
            let err = parse(path, query).unwrap_err().to_string();
            assert!(err.contains(want), "{path} {query:?}: {err}");
        }
    }
}
