//! Following one container log file through appends, rotation, deletion and restarts.
//!
//! A [`LogStream`] is bound to a path (`…/<container>/0.log`), not to a file. Files are told
//! apart by device and inode, and by a fingerprint of their first bytes (so a file truncated
//! and written again, or copied, is recognised whatever its size):
//!
//! - **Rename rotation.** When the kubelet renames the file away (`0.log` →
//!   `0.log.<timestamp>`) and the runtime creates a new one, the old file is read to its end
//!   and read again on the next polls until it stops growing (writes that raced the rename),
//!   then every rotated sibling this stream has not read yet (two rotations between checks) is
//!   read whole, oldest first, and the new file from its start — all through the same CRI
//!   assembler and render-log parser, so a frame that spans a rotation is not lost. Compressed
//!   siblings (`.gz`, and the kubelet's `.gz.tmp`) are never read.
//! - **Copy-truncate.** Before each read the fingerprint is checked; when the file no longer
//!   starts with the bytes it started with (truncated, maybe written again past the old size),
//!   the copy — the sibling with the old fingerprint — is read from where this stream stood, and
//!   the file from its start.
//! - **Deletion.** A file deleted while open is drained and closed.
//! - **Restarts.** [`LogStream::position`] is what a checkpoint keeps (the files, offsets and
//!   fingerprints, the partial CRI records and the parser's frame in progress);
//!   [`LogStream::resume`] goes on from it, reading first what was rotated while the exporter
//!   was down.
//!
//! The open file is read on every poll; the check for a new file under the path runs when the
//! directory changes (inotify) and on the tailer's rescans.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use framescale_core::frame::RenderEvent;
use framescale_core::render_log::RenderLogParser;
use serde::{Deserialize, Serialize};

use crate::cri::{self, Assembled, CriAssembler};
use crate::stats::ExporterStats;
use crate::store::SeriesKey;
use crate::throttle::Throttle;

/// Most bytes read from one file in one poll, so one busy file cannot starve the others.
pub const MAX_READ_PER_POLL: u64 = 8 << 20;

/// Room for the CRI header in front of a line's text.
const CRI_HEADER_BYTES: usize = 128;

/// Bytes a fingerprint covers at most.
const FINGERPRINT_BYTES: u64 = 256;

/// Bytes a file needs before it is fingerprinted: a CRI record's timestamp and more.
const FINGERPRINT_MIN: u64 = 48;

/// Rotated files remembered as read, per stream.
const SEEN_LIMIT: usize = 1024;

/// What a poll of the streams needs besides the stream: buffers, counters and the output.
#[derive(Debug)]
pub struct PollContext<'a> {
    /// Counters to update.
    pub stats: &'a ExporterStats,
    /// Rate limits for warnings.
    pub throttle: &'a Throttle,
    /// Longest line kept, in bytes.
    pub max_line_bytes: usize,
    /// Events found, with their CRI time in ms since the epoch; the caller drains it.
    pub events: Vec<(RenderEvent, u64)>,
    buffer: Vec<u8>,
}

impl<'a> PollContext<'a> {
    /// A context with a 64 KiB read buffer.
    #[must_use]
    pub fn new(stats: &'a ExporterStats, throttle: &'a Throttle, max_line_bytes: usize) -> Self {
        PollContext {
            stats,
            throttle,
            max_line_bytes,
            events: Vec::new(),
            buffer: vec![0; 64 << 10],
        }
    }
}

/// The first bytes of a file, hashed (FNV-1a): with the inode, what tells files apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Bytes covered.
    pub len: u64,
    /// Their FNV-1a hash.
    pub hash: u64,
}

impl Fingerprint {
    fn of(bytes: &[u8]) -> Self {
        let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Fingerprint {
            len: bytes.len() as u64,
            hash,
        }
    }

