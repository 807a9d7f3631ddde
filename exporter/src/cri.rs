//! The CRI container log format that the kubelet and container runtimes write.
//!
//! One line per record: `<RFC3339Nano time> <stdout|stderr> <tags> <text>`, where the first tag
//! is `F` (full: this record ends a line) or `P` (partial: the runtime split a long line and the
//! next records of the same stream continue it). [`CriAssembler`] joins partials back into
//! lines, per stream, up to a size cap.

use std::borrow::Cow;

/// Which output of the container a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One parsed CRI record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CriRecord<'a> {
    /// When the runtime wrote it, in milliseconds since the Unix epoch.
    pub time_millis: u64,
    /// The stream it came from.
    pub stream: Stream,
    /// Whether more records continue this line (`P`).
    pub partial: bool,
    /// The container's text, without the newline.
    pub text: &'a [u8],
}

/// Why a line is not a CRI record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The time is not RFC 3339.
    #[error("timestamp is not RFC 3339")]
    BadTimestamp,
    /// The stream is neither `stdout` nor `stderr`.
    #[error("stream is not stdout or stderr")]
    BadStream,
    /// The tag is neither `F` nor `P`.
    #[error("tag is not F or P")]
    BadTag,
    /// A field is missing.
    #[error("line has fewer than three fields")]
    Truncated,
}

/// Parses one CRI log line (without its newline).
pub fn parse(line: &[u8]) -> Result<CriRecord<'_>, Error> {
    let (time, rest) = split_field(line).ok_or(Error::Truncated)?;
    let (stream, rest) = split_field(rest).ok_or(Error::Truncated)?;
    let (tags, text) = split_field(rest).unwrap_or((rest, &[]));
    let stream = match stream {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return Err(Error::BadStream),
    };
    let first_tag = tags.split(|&b| b == b':').next().unwrap_or_default();
    let partial = match first_tag {
        b"F" => false,
        b"P" => true,
        _ => return Err(Error::BadTag),
    };
    let time_millis = parse_rfc3339_millis(time).ok_or(Error::BadTimestamp)?;
    Ok(CriRecord {
        time_millis,
        stream,
        partial,
        text,
    })
}

/// A line put back together from its records.
#[derive(Debug, PartialEq, Eq)]
pub enum Assembled<'a> {
    /// A whole line, with the time of its last record.
    Line {
        /// Milliseconds since the Unix epoch.
        time_millis: u64,
        /// The text.
        text: Cow<'a, [u8]>,
    },
    /// A partial record was kept; the line is not complete yet.
    Pending,
    /// The line grew past the cap and was dropped whole (reported once, at its end).
    Oversize,
}

/// Joins partial records into lines, per stream.
#[derive(Debug)]
pub struct CriAssembler {
    max_line_bytes: usize,
    pending: [Pending; 2],
}

/// A line of one stream still being joined from partial records: kept in a checkpoint, so a
/// restarted exporter joins it with the records that follow.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pending {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    text: Vec<u8>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    overflowed: bool,
}

impl CriAssembler {
    /// An assembler that drops lines longer than `max_line_bytes`.
    #[must_use]
    pub fn new(max_line_bytes: usize) -> Self {
        CriAssembler {
            max_line_bytes,
            pending: Default::default(),
        }
    }

    /// The lines being joined, per stream (stdout, stderr).
    #[must_use]
    pub fn pending(&self) -> [Pending; 2] {
        self.pending.clone()
    }

    /// Goes on joining the lines `pending` left.
    pub fn restore(&mut self, pending: [Pending; 2]) {
        self.pending = pending;
    }

    /// Takes the next record of the log.
    pub fn push<'a>(&mut self, record: CriRecord<'a>) -> Assembled<'a> {
        let max = self.max_line_bytes;
        let pending = &mut self.pending[record.stream as usize];
        if pending.text.is_empty() && !pending.overflowed && !record.partial {
            if record.text.len() > max {
                return Assembled::Oversize;
            }
            return Assembled::Line {
                time_millis: record.time_millis,
                text: Cow::Borrowed(record.text),
            };
        }
        if !pending.overflowed && pending.text.len() + record.text.len() <= max {
            pending.text.extend_from_slice(record.text);
        } else {
            pending.overflowed = true;
            pending.text = Vec::new();
        }
        if record.partial {
            return Assembled::Pending;
        }
        let Pending { text, overflowed } = std::mem::take(pending);
        if overflowed {
            Assembled::Oversize
        } else {
            Assembled::Line {
                time_millis: record.time_millis,
                text: Cow::Owned(text),
            }
        }
    }
}

/// Parses an RFC 3339 timestamp (`2026-11-22T01:02:03.123456789Z`, or with a `±HH:MM` offset)
/// to milliseconds since the Unix epoch; `None` for anything else or a time before 1970.
#[must_use]
pub fn parse_rfc3339_millis(text: &[u8]) -> Option<u64> {
    if text.len() < 20
        || text[4] != b'-'
        || text[7] != b'-'
        || !matches!(text[10], b'T' | b't')
        || text[13] != b':'
        || text[16] != b':'
    {
        return None;
    }
    let year = digits(&text[0..4])?;
    let month = digits(&text[5..7])?;
    let day = digits(&text[8..10])?;
    let hour = digits(&text[11..13])?;
    let minute = digits(&text[14..16])?;
    let second = digits(&text[17..19])?;
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let len = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 || len > 9 {
            return None;
        }
        let padded: u64 = fraction[..len.min(3)]
            .iter()
            .fold(0, |n, &d| n * 10 + u64::from(d - b'0'));
        millis = padded * 10u64.pow(3 - len.min(3) as u32);
        rest = &fraction[len..];
    }
    let offset_secs: i64 = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2])?;
            let minutes = digits(&[*m1, *m2])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = i64::try_from(hours * 3600 + minutes * 60).ok()?;
            if *sign == b'+' { offset } else { -offset }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let local = days * 86_400 + i64::try_from(hour * 3600 + minute * 60 + second).ok()?;
    let utc = u64::try_from(local - offset_secs).ok()?;
    Some(utc * 1000 + millis)
}

