//! One instant query to Prometheus's HTTP API (`GET /api/v1/query`) and its answer, read
//! without copying: each sample's labels and value stay slices of the response body (a label
//! map and owned strings per sample made the answers of 1,000 pods cost milliseconds of CPU
//! and megabytes of transient memory per request).
//!
//! An answer that is not `status: success` with a vector is an error carrying Prometheus's
//! `errorType` and `error` (or the HTTP status and the start of a body that is not its JSON,
//! as a proxy in front of it writes).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};

/// Why a query has no answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The request did not complete.
    #[error("request failed")]
    Http(#[from] reqwest::Error),
    /// Prometheus answered an error.
    #[error("Prometheus answered {status}: {error_type}: {error}")]
    Prometheus {
        /// The HTTP status.
        status: u16,
        /// Its `errorType` (`bad_data`, `timeout`, `execution`, …).
        error_type: String,
        /// Its `error`.
        error: String,
    },
    /// The body is not Prometheus's JSON.
    #[error("HTTP {status}, not an answer of Prometheus's API: {start:?}")]
    NotAnAnswer {
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        start: String,
    },
    /// A successful answer that is not an instant vector.
    #[error("the answer is a {0}, not a vector")]
    NotAVector(String),
}

/// One sample of an instant vector: its labels and value, borrowed from the body.
#[derive(Debug, Deserialize)]
pub struct Sample<'a> {
    /// Its labels.
    #[serde(borrow)]
    pub metric: Labels<'a>,
    /// `[time, "value"]`.
    #[serde(borrow)]
    value: (f64, Cow<'a, str>),
}

impl Sample<'_> {
    /// The value (`NaN` when Prometheus wrote none that parses; `+Inf`, `-Inf` and `NaN` as
    /// it spells them).
    #[must_use]
    pub fn value(&self) -> f64 {
        match self.value.1.as_ref() {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            text => text.parse().unwrap_or(f64::NAN),
        }
    }
}

/// A sample's labels, in the order Prometheus wrote them.
#[derive(Debug, Default)]
pub struct Labels<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl Labels<'_> {
    /// The value of label `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_ref())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Labels<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LabelsVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for LabelsVisitor<'a> {
            type Value = Labels<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of label names to values")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Labels<'a>, M::Error> {
                let mut labels = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some((key, value)) = map.next_entry::<Borrowed<'a>, Borrowed<'a>>()? {
                    labels.push((key.0, value.0));
                }
                Ok(Labels(labels))
            }
        }
        deserializer.deserialize_map(LabelsVisitor(std::marker::PhantomData))
    }
}

/// A string borrowed from the body where it has no escapes.
struct Borrowed<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Borrowed<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
        Text::deserialize(deserializer).map(|t| Borrowed(t.0))
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    status: Cow<'a, str>,
    #[serde(borrow, default)]
    data: Option<Data<'a>>,
    #[serde(rename = "errorType", borrow, default)]
    error_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    error: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(rename = "resultType", borrow)]
    result_type: Cow<'a, str>,
    #[serde(borrow, default)]
    result: Vec<Sample<'a>>,
}

/// The samples of an answer with HTTP status `status` and body `body`.
pub fn samples(status: u16, body: &[u8]) -> Result<Vec<Sample<'_>>, QueryError> {
    let not_an_answer = || QueryError::NotAnAnswer {
        status,
        start: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    };
    let envelope: Envelope = serde_json::from_slice(body).map_err(|_| not_an_answer())?;
    if envelope.status != "success" {
        return Err(QueryError::Prometheus {
            status,
            error_type: envelope.error_type.unwrap_or_default().into_owned(),
            error: envelope.error.unwrap_or_default().into_owned(),
        });
    }
    let data = envelope.data.ok_or_else(not_an_answer)?;
    if data.result_type != "vector" {
        return Err(QueryError::NotAVector(data.result_type.into_owned()));
    }
    Ok(data.result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vector_is_read_in_place() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"namespace":"render","pod":"blender-0","fs_part":"value"},"value":[1800000000.5,"0.25"]},
            {"metric":{"pod":"odd \"name\""},"value":[1800000000,"+Inf"]},
            {"metric":{},"value":[1800000000,"NaN"]}
        ]},"warnings":["ignored"]}"#;
        let samples = samples(200, body).unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].metric.get("pod"), Some("blender-0"));
        assert_eq!(samples[0].metric.get("fs_part"), Some("value"));
        assert!(matches!(samples[0].metric.0[1].1, Cow::Borrowed(_)));
        assert!((samples[0].value() - 0.25).abs() < f64::EPSILON);
        assert_eq!(samples[1].metric.get("pod"), Some(r#"odd "name""#));
        assert!(samples[1].value().is_infinite() && samples[1].value() > 0.0);
        assert!(samples[2].value().is_nan());
        assert_eq!(samples[2].metric.get("pod"), None);
    }

    #[test]
    fn errors_say_what_prometheus_or_the_proxy_said() {
        let error = samples(
            400,
            br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "Prometheus answered 400: bad_data: parse error at char 3"
        );
        let error = samples(502, b"<html>Bad Gateway</html>").unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"HTTP 502, not an answer of Prometheus's API: "<html>Bad Gateway</html>""#
        );
        let error = samples(
            200,
            br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
        )
        .unwrap_err();
        assert_eq!(error.to_string(), "the answer is a matrix, not a vector");
    }
}