    /// The fingerprint of `file`'s first `len` bytes; `None` when it has fewer.
    fn read(file: &File, len: u64) -> io::Result<Option<Self>> {
        let mut bytes = vec![0; len as usize];
        let mut filled = 0;
        while filled < bytes.len() {
            match file.read_at(&mut bytes[filled..], filled as u64) {
                Ok(0) => return Ok(None),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Some(Fingerprint::of(&bytes)))
    }

    /// Whether `file` still starts with these bytes.
    fn matches(self, file: &File) -> io::Result<bool> {
        Ok(Fingerprint::read(file, self.len)? == Some(self))
    }
}

/// Where a stream stands in one of its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePosition {
    /// Device and inode.
    pub id: (u64, u64),
    /// Its first bytes, once it had enough.
    pub fingerprint: Option<Fingerprint>,
    /// Bytes consumed: the start of the first line not yet read whole.
    pub offset: u64,
    /// Dropping the rest of a line that outgrew the cap.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipping: bool,
}

/// Everything needed to go on reading a stream after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The path followed.
    pub path: PathBuf,
    /// Its files still being read, oldest first (rotated ones being drained, then the current).
    pub files: Vec<FilePosition>,
    /// Lines being joined from partial CRI records.
    #[serde(default)]
    pub cri: [cri::Pending; 2],
    /// The render-log parser's state (a Blender frame in progress).
    #[serde(default)]
    pub parser: RenderLogParser,
}

/// The log of one container (one restart of it), followed across rotations.
#[derive(Debug)]
pub struct LogStream {
    key: SeriesKey,
    path: PathBuf,
    current: Option<OpenLog>,
    /// Files renamed away, deleted, or rotated siblings: read until they stop growing, then
    /// closed. Oldest first.
    retired: Vec<OpenLog>,
    /// Files this stream has read, by (device, inode), with their fingerprint when they were
    /// last read, so a rotated sibling is read once — and a new file that got a freed inode
    /// number (the kubelet removes old rotated files) is not taken for one already read.
    seen: HashMap<(u64, u64), Option<Fingerprint>>,
    /// Rotated siblings last modified before this (ms since the epoch) are not this stream's.
    since_millis: u64,
    reader: LineReader,
}

#[derive(Debug)]
struct OpenLog {
    file: File,
    id: (u64, u64),
    offset: u64,
    /// Bytes of a line whose newline has not been read yet.
    carry: Vec<u8>,
    /// Dropping the rest of a line that outgrew the cap.
    skipping: bool,
    fingerprint: Option<Fingerprint>,
    /// Retired: whether the last read found nothing new.
    idle: bool,
}

/// Turns file bytes into render events: CRI records, joined partials, parsed lines.
#[derive(Debug)]
struct LineReader {
    cri: CriAssembler,
    parser: RenderLogParser,
}

impl LogStream {
    /// Starts following `path`. When `at_end` (files that exist at a first start), reading
    /// begins at the file's end and its rotated siblings are not this stream's; otherwise (a
    /// new container) its rotated siblings are read first, oldest first, then the file from
    /// its start.
    pub fn open(
        key: SeriesKey,
        path: PathBuf,
        at_end: bool,
        max_line_bytes: usize,
    ) -> io::Result<Self> {
        let mut current = OpenLog::open(&path)?;
        let since = if at_end {
            current.offset = current.file.seek(SeekFrom::End(0))?;
            current.fingerprint = current.fingerprint_now().ok().flatten();
            now_millis()
        } else {
            0
        };
        let mut stream = LogStream::empty(key, path, max_line_bytes, since);
        stream.remember(&current);
        if !at_end {
            let mut rotated = stream.candidates()?;
            rotated.retain(|c| !c.is_path && c.id != current.id);
            rotated.sort_by_key(|c| c.mtime_millis);
            for candidate in rotated {
                stream.remember(&candidate.log);
                stream.retired.push(candidate.log);
            }
        }
        stream.current = Some(current);
        Ok(stream)
    }

