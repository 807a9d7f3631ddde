//! framescale's one-line frame record, for our worker and any renderer that is not Blender.
//!
//! ```text
//! framescale.frame frame=12 duration_ms=31.2 queue_ms=4.1 outcome=ok
//! framescale.frame frame=13 outcome=failed error="scene \"city\" not found"
//! framescale.frame queue_ms=0 outcome=refused
//! ```
//!
//! The line starts with `framescale.frame` and a space, then `key=value` pairs separated by
//! spaces, in any order. A value is bare (no spaces or quotes) or double-quoted with `\"`, `\\`
//! and `\n` escapes. Keys (the full specification is `docs/frame-line-format.md`):
//!
//! | key | value | required |
//! |---|---|---|
//! | `duration_ms` | render time in milliseconds, a finite number ≥ 0 | when `outcome=ok` |
//! | `outcome` | `ok`, `failed` or `refused` (turned away before rendering: no slot, no queue place) | no, default `ok` |
//! | `frame` | frame number, integer ≥ 0 | no |
//! | `queue_ms` | time queued before rendering, milliseconds ≥ 0 | no |
//! | `output` | where the frame was written | no |
//! | `error` | why the frame failed | no |
//!
//! Unknown keys are ignored so that writers can add fields without breaking older exporters;
//! a key given twice is an error.

use std::borrow::Cow;
use std::time::Duration;

use crate::frame::{FrameRecord, Outcome};

/// The word that opens a frame line.
pub const PREFIX: &str = "framescale.frame";

/// Longest duration a record may carry: one hour, the top of the histogram range.
pub const MAX_DURATION: Duration = Duration::from_hours(1);

/// Why a line that opens with [`PREFIX`] is not a valid frame record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A pair has no `=`.
    #[error("`{0}` is not key=value")]
    NotAPair(String),
    /// A quoted value has no closing quote.
    #[error("unterminated quoted value for `{0}`")]
    UnterminatedQuote(String),
    /// A key appears twice.
    #[error("key `{0}` given twice")]
    DuplicateKey(String),
    /// A value does not parse as what its key needs.
    #[error("`{key}={value}`: {expected}")]
    BadValue {
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// What the key needs.
        expected: &'static str,
    },
    /// `outcome=ok` without `duration_ms`.
    #[error("a frame with outcome=ok needs duration_ms")]
    MissingDuration,
}

/// Reads a frame line. `None` when the line is not one (it does not open with [`PREFIX`]).
#[must_use]
pub fn parse(line: &[u8]) -> Option<Result<FrameRecord, Error>> {
    let rest = line.strip_prefix(PREFIX.as_bytes())?;
    if !(rest.is_empty() || rest[0] == b' ') {
        return None;
    }
    Some(parse_pairs(&String::from_utf8_lossy(rest)))
}

/// Writes a record as a frame line, the inverse of [`parse`].
#[must_use]
pub fn format(record: &FrameRecord) -> String {
    use std::fmt::Write;
    let mut line = String::from(PREFIX);
    if let Some(frame) = record.frame {
        let _ = write!(line, " frame={frame}");
    }
    if let Some(duration) = record.duration {
        let _ = write!(line, " duration_ms={}", millis(duration));
    }
    if let Some(queue) = record.queue {
        let _ = write!(line, " queue_ms={}", millis(queue));
    }
    line.push_str(" outcome=");
    line.push_str(record.outcome.as_str());
    for (key, value) in [("output", &record.output), ("error", &record.error)] {
        if let Some(value) = value {
            let _ = write!(line, " {key}={}", quote(value));
        }
    }
    line
}

/// Parses a millisecond value as a duration: finite, ≥ 0, at most [`MAX_DURATION`].
pub fn parse_millis(key: &str, value: &str) -> Result<Duration, Error> {
    let bad = |expected| Error::BadValue {
        key: key.to_owned(),
        value: value.to_owned(),
        expected,
    };
    let ms: f64 = value.parse().map_err(|_| bad("a number of milliseconds"))?;
    duration_from_millis(ms).map_err(bad)
}

