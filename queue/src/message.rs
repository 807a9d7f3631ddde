//! One frame as a stream entry: its fields, written by `submit` and read by a worker. A message
//! that does not read as a frame is [`Malformed`]: the worker moves it aside, never renders or
//! retries it. A leaf: no Redis connection here.

use std::collections::HashMap;

use redis::Value;

/// One frame to render, as the queue carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameMessage {
    /// The job it belongs to.
    pub job: String,
    /// The scene's name.
    pub scene: String,
    /// The frame number.
    pub frame: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Samples per pixel.
    pub samples: u32,
    /// When it was enqueued, Unix milliseconds (the submitter's clock).
    pub enqueued_ms: u64,
}

/// Why a stream entry is not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// A field is missing.
    #[error("field {0:?} is missing")]
    Missing(&'static str),
    /// A field does not hold what it should.
    #[error("field {field:?} is {value:?}, not {expected}")]
    BadValue {
        /// The field.
        field: &'static str,
        /// What it holds (lossy UTF-8, at most 64 characters).
        value: String,
        /// What it should hold.
        expected: &'static str,
    },
}

impl FrameMessage {
    /// The entry's fields, in the order they are written.
    #[must_use]
    pub fn fields(&self) -> [(&'static str, String); 7] {
        [
            ("job", self.job.clone()),
            ("scene", self.scene.clone()),
            ("frame", self.frame.to_string()),
            ("width", self.width.to_string()),
            ("height", self.height.to_string()),
            ("samples", self.samples.to_string()),
            ("enqueued_ms", self.enqueued_ms.to_string()),
        ]
    }

    /// Reads an entry's fields.
    pub fn from_fields(fields: &HashMap<String, Value>) -> Result<Self, Malformed> {
        let text = |field: &'static str| -> Result<String, Malformed> {
            match fields.get(field) {
                None | Some(Value::Nil) => Err(Malformed::Missing(field)),
                Some(Value::BulkString(bytes)) => {
                    String::from_utf8(bytes.clone()).map_err(|_| Malformed::BadValue {
                        field,
                        value: shown(&String::from_utf8_lossy(bytes)),
                        expected: "UTF-8 text",
                    })
                }
                Some(other) => Err(Malformed::BadValue {
                    field,
                    value: shown(&format!("{other:?}")),
                    expected: "a string",
                }),
            }
        };
        let count = "a whole number";
        let job = text("job")?;
        if job.is_empty() {
            return Err(Malformed::Missing("job"));
        }
        Ok(FrameMessage {
            job,
            scene: text("scene")?,
            frame: number("frame", &text("frame")?, count)?,
            width: number("width", &text("width")?, count)?,
            height: number("height", &text("height")?, count)?,
            samples: number("samples", &text("samples")?, count)?,
            enqueued_ms: number("enqueued_ms", &text("enqueued_ms")?, "Unix milliseconds")?,
        })
    }
}

/// `text` as a number, or why not.
fn number<T: std::str::FromStr>(
    field: &'static str,
    text: &str,
    expected: &'static str,
) -> Result<T, Malformed> {
    text.parse().map_err(|_| Malformed::BadValue {
        field,
        value: shown(text),
        expected,
    })
}

/// At most 64 characters of `text`, for a message.
fn shown(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pairs: &[(&str, &str)]) -> HashMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::BulkString(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn a_frame_reads_back_as_written() {
        let frame = FrameMessage {
            job: "j1".into(),
            scene: "spheres".into(),
            frame: 42,
            width: 64,
            height: 48,
            samples: 8,
            enqueued_ms: 1_764_000_000_000,
        };
        let fields: Vec<(&str, String)> = frame.fields().to_vec();
        let written: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(FrameMessage::from_fields(&entry(&written)), Ok(frame));
    }

    #[test]
    fn a_malformed_entry_says_what_is_wrong() {
        let good = [
            ("job", "j1"),
            ("scene", "spheres"),
            ("frame", "1"),
            ("width", "64"),
            ("height", "64"),
            ("samples", "8"),
            ("enqueued_ms", "1"),
        ];
        let without = |field: &str| -> Vec<(&str, &str)> {
            good.iter().copied().filter(|(k, _)| *k != field).collect()
        };
        assert_eq!(
            FrameMessage::from_fields(&entry(&without("frame"))),
            Err(Malformed::Missing("frame"))
        );
        let mut bad = without("frame");
        bad.push(("frame", "minus one"));
        assert_eq!(
            FrameMessage::from_fields(&entry(&bad)),
            Err(Malformed::BadValue {
                field: "frame",
                value: "minus one".into(),
                expected: "a whole number"
            })
        );
        let mut negative = without("width");
        negative.push(("width", "-64"));
        assert!(FrameMessage::from_fields(&entry(&negative)).is_err());
        assert_eq!(
            FrameMessage::from_fields(&entry(&[("hello", "world")])),
            Err(Malformed::Missing("job"))
        );
    }
}
