//! The loop that turns the pods log root into recorded frames.
//!
//! Every poll reads what each followed log gained; every rescan lists the root for pods and
//! containers that appeared or went, keeps the series of live ones, and drops series whose
//! source has been gone for the grace period. Between polls the loop waits on inotify
//! ([`crate::watch`]) for directory changes, so a rotation is followed as it happens; the
//! periodic poll and rescan stay as the fallback (filesystems without inotify, a full queue).
//! With `--state-dir` the loop checkpoints every stream's position and the counters
//! ([`crate::checkpoint`]) at an interval and when it stops, and the first scan goes on from
//! the last checkpoint.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::checkpoint::Checkpoint;
use crate::config::ExporterConfig;
use crate::discovery::{self, Scan};
use crate::log_file::{LogStream, MAX_READ_PER_POLL, PollContext, now_millis};
use crate::stats::ExporterStats;
use crate::watch::{Changes, LogWatch};
use crate::{Shared, lock};

/// Polls of a catch-up (after a restart) at most, before the exporter says it is ready.
const CATCH_UP_POLLS: usize = 64;

/// Follows every watched log under the root.
#[derive(Debug)]
pub struct Tailer {
    config: ExporterConfig,
    streams: BTreeMap<PathBuf, LogStream>,
    last_scan: Option<Instant>,
    /// The checkpoint to go on from, until the first scan has used it.
    resume: Option<Checkpoint>,
    watch: Option<LogWatch>,
    /// A directory was watched anew: what was created in it before is found by another scan.
    rescan_soon: bool,
    last_checkpoint: Instant,
}

impl Tailer {
    /// A tailer that has not scanned yet; its first scan goes on from `resume` when given.
    #[must_use]
    pub fn new(config: ExporterConfig, resume: Option<Checkpoint>) -> Self {
        let watch = match LogWatch::new() {
            Ok(watch) => Some(watch),
            Err(error) => {
                tracing::warn!(%error, "No inotify: rotations are found on the rescans only (--rescan-interval)");
                None
            }
        };
        Tailer {
            config,
            streams: BTreeMap::new(),
            last_scan: None,
            resume,
            watch,
            rescan_soon: false,
            last_checkpoint: Instant::now(),
        }
    }

    /// Polls until `stop` is set, waiting up to the poll interval for directory changes
    /// between rounds; then reads what is left and writes a last checkpoint.
    pub fn run(mut self, shared: &Arc<Shared>, stop: &AtomicBool) {
        self.catch_up(shared);
        while !stop.load(Ordering::Relaxed) {
            let changes = self.wait();
            self.poll_changes(shared, &changes);
            if self.last_checkpoint.elapsed() >= self.config.checkpoint_interval {
                self.checkpoint(shared);
            }
        }
        self.poll(shared);
        self.checkpoint(shared);
    }

    /// The first scan, then polls until every file has been read to its end (what was written
    /// while the exporter was down), then ready.
    pub fn catch_up(&mut self, shared: &Shared) {
        for _ in 0..CATCH_UP_POLLS {
            if self.poll_changes(shared, &Changes::default()) < MAX_READ_PER_POLL {
                break;
            }
        }
        if !shared.ready.swap(true, Ordering::Relaxed) {
            tracing::info!(
                files = self.streams.len(),
                "Caught up with the pods log root: ready"
            );
        }
    }

    /// One round: rescan if due, then read every followed log.
    pub fn poll(&mut self, shared: &Shared) {
        self.poll_changes(shared, &Changes::default());
    }

    /// Waits for directory changes, at most one poll interval.
    fn wait(&mut self) -> Changes {
        let interval = self.config.poll_interval;
        if let Some(watch) = &mut self.watch {
            match watch.wait(interval) {
                Ok(changes) => return changes,
                Err(error) => {
                    tracing::warn!(%error, "inotify failed; rotations are found on the rescans only");
                    self.watch = None;
                }
            }
        }
        std::thread::sleep(interval);
        Changes::default()
    }

