//! framescale's durable frame queue, on Redis Streams.
//!
//! Why Redis Streams: a consumer group gives at-least-once delivery with a per-consumer pending
//! list, `XAUTOCLAIM` hands a dead consumer's frames to another, persistence (AOF/RDB) keeps the
//! queue across a restart, the server is one small process that Debian, every cloud and every
//! Helm repository ship, and it is what KEDA's own Redis-streams scaler reads — so the
//! comparison with KEDA is on the same queue. (NATS JetStream would do as well; PostgreSQL's
//! `SKIP LOCKED` needs a table and polling.)
//!
//! Keys, for a stream named `S` (default [`DEFAULT_STREAM`]):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `S` | stream | one entry per frame of a normal job not yet done ([`message::FrameMessage`]); done frames are deleted, so its length is the backlog: waiting + in flight |
//! | `S:urgent` | stream | the same, for urgent jobs ([`Priority::Urgent`]): workers take these first |
//! | `S`, `S:urgent` group `render` | consumer group | who holds which frame (the pending lists) |
//! | `S:dead` | stream | entries that are not frames, or whose render failed, with the reason |
//! | `S:jobs` | counter | the last job number |
//! | `S:job:J` | hash | job `J`: scene, first, last, total, size, samples, priority, submitted_ms, duplicates |
//! | `S:job:J:done`, `S:job:J:failed` | sets | the frames of job `J` done, and failed |
//! | `S:job:J:by` | hash | which render completed each done frame (a completion sent again is not a duplicate) |
//! | `S:scenes` | set | the scenes the workers render (each adds its own at start) |
//!
//! At least once: a worker reads a frame (`XREADGROUP`), renders it and completes it in one
//! script (record who rendered it, add it to the done set, `XACK`, `XDEL`). A frame held longer than the claim time by a
//! consumer that stopped renewing it (a pod killed, scaled away, partitioned) is claimed by
//! another (`XAUTOCLAIM`); a frame done twice is counted in the job's `duplicates`, never
//! twice in its done set.
//!
//! Priorities: each is a stream of its own, with its own group, first in, first out within it;
//! [`Queue::take`] and [`Queue::reclaim`] serve the urgent stream before the normal one, and the
//! backlog counts both.

pub mod job;
pub mod message;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{AsyncCommands as _, Value};
use tokio::sync::Mutex;

pub use crate::job::{JobError, JobSpec, Priority};
pub use crate::message::{FrameMessage, Malformed};

/// The stream's name when none is given.
pub const DEFAULT_STREAM: &str = "framescale:frames";
/// The consumer group of the render workers.
pub const GROUP: &str = "render";
/// The longest a blocking read waits ([`Queue::take`]).
pub const MAX_BLOCK: Duration = Duration::from_secs(10);
/// Frames written per round trip by [`Queue::submit`].
const SUBMIT_BATCH: usize = 1_000;

/// Why the queue cannot answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    /// The URL is not a Redis URL.
    #[error(
        "queue URL {url:?} is not a Redis URL (redis://HOST:PORT/DB or rediss:// for TLS): {detail}"
    )]
    Url {
        /// The URL, without its password.
        url: String,
        /// Why.
        detail: String,
    },
    /// Redis cannot be reached or answered an error.
    #[error("the queue at {url} cannot answer: {detail}")]
    Unavailable {
        /// The URL, without its password.
        url: String,
        /// Why.
        detail: String,
    },
    /// A job's check failed before anything was enqueued.
    #[error(transparent)]
    Job(#[from] JobError),
    /// No such job.
    #[error("job {0:?} is not on the queue")]
    UnknownJob(String),
}

/// A stream entry: the stream of its priority, and its id there (ids are unique within a
/// stream only).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entry {
    /// Which stream: the priority's.
    pub priority: Priority,
    /// The entry's id on that stream.
    pub id: String,
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.priority, self.id)
    }
}

/// Where [`Queue::reclaim`] goes on in each stream's pending list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReclaimCursor {
    urgent: String,
    normal: String,
}

