//! Queue mode against a real redis-server: workers pull a job's frames, a worker that stops
//! holding frames has them reclaimed, a malformed entry is moved aside without blocking the
//! rest, a stopping worker completes what it holds, and an urgent job goes before a normal one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use framescale_queue::testing::RedisServer;
use framescale_queue::{Backlog, FrameMessage, JobSpec, Priority, Queue};
use framescale_worker::frame::{FrameRequest, RenderError, Rendered, Renderer};
use framescale_worker::puller::{PullConfig, PullCounts, pull};
use tokio::sync::watch;

/// Renders nothing, in `millis` per frame, listing the frames it rendered in order.
struct Sleeper {
    millis: u64,
    rendered: Mutex<Vec<u64>>,
}

fn sleeper(millis: u64) -> Arc<Sleeper> {
    Arc::new(Sleeper {
        millis,
        rendered: Mutex::default(),
    })
}

impl Sleeper {
    fn rendered(&self) -> Vec<u64> {
        self.rendered.lock().unwrap().clone()
    }
}

impl Renderer for Sleeper {
    fn render(&self, request: &FrameRequest) -> Result<Rendered, RenderError> {
        if request.scene == "broken" {
            return Err(RenderError::Failed("the scene is broken".into()));
        }
        std::thread::sleep(Duration::from_millis(self.millis));
        self.rendered.lock().unwrap().push(request.frame);
        Ok(Rendered {
            png: Vec::new(),
            render_time: Duration::from_millis(self.millis),
        })
    }
}

fn queue(server: &RedisServer) -> Arc<Queue> {
    Arc::new(Queue::new(&server.url(), "test:frames", Duration::from_secs(2)).unwrap())
}

fn job(scene: &str, frames: std::ops::RangeInclusive<u64>) -> JobSpec {
    JobSpec {
        scene: scene.into(),
        frames,
        width: 8,
        height: 8,
        samples: 1,
        priority: Priority::Normal,
    }
}

/// Submits `spec` (stamped 0) and returns its job id.
async fn submitted(queue: &Queue, spec: &JobSpec) -> String {
    queue.submit(spec, 0, |_| {}).await.unwrap()
}

struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    counts: Arc<PullCounts>,
}

fn start(queue: &Arc<Queue>, renderer: &Arc<Sleeper>, consumer: &str, slots: usize) -> Running {
    let (stop, stopped) = watch::channel(false);
    let counts = Arc::new(PullCounts::default());
    let config = PullConfig {
        consumer: consumer.into(),
        slots,
        claim_after: Duration::from_secs(1),
    };
    let task = tokio::spawn(pull(
        queue.clone(),
        renderer.clone(),
        config,
        counts.clone(),
        stopped,
    ));
    Running { stop, task, counts }
}

impl Running {
    async fn stop(self) -> Arc<PullCounts> {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
        self.counts
    }
}