/// A number of milliseconds as a duration, or what the number should have been.
pub fn duration_from_millis(ms: f64) -> Result<Duration, &'static str> {
    if !ms.is_finite() || ms < 0.0 {
        return Err("a finite number of milliseconds ≥ 0");
    }
    if ms > MAX_DURATION.as_secs_f64() * 1000.0 {
        return Err("at most one hour (3600000 ms)");
    }
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

fn parse_pairs(text: &str) -> Result<FrameRecord, Error> {
    let mut record = FrameRecord {
        frame: None,
        duration: None,
        queue: None,
        outcome: Outcome::Ok,
        output: None,
        error: None,
    };
    // Keys seen so far, as slices of `text`: no allocation for the usual handful of keys.
    let mut seen: Vec<&str> = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or_else(|| Error::NotAPair(first_word(rest).to_owned()))?;
        let key = &rest[..eq];
        if key.contains(' ') || key.is_empty() {
            return Err(Error::NotAPair(first_word(rest).to_owned()));
        }
        let (value, after) = take_value(key, &rest[eq + 1..])?;
        if seen.contains(&key) {
            return Err(Error::DuplicateKey(key.to_owned()));
        }
        seen.push(key);
        apply(&mut record, key, value)?;
        rest = after.trim_start();
    }
    if record.outcome == Outcome::Ok && record.duration.is_none() {
        return Err(Error::MissingDuration);
    }
    Ok(record)
}

fn apply(record: &mut FrameRecord, key: &str, value: Cow<'_, str>) -> Result<(), Error> {
    let bad = |expected| Error::BadValue {
        key: key.to_owned(),
        value: value.clone().into_owned(),
        expected,
    };
    match key {
        "frame" => record.frame = Some(value.parse().map_err(|_| bad("an integer ≥ 0"))?),
        "duration_ms" => record.duration = Some(parse_millis(key, &value)?),
        "queue_ms" => record.queue = Some(parse_millis(key, &value)?),
        "outcome" => {
            record.outcome = match value.as_ref() {
                "ok" => Outcome::Ok,
                "failed" => Outcome::Failed,
                "refused" => Outcome::Refused,
                _ => return Err(bad("`ok`, `failed` or `refused`")),
            }
        }
        "output" => record.output = Some(value.into_owned()),
        "error" => record.error = Some(value.into_owned()),
        _ => {}
    }
    Ok(())
}

/// Takes one value off the front of `text`: bare up to a space, or double-quoted.
fn take_value<'a>(key: &str, text: &'a str) -> Result<(Cow<'a, str>, &'a str), Error> {
    let Some(quoted) = text.strip_prefix('"') else {
        let end = text.find(' ').unwrap_or(text.len());
        return Ok((Cow::Borrowed(&text[..end]), &text[end..]));
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((Cow::Owned(value), &quoted[i + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, escaped)) => value.push(escaped),
                None => break,
            },
            _ => value.push(c),
        }
    }
    Err(Error::UnterminatedQuote(key.to_owned()))
}