impl Default for ReclaimCursor {
    /// The start of both pending lists.
    fn default() -> Self {
        ReclaimCursor {
            urgent: "0-0".into(),
            normal: "0-0".into(),
        }
    }
}

impl ReclaimCursor {
    fn of(&mut self, priority: Priority) -> &mut String {
        match priority {
            Priority::Urgent => &mut self.urgent,
            Priority::Normal => &mut self.normal,
        }
    }
}

/// A frame as delivered to a worker: its entry, and the frame or why the entry is not one.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The stream entry.
    pub entry: Entry,
    /// The frame, or why the entry does not read as one.
    pub message: Result<FrameMessage, Malformed>,
    /// The entry's fields as read (kept for the dead-letter stream).
    fields: HashMap<String, Value>,
}

/// How far a job has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Frames in the job.
    pub total: u64,
    /// Frames done (each counted once).
    pub done: u64,
    /// Frames whose render failed (moved to the dead-letter stream).
    pub failed: u64,
    /// Renders of a frame already done.
    pub duplicates: u64,
}

impl Progress {
    /// Every frame is done or failed.
    #[must_use]
    pub fn finished(&self) -> bool {
        self.done + self.failed >= self.total
    }
}

/// The frames waiting and held, read in one round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Frames on the stream, not yet done: waiting plus in flight.
    pub frames: u64,
    /// Of them, those held by a worker.
    pub in_flight: u64,
}

/// A connection to the queue, made at first use and re-made after Redis comes back.
pub struct Queue {
    client: redis::Client,
    url: String,
    stream: String,
    timeout: Duration,
    commands: Mutex<Option<ConnectionManager>>,
    /// The connection of blocking reads, kept between them (a blocked connection answers nothing
    /// else); dropped after an error, made again at the next read.
    reads: Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("url", &self.url)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// The completion script: a frame done once is added to its job's done set (with the render
/// that did it), acknowledged and deleted from the stream, atomically. Done again by another
/// render, it counts as a duplicate; the same render's completion sent again (a client that
/// timed out while Redis ran it) counts nothing. Returns 1, 0 or 2 for these.
const COMPLETE: &str = r"
local first = redis.call('HSETNX', KEYS[4], ARGV[2], ARGV[4])
local result = 1
if first == 1 then
  redis.call('SADD', KEYS[2], ARGV[2])
elseif redis.call('HGET', KEYS[4], ARGV[2]) == ARGV[4] then
  result = 2
else
  redis.call('HINCRBY', KEYS[3], 'duplicates', 1)
  result = 0
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
return result
";

/// Taking without waiting, in one round trip: up to `ARGV[3]` new entries of the urgent stream
/// (`KEYS[1]`) for consumer `ARGV[2]` of group `ARGV[1]`, then of the normal one (`KEYS[2]`) for
/// the rest. Returns both `XREADGROUP` answers (nil for a stream not read or empty).
const TAKE_URGENT_FIRST: &str = r"
local wanted = tonumber(ARGV[3])
local urgent = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', wanted, 'STREAMS', KEYS[1], '>')
if urgent then
  wanted = wanted - #urgent[1][2]
end
local normal = false
if wanted > 0 then
  normal = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', wanted, 'STREAMS', KEYS[2], '>')
end
return {urgent, normal}
";

/// What completing a rendered frame found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// The frame's first completion.
    First,
    /// Another render had done the frame already: counted as a duplicate.
    Duplicate,
    /// This render's completion had already been made (sent again after a timeout).
    Again,
}

impl Queue {
    /// A queue on the Redis at `url` (`redis://host:6379/0`; `rediss://` for TLS), stream
    /// `stream`. Nothing is connected yet; `timeout` bounds each connection and answer.
    pub fn new(url: &str, stream: &str, timeout: Duration) -> Result<Self, QueueError> {
        let shown = without_password(url);
        let client = redis::Client::open(url).map_err(|e| QueueError::Url {
            url: shown.clone(),
            detail: e.to_string(),
        })?;
        if stream.is_empty() {
            return Err(QueueError::Url {
                url: shown,
                detail: "the stream name is empty".into(),
            });
        }
        Ok(Queue {
            client,
            url: shown,
            stream: stream.to_owned(),
            timeout,
            commands: Mutex::new(None),
            reads: Mutex::new(None),
        })
    }