    /// A round after `changes`: rescan when due or when pods or containers came or went; check
    /// the files of the directories that changed; read every followed log. Returns the most
    /// bytes read from one file.
    fn poll_changes(&mut self, shared: &Shared, changes: &Changes) -> u64 {
        let started = Instant::now();
        let mut ctx = PollContext::new(&shared.stats, &shared.throttle, self.config.max_line_bytes);
        let due = self
            .last_scan
            .is_none_or(|at| at.elapsed() >= self.config.rescan_interval);
        let rescan = due || self.rescan_soon || changes.overflow || self.needs_rescan(changes);
        if rescan {
            self.rescan(shared, &mut ctx);
        }
        let mut most = 0;
        for stream in self.streams.values_mut() {
            let dir_changed = stream
                .path()
                .parent()
                .is_some_and(|dir| changes.dirs.contains(dir));
            most = most.max(stream.poll(&mut ctx, rescan || dir_changed));
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
        most
    }

    /// Whether `changes` may have brought a log no stream follows: a change in the root or a
    /// pod directory, or a new `<N>.log` in a container directory.
    fn needs_rescan(&self, changes: &Changes) -> bool {
        let followed: HashSet<&Path> = self.streams.keys().map(PathBuf::as_path).collect();
        changes.dirs.iter().any(|dir| {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return true;
            };
            entries.flatten().any(|entry| {
                let path = entry.path();
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let log = name
                    .strip_suffix(".log")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
                (log && !followed.contains(path.as_path()))
                    || entry.file_type().is_ok_and(|t| t.is_dir())
            })
        })
    }

    /// Writes the checkpoint, when `--state-dir` is set: every stream's position and every
    /// series' counters, taken together.
    fn checkpoint(&mut self, shared: &Shared) {
        self.last_checkpoint = Instant::now();
        let Some(dir) = &self.config.state_dir else {
            return;
        };
        let positions = self
            .streams
            .values()
            .filter_map(LogStream::position)
            .collect();
        let counts = lock(&shared.store).counts();
        let checkpoint = Checkpoint::new(now_millis(), positions, counts);
        match checkpoint.save(dir) {
            Ok(()) => ExporterStats::add(&shared.stats.checkpoints_written, 1),
            Err(error) => {
                ExporterStats::add(&shared.stats.checkpoint_errors, 1);
                if let Some(suppressed) = shared.throttle.allow("checkpoint") {
                    tracing::warn!(%error, suppressed, "Cannot write the checkpoint (--state-dir): a restart would read again what was read since the last one");
                }
            }
        }
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
        self.watch_dirs(shared, &scan);
        let listed: HashSet<&PathBuf> = scan.files.iter().map(|f| &f.path).collect();
        // A stream ends when its file is gone and drained, or its directory is gone; one
        // caught between a rename and the new file keeps draining the renamed one.
        let gone: Vec<PathBuf> = self
            .streams
            .iter()
            .filter(|(path, s)| {
                !listed.contains(path)
                    && (!s.is_open() || path.parent().is_none_or(|d| !d.exists()))
            })
            .map(|(path, _)| path.clone())
            .collect();
        for path in gone {
            let Some(mut stream) = self.streams.remove(&path) else {
                continue;
            };
            stream.poll(ctx, false);
            stream.finish(ctx);
            record(shared, stream.key(), ctx);
        }
        let resume = if first { self.resume.take() } else { None };
        let at_end = first && resume.is_none() && !self.config.from_start;
        for file in &scan.files {
            if self.streams.contains_key(&file.path) {
                continue;
            }
            let max_line = self.config.max_line_bytes;
            let saved = resume
                .as_ref()
                .and_then(|c| Some((c.position(&file.path)?, c)));
            let opened = match saved {
                Some((position, checkpoint)) => LogStream::resume(
                    file.key.clone(),
                    position.clone(),
                    checkpoint.written_at_millis,
                    max_line,
                )
                .map(|(stream, missing)| {
                    if missing > 0 {
                        ExporterStats::add(&shared.stats.rotations_lost, missing as u64);
                        tracing::warn!(path = %file.path.display(), missing, "Rotated log files were removed while the exporter was down: what was written to them after the checkpoint is lost");
                    }
                    stream
                }),
                None => LogStream::open(file.key.clone(), file.path.clone(), at_end, max_line),
            };
            match opened {
                Ok(stream) => {
                    tracing::debug!(path = %file.path.display(), at_end, resumed = saved.is_some(), "Following log file");
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
            tracing::info!(root = %self.config.log_root.display(), files = scan.files.len(), at_end, resumed = resume.is_some(), "Initial scan of the pods log root done");
        }
    }

    /// Watches the root, every pod directory and every container directory of `scan`.
    fn watch_dirs(&mut self, shared: &Shared, scan: &Scan) {
        self.rescan_soon = false;
        let Some(watch) = &mut self.watch else {
            return;
        };
        let dirs = std::iter::once(self.config.log_root.as_path())
            .chain(scan.dirs.iter().map(PathBuf::as_path));
        for dir in dirs {
            match watch.add(dir) {
                Ok(new) => self.rescan_soon |= new,
                Err(error) => {
                    if let Some(suppressed) = shared.throttle.allow("inotify_watch") {
                        tracing::warn!(dir = %dir.display(), %error, suppressed, "Cannot watch a log directory (raise fs.inotify.max_user_watches); its rotations are found on the rescans");
                    }
                }
            }
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