fn quote(value: &str) -> String {
    if !value.is_empty() && !value.contains([' ', '"', '\\', '\n']) {
        return value.to_owned();
    }
    let escaped = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    std::format!("\"{escaped}\"")
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn first_word(text: &str) -> &str {
    text.split(' ').next().unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(value: f64) -> Duration {
        Duration::from_secs_f64(value / 1000.0)
    }

    #[test]
    fn valid_lines() {
        let got = parse(b"framescale.frame frame=12 duration_ms=31.2 queue_ms=4.1 outcome=ok")
            .unwrap()
            .unwrap();
        assert_eq!(got.frame, Some(12));
        assert_eq!(got.duration, Some(ms(31.2)));
        assert_eq!(got.queue, Some(ms(4.1)));
        assert_eq!(got.outcome, Outcome::Ok);
        assert_eq!(got.latency(), Some(ms(31.2) + ms(4.1)));

        let got =
            parse(br#"framescale.frame outcome=failed error="scene \"city\" not found" new_key=1"#)
                .unwrap()
                .unwrap();
        assert_eq!(got.outcome, Outcome::Failed);
        assert_eq!(got.error.as_deref(), Some(r#"scene "city" not found"#));
        assert_eq!(got.duration, None);

        // A refused frame needs no frame number and no duration.
        let got = parse(b"framescale.frame outcome=refused").unwrap().unwrap();
        assert_eq!(got, FrameRecord::refused(None, None));
        assert_eq!(got.latency(), None);

        let got = parse(b"framescale.frame   duration_ms=0  ")
            .unwrap()
            .unwrap();
        assert_eq!(got.duration, Some(Duration::ZERO));
    }

    #[test]
    fn other_lines_are_not_frame_lines() {
        for line in [
            "",
            "framescale.frames x=1",
            "Fra:1",
            " framescale.frame duration_ms=1",
        ] {
            assert_eq!(parse(line.as_bytes()), None, "{line}");
        }
    }

    #[test]
    fn invalid_lines() {
        let cases: &[(&str, &str)] = &[
            ("framescale.frame", "needs duration_ms"),
            ("framescale.frame outcome=ok", "needs duration_ms"),
            (
                "framescale.frame duration_ms=abc",
                "a number of milliseconds",
            ),
            ("framescale.frame duration_ms=-1", "≥ 0"),
            ("framescale.frame duration_ms=NaN", "finite"),
            ("framescale.frame duration_ms=inf", "finite"),
            ("framescale.frame duration_ms=3600001", "at most one hour"),
            ("framescale.frame duration_ms=1 frame=-3", "integer"),
            ("framescale.frame duration_ms=1 queue_ms=-2", "≥ 0"),
            ("framescale.frame outcome=refused queue_ms=inf", "finite"),
            (
                "framescale.frame duration_ms=1 queue_ms=1e300",
                "at most one hour",
            ),
            (
                "framescale.frame duration_ms=1 outcome=meh",
                "`ok`, `failed` or `refused`",
            ),
            (
                "framescale.frame duration_ms=1 duration_ms=2",
                "given twice",
            ),
            ("framescale.frame duration_ms=1 junk", "not key=value"),
            ("framescale.frame duration_ms=1 =3", "not key=value"),
            (
                "framescale.frame duration_ms=1 error=\"open",
                "unterminated",
            ),
        ];
        for (line, want) in cases {
            let err = parse(line.as_bytes()).unwrap().unwrap_err().to_string();
            assert!(err.contains(want), "{line}: {err}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut line = PREFIX.as_bytes().to_vec();
            line.push(b' ');
            line.extend(bytes);
            let _ = parse(&line);
        }

        #[test]
        fn format_then_parse_round_trips(
            frame in proptest::option::of(0u64..1_000_000),
            micros in 0u64..3_600_000_000,
            failed in any::<bool>(),
            error in proptest::option::of(".{0,40}"),
        ) {
            let record = FrameRecord {
                frame,
                duration: Some(Duration::from_micros(micros)),
                queue: None,
                outcome: if failed { Outcome::Failed } else { Outcome::Ok },
                output: None,
                error,
            };
            let back = parse(format(&record).as_bytes()).unwrap().unwrap();
            prop_assert_eq!(back.frame, record.frame);
            prop_assert_eq!(back.outcome, record.outcome);
            prop_assert_eq!(back.error, record.error);
            let delta = back.duration.unwrap().abs_diff(record.duration.unwrap());
            prop_assert!(delta <= Duration::from_nanos(1), "{delta:?}");
        }
    }
}
