//! Following one container log file through appends, rotation and deletion.
//!
//! A [`LogStream`] is bound to a path (`…/<container>/0.log`), not to a file: when the kubelet
//! renames the file away and the runtime creates a new one (rename rotation), the old file is
//! read to its end, kept open for one more poll for writes that raced the rename, and the new
//! file is read from its start, through the same CRI assembler and render-log parser, so a frame
//! that spans the rotation is not lost. A file truncated in place (copy-truncate) is read again
//! from its start. A file deleted while open is drained and closed.
//!
//! The open file is read on every poll (one `read` per idle file); the checks for truncation
//! and for a new file under the path run on the tailer's rescans (every 5 s by default), since
//! they are most of the cost of an idle file. Nothing is lost in between — the renamed file is
//! still open and read — but a truncation followed by more writes than the old size before the
//! next check cannot be told from an append.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use framescale_core::frame::RenderEvent;
use framescale_core::render_log::RenderLogParser;

use crate::cri::{self, Assembled, CriAssembler};
use crate::stats::ExporterStats;
use crate::store::SeriesKey;
use crate::throttle::Throttle;

/// Most bytes read from one file in one poll, so one busy file cannot starve the others.
pub const MAX_READ_PER_POLL: u64 = 8 << 20;

/// Room for the CRI header in front of a line's text.
const CRI_HEADER_BYTES: usize = 128;

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

/// The log of one container (one restart of it), followed across rotations.
#[derive(Debug)]
pub struct LogStream {
    key: SeriesKey,
    path: PathBuf,
    current: Option<OpenLog>,
    /// A file that was renamed away or deleted; read once more, then closed.
    retired: Option<OpenLog>,
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
}

/// Turns file bytes into render events: CRI records, joined partials, parsed lines.
#[derive(Debug)]
struct LineReader {
    cri: CriAssembler,
    parser: RenderLogParser,
}

impl LogStream {
    /// Starts following `path`; reading begins at the file's end when `at_end`, else at its
    /// start.
    pub fn open(
        key: SeriesKey,
        path: PathBuf,
        at_end: bool,
        max_line_bytes: usize,
    ) -> io::Result<Self> {
        let mut current = OpenLog::open(&path)?;
        if at_end {
            current.offset = current.file.seek(SeekFrom::End(0))?;
        }
        let reader = LineReader {
            cri: CriAssembler::new(max_line_bytes),
            parser: RenderLogParser::new(),
        };
        Ok(LogStream {
            key,
            path,
            current: Some(current),
            retired: None,
            reader,
        })
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
        self.current.is_some() || self.retired.is_some()
    }

    /// Reads what was written since the last poll; events go to `ctx.events`. With
    /// `check_file`, also checks whether the file was truncated or replaced under its path
    /// (rename rotation, deletion). Those checks are most of the cost of polling an idle file,
    /// so the tailer makes them on its rescans only; the open file is read on every poll.
    pub fn poll(&mut self, ctx: &mut PollContext<'_>, check_file: bool) {
        if let Some(mut retired) = self.retired.take() {
            self.read(&mut retired, ctx);
        }
        if let Some(mut current) = self.current.take() {
            // A file truncated below our offset reads as empty: only then is it worth a stat.
            if self.read(&mut current, ctx) == 0
                && check_file
                && self.was_truncated(&mut current, ctx)
            {
                self.read(&mut current, ctx);
            }
            self.current = Some(current);
        }
        if check_file {
            self.follow_path(ctx);
        }
    }

    /// Ends the stream: a frame still in progress is reported as failed.
    pub fn finish(&mut self, ctx: &mut PollContext<'_>) {
        self.current = None;
        self.retired = None;
        let events = &mut ctx.events;
        self.reader
            .parser
            .finish(&mut |event| events.push((event, now_millis())));
    }

    /// Whether the file shrank below the offset (copy-truncate); if so, rewinds to its start.
    fn was_truncated(&self, open: &mut OpenLog, ctx: &mut PollContext<'_>) -> bool {
        match open.file.metadata() {
            Ok(meta) if meta.len() < open.offset => {
                ExporterStats::add(&ctx.stats.rotations_truncated, 1);
                tracing::debug!(path = %self.path.display(), "Log file was truncated; reading it from the start");
                if let Err(e) = open.file.seek(SeekFrom::Start(0)) {
                    self.read_error(ctx, &e);
                    return false;
                }
                open.offset = 0;
                open.carry.clear();
                open.skipping = false;
                true
            }
            Ok(_) => false,
            Err(e) => {
                self.read_error(ctx, &e);
                false
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
                tracing::debug!(path = %self.path.display(), "Log file was replaced; following the new one");
                match OpenLog::open(&self.path) {
                    Ok(mut new) => {
                        self.retired = self.current.take();
                        self.read(&mut new, ctx);
                        self.current = Some(new);
                    }
                    Err(e) => self.read_error(ctx, &e),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Deleted or renamed with no successor yet: drain what is left on the next poll.
                if let Some(current) = self.current.take() {
                    self.retired = Some(current);
                }
            }
            Err(e) => self.read_error(ctx, &e),
        }
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
        })
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
