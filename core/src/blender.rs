//! A streaming parser for Blender's console output, from 3.x to 5.x.
//!
//! Feed it one line at a time (stdout and stderr together, in order); it reports each frame that
//! ends and each error Blender prints outside a frame. The lines it understands:
//!
//! | line | meaning |
//! |---|---|
//! | `Fra:12 Mem:…` (3.x, 4.x) or `Fra: 12 \| …` (5.x) | frame 12 is rendering |
//! | `Saved: '/out/0012.png'` | the frame was written |
//! | `Append frame 12` | the frame was appended to a movie |
//! | ` Time: 00:01.24 (Saving: 00:00.11)`, also `HH:MM:SS.cc`, with or without the leading space | the frame ended; total time including saving |
//! | `Error: …`, with a Python traceback's exception line when one follows | an error |
//! | `Blender quit` | the process is ending |
//!
//! Blender 5.x prefixes every line with the elapsed time and a log category
//! (`02:19.739  render           | Saved: '…'`); the prefix is stripped first and lines of every
//! category are read. Anything else is ignored, so the parser can read a whole container log.
//!
//! A frame with an error before its `Time:` line fails with that error. A frame that Blender
//! starts but never finishes — the next `Fra:` number begins, or Blender quits — fails too, with
//! its own error, or else the last error Blender printed, or else a sentence saying what was
//! seen. An error outside any frame is a job error: the scene did not load or a script failed.

use std::time::Duration;

use crate::frame::{FrameRecord, RenderEvent};

/// Longest error text kept, in bytes; Blender can print a whole script after `Error:`.
pub const MAX_ERROR_BYTES: usize = 512;

const TRACEBACK_HEAD: &str = "Traceback (most recent call last):";

/// The streaming parser; one per log stream (a Blender process's output, in order).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BlenderParser {
    /// Number from the last `Fra:` line of the frame in progress.
    frame: Option<u64>,
    /// A `Fra:` or `Saved:` line was seen since the last frame ended.
    in_frame: bool,
    /// `Saved:` path or movie frame of the frame in progress.
    output: Option<String>,
    /// First error reported while the frame was in progress.
    frame_error: Option<String>,
    /// Last error of this Blender process, to explain frames it abandons afterwards.
    last_error: Option<String>,
    /// An `Error:` line opened a Python traceback; its exception line completes the message.
    traceback: Option<String>,
}

impl BlenderParser {
    /// A parser at the start of a log.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads one line (without its newline) and calls `emit` for each event it completes.
    pub fn feed(&mut self, line: &[u8], emit: &mut impl FnMut(RenderEvent)) {
        let line = strip_elapsed_prefix(trim_end(line));
        if self.traceback.is_some() && self.continue_traceback(line, emit) {
            return;
        }
        match line.first() {
            Some(b'F') => {
                if let Some(number) = parse_fra(line) {
                    self.start_frame(number, emit);
                }
            }
            Some(b'S') => {
                if let Some(path) = parse_saved(line) {
                    self.in_frame = true;
                    self.output = Some(path);
                }
            }
            Some(b'A') => {
                if let Some(number) = line.strip_prefix(b"Append frame ").and_then(parse_u64) {
                    self.in_frame = true;
                    self.frame.get_or_insert(number);
                    self.output = Some(format!("frame {number}"));
                }
            }
            Some(b' ' | b'T') => {
                if let Some(total) = parse_time_line(line) {
                    self.finish_frame(total, emit);
                }
            }
            Some(b'E') => {
                if let Some(text) = parse_error(line) {
                    self.error(text, emit);
                }
            }
            Some(b'B') if line == b"Blender quit" => self.quit(emit),
            _ => {}
        }
    }

    /// Ends the stream: a frame still in progress failed, an open traceback is reported.
    pub fn finish(&mut self, emit: &mut impl FnMut(RenderEvent)) {
        self.flush_traceback(emit);
        self.abandon_frame("the log ended before the frame finished", emit);
    }