    /// Goes on from a checkpoint's `position`, written at `written_at_millis`: each of its
    /// files found again (by inode and fingerprint, or by fingerprint alone: a copy) is read
    /// from its offset; then the rotated siblings changed since the checkpoint, oldest first;
    /// then the file under the path from its start, unless it was one of those. Returns the
    /// stream and how many checkpointed files with unread bytes could not be found (rotated
    /// away and deleted while the exporter was down).
    pub fn resume(
        key: SeriesKey,
        position: Position,
        written_at_millis: u64,
        max_line_bytes: usize,
    ) -> io::Result<(Self, usize)> {
        let mut stream = LogStream::empty(key, position.path, max_line_bytes, written_at_millis);
        stream.reader.cri.restore(position.cri);
        stream.reader.parser = position.parser;
        let mut candidates = stream.candidates()?;
        let mut missing = 0;
        for saved in &position.files {
            let found = candidates.iter().position(|c| {
                c.id == saved.id && saved.fingerprint.is_none_or(|f| c.starts_with(f))
            });
            let found = found.or_else(|| {
                let fingerprint = saved.fingerprint?;
                candidates
                    .iter()
                    .position(|c| c.id != saved.id && c.starts_with(fingerprint))
            });
            let Some(index) = found else {
                missing += 1;
                continue;
            };
            let candidate = candidates.swap_remove(index);
            let mut open = candidate.log;
            // A file shorter than the offset was truncated while the exporter was down (and
            // its copy is gone): it is read from its start.
            if candidate.len >= saved.offset {
                open.offset = open.file.seek(SeekFrom::Start(saved.offset))?;
                open.skipping = saved.skipping;
                open.fingerprint = saved.fingerprint;
            }
            stream.remember(&open);
            stream.retired.push(open);
        }
        // What changed since the checkpoint and was not resumed: rotated siblings, oldest
        // first, then the file under the path.
        candidates.retain(|c| !stream.was_read(c));
        candidates.sort_by_key(|c| (c.is_path, c.mtime_millis));
        for candidate in candidates {
            if candidate.is_path || candidate.mtime_millis >= written_at_millis {
                stream.remember(&candidate.log);
                stream.retired.push(candidate.log);
            }
        }
        // The newest file under the path, when it is one of them, is the current one.
        if let Ok(meta) = fs::metadata(&stream.path)
            && stream
                .retired
                .last()
                .is_some_and(|l| l.id == file_id(&meta))
        {
            stream.current = stream.retired.pop();
        }
        Ok((stream, missing))
    }

    fn empty(key: SeriesKey, path: PathBuf, max_line_bytes: usize, since_millis: u64) -> Self {
        LogStream {
            key,
            path,
            current: None,
            retired: Vec::new(),
            seen: HashMap::new(),
            since_millis,
            reader: LineReader {
                cri: CriAssembler::new(max_line_bytes),
                parser: RenderLogParser::new(),
            },
        }
    }

    /// Notes that `open` was read, with its fingerprint.
    fn remember(&mut self, open: &OpenLog) {
        self.seen.insert(open.id, open.fingerprint);
    }

    /// Whether `candidate` is a file this stream has read (or holds open).
    fn was_read(&self, candidate: &Candidate) -> bool {
        let open = self.retired.iter().chain(&self.current);
        if open.into_iter().any(|o| o.id == candidate.id) {
            return true;
        }
        match self.seen.get(&candidate.id) {
            None => false,
            Some(None) => true,
            Some(Some(fingerprint)) => candidate.starts_with(*fingerprint),
        }
    }

    /// The series this log belongs to.
    #[must_use]
    pub fn key(&self) -> &SeriesKey {
        &self.key
    }