/// Formats milliseconds since the Unix epoch as RFC 3339 in UTC with nanosecond digits, as
/// container runtimes write it (`2026-11-22T01:02:03.123000000Z`).
#[must_use]
pub fn format_rfc3339(millis: u64) -> String {
    framescale_core::timefmt::rfc3339_nanos(millis)
}

fn digits(text: &[u8]) -> Option<u64> {
    text.iter().try_fold(0, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
#[allow(
    clippy::cast_possible_wrap,
    reason = "year, month and day have at most four digits"
)]
fn days_from_civil(year: u64, month: u64, day: u64) -> i64 {
    let year = year as i64 - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = month as i64;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day as i64 - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn split_field(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = bytes.iter().position(|&b| b == b' ')?;
    Some((&bytes[..space], &bytes[space + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn timestamps() {
        let cases: &[(&str, Option<u64>)] = &[
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2016-10-06T00:17:09.669794202Z", Some(1_475_713_029_669)),
            ("2016-10-06T02:17:09.669+02:00", Some(1_475_713_029_669)),
            ("2016-10-05T23:17:09.6-01:00", Some(1_475_713_029_600)),
            ("2024-02-29T12:00:00Z", Some(1_709_208_000_000)),
            ("2023-02-29T12:00:00Z", None),
            ("2026-13-01T00:00:00Z", None),
            ("2026-11-22T24:00:00Z", None),
            ("2026-11-22T00:00:00", None),
            ("2026-11-22T00:00:00.Z", None),
            ("2026-11-22T00:00:00.1234567891Z", None),
            ("2026-11-22 00:00:00Z", None),
            ("1969-12-31T23:59:59Z", None),
            ("garbage", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_rfc3339_millis(text.as_bytes()), *want, "{text}");
        }
        assert_eq!(
            format_rfc3339(1_475_713_029_669),
            "2016-10-06T00:17:09.669000000Z"
        );
        assert_eq!(
            format_rfc3339(1_709_208_000_000),
            "2024-02-29T12:00:00.000000000Z"
        );
    }

    #[test]
    fn records() {
        let r = parse(b"2016-10-06T00:17:09.669794202Z stdout F Fra:1 Mem:8M").unwrap();
        assert_eq!(
            (r.stream, r.partial, r.text),
            (Stream::Stdout, false, &b"Fra:1 Mem:8M"[..])
        );
        let r = parse(b"2016-10-06T00:17:09Z stderr P:x part").unwrap();
        assert_eq!(
            (r.stream, r.partial, r.text),
            (Stream::Stderr, true, &b"part"[..])
        );
        let r = parse(b"2016-10-06T00:17:09Z stdout F").unwrap();
        assert_eq!(r.text, b"");
        let r = parse(b"2016-10-06T00:17:09Z stdout F ").unwrap();
        assert_eq!(r.text, b"");
        for (line, want) in [
            (&b"2016-10-06T00:17:09Z stdin F x"[..], Error::BadStream),
            (b"2016-10-06T00:17:09Z stdout X x", Error::BadTag),
            (b"yesterday stdout F x", Error::BadTimestamp),
            (b"2016-10-06T00:17:09Z", Error::Truncated),
            (b"", Error::Truncated),
        ] {
            assert_eq!(parse(line), Err(want));
        }
    }

    fn record(stream: Stream, partial: bool, text: &[u8]) -> CriRecord<'_> {
        CriRecord {
            time_millis: 7,
            stream,
            partial,
            text,
        }
    }

    fn line(text: &[u8]) -> Assembled<'_> {
        Assembled::Line {
            time_millis: 7,
            text: Cow::Borrowed(text),
        }
    }

    #[test]
    fn partials_join_per_stream() {
        let mut a = CriAssembler::new(100);
        assert_eq!(
            a.push(record(Stream::Stdout, true, b"Saved: '/o")),
            Assembled::Pending
        );
        assert_eq!(
            a.push(record(Stream::Stderr, false, b"warning")),
            line(b"warning")
        );
        assert_eq!(
            a.push(record(Stream::Stdout, true, b"ut/1")),
            Assembled::Pending
        );
        assert_eq!(
            a.push(record(Stream::Stdout, false, b".png'")),
            line(b"Saved: '/out/1.png'")
        );
        assert_eq!(
            a.push(record(Stream::Stdout, false, b"next")),
            line(b"next")
        );
    }

    #[test]
    fn oversize_lines_are_dropped_whole() {
        let mut a = CriAssembler::new(8);
        assert_eq!(
            a.push(record(Stream::Stdout, false, b"123456789")),
            Assembled::Oversize
        );
        assert_eq!(
            a.push(record(Stream::Stdout, true, b"12345")),
            Assembled::Pending
        );
        assert_eq!(
            a.push(record(Stream::Stdout, true, b"67890")),
            Assembled::Pending
        );
        assert_eq!(
            a.push(record(Stream::Stdout, false, b"x")),
            Assembled::Oversize
        );
        assert_eq!(a.push(record(Stream::Stdout, false, b"ok")), line(b"ok"));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let mut a = CriAssembler::new(64);
            if let Ok(r) = parse(&bytes) {
                let _ = a.push(r);
            }
        }

        #[test]
        fn timestamps_round_trip(millis in 0u64..253_402_300_799_999) {
            prop_assert_eq!(parse_rfc3339_millis(format_rfc3339(millis).as_bytes()), Some(millis));
        }
    }
}