    /// Handles a line while a traceback is open; returns whether the line was consumed.
    fn continue_traceback(&mut self, line: &[u8], emit: &mut impl FnMut(RenderEvent)) -> bool {
        if line.is_empty() {
            self.flush_traceback(emit);
            return true;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return true; // a `File "…", line N` frame of the traceback
        }
        if is_known_line(line) {
            self.flush_traceback(emit);
            return false;
        }
        // The first unindented line is the exception: `NameError: name 'x' is not defined`.
        if let Some(head) = self.traceback.take() {
            let exception = String::from_utf8_lossy(line);
            let message = head.replacen(TRACEBACK_HEAD, exception.trim(), 1);
            self.report_error(truncate(message), emit);
        }
        true
    }

    fn flush_traceback(&mut self, emit: &mut impl FnMut(RenderEvent)) {
        if let Some(head) = self.traceback.take() {
            self.report_error(head, emit);
        }
    }

    fn start_frame(&mut self, number: u64, emit: &mut impl FnMut(RenderEvent)) {
        if self.in_frame && self.frame.is_some_and(|current| current != number) {
            let reason = format!("no output before frame {number} started");
            self.abandon_frame(&reason, emit);
        }
        self.frame = Some(number);
        self.in_frame = true;
    }

    fn finish_frame(&mut self, total: Duration, emit: &mut impl FnMut(RenderEvent)) {
        let frame = self.frame.take();
        let output = self.output.take();
        let record = match self.frame_error.take() {
            Some(error) => FrameRecord::failed(frame, Some(total), error),
            None => FrameRecord {
                output,
                ..FrameRecord::ok(frame, total)
            },
        };
        self.in_frame = false;
        emit(RenderEvent::Frame(record));
    }

    fn abandon_frame(&mut self, reason: &str, emit: &mut impl FnMut(RenderEvent)) {
        if !self.in_frame {
            return;
        }
        let error = match (self.frame_error.take(), &self.last_error) {
            (Some(own), _) => own,
            (None, Some(earlier)) => {
                truncate(format!("not rendered after an earlier error: {earlier}"))
            }
            (None, None) => reason.to_owned(),
        };
        emit(RenderEvent::Frame(FrameRecord::failed(
            self.frame.take(),
            None,
            error,
        )));
        self.output = None;
        self.in_frame = false;
    }

    fn error(&mut self, text: &[u8], emit: &mut impl FnMut(RenderEvent)) {
        let text = truncate(String::from_utf8_lossy(text).trim().to_owned());
        if text.ends_with(TRACEBACK_HEAD) {
            self.traceback = Some(text);
        } else {
            self.report_error(text, emit);
        }
    }

    fn report_error(&mut self, text: String, emit: &mut impl FnMut(RenderEvent)) {
        self.last_error = Some(text.clone());
        if self.in_frame {
            self.frame_error.get_or_insert(text);
        } else {
            emit(RenderEvent::JobError(text));
        }
    }

    fn quit(&mut self, emit: &mut impl FnMut(RenderEvent)) {
        self.abandon_frame("Blender quit before the frame finished", emit);
        *self = Self::default();
    }
}

/// Parses Blender's time code: `MM:SS.cc` or `HH:MM:SS.cc` (any number of fraction digits).
#[must_use]
pub fn parse_timecode(text: &[u8]) -> Option<Duration> {
    let mut parts = text.split(|&b| b == b':');
    let first = parts.next()?;
    let second = parts.next()?;
    let third = parts.next();
    if parts.next().is_some() {
        return None;
    }
    let (hours, minutes, seconds) = match third {
        Some(seconds) => (parse_u64(first)?, parse_u64(second)?, seconds),
        None => (0, parse_u64(first)?, second),
    };
    let (whole, fraction) = match seconds.iter().position(|&b| b == b'.') {
        Some(dot) => (&seconds[..dot], &seconds[dot + 1..]),
        None => (seconds, &b""[..]),
    };
    let whole = parse_u64(whole)?;
    if minutes >= 60 || whole >= 60 || fraction.len() > 9 {
        return None;
    }
    let mut nanos = 0u32;
    for (i, &digit) in fraction.iter().enumerate() {
        if !digit.is_ascii_digit() {
            return None;
        }
        nanos += u32::from(digit - b'0') * 10u32.pow(8 - i as u32);
    }
    let secs = hours.checked_mul(3600)?.checked_add(minutes * 60 + whole)?;
    Some(Duration::new(secs, nanos))
}