    /// The path followed.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a file is open (or being drained).
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.current.is_some() || !self.retired.is_empty()
    }

    /// Where the stream stands, for a checkpoint; `None` once no file is open.
    #[must_use]
    pub fn position(&self) -> Option<Position> {
        let files: Vec<FilePosition> = self
            .retired
            .iter()
            .chain(&self.current)
            .map(|open| FilePosition {
                id: open.id,
                fingerprint: open.fingerprint,
                offset: open.offset - open.carry.len() as u64,
                skipping: open.skipping,
            })
            .collect();
        (!files.is_empty()).then(|| Position {
            path: self.path.clone(),
            files,
            cri: self.reader.cri.pending(),
            parser: self.reader.parser.clone(),
        })
    }

    /// Reads what was written since the last poll; events go to `ctx.events`. With
    /// `check_file`, also checks whether the file was replaced under its path (rename
    /// rotation, deletion) or shrank; the tailer asks for it when the directory changed and on
    /// its rescans. A file that no longer starts with its first bytes is found on every poll.
    /// Returns the most bytes read from one file.
    pub fn poll(&mut self, ctx: &mut PollContext<'_>, check_file: bool) -> u64 {
        let mut most = 0;
        let mut retired = std::mem::take(&mut self.retired);
        for open in &mut retired {
            let n = self.read(open, ctx);
            most = most.max(n);
            open.idle = n == 0;
        }
        // A retired file that stopped growing is done once its successor is open; until then
        // the runtime may still be writing to it (renamed, not yet reopened). A stream whose
        // path is gone for good is ended by the tailer's rescan.
        if self.current.is_some() {
            for open in retired.iter().filter(|open| open.idle) {
                self.remember(open);
            }
            retired.retain(|open| !open.idle);
        }
        self.retired = retired;
        if let Some(mut current) = self.current.take() {
            if self.was_replaced(&mut current, ctx, check_file) {
                ExporterStats::add(&ctx.stats.rotations_truncated, 1);
                tracing::debug!(path = %self.path.display(), "Log file was truncated; reading its copy, then the file from the start");
                self.drain_copy(&current, ctx);
                current.rewind();
            }
            most = most.max(self.read(&mut current, ctx));
            self.current = Some(current);
        }
        if check_file {
            self.follow_path(ctx);
        }
        most
    }

    /// Ends the stream: a frame still in progress is reported as failed.
    pub fn finish(&mut self, ctx: &mut PollContext<'_>) {
        self.current = None;
        self.retired.clear();
        let events = &mut ctx.events;
        self.reader
            .parser
            .finish(&mut |event| events.push((event, now_millis())));
    }

    /// Whether the file no longer holds what was read of it: its first bytes differ from its
    /// fingerprint, or (a file too short to fingerprint, on a check) it shrank below the offset.
    fn was_replaced(&self, open: &mut OpenLog, ctx: &mut PollContext<'_>, check: bool) -> bool {
        let result = match open.fingerprint {
            Some(fingerprint) => fingerprint.matches(&open.file).map(|same| !same),
            None if check => open.file.metadata().map(|m| m.len() < open.offset),
            None => Ok(false),
        };
        result.unwrap_or_else(|e| {
            self.read_error(ctx, &e);
            false
        })
    }

    /// After a copy-truncate: reads the copy (the sibling that starts with the old first
    /// bytes) from where the stream stood, so what was written before the truncation is not lost.
    fn drain_copy(&mut self, old: &OpenLog, ctx: &mut PollContext<'_>) {
        let Some(fingerprint) = old.fingerprint else {
            return;
        };
        let candidates = match self.candidates() {
            Ok(candidates) => candidates,
            Err(e) => return self.read_error(ctx, &e),
        };
        let copy = candidates.into_iter().find(|c| {
            !c.is_path && !self.was_read(c) && c.len >= old.offset && c.starts_with(fingerprint)
        });
        if let Some(copy) = copy {
            let mut open = copy.log;
            if open.file.seek(SeekFrom::Start(old.offset)).is_ok() {
                open.offset = old.offset;
                open.carry.clone_from(&old.carry);
                open.skipping = old.skipping;
                open.fingerprint = Some(fingerprint);
                self.read(&mut open, ctx);
                self.remember(&open);
                self.retired.push(open);
            }
        }
    }

    /// Notices a new file under the path (rename rotation) or none (deletion).
    fn follow_path(&mut self, ctx: &mut PollContext<'_>) {
        match fs::metadata(&self.path) {
            Ok(meta)
                if self
                    .current
                    .as_ref()
                    .is_some_and(|c| c.id == file_id(&meta)) => {}
            Ok(_) => {
                // A stream starts with a file open, so any other file under its path replaced
                // it, whether the old one is still open or was already drained.
                ExporterStats::add(&ctx.stats.rotations_renamed, 1);
                tracing::debug!(path = %self.path.display(), "Log file was replaced; reading the rotated files, then the new one");
                if let Some(current) = self.current.take() {
                    self.retired.push(current);
                }
                self.drain_rotated(ctx);
                match OpenLog::open(&self.path) {
                    // The file under the path is always new (a freed inode number may be
                    // reused: it is not one already read).
                    Ok(mut new) => {
                        self.read(&mut new, ctx);
                        self.remember(&new);
                        self.current = Some(new);
                    }
                    Err(e) => self.read_error(ctx, &e),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Deleted or renamed with no successor yet: drain what is left on the next polls.
                if let Some(current) = self.current.take() {
                    self.retired.push(current);
                }
            }
            Err(e) => self.read_error(ctx, &e),
        }
    }

    /// Reads whole, oldest first, the rotated siblings this stream has not read that changed
    /// since it started: files rotated more than once between two checks.
    fn drain_rotated(&mut self, ctx: &mut PollContext<'_>) {
        let mut candidates = match self.candidates() {
            Ok(candidates) => candidates,
            Err(e) => return self.read_error(ctx, &e),
        };
        candidates
            .retain(|c| !c.is_path && !self.was_read(c) && c.mtime_millis >= self.since_millis);
        candidates.sort_by_key(|c| c.mtime_millis);
        for candidate in candidates {
            let mut open = candidate.log;
            self.read(&mut open, ctx);
            self.remember(&open);
            self.retired.push(open);
        }
        if self.seen.len() > SEEN_LIMIT {
            // Forget files that are gone; what is still there stays known.
            let present: HashSet<(u64, u64)> = self
                .candidates()
                .map(|c| c.into_iter().map(|c| c.id).collect())
                .unwrap_or_default();
            self.seen.retain(|id, _| present.contains(id));
        }
    }

    /// The file under the path and its rotated siblings (`<name>.*`, never compressed ones),
    /// opened.
    fn candidates(&self) -> io::Result<Vec<Candidate>> {
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return Ok(Vec::new());
        };
        let name = name.to_string_lossy();
        let prefix = format!("{name}.");
        let mut found = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            let is_path = *file_name == *name;
            let rotated = file_name.starts_with(&prefix) && !file_name.contains(".gz");
            if !(is_path || rotated) {
                continue;
            }
            // Gone between the listing and the open: nothing to read.
            let Ok(log) = OpenLog::open(&entry.path()) else {
                continue;
            };
            let Ok(meta) = log.file.metadata() else {
                continue;
            };
            found.push(Candidate {
                id: log.id,
                len: meta.len(),
                mtime_millis: (meta.mtime().max(0) as u64) * 1000
                    + meta.mtime_nsec().max(0) as u64 / 1_000_000,
                is_path,
                log,
            });
        }
        Ok(found)
    }

    /// Reads the file from its offset to its end (at most [`MAX_READ_PER_POLL`]); returns the
    /// number of bytes read.
    fn read(&mut self, open: &mut OpenLog, ctx: &mut PollContext<'_>) -> u64 {
        let mut budget = MAX_READ_PER_POLL;
        while budget > 0 {
            let n = match open.file.read(&mut ctx.buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.read_error(ctx, &e);
                    break;
                }
            };
            open.offset += n as u64;
            budget = budget.saturating_sub(n as u64);
            ExporterStats::add(&ctx.stats.bytes_read, n as u64);
            let chunk = std::mem::take(&mut ctx.buffer);
            self.split_lines(open, &chunk[..n], ctx);
            ctx.buffer = chunk;
        }
        if open.fingerprint.is_none() && open.offset >= FINGERPRINT_MIN {
            open.fingerprint = open.fingerprint_now().unwrap_or(None);
        }
        MAX_READ_PER_POLL - budget
    }

    fn split_lines(&mut self, open: &mut OpenLog, chunk: &[u8], ctx: &mut PollContext<'_>) {
        let cap = ctx.max_line_bytes + CRI_HEADER_BYTES;
        let mut start = 0;
        for newline in memchr::memchr_iter(b'\n', chunk) {
            let piece = &chunk[start..newline];
            start = newline + 1;
            if open.skipping {
                open.skipping = false;
            } else if open.carry.is_empty() {
                self.reader.line(piece, ctx, &self.path);
            } else {
                open.carry.extend_from_slice(piece);
                let line = std::mem::take(&mut open.carry);
                self.reader.line(&line, ctx, &self.path);
            }
        }
        let rest = &chunk[start..];
        if open.skipping || rest.is_empty() {
            return;
        }
        if open.carry.len() + rest.len() > cap {
            open.carry = Vec::new();
            open.skipping = true;
            ExporterStats::add(&ctx.stats.oversize_lines, 1);
            warn_throttled(
                ctx,
                "oversize",
                &self.path,
                "Dropped a log line longer than the cap (--max-line-bytes)",
            );
        } else {
            open.carry.extend_from_slice(rest);
        }
    }

    fn read_error(&self, ctx: &mut PollContext<'_>, error: &io::Error) {
        ExporterStats::add(&ctx.stats.read_errors, 1);
        if let Some(suppressed) = ctx.throttle.allow("read_error") {
            tracing::warn!(path = %self.path.display(), %error, suppressed, "Cannot read log file");
        }
    }
}

