//! `POST /v1/frames`: frame records for renderers that do not log to stdout.
//!
//! The body is newline-delimited JSON, one frame per line:
//!
//! ```json
//! {"namespace":"render","pod":"worker-0","container":"worker","frame":12,"duration_ms":31.2,"queue_ms":4.1,"outcome":"ok"}
//! ```
//!
//! `namespace`, `pod` and `container` are required; the other fields follow the frame-line
//! format (`docs/frame-line-format.md`). A body is taken whole or not at all: the first invalid
//! line rejects it with its line number and reason, so a client can fix and resend it without
//! double counting. Frames are timed at arrival.

use framescale_core::frame::{FrameRecord, Outcome};
use framescale_core::frame_line::duration_from_millis;
use serde::Deserialize;

use crate::store::SeriesKey;

/// Longest label value accepted, in bytes (a DNS subdomain's limit).
pub const MAX_LABEL_BYTES: usize = 253;

/// Why a push body was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The body holds no record.
    #[error("the body holds no frame records (expected newline-delimited JSON)")]
    Empty,
    /// A line is not a valid record.
    #[error("line {line}: {reason}")]
    InvalidLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushedFrame {
    namespace: String,
    pod: String,
    container: String,
    frame: Option<u64>,
    duration_ms: Option<f64>,
    queue_ms: Option<f64>,
    #[serde(default)]
    outcome: PushedOutcome,
    output: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum PushedOutcome {
    #[default]
    Ok,
    Failed,
    Refused,
}

/// Parses a whole body into frames and the series they belong to.
pub fn parse_body(body: &[u8]) -> Result<Vec<(SeriesKey, FrameRecord)>, Error> {
    let mut frames = Vec::new();
    for (index, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let invalid = |reason: String| Error::InvalidLine {
            line: index + 1,
            reason,
        };
        let pushed: PushedFrame =
            serde_json::from_slice(line).map_err(|e| invalid(e.to_string()))?;
        frames.push(validate(pushed).map_err(invalid)?);
    }
    if frames.is_empty() {
        return Err(Error::Empty);
    }
    Ok(frames)
}

fn validate(pushed: PushedFrame) -> Result<(SeriesKey, FrameRecord), String> {
    for (name, value) in [
        ("namespace", &pushed.namespace),
        ("pod", &pushed.pod),
        ("container", &pushed.container),
    ] {
        if value.is_empty() || value.len() > MAX_LABEL_BYTES {
            return Err(format!("`{name}` must be 1 to {MAX_LABEL_BYTES} bytes"));
        }
    }
    let millis = |name: &str, value: Option<f64>| {
        value
            .map(duration_from_millis)
            .transpose()
            .map_err(|expected| format!("`{name}` must be {expected}"))
    };
    let duration = millis("duration_ms", pushed.duration_ms)?;
    let queue = millis("queue_ms", pushed.queue_ms)?;
    let outcome = match pushed.outcome {
        PushedOutcome::Ok if duration.is_none() => {
            return Err("a frame with outcome \"ok\" needs `duration_ms`".into());
        }
        PushedOutcome::Ok => Outcome::Ok,
        PushedOutcome::Failed => Outcome::Failed,
        PushedOutcome::Refused => Outcome::Refused,
    };
    let key = SeriesKey::new(&pushed.namespace, &pushed.pod, &pushed.container);
    let record = FrameRecord {
        frame: pushed.frame,
        duration,
        queue,
        outcome,
        output: pushed.output,
        error: pushed.error,
    };
    Ok((key, record))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn valid_bodies() {
        let body = br#"{"namespace":"r","pod":"w-0","container":"worker","frame":12,"duration_ms":31.2,"queue_ms":4.1,"outcome":"ok"}

{"namespace":"r","pod":"w-0","container":"worker","outcome":"failed","error":"scene missing"}
{"namespace":"r","pod":"w-0","container":"worker","outcome":"refused","queue_ms":0}
"#;
        let frames = parse_body(body).unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[2].1.outcome, Outcome::Refused);
        assert_eq!(frames[0].0, SeriesKey::new("r", "w-0", "worker"));
        assert_eq!(frames[0].1.duration, Some(Duration::from_secs_f64(0.0312)));
        assert_eq!(frames[1].1.outcome, Outcome::Failed);
    }

    #[test]
    fn invalid_bodies_name_the_line_and_reason() {
        let ok = r#"{"namespace":"r","pod":"p","container":"c","duration_ms":1}"#;
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "no frame records"),
            ("\n \n".into(), "no frame records"),
            (format!("{ok}\nnot json"), "line 2:"),
            (
                r#"{"namespace":"r","pod":"p","duration_ms":1}"#.into(),
                "missing field `container`",
            ),
            (
                r#"{"namespace":"r","pod":"p","container":"c","duration_ms":1,"extra":1}"#.into(),
                "unknown field `extra`",
            ),
            (
                r#"{"namespace":"","pod":"p","container":"c","duration_ms":1}"#.into(),
                "`namespace` must be",
            ),
            (
                r#"{"namespace":"r","pod":"p","container":"c"}"#.into(),
                "needs `duration_ms`",
            ),
            (
                r#"{"namespace":"r","pod":"p","container":"c","duration_ms":-4}"#.into(),
                "`duration_ms` must be",
            ),
            (
                r#"{"namespace":"r","pod":"p","container":"c","duration_ms":1,"outcome":"meh"}"#
                    .into(),
                "unknown variant",
            ),
            (
                format!(
                    "{ok}\n{}",
                    r#"{"namespace":"r","pod":"p","container":"c","duration_ms":1,"queue_ms":1e99}"#
                ),
                "line 2: `queue_ms`",
            ),
        ];
        for (body, want) in cases {
            let err = parse_body(body.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{body:?}: {err}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_body(&bytes);
        }
    }
}
