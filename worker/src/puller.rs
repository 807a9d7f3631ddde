//! Queue mode: the worker pulls frames from the durable queue ([`framescale_queue`]) as it has
//! free render slots, renders each, and completes it; each frame is logged as a
//! `framescale.frame` line whose queue time is start − enqueue, so the exporter measures what
//! the user waited.
//!
//! Urgent frames first: the queue serves its urgent stream before the normal one.
//!
//! At least once: frames in hand are renewed every third of the claim time; a frame a stopped
//! pod held longer than the claim time is reclaimed by a running one. A render that fails, or
//! an entry that is not a frame, is moved to the dead-letter stream with its reason, counted and
//! logged, never retried forever nor left blocking the queue. When the queue cannot be reached
//! the worker says so and tries again each second; a frame it finished meanwhile is completed
//! once the queue is back (or reclaimed by another pod if this one stops first).
//!
//! On shutdown the worker takes nothing more, finishes the frames it renders and completes them.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use framescale_queue::{Completion, Delivery, Entry, FrameMessage, Queue, ReclaimCursor};
use tokio::sync::{Semaphore, watch};

use crate::frame::{FrameRequest, RenderError, Renderer};

/// How the worker pulls.
#[derive(Debug, Clone)]
pub struct PullConfig {
    /// This pod's name in the consumer group (unique per pod).
    pub consumer: String,
    /// Frames rendered at once.
    pub slots: usize,
    /// A frame held this long by a consumer that stopped renewing it is taken by another.
    pub claim_after: Duration,
}

/// What a pull run did.
#[derive(Debug, Default)]
pub struct PullCounts {
    /// Frames rendered and completed for the first time.
    pub done: AtomicU64,
    /// Frames rendered that another pod had already done.
    pub duplicates: AtomicU64,
    /// Frames taken from a stopped consumer.
    pub reclaimed: AtomicU64,
    /// Entries moved to the dead-letter stream (not a frame, or the render failed).
    pub dead_lettered: AtomicU64,
}

impl PullCounts {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `(done, duplicates, reclaimed, dead_lettered)` now.
    #[must_use]
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.done.load(Ordering::Relaxed),
            self.duplicates.load(Ordering::Relaxed),
            self.reclaimed.load(Ordering::Relaxed),
            self.dead_lettered.load(Ordering::Relaxed),
        )
    }
}

/// Frames in hand (their entries), renewed while they wait for a slot or render.
type Held = Arc<Mutex<BTreeSet<Entry>>>;

fn held_entries(held: &Held) -> Vec<Entry> {
    held.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .cloned()
        .collect()
}

fn hold(held: &Held, entry: &Entry, holding: bool) {
    let mut held = held.lock().unwrap_or_else(PoisonError::into_inner);
    if holding {
        held.insert(entry.clone());
    } else {
        held.remove(entry);
    }
}

/// Where the worker gets frames: a stopped consumer's first (looked for at most every quarter
/// claim time), then new ones, urgent before normal.
struct Source {
    cursor: ReclaimCursor,
    last_scan: Option<Instant>,
    unavailable_since: Option<Instant>,
}

impl Source {
    /// The next frames for `config.consumer` (usually one; none after a second of waiting);
    /// `None` when the queue cannot answer (said once, until it answers again).
    async fn next(
        &mut self,
        queue: &Queue,
        config: &PullConfig,
        counts: &PullCounts,
    ) -> Option<Vec<Delivery>> {
        let scan_due = self
            .last_scan
            .is_none_or(|at| at.elapsed() >= config.claim_after / 4);
        let mut taken = Ok(Vec::new());
        if scan_due {
            taken = queue
                .reclaim(&config.consumer, config.claim_after, &mut self.cursor, 1)
                .await;
            if let Ok(reclaimed) = &taken {
                for delivery in reclaimed {
                    PullCounts::add(&counts.reclaimed);
                    tracing::info!(entry = %delivery.entry, "Reclaimed a frame a stopped worker held");
                }
                if reclaimed.is_empty() {
                    self.last_scan = Some(Instant::now());
                }
            }
        }
        if matches!(&taken, Ok(t) if t.is_empty()) {
            taken = queue
                .take(&config.consumer, 1, Duration::from_secs(1))
                .await;
        }
        match taken {
            Ok(deliveries) => {
                if let Some(since) = self.unavailable_since.take() {
                    tracing::info!(after = ?since.elapsed(), "The queue answers again");
                }
                Some(deliveries)
            }
            Err(error) => {
                if self.unavailable_since.is_none() {
                    self.unavailable_since = Some(Instant::now());
                    tracing::warn!(%error, "Cannot take frames; trying again each second");
                }
                None
            }
        }
    }
}