    /// The URL, without its password.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The stream's name.
    #[must_use]
    pub fn stream(&self) -> &str {
        &self.stream
    }

    fn unavailable(&self, error: &redis::RedisError) -> QueueError {
        QueueError::Unavailable {
            url: self.url.clone(),
            detail: error.to_string(),
        }
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.stream)
    }

    fn job_key(&self, job: &str) -> String {
        self.key(&format!("job:{job}"))
    }

    /// The command connection, made (and the consumer group created) at first use.
    async fn connection(&self) -> Result<ConnectionManager, QueueError> {
        let mut slot = self.commands.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(self.timeout);
        let mut connection = ConnectionManager::new_with_config(self.client.clone(), config)
            .await
            .map_err(|e| self.unavailable(&e))?;
        self.ensure_group(&mut connection).await?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Creates the consumer group of each priority's stream, unless it exists.
    async fn ensure_group(&self, connection: &mut ConnectionManager) -> Result<(), QueueError> {
        for priority in Priority::TAKEN_FIRST {
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(self.stream_of(priority))
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(connection)
                .await;
            match created {
                Err(error) if error.code() != Some("BUSYGROUP") => {
                    return Err(self.unavailable(&error));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The stream of `priority`'s frames.
    fn stream_of(&self, priority: Priority) -> String {
        match priority {
            Priority::Normal => self.stream.clone(),
            Priority::Urgent => self.key("urgent"),
        }
    }

    /// The priority whose stream is named `stream`.
    fn priority_of(&self, stream: &str) -> Priority {
        if stream == self.stream {
            Priority::Normal
        } else {
            Priority::Urgent
        }
    }

    /// A new connection for blocking reads, with room for [`MAX_BLOCK`] in its answer time.
    async fn reading_connection(&self) -> Result<redis::aio::MultiplexedConnection, QueueError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout + MAX_BLOCK));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.unavailable(&e))
    }

    /// Refuses `spec` unless it is valid and a worker has said it renders its scene (when no
    /// worker has said anything yet, only the name is checked).
    pub async fn check_scene(&self, spec: &JobSpec) -> Result<(), QueueError> {
        spec.validate()?;
        let mut connection = self.connection().await?;
        let known: Vec<String> = connection
            .smembers(self.key("scenes"))
            .await
            .map_err(|e| self.unavailable(&e))?;
        if !known.is_empty() && !known.contains(&spec.scene) {
            let mut known = known;
            known.sort();
            return Err(JobError::UnknownScene {
                scene: spec.scene.clone(),
                known: known.join(", "),
            }
            .into());
        }
        Ok(())
    }

    /// Says that this worker renders `scenes` (for [`Queue::check_scene`]).
    pub async fn register_scenes(&self, scenes: &[String]) -> Result<(), QueueError> {
        if scenes.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection().await?;
        connection
            .sadd::<_, _, ()>(self.key("scenes"), scenes)
            .await
            .map_err(|e| self.unavailable(&e))
    }

    /// Checks `spec` ([`Queue::check_scene`]), then enqueues one entry per frame, stamped
    /// `now_ms`; returns the job's id. `progress` is called with the frames written so far.
    pub async fn submit(
        &self,
        spec: &JobSpec,
        now_ms: u64,
        mut progress: impl FnMut(u64),
    ) -> Result<String, QueueError> {
        self.check_scene(spec).await?;
        let mut connection = self.connection().await?;
        let number: u64 = connection
            .incr(self.key("jobs"), 1)
            .await
            .map_err(|e| self.unavailable(&e))?;
        let job = format!("j{number}");
        let record = [
            ("scene", spec.scene.clone()),
            ("first", spec.frames.start().to_string()),
            ("last", spec.frames.end().to_string()),
            ("total", spec.frame_count().to_string()),
            ("width", spec.width.to_string()),
            ("height", spec.height.to_string()),
            ("samples", spec.samples.to_string()),
            ("priority", spec.priority.name().to_owned()),
            ("submitted_ms", now_ms.to_string()),
            ("duplicates", "0".to_owned()),
        ];
        connection
            .hset_multiple::<_, _, _, ()>(self.job_key(&job), &record)
            .await
            .map_err(|e| self.unavailable(&e))?;
        let stream = self.stream_of(spec.priority);
        let mut frames = spec.frames.clone();
        let mut written = 0;
        loop {
            let mut pipe = redis::pipe();
            for frame in frames.by_ref().take(SUBMIT_BATCH) {
                let message = FrameMessage {
                    job: job.clone(),
                    scene: spec.scene.clone(),
                    frame,
                    width: spec.width,
                    height: spec.height,
                    samples: spec.samples,
                    enqueued_ms: now_ms,
                };
                pipe.xadd(&stream, "*", &message.fields()).ignore();
                written += 1;
            }
            if pipe.is_empty() {
                break;
            }
            pipe.query_async::<()>(&mut connection)
                .await
                .map_err(|e| self.unavailable(&e))?;
            progress(written);
        }
        Ok(job)
    }

    /// Up to `count` frames no consumer has had yet, urgent ones first, for `consumer`, waiting
    /// up to `block` (at most [`MAX_BLOCK`]) for the first when none waits. After such a wait,
    /// frames of both priorities that arrived at once come together, urgent first: up to
    /// `count` of each.
    pub async fn take(
        &self,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        // The groups exist before any blocking read.
        self.connection().await?;
        let mut slot = self.reads.lock().await;
        let mut connection = match slot.take() {
            Some(connection) => connection,
            None => self.reading_connection().await?,
        };
        let replies: (Option<StreamReadReply>, Option<StreamReadReply>) =
            redis::Script::new(TAKE_URGENT_FIRST)
                .key(self.stream_of(Priority::Urgent))
                .key(self.stream_of(Priority::Normal))
                .arg(GROUP)
                .arg(consumer)
                .arg(count.max(1))
                .invoke_async(&mut connection)
                .await
                .map_err(|e| self.unavailable(&e))?;
        let mut taken = self.deliveries(replies.0);
        taken.extend(self.deliveries(replies.1));
        if taken.is_empty() && !block.is_zero() {
            let options = redis::streams::StreamReadOptions::default()
                .group(GROUP, consumer)
                .count(count.max(1))
                .block(block.min(MAX_BLOCK).as_millis() as usize);
            let streams = Priority::TAKEN_FIRST.map(|p| self.stream_of(p));
            let streams = streams.each_ref().map(String::as_str);
            taken = self.read(&mut connection, &streams, &options).await?;
            // Redis 7.0 answers a wait with the stream that woke it alone: an urgent frame that
            // came with a normal one is read now, to go first.
            if taken.iter().all(|d| d.entry.priority == Priority::Normal) && !taken.is_empty() {
                let options = redis::streams::StreamReadOptions::default()
                    .group(GROUP, consumer)
                    .count(count.max(1));
                let urgent = self.stream_of(Priority::Urgent);
                taken.extend(
                    self.read(&mut connection, &[urgent.as_str()], &options)
                        .await?,
                );
            }
            taken.sort_by_key(|d| std::cmp::Reverse(d.entry.priority));
        }
        *slot = Some(connection);
        Ok(taken)
    }

    /// One `XREADGROUP` of new entries (`>`) on `streams`.
    async fn read(
        &self,
        connection: &mut redis::aio::MultiplexedConnection,
        streams: &[&str],
        options: &redis::streams::StreamReadOptions,
    ) -> Result<Vec<Delivery>, QueueError> {
        let ids = vec![">"; streams.len()];
        let reply: Option<StreamReadReply> = connection
            .xread_options(streams, &ids, options)
            .await
            .map_err(|e| self.unavailable(&e))?;
        Ok(self.deliveries(reply))
    }

    /// The deliveries of an `XREADGROUP` answer (none for a nil one).
    fn deliveries(&self, reply: Option<StreamReadReply>) -> Vec<Delivery> {
        reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| {
                let priority = self.priority_of(&k.key);
                k.ids
                    .into_iter()
                    .map(move |entry| delivery(priority, entry))
            })
            .collect()
    }

    /// Up to `count` frames other consumers have held for longer than `idle` without renewing
    /// them, urgent ones first, now `consumer`'s. `cursor` (start with the default) walks the
    /// pending lists across calls.
    pub async fn reclaim(
        &self,
        consumer: &str,
        idle: Duration,
        cursor: &mut ReclaimCursor,
        count: usize,
    ) -> Result<Vec<Delivery>, QueueError> {
        let mut connection = self.connection().await?;
        let mut claimed = Vec::new();
        for priority in Priority::TAKEN_FIRST {
            let wanted = count.max(1) - claimed.len();
            if wanted == 0 {
                break;
            }
            let at = cursor.of(priority);
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(self.stream_of(priority))
                .arg(GROUP)
                .arg(consumer)
                .arg(idle.as_millis() as u64)
                .arg(at.as_str())
                .arg("COUNT")
                .arg(wanted)
                .query_async(&mut connection)
                .await
                .map_err(|e| self.unavailable(&e))?;
            *at = reply.next_stream_id;
            claimed.extend(
                reply
                    .claimed
                    .into_iter()
                    .map(|entry| delivery(priority, entry)),
            );
        }
        Ok(claimed)
    }

    /// Renews `consumer`'s hold on `entries` (frames still rendering), so no one reclaims them.
    pub async fn renew(&self, consumer: &str, entries: &[Entry]) -> Result<(), QueueError> {
        let mut pipe = redis::pipe();
        for priority in Priority::TAKEN_FIRST {
            let ids: Vec<&str> = entries
                .iter()
                .filter(|e| e.priority == priority)
                .map(|e| e.id.as_str())
                .collect();
            if !ids.is_empty() {
                pipe.cmd("XCLAIM")
                    .arg(self.stream_of(priority))
                    .arg(GROUP)
                    .arg(consumer)
                    .arg(0)
                    .arg(ids)
                    .arg("JUSTID")
                    .ignore();
            }
        }
        if pipe.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection().await?;
        pipe.query_async::<()>(&mut connection)
            .await
            .map_err(|e| self.unavailable(&e))
    }

    /// Marks the frame of `entry` done by `render` (a name unique to this render of it: the
    /// consumer and a sequence number); safe to send again after a timeout.
    pub async fn complete(
        &self,
        entry: &Entry,
        frame: &FrameMessage,
        render: &str,
    ) -> Result<Completion, QueueError> {
        let mut connection = self.connection().await?;
        let result: i64 = redis::Script::new(COMPLETE)
            .key(self.stream_of(entry.priority))
            .key(self.key(&format!("job:{}:done", frame.job)))
            .key(self.job_key(&frame.job))
            .key(self.key(&format!("job:{}:by", frame.job)))
            .arg(GROUP)
            .arg(frame.frame)
            .arg(&entry.id)
            .arg(render)
            .invoke_async(&mut connection)
            .await
            .map_err(|e| self.unavailable(&e))?;
        Ok(match result {
            1 => Completion::First,
            2 => Completion::Again,
            _ => Completion::Duplicate,
        })
    }

    /// Moves `delivery` aside to the dead-letter stream with `reason` (and, for a frame whose
    /// render failed, records it in its job's failed set).
    pub async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        let mut connection = self.connection().await?;
        let mut fields: Vec<(String, Vec<u8>)> = vec![
            ("reason".into(), reason.as_bytes().to_vec()),
            ("id".into(), delivery.entry.id.as_bytes().to_vec()),
            (
                "priority".into(),
                delivery.entry.priority.name().as_bytes().to_vec(),
            ),
        ];
        for (name, value) in &delivery.fields {
            if let Value::BulkString(bytes) = value {
                fields.push((format!("field.{name}"), bytes.clone()));
            }
        }
        let (stream, id) = (self.stream_of(delivery.entry.priority), &delivery.entry.id);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .xadd(self.key("dead"), "*", &fields)
            .ignore()
            .xack(&stream, GROUP, &[id])
            .ignore()
            .xdel(&stream, &[id])
            .ignore();
        if let Ok(frame) = &delivery.message {
            pipe.sadd(self.key(&format!("job:{}:failed", frame.job)), frame.frame)
                .ignore();
        }
        pipe.query_async::<()>(&mut connection)
            .await
            .map_err(|e| self.unavailable(&e))
    }

    /// Frames waiting plus in flight, and of them those in flight, of both priorities (read in
    /// one round trip).
    pub async fn backlog(&self) -> Result<Backlog, QueueError> {
        let mut connection = self.connection().await?;
        let mut pipe = redis::pipe();
        for priority in Priority::TAKEN_FIRST {
            let stream = self.stream_of(priority);
            pipe.xlen(&stream).cmd("XPENDING").arg(&stream).arg(GROUP);
        }
        let (urgent, urgent_pending, normal, normal_pending): (u64, Value, u64, Value) = pipe
            .query_async(&mut connection)
            .await
            .map_err(|e| self.unavailable(&e))?;
        let pending = |summary: &Value| match summary {
            Value::Array(summary) => match summary.first() {
                Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
                _ => 0,
            },
            _ => 0,
        };
        Ok(Backlog {
            frames: urgent + normal,
            in_flight: pending(&urgent_pending) + pending(&normal_pending),
        })
    }

    /// Entries in the dead-letter stream.
    pub async fn dead_letters(&self) -> Result<u64, QueueError> {
        let mut connection = self.connection().await?;
        connection
            .xlen(self.key("dead"))
            .await
            .map_err(|e| self.unavailable(&e))
    }

    /// How far job `job` has got.
    pub async fn progress(&self, job: &str) -> Result<Progress, QueueError> {
        let mut connection = self.connection().await?;
        let (record, done, failed): (HashMap<String, String>, u64, u64) = redis::pipe()
            .hgetall(self.job_key(job))
            .scard(self.key(&format!("job:{job}:done")))
            .scard(self.key(&format!("job:{job}:failed")))
            .query_async(&mut connection)
            .await
            .map_err(|e| self.unavailable(&e))?;
        let number = |field: &str| record.get(field).and_then(|v| v.parse().ok());
        let total = number("total").ok_or_else(|| QueueError::UnknownJob(job.to_owned()))?;
        Ok(Progress {
            total,
            done,
            failed,
            duplicates: number("duplicates").unwrap_or(0),
        })
    }
}

fn delivery(priority: Priority, entry: StreamId) -> Delivery {
    Delivery {
        message: FrameMessage::from_fields(&entry.map),
        entry: Entry {
            priority,
            id: entry.id,
        },
        fields: entry.map,
    }
}

/// `url` with any password replaced by `***`, for messages and logs.
fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            without_password("redis://:secret@redis:6379/0"),
            "redis://:***@redis:6379/0"
        );
        assert_eq!(
            without_password("rediss://render:secret@redis/1"),
            "rediss://render:***@redis/1"
        );
        assert_eq!(without_password("redis://redis:6379"), "redis://redis:6379");
    }

    #[test]
    fn a_url_that_is_not_redis_is_refused() {
        let error =
            Queue::new("http://redis:6379", DEFAULT_STREAM, Duration::from_secs(1)).unwrap_err();
        assert!(error.to_string().contains("not a Redis URL"), "{error}");
    }
}