/// A file that may belong to a stream: the one under its path, or a rotated sibling.
struct Candidate {
    id: (u64, u64),
    len: u64,
    mtime_millis: u64,
    is_path: bool,
    log: OpenLog,
}

impl Candidate {
    fn starts_with(&self, fingerprint: Fingerprint) -> bool {
        fingerprint.matches(&self.log.file).unwrap_or(false)
    }
}

impl LineReader {
    fn line(&mut self, line: &[u8], ctx: &mut PollContext<'_>, path: &Path) {
        ExporterStats::add(&ctx.stats.lines_read, 1);
        let record = match cri::parse(line) {
            Ok(record) => record,
            Err(e) => {
                ExporterStats::add(&ctx.stats.malformed_cri, 1);
                if let Some(suppressed) = ctx.throttle.allow("malformed_cri") {
                    tracing::warn!(path = %path.display(), error = %e, suppressed, "Skipped a line that is not a CRI log record");
                }
                return;
            }
        };
        let (time_millis, text) = match self.cri.push(record) {
            Assembled::Line { time_millis, text } => (time_millis, text),
            Assembled::Pending => return,
            Assembled::Oversize => {
                ExporterStats::add(&ctx.stats.oversize_lines, 1);
                warn_throttled(
                    ctx,
                    "oversize",
                    path,
                    "Dropped a log line longer than the cap (--max-line-bytes)",
                );
                return;
            }
        };
        let events = &mut ctx.events;
        if let Err(e) = self
            .parser
            .feed(&text, &mut |event| events.push((event, time_millis)))
        {
            ExporterStats::add(&ctx.stats.invalid_frame_lines, 1);
            if let Some(suppressed) = ctx.throttle.allow("frame_line") {
                tracing::warn!(path = %path.display(), error = %e, suppressed, "Skipped an invalid framescale.frame line");
            }
        }
    }
}