async fn until_finished(queue: &Queue, job: &str) -> framescale_queue::Progress {
    for _ in 0..600 {
        let progress = queue.progress(job).await.unwrap();
        if progress.finished() {
            return progress;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {job} did not finish: {:?}", queue.progress(job).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_render_every_frame_once() {
    let server = RedisServer::start();
    let queue = queue(&server);
    let renderer = sleeper(2);
    let id = submitted(&queue, &job("spheres", 1..=300)).await;
    let a = start(&queue, &renderer, "a", 2);
    let b = start(&queue, &renderer, "b", 2);
    let progress = until_finished(&queue, &id).await;
    let (a, b) = (a.stop().await, b.stop().await);
    assert_eq!((progress.done, progress.duplicates), (300, 0));
    assert_eq!(renderer.rendered().len(), 300);
    let (done_a, _, _, _) = a.snapshot();
    let (done_b, _, _, _) = b.snapshot();
    assert_eq!(done_a + done_b, 300);
    assert!(
        done_a > 0 && done_b > 0,
        "both pulled: {done_a} and {done_b}"
    );
    assert_eq!(queue.backlog().await.unwrap().frames, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_of_a_worker_that_died_are_rendered_by_another() {
    let server = RedisServer::start();
    let queue = queue(&server);
    let id = submitted(&queue, &job("spheres", 1..=20)).await;
    // A worker took three frames and died: it will never render, complete or renew them.
    let lost = queue
        .take("dead-pod", 3, Duration::from_millis(1))
        .await
        .unwrap();
    assert_eq!(lost.len(), 3);
    let renderer = sleeper(1);
    let alive = start(&queue, &renderer, "alive", 1);
    let progress = until_finished(&queue, &id).await;
    let counts = alive.stop().await;
    assert_eq!((progress.done, progress.duplicates), (20, 0));
    let (done, _, reclaimed, _) = counts.snapshot();
    assert_eq!((done, reclaimed), (20, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_entry_or_a_failed_render_is_moved_aside_and_the_rest_rendered() {
    let server = RedisServer::start();
    let queue = queue(&server);
    let _: String = redis::cmd("XADD")
        .arg("test:frames")
        .arg("*")
        .arg("job")
        .arg("j0")
        .arg("frame")
        .arg("-1")
        .query(&mut server.connection())
        .unwrap();
    let broken = submitted(&queue, &job("broken", 1..=2)).await;
    let good = submitted(&queue, &job("spheres", 1..=10)).await;
    let renderer = sleeper(1);
    let worker = start(&queue, &renderer, "a", 2);
    assert_eq!(until_finished(&queue, &good).await.done, 10);
    let failed = until_finished(&queue, &broken).await;
    let counts = worker.stop().await;
    assert_eq!((failed.done, failed.failed), (0, 2));
    assert_eq!(
        counts.snapshot().3,
        3,
        "one malformed entry, two failed renders"
    );
    assert_eq!(queue.dead_letters().await.unwrap(), 3);
    assert_eq!(queue.backlog().await.unwrap().frames, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_worker_completes_the_frames_it_renders() {
    let server = RedisServer::start();
    let queue = queue(&server);
    let id = submitted(&queue, &job("spheres", 1..=10)).await;
    let renderer = sleeper(300);
    let worker = start(&queue, &renderer, "a", 2);
    while queue.backlog().await.unwrap().in_flight < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let counts = worker.stop().await;
    let (done, _, _, _) = counts.snapshot();
    let progress = queue.progress(&id).await.unwrap();
    assert!(done >= 2, "the frames in hand were finished: {done}");
    assert_eq!(progress.done, done);
    let backlog = queue.backlog().await.unwrap();
    assert_eq!(backlog.in_flight, 0, "nothing left held");
    assert_eq!(backlog.frames, 10 - done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_urgent_job_submitted_mid_job_is_rendered_next() {
    let server = RedisServer::start();
    let queue = queue(&server);
    let normal = submitted(&queue, &job("spheres", 1..=300)).await;
    let renderer = sleeper(3);
    let worker = start(&queue, &renderer, "a", 1);
    while renderer.rendered().len() < 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let previews = JobSpec {
        priority: Priority::Urgent,
        ..job("spheres", 1001..=1020)
    };
    let urgent = submitted(&queue, &previews).await;
    let rendered_by_then = renderer.rendered().len();
    assert_eq!(until_finished(&queue, &urgent).await.done, 20);
    assert_eq!(until_finished(&queue, &normal).await.done, 300);
    worker.stop().await;
    // One slot: after the normal frame in hand, the 20 urgent frames one after the other.
    let order = renderer.rendered();
    let first = order.iter().position(|&f| f > 1000).unwrap();
    assert!(
        (20..=rendered_by_then + 1).contains(&first),
        "submitted after {rendered_by_then} normal frames, the first urgent one rendered after {first}: {order:?}"
    );
    assert_eq!(
        order[first..first + 20],
        (1001..=1020).collect::<Vec<u64>>(),
        "{order:?}"
    );
    assert_eq!(order.len(), 320, "each frame once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_worker_woken_by_both_priorities_renders_the_urgent_frame_first() {
    let server = RedisServer::start();
    let queue = queue(&server);
    let renderer = sleeper(3);
    let worker = start(&queue, &renderer, "a", 1);
    queue.backlog().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // One normal and one urgent frame in one transaction, while the worker waits: it takes both,
    // renders the urgent one and holds the other until its slot frees.
    let frame = |job: &str, frame: u64| FrameMessage {
        job: job.into(),
        scene: "spheres".into(),
        frame,
        width: 8,
        height: 8,
        samples: 1,
        enqueued_ms: 0,
    };
    let _: () = redis::pipe()
        .atomic()
        .xadd("test:frames", "*", &frame("j1", 1).fields())
        .ignore()
        .xadd("test:frames:urgent", "*", &frame("j2", 2).fields())
        .ignore()
        .query(&mut server.connection())
        .unwrap();
    for _ in 0..200 {
        if renderer.rendered().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let counts = worker.stop().await;
    assert_eq!(renderer.rendered(), [2, 1], "urgent first, both rendered");
    assert_eq!(counts.snapshot().0, 2, "both completed");
    assert_eq!(queue.backlog().await.unwrap(), Backlog::default());
}
