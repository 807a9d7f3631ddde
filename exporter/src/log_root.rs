//! The polling loop that turns the pods log root into recorded frames.
//!
//! Every poll reads what each followed log gained; every rescan lists the root for pods and
//! containers that appeared or went, keeps the series of live ones, and drops series whose
//! source has been gone for the grace period. Polling (not inotify) keeps it correct on every
//! filesystem the kubelet may use and costs a few `fstat`s per file per poll.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::config::ExporterConfig;
use crate::discovery::{self, Scan};
use crate::log_file::{LogStream, PollContext, now_millis};
use crate::stats::ExporterStats;
use crate::{Shared, lock};

/// Follows every watched log under the root.
#[derive(Debug)]
pub struct Tailer {
    config: ExporterConfig,
    streams: BTreeMap<PathBuf, LogStream>,
    last_scan: Option<Instant>,
}

impl Tailer {
    /// A tailer that has not scanned yet.
    #[must_use]
    pub fn new(config: ExporterConfig) -> Self {
        Tailer {
            config,
            streams: BTreeMap::new(),
            last_scan: None,
        }
    }

    /// Polls until `stop` is set, sleeping the poll interval between rounds.
    pub fn run(mut self, shared: &Arc<Shared>, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            self.poll(shared);
            std::thread::sleep(self.config.poll_interval);
        }
    }

    /// One round: rescan if due, then read every followed log.
    pub fn poll(&mut self, shared: &Shared) {
        let started = Instant::now();
        let mut ctx = PollContext::new(&shared.stats, &shared.throttle, self.config.max_line_bytes);
        let rescan = self
            .last_scan
            .is_none_or(|at| at.elapsed() >= self.config.rescan_interval);
        if rescan {
            self.rescan(shared, &mut ctx);
        }
        for stream in self.streams.values_mut() {
            stream.poll(&mut ctx, rescan);
            record(shared, stream.key(), &mut ctx);
        }
        ExporterStats::set(
            &shared.stats.files_tracked,
            self.streams.values().filter(|s| s.is_open()).count() as u64,
        );
        ExporterStats::set(
            &shared.stats.last_poll_micros,
            started.elapsed().as_micros() as u64,
        );
    }

    fn rescan(&mut self, shared: &Shared, ctx: &mut PollContext<'_>) {
        let first = self.last_scan.is_none();
        self.last_scan = Some(Instant::now());
        let scan = match discovery::scan(&self.config.log_root, &self.config.filter) {
            Ok(scan) => scan,
            Err(error) => {
                ExporterStats::add(&shared.stats.read_errors, 1);
                if let Some(suppressed) = shared.throttle.allow("log_root") {
                    tracing::error!(root = %self.config.log_root.display(), %error, suppressed, "Cannot list the pods log root (--log-root)");
                }
                return;
            }
        };
        report_scan_problems(shared, &scan);
        let listed: HashSet<&PathBuf> = scan.files.iter().map(|f| &f.path).collect();
        let gone: Vec<PathBuf> = self
            .streams
            .iter()
            .filter(|(path, s)| !listed.contains(path) && !s.is_open())
            .map(|(p, _)| p.clone())
            .collect();
        for path in gone {
            if let Some(mut stream) = self.streams.remove(&path) {
                stream.finish(ctx);
                record(shared, stream.key(), ctx);
            }
        }
        let at_end = first && !self.config.from_start;
        for file in &scan.files {
            if self.streams.contains_key(&file.path) {
                continue;
            }
            match LogStream::open(
                file.key.clone(),
                file.path.clone(),
                at_end,
                self.config.max_line_bytes,
            ) {
                Ok(stream) => {
                    tracing::debug!(path = %file.path.display(), at_end, "Following log file");
                    self.streams.insert(file.path.clone(), stream);
                }
                Err(error) => {
                    ExporterStats::add(&shared.stats.read_errors, 1);
                    if let Some(suppressed) = shared.throttle.allow("open_log") {
                        tracing::warn!(path = %file.path.display(), %error, suppressed, "Cannot open log file");
                    }
                }
            }
        }
        let now = now_millis();
        let mut store = lock(&shared.store);
        for file in &scan.files {
            store.touch(&file.key, now);
        }
        let dropped = store.sweep(now, self.config.grace_period);
        drop(store);
        if dropped > 0 {
            ExporterStats::add(&shared.stats.series_dropped, dropped as u64);
            tracing::info!(
                dropped,
                grace_secs = self.config.grace_period.as_secs(),
                "Dropped series of pods gone longer than the grace period"
            );
        }
        if first {
            shared.ready.store(true, Ordering::Relaxed);
            tracing::info!(root = %self.config.log_root.display(), files = scan.files.len(), at_end, "Initial scan of the pods log root done");
        }
    }
}

fn report_scan_problems(shared: &Shared, scan: &Scan) {
    for (path, error) in &scan.unreadable {
        ExporterStats::add(&shared.stats.read_errors, 1);
        if let Some(suppressed) = shared.throttle.allow("unreadable_dir") {
            tracing::warn!(path = %path.display(), %error, suppressed, "Cannot list a pod log directory");
        }
    }
    if let Some(path) = scan.foreign.first()
        && let Some(suppressed) = shared.throttle.allow("foreign_entry")
    {
        tracing::debug!(path = %path.display(), count = scan.foreign.len(), suppressed, "Ignoring entries that are not <namespace>_<pod>_<uid> directories");
    }
}

/// Moves the events of one stream's poll into the store.
fn record(shared: &Shared, key: &crate::store::SeriesKey, ctx: &mut PollContext<'_>) {
    if ctx.events.is_empty() {
        return;
    }
    let mut late = 0;
    let mut store = lock(&shared.store);
    for (event, at) in ctx.events.drain(..) {
        if !store.record(key, &event, at) {
            late += 1;
        }
    }
    drop(store);
    ExporterStats::add(&shared.stats.late_frames, late);
}