/// Pulls and renders until `stop` turns true, then finishes what it holds and returns.
pub async fn pull(
    queue: Arc<Queue>,
    renderer: Arc<dyn Renderer + Send + Sync>,
    config: PullConfig,
    counts: Arc<PullCounts>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(config.slots));
    let held: Held = Arc::default();
    let renewing = tokio::spawn(renew(
        queue.clone(),
        config.consumer.clone(),
        held.clone(),
        config.claim_after / 3,
    ));
    let mut source = Source {
        cursor: ReclaimCursor::default(),
        last_scan: None,
        unavailable_since: None,
    };
    // Frames taken beyond a free slot (an urgent and a normal one arriving together), in hand
    // until a slot frees.
    let mut not_started = VecDeque::<Delivery>::new();
    let mut renders = 0_u64;
    let start = |delivery: Delivery, permit, renders: &mut u64| {
        *renders += 1;
        let render = format!("{}/{renders}", config.consumer);
        let (queue, renderer, counts, held) = (
            queue.clone(),
            renderer.clone(),
            counts.clone(),
            held.clone(),
        );
        tokio::spawn(async move {
            handle(&queue, renderer, &counts, &delivery, &render).await;
            hold(&held, &delivery.entry, false);
            drop(permit);
        });
    };
    while !*stop.borrow() {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit,
            _ = stop.changed() => break,
        };
        // The semaphore is never closed.
        let Ok(permit) = permit else { break };
        if not_started.is_empty() {
            let Some(deliveries) = source.next(&queue, &config, &counts).await else {
                drop(permit);
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {},
                    _ = stop.changed() => {},
                }
                continue;
            };
            for delivery in &deliveries {
                hold(&held, &delivery.entry, true);
            }
            not_started.extend(deliveries);
        }
        if let Some(delivery) = not_started.pop_front() {
            start(delivery, permit, &mut renders);
        }
    }
    tracing::info!(
        in_hand = held_entries(&held).len(),
        "Worker stopping: taking no more frames, finishing those in hand"
    );
    for delivery in not_started {
        if let Ok(permit) = slots.clone().acquire_owned().await {
            start(delivery, permit, &mut renders);
        }
    }
    // Every slot free again: every frame in hand finished.
    let _all = slots.acquire_many(config.slots as u32).await;
    renewing.abort();
}

/// Renews the frames in hand every `every`.
async fn renew(queue: Arc<Queue>, consumer: String, held: Held, every: Duration) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(100)));
    loop {
        ticks.tick().await;
        let entries = held_entries(&held);
        if let Err(error) = queue.renew(&consumer, &entries).await {
            tracing::warn!(%error, frames = entries.len(), "Cannot renew the frames in hand");
        }
    }
}

/// Renders one delivery and completes it, or moves it aside.
/// `render` names this render of the delivery (consumer and sequence number), so a completion
/// sent again after a timeout is not taken for a second render.
async fn handle(
    queue: &Queue,
    renderer: Arc<dyn Renderer + Send + Sync>,
    counts: &PullCounts,
    delivery: &Delivery,
    render: &str,
) {
    let frame = match &delivery.message {
        Ok(frame) => frame,
        Err(malformed) => {
            let error = RenderError::BadRequest(format!("not a frame: {malformed}"));
            return move_aside(queue, counts, delivery, &error).await;
        }
    };
    let request = match request_of(frame) {
        Ok(request) => request,
        Err(error) => return move_aside(queue, counts, delivery, &error).await,
    };
    let queue_time = Duration::from_millis(now_millis().saturating_sub(frame.enqueued_ms));
    let rendering = request.clone();
    let result = tokio::task::spawn_blocking(move || renderer.render(&rendering))
        .await
        .unwrap_or_else(|e| Err(RenderError::Failed(format!("the render panicked: {e}"))));
    crate::server::log_frame(&crate::server::rendered_record(
        &request, queue_time, &result,
    ));
    match result {
        Ok(_) => complete(queue, counts, delivery, frame, render).await,
        Err(error) => move_aside(queue, counts, delivery, &error).await,
    }
}

/// The request a frame message makes, checked as an HTTP request would be.
fn request_of(frame: &FrameMessage) -> Result<FrameRequest, RenderError> {
    let request = FrameRequest {
        scene: frame.scene.clone(),
        frame: frame.frame,
        width: frame.width,
        height: frame.height,
        samples: frame.samples,
    };
    request.validate()?;
    Ok(request)
}

/// Completes a rendered frame, trying each second while the queue cannot answer (for up to a
/// minute; after that the frame is left to be reclaimed and rendered again).
async fn complete(
    queue: &Queue,
    counts: &PullCounts,
    delivery: &Delivery,
    frame: &FrameMessage,
    render: &str,
) {
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        match queue.complete(&delivery.entry, frame, render).await {
            Ok(Completion::First | Completion::Again) => return PullCounts::add(&counts.done),
            Ok(Completion::Duplicate) => {
                PullCounts::add(&counts.duplicates);
                tracing::info!(job = %frame.job, frame = frame.frame, "Rendered a frame another worker had done (a duplicate)");
                return;
            }
            Err(error) if Instant::now() >= deadline => {
                tracing::warn!(%error, job = %frame.job, frame = frame.frame, "Cannot complete a rendered frame; it will be reclaimed and rendered again");
                return;
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

async fn move_aside(queue: &Queue, counts: &PullCounts, delivery: &Delivery, error: &RenderError) {
    let reason = error.to_string();
    tracing::warn!(entry = %delivery.entry, %reason, "Moving an entry to the dead-letter stream");
    match queue.dead_letter(delivery, &reason).await {
        Ok(()) => PullCounts::add(&counts.dead_lettered),
        Err(error) => {
            tracing::warn!(%error, entry = %delivery.entry, "Cannot move the entry aside; it will be reclaimed");
        }
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