/// Strips Blender 5.x's `<elapsed>  <category> | ` prefix, if the line has one.
fn strip_elapsed_prefix(line: &[u8]) -> &[u8] {
    if !line.first().is_some_and(u8::is_ascii_digit) {
        return line;
    }
    let stamp_end = line
        .iter()
        .position(|&b| !(b.is_ascii_digit() || b == b':' || b == b'.'))
        .unwrap_or(line.len());
    if !line[..stamp_end].contains(&b':') {
        return line;
    }
    let rest = skip_spaces(&line[stamp_end..]);
    if rest.len() == line.len() - stamp_end {
        return line; // no space after the elapsed time
    }
    let category_end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    match skip_spaces(&rest[category_end..]).strip_prefix(b"|") {
        Some(message) => message.strip_prefix(b" ").unwrap_or(message),
        None => line,
    }
}

fn is_known_line(line: &[u8]) -> bool {
    parse_fra(line).is_some()
        || parse_saved(line).is_some()
        || line.starts_with(b"Append frame ")
        || parse_time_line(line).is_some()
        || parse_error(line).is_some()
        || line == b"Blender quit"
}

/// `Fra:12 Mem:…` or `Fra: 12 | …` → 12.
fn parse_fra(line: &[u8]) -> Option<u64> {
    let rest = skip_spaces(line.strip_prefix(b"Fra:")?);
    let end = rest
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(rest.len());
    parse_u64(&rest[..end])
}

/// `Saved: '/out/0001.png'` → the path.
fn parse_saved(line: &[u8]) -> Option<String> {
    let quoted = line.strip_prefix(b"Saved: ")?;
    let path = quoted.strip_prefix(b"'").unwrap_or(quoted);
    let path = path.strip_suffix(b"'").unwrap_or(path);
    Some(String::from_utf8_lossy(path).into_owned())
}

/// ` Time: 00:01.24 (Saving: 00:00.11)` → the total time.
fn parse_time_line(line: &[u8]) -> Option<Duration> {
    let rest = line
        .strip_prefix(b" ")
        .unwrap_or(line)
        .strip_prefix(b"Time: ")?;
    let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    let tail = &rest[end..];
    if !(tail.is_empty() || tail.starts_with(b" (Saving: ")) {
        return None;
    }
    parse_timecode(&rest[..end])
}

/// `Error: …` (or 5.x's `ERROR …`) → the message.
fn parse_error(line: &[u8]) -> Option<&[u8]> {
    line.strip_prefix(b"Error: ")
        .or_else(|| line.strip_prefix(b"ERROR "))
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0')))
}

fn skip_spaces(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != b' ').unwrap_or(bytes.len());
    &bytes[start..]
}