impl OpenLog {
    fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let id = file_id(&file.metadata()?);
        Ok(OpenLog {
            file,
            id,
            offset: 0,
            carry: Vec::new(),
            skipping: false,
            fingerprint: None,
            idle: false,
        })
    }

    /// The fingerprint of what the file holds now, up to the offset; `None` when too short.
    fn fingerprint_now(&self) -> io::Result<Option<Fingerprint>> {
        if self.offset < FINGERPRINT_MIN {
            return Ok(None);
        }
        Fingerprint::read(&self.file, self.offset.min(FINGERPRINT_BYTES))
    }

    /// Reads the file again from its start (it was truncated).
    fn rewind(&mut self) {
        if self.file.seek(SeekFrom::Start(0)).is_ok() {
            self.offset = 0;
            self.carry.clear();
            self.skipping = false;
            self.fingerprint = None;
        }
    }
}

fn warn_throttled(ctx: &PollContext<'_>, kind: &'static str, path: &Path, message: &'static str) {
    if let Some(suppressed) = ctx.throttle.allow(kind) {
        tracing::warn!(path = %path.display(), suppressed, max_line_bytes = ctx.max_line_bytes, "{message}");
    }
}

fn file_id(meta: &fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// Milliseconds since the Unix epoch, now.
#[must_use]
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn line(i: u64) -> String {
        format!("2026-12-03T07:00:00.{i:09}Z stdout F framescale.frame duration_ms=20 outcome=ok\n")
    }

    fn append(path: &Path, from: u64, to: u64) {
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        for i in from..to {
            file.write_all(line(i).as_bytes()).unwrap();
        }
    }

    /// Frames read by one poll of `stream`.
    fn poll(stream: &mut LogStream, check: bool) -> usize {
        let (stats, throttle) = (ExporterStats::default(), Throttle::default());
        let mut ctx = PollContext::new(&stats, &throttle, 64 << 10);
        stream.poll(&mut ctx, check);
        ctx.events.len()
    }

    fn key() -> SeriesKey {
        SeriesKey::new("render", "w-0", "worker")
    }

    #[test]
    fn resumes_after_a_copy_truncate_while_down() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        append(&path, 0, 10);
        let mut stream = LogStream::open(key(), path.clone(), false, 64 << 10).unwrap();
        assert_eq!(poll(&mut stream, true), 10);
        let position = stream.position().unwrap();
        drop(stream);
        // Down: 5 more lines, then a copy-truncate, then 3 lines in the truncated file.
        append(&path, 10, 15);
        fs::copy(&path, dir.path().join("0.log.20261203-070000")).unwrap();
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&path, 100, 103);
        let (mut stream, missing) =
            LogStream::resume(key(), position, now_millis() - 60_000, 64 << 10).unwrap();
        assert_eq!(missing, 0);
        assert_eq!(
            poll(&mut stream, true),
            5 + 3,
            "the copy's tail, then the file"
        );
        assert_eq!(poll(&mut stream, true), 0);
    }

    #[test]
    fn a_new_file_on_a_freed_inode_is_not_taken_for_one_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        append(&path, 0, 10);
        let mut stream = LogStream::open(key(), path.clone(), false, 64 << 10).unwrap();
        assert_eq!(poll(&mut stream, true), 10);
        for round in 1..=20_u64 {
            // Rotate, remove the rotated file (its inode is freed), write a new one.
            let rotated = dir.path().join(format!("0.log.{round}"));
            fs::rename(&path, &rotated).unwrap();
            append(&path, round * 100, round * 100 + 10);
            assert_eq!(poll(&mut stream, true), 10, "round {round}");
            fs::remove_file(&rotated).unwrap();
            assert_eq!(poll(&mut stream, true), 0);
        }
    }

    #[test]
    fn a_rotated_file_removed_while_down_is_counted_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        append(&path, 0, 10);
        let mut stream = LogStream::open(key(), path.clone(), false, 64 << 10).unwrap();
        poll(&mut stream, true);
        let position = stream.position().unwrap();
        drop(stream);
        fs::remove_file(&path).unwrap();
        append(&path, 100, 104);
        let (mut stream, missing) =
            LogStream::resume(key(), position, now_millis() - 60_000, 64 << 10).unwrap();
        assert_eq!(missing, 1);
        assert_eq!(poll(&mut stream, true), 4, "the new file, from its start");
    }

    #[test]
    fn a_new_container_is_read_with_what_was_rotated_before_it_was_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        append(&path, 0, 3);
        fs::rename(&path, dir.path().join("0.log.20261203-070000")).unwrap();
        append(&path, 10, 12);
        append(&dir.path().join("0.log.20261203-065959.gz"), 0, 50);
        let mut stream = LogStream::open(key(), path.clone(), false, 64 << 10).unwrap();
        assert_eq!(poll(&mut stream, true), 3 + 2);
        let mut first_start = LogStream::open(key(), path, true, 64 << 10).unwrap();
        assert_eq!(
            poll(&mut first_start, true),
            0,
            "at a first start: from the end"
        );
    }

    #[test]
    fn compressed_siblings_are_never_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        append(&path, 0, 1);
        let mut stream = LogStream::open(key(), path.clone(), false, 64 << 10).unwrap();
        poll(&mut stream, true);
        append(&dir.path().join("0.log.20261203-070000.gz"), 0, 50);
        append(&dir.path().join("0.log.20261203-070001.gz.tmp"), 0, 50);
        fs::rename(&path, dir.path().join("0.log.20261203-070002")).unwrap();
        append(&path, 10, 12);
        assert_eq!(poll(&mut stream, true), 2);
    }
}
