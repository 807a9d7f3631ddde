//! The checks behind framescale's fuzz targets: each takes arbitrary bytes, feeds them to one
//! parser of untrusted input, and panics only on a bug — a crash, or a broken invariant (a
//! round trip that does not hold, a line longer than its cap). `fuzz/` runs them under
//! libFuzzer (cargo-fuzz); `fuzz-harness/tests/corpus.rs` runs every input of the corpus kept in
//! `fuzz/corpus/` as a regression test in CI. Every check panics on a bug: that is its job.
#![allow(
    clippy::missing_panics_doc,
    reason = "each check panics on a bug, by design: libFuzzer reports the panic"
)]

use std::collections::BTreeMap;

use framescale_adapter::config::MetricsConfig;
use framescale_adapter::request;
use framescale_adapter::selector::Selector;
use framescale_core::frame::RenderEvent;
use framescale_core::frame_line;
use framescale_core::render_log::RenderLogParser;
use framescale_exporter::cri::{self, Assembled, CriAssembler};
use framescale_exporter::push;

/// A check: arbitrary bytes in, a panic on a bug.
pub type Check = fn(&[u8]);

/// The targets, by name (the directory of their corpus).
pub const TARGETS: [(&str, Check); 7] = [
    ("render_log", render_log),
    ("frame_line", frame_line),
    ("cri", cri_records),
    ("push_body", push_body),
    ("label_selector", label_selector),
    ("metrics_file", metrics_file),
    ("request", request_path),
];

/// A whole container log through the render-log parser (Blender output and frame lines):
/// every frame it reports has a finite, non-negative duration.
pub fn render_log(data: &[u8]) {
    let mut parser = RenderLogParser::new();
    let mut check = |event: RenderEvent| {
        if let RenderEvent::Frame(frame) = event
            && let Some(duration) = frame.duration
        {
            assert!(duration.as_secs_f64().is_finite());
        }
    };
    for line in data.split(|&b| b == b'\n') {
        let _ = parser.feed(line, &mut check);
    }
    parser.finish(&mut check);
}

/// One frame line: a record that parses formats to a line that parses to the same record.
pub fn frame_line(data: &[u8]) {
    if let Some(Ok(record)) = frame_line::parse(data) {
        let line = frame_line::format(&record);
        let again = frame_line::parse(line.as_bytes())
            .expect("a formatted record is a frame line")
            .unwrap_or_else(|e| panic!("{line:?} does not parse back: {e}"));
        assert_eq!(frame_line::format(&again), line, "formatting is stable");
    }
}

/// CRI records, one per line, through the assembler: a record's text is the end of its line,
/// and no joined line is longer than the cap.
pub fn cri_records(data: &[u8]) {
    const CAP: usize = 1024;
    let mut assembler = CriAssembler::new(CAP);
    for line in data.split(|&b| b == b'\n') {
        let Ok(record) = cri::parse(line) else {
            continue;
        };
        assert!(line.ends_with(record.text));
        if let Assembled::Line { text, .. } = assembler.push(record) {
            assert!(
                text.len() <= CAP,
                "{} bytes past the {CAP}-byte cap",
                text.len()
            );
        }
    }
}

/// A `POST /v1/frames` body: taken whole or refused, never more records than lines.
pub fn push_body(data: &[u8]) {
    if let Ok(records) = push::parse_body(data) {
        let lines = data.split(|&b| b == b'\n').count();
        assert!(records.len() <= lines);
        for (key, _) in records {
            assert!(!key.namespace.is_empty() && !key.pod.is_empty());
        }
    }
}

/// A label selector: one that parses prints as a selector that parses to the same text.
pub fn label_selector(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(selector) = Selector::parse(text) {
        let printed = selector.to_string();
        let again = Selector::parse(&printed).unwrap_or_else(|e| {
            panic!("{text:?} printed as {printed:?}, which does not parse: {e}")
        });
        assert_eq!(again.to_string(), printed);
        let _ = selector.matches(&BTreeMap::new());
        let _ = selector.matches(&BTreeMap::from([("app".into(), "worker".into())]));
    }
}

/// A metrics file: parsed and validated, or refused with an error; never a panic.
pub fn metrics_file(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = MetricsConfig::parse(text);
    }
}

/// An adapter request: the raw path, then `?` and the raw query string.
pub fn request_path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (path, query) = match text.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (text, None),
    };
    let _ = request::parse(path, query);
}