fn trim_end(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_ERROR_BYTES {
        let mut cut = MAX_ERROR_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Outcome;

    fn parse(log: &str) -> Vec<RenderEvent> {
        let mut parser = BlenderParser::new();
        let mut events = Vec::new();
        for line in log.lines() {
            parser.feed(line.as_bytes(), &mut |e| events.push(e));
        }
        parser.finish(&mut |e| events.push(e));
        events
    }

    fn frames(events: &[RenderEvent]) -> Vec<&FrameRecord> {
        events
            .iter()
            .filter_map(|e| match e {
                RenderEvent::Frame(f) => Some(f),
                RenderEvent::JobError(_) => None,
            })
            .collect()
    }

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn timecodes() {
        let cases: &[(&str, Option<Duration>)] = &[
            ("00:00.22", Some(ms(220))),
            ("00:04.81", Some(ms(4810))),
            ("02:19.28", Some(ms(139_280))),
            ("01:02:03.45", Some(ms(3_723_450))),
            ("00:01", Some(ms(1000))),
            ("00:00.123456", Some(Duration::from_micros(123_456))),
            ("00:60.00", None),
            ("61:00.00", None),
            ("", None),
            ("00", None),
            ("a0:00.00", None),
            ("00:00.x1", None),
            ("1:2:3:4", None),
            ("00:00.1234567890", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_timecode(text.as_bytes()), *want, "{text}");
        }
    }

    #[test]
    fn prefix_of_blender_5_is_stripped() {
        let cases = [
            (
                "00:03.413  render           | Fra: 1 | Mem: 1450M",
                "Fra: 1 | Mem: 1450M",
            ),
            (
                "02:19.739  render           | Saved: '/tmp/0001.png'",
                "Saved: '/tmp/0001.png'",
            ),
            ("1:02:19.739  blend |", ""),
            ("Fra:1 Mem:8.56M", "Fra:1 Mem:8.56M"),
            ("12 monkeys | x", "12 monkeys | x"),
            ("00:01.000 nopipe", "00:01.000 nopipe"),
            ("00:01.000", "00:01.000"),
        ];
        for (line, want) in cases {
            assert_eq!(
                strip_elapsed_prefix(line.as_bytes()),
                want.as_bytes(),
                "{line}"
            );
        }
    }

    #[test]
    fn line_shapes_outside_the_fixtures() {
        let movie = "Fra:7 Mem:1M | Finished\nAppend frame 7\n Time: 00:00.50 (Saving: 00:00.01)\n";
        let windows =
            "Fra:3 Mem:1M\r\nSaved: 'C:\\out\\0003.png'\r\nTime: 00:00.10 (Saving: 00:00.00)\r\n";
        let long = "Fra:1 Mem:1M\nSaved: '/o/1.png'\n Time: 01:00:00.00 (Saving: 00:00.10)\n";
        let cases: &[(&str, Option<u64>, Duration, &str)] = &[
            (movie, Some(7), ms(500), "frame 7"),
            (windows, Some(3), ms(100), "C:\\out\\0003.png"),
            (long, Some(1), Duration::from_hours(1), "/o/1.png"),
        ];
        for (log, frame, duration, output) in cases {
            let events = parse(log);
            let got = frames(&events);
            assert_eq!(got.len(), 1, "{log}");
            assert_eq!(got[0].frame, *frame);
            assert_eq!(got[0].duration, Some(*duration));
            assert_eq!(got[0].output.as_deref(), Some(*output));
            assert_eq!(got[0].outcome, Outcome::Ok);
        }
    }

    #[test]
    fn movie_without_fra_lines_takes_the_appended_frame_number() {
        let events = parse("Append frame 42\n Time: 00:00.04 (Saving: 00:00.00)\n");
        assert_eq!(frames(&events)[0].frame, Some(42));
    }

    #[test]
    fn frame_numbers_are_not_carried_to_the_next_frame() {
        let log = "Fra:1 Mem:1M\nSaved: 'a'\n Time: 00:00.10 (Saving: 00:00.00)\nSaved: 'b'\n Time: 00:00.20 (Saving: 00:00.00)\n";
        let events = parse(log);
        let got = frames(&events);
        assert_eq!((got[0].frame, got[1].frame), (Some(1), None));
    }

    #[test]
    fn time_lines_that_are_not_frame_ends_are_ignored() {
        let events = parse("Time: soon\n Time: 00:00.10 extra\nTime:00:00.10\n");
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn error_text_is_capped() {
        let log = format!("Error: {}\n", "x".repeat(4000));
        let events = parse(&log);
        let RenderEvent::JobError(text) = &events[0] else {
            panic!("{events:?}")
        };
        assert!(text.len() <= MAX_ERROR_BYTES + '…'.len_utf8());
    }

    #[test]
    fn a_log_that_ends_mid_frame_fails_that_frame() {
        let events = parse("Fra:5 Mem:1M | Sample 1/4\n");
        let got = frames(&events);
        assert_eq!(got[0].frame, Some(5));
        assert_eq!(got[0].outcome, Outcome::Failed);
        assert_eq!(
            got[0].error.as_deref(),
            Some("the log ended before the frame finished")
        );
    }

    #[test]
    fn repeated_fra_lines_of_one_frame_start_it_once() {
        let events =
            parse("Fra:1 a\nFra:1 b\nFra:1 c\nSaved: 'x'\n Time: 00:00.01 (Saving: 00:00.00)\n");
        assert_eq!(frames(&events).len(), 1);
    }
}
