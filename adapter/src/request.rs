//! Turning a request's raw path and query into what is asked (`docs/reference/custom-metrics-api.md` §2).
//!
//! The path is taken as it arrived, still percent-encoded, and each segment is decoded exactly
//! once, as Go's server does (Go clients send `*` as `%2A`): `%252A` is the name `%2A`, not `*`,
//! and `%2F` stays inside its segment rather than splitting it. A decoded segment that holds `/`
//! or `%` cannot be a Kubernetes object name or a metric name, so it is refused. Paths below
//! `/apis/custom.metrics.k8s.io/<version>/`:
//!
//! | form | path | [`Target`] |
//! |---|---|---|
//! | 1 | `namespaces/{ns}/{resource}/*/{metric}?labelSelector=…` | [`Target::Selected`] |
//! | 2 | `namespaces/{ns}/{resource}/{name}/{metric}` | [`Target::Object`] |
//! | 3 | `namespaces/{ns}/metrics/{metric}` | [`Target::Namespace`] |
//! | 4 | `{resource}/{name}/{metric}` | [`Target::ClusterObject`] |
//! | 5 | `{resource}/*/{metric}?labelSelector=…` | [`Target::ClusterSelected`] |

use crate::selector::{self, Selector};
use crate::wire::{GROUP, Version};

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
    /// A segment decodes to something no object or metric can be named.
    #[error(
        "invalid request path: segment {raw:?} decodes to {decoded:?}, which holds '/' or '%' and is not a valid name"
    )]
    InvalidName {
        /// The segment as sent.
        raw: String,
        /// The segment decoded once.
        decoded: String,
    },
    /// The version is not one the adapter serves (answered 404).
    #[error("the server could not find version {0} of {GROUP}")]
    UnknownVersion(String),
    /// A selector does not parse.
    #[error("invalid {param}: {source}")]
    BadSelector {
        /// `labelSelector` or `metricLabelSelector`.
        param: &'static str,
        /// Why.
        source: selector::Error,
    },
    /// A selector is longer than the adapter matches.
    #[error("invalid {param}: longer than {MAX_SELECTOR_BYTES} bytes")]
    SelectorTooLong {
        /// `labelSelector` or `metricLabelSelector`.
        param: &'static str,
    },
    /// A query string value is badly encoded.
    #[error("invalid query string")]
    BadQuery,
}

/// Longest selector matched: each is matched against every pod of a namespace, so its length
/// bounds a request's cost. An HPA's selectors are a few dozen bytes.
pub const MAX_SELECTOR_BYTES: usize = 8192;

/// Parses a request's raw path — `/apis/custom.metrics.k8s.io/<version>[/…]`, still
/// percent-encoded — and raw query string: the version, and what is asked of it.
pub fn parse(path: &str, query: Option<&str>) -> Result<(Version, Request), Error> {
    let rest = path
        .strip_prefix("/apis/")
        .and_then(|p| p.strip_prefix(GROUP))
        .and_then(|p| p.strip_prefix('/'))
        .ok_or(Error::InvalidPath)?;
    let (version, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let version = decode_segment(version)?;
    let version = Version::parse(&version).ok_or(Error::UnknownVersion(version))?;
    Ok((version, parse_below_version(rest, query)?))
}

/// Parses the raw path below a version (without its leading `/`) and the raw query string.
fn parse_below_version(rest: &str, query: Option<&str>) -> Result<Request, Error> {
    if rest.is_empty() {
        return Ok(Request::Discovery);
    }
    let segments: Vec<String> = rest
        .split('/')
        .map(decode_segment)
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
        if text.len() > MAX_SELECTOR_BYTES {
            return Err(Error::SelectorTooLong { param });
        }
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

/// Decodes one raw path segment once; refuses bad escapes and names holding `/` or `%`.
fn decode_segment(raw: &str) -> Result<String, Error> {
    let decoded = percent_decode(raw, false).ok_or(Error::InvalidPath)?;
    if decoded.contains(['/', '%']) {
        return Err(Error::InvalidName {
            raw: raw.to_owned(),
            decoded,
        });
    }
    Ok(decoded)
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

    /// Parses a path below `/apis/custom.metrics.k8s.io/v1beta2`.
    fn below(path: &str, query: Option<&str>) -> Result<Request, Error> {
        parse(&format!("/apis/{GROUP}/v1beta2{path}"), query).map(|(version, request)| {
            assert_eq!(version, Version::V1beta2);
            request
        })
    }

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
            assert_eq!(below(path, query).unwrap(), want, "{path}");
        }
    }

    #[test]
    fn metric_selector_is_kept() {
        let Request::Metric(request) = below(
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
            below("/namespaces/shop/metrics/m", Some("metricLabelSelector=")).unwrap()
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
            let err = below(path, query).unwrap_err().to_string();
            assert!(err.contains(want), "{path} {query:?}: {err}");
        }
        // Built to be expensive: 3,000 requirements, matched against every pod.
        let long = format!("labelSelector={}", vec!["a%3Db"; 3_000].join("%2C"));
        let err = below("/namespaces/ns/pods/*/m", Some(&long))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "invalid labelSelector: longer than 8192 bytes");
    }

    #[test]
    fn each_segment_is_decoded_exactly_once() {
        let selected = |name: &str| {
            below(&format!("/namespaces/shop/pods/{name}/m"), None).map(|r| {
                matches!(
                    r,
                    Request::Metric(MetricRequest {
                        target: Target::Selected { .. },
                        ..
                    })
                )
            })
        };
        // `%2A` is how Go clients send `*`.
        assert_eq!(selected("%2A"), Ok(true));
        assert_eq!(selected("*"), Ok(true));
        // `%252A` is the name `%2A` (decoded once), never `*`; no object can be named so.
        let error = selected("%252A").unwrap_err();
        assert_eq!(
            error,
            Error::InvalidName {
                raw: "%252A".into(),
                decoded: "%2A".into()
            }
        );
        // An encoded `/` stays in its segment: it neither splits it nor makes a name.
        assert!(matches!(
            below("/namespaces/shop/pods/a%2Fb/m", None),
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(
            below("/namespaces/shop%2Fpods%2Fw-0/m", None),
            Err(Error::InvalidName { .. })
        ));
        // A name with other escapes decodes to itself.
        assert_eq!(
            below("/namespaces/shop/pods/w%2D0/m", None),
            Ok(metric(
                Target::Object {
                    namespace: "shop".into(),
                    resource: "pods".into(),
                    name: "w-0".into()
                },
                "m"
            ))
        );
    }

    #[test]
    fn versions_and_the_group_prefix() {
        assert_eq!(
            parse("/apis/custom.metrics.k8s.io/v1beta1", None),
            Ok((Version::V1beta1, Request::Discovery))
        );
        assert_eq!(
            parse("/apis/custom.metrics.k8s.io/v1beta2/", None),
            Ok((Version::V1beta2, Request::Discovery))
        );
        assert_eq!(
            parse(
                "/apis/custom.metrics.k8s.io/v2/namespaces/a/metrics/m",
                None
            ),
            Err(Error::UnknownVersion("v2".into()))
        );
        assert_eq!(
            parse("/apis/external.metrics.k8s.io/v1beta1", None),
            Err(Error::InvalidPath)
        );
    }
}
