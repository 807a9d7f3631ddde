//! The exporter's own counters, shared by the tailer, the push endpoint and `/metrics`. The
//! device source counts itself apart ([`crate::device::DeviceStats`]).

use std::sync::atomic::{AtomicU64, Ordering};

/// Self-observation counters and gauges; every field is updated with relaxed atomics.
#[derive(Debug, Default)]
pub struct ExporterStats {
    /// CRI records read from log files.
    pub lines_read: AtomicU64,
    /// Bytes read from log files.
    pub bytes_read: AtomicU64,
    /// Lines that are not CRI records.
    pub malformed_cri: AtomicU64,
    /// Lines dropped for exceeding the size cap.
    pub oversize_lines: AtomicU64,
    /// Lines that open like a frame line but are invalid.
    pub invalid_frame_lines: AtomicU64,
    /// Files or directories that could not be read.
    pub read_errors: AtomicU64,
    /// Log files replaced under their name (rename and re-create).
    pub rotations_renamed: AtomicU64,
    /// Log files truncated in place (copy-truncate).
    pub rotations_truncated: AtomicU64,
    /// Rotated files with unread bytes removed while the exporter was down.
    pub rotations_lost: AtomicU64,
    /// Checkpoints written (`--state-dir`).
    pub checkpoints_written: AtomicU64,
    /// Checkpoints that could not be written.
    pub checkpoint_errors: AtomicU64,
    /// Frames older than the window they would have joined (still counted in totals).
    pub late_frames: AtomicU64,
    /// Series dropped after their source disappeared.
    pub series_dropped: AtomicU64,
    /// Frame records accepted by `POST /v1/frames`.
    pub push_records: AtomicU64,
    /// Push bodies rejected as invalid.
    pub push_rejected_invalid: AtomicU64,
    /// Push bodies rejected as too large.
    pub push_rejected_too_large: AtomicU64,
    /// Push bodies rejected for a namespace or container the exporter does not watch.
    pub push_rejected_not_watched: AtomicU64,
    /// Push bodies rejected for adding series beyond the cap.
    pub push_rejected_series_cap: AtomicU64,
    /// Push requests while pushing is off.
    pub push_rejected_disabled: AtomicU64,
    /// Gauge: log files open.
    pub files_tracked: AtomicU64,
    /// Gauge: duration of the last poll of the log root, in microseconds.
    pub last_poll_micros: AtomicU64,
}

impl ExporterStats {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter or gauge.
    #[must_use]
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Sets a gauge.
    pub fn set(gauge: &AtomicU64, value: u64) {
        gauge.store(value, Ordering::Relaxed);
    }
}
