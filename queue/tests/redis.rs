//! The queue against a real redis-server: a job's frames delivered once each, reclaimed from a
//! consumer that stopped, duplicates counted, malformed entries moved aside, and nothing lost
//! across a Redis restart.

use std::time::Duration;

use framescale_queue::testing::RedisServer;
use framescale_queue::{
    Backlog, Completion, Entry, JobError, JobSpec, Priority, Progress, Queue, QueueError,
    ReclaimCursor,
};

const NOW_MS: u64 = 1_764_000_000_000;

fn queue(server: &RedisServer) -> Queue {
    Queue::new(&server.url(), "test:frames", Duration::from_secs(2)).unwrap()
}

fn job(scene: &str, frames: std::ops::RangeInclusive<u64>) -> JobSpec {
    JobSpec {
        scene: scene.into(),
        frames,
        width: 16,
        height: 16,
        samples: 1,
        priority: framescale_queue::Priority::Normal,
    }
}

/// An urgent job of `frames` of spheres.
fn urgent_job(frames: std::ops::RangeInclusive<u64>) -> JobSpec {
    JobSpec {
        priority: Priority::Urgent,
        ..job("spheres", frames)
    }
}

/// Submits `spec` (stamped NOW_MS) and returns its job id.
async fn submitted(queue: &Queue, spec: &JobSpec) -> String {
    queue.submit(spec, NOW_MS, |_| {}).await.unwrap()
}

const NO_WAIT: Duration = Duration::from_millis(1);

#[tokio::test]
async fn each_frame_is_delivered_once_and_done_once() {
    let server = RedisServer::start();
    let queue = queue(&server);
    let mut written = Vec::new();
    let id = queue
        .submit(&job("spheres", 1..=2500), NOW_MS, |n| written.push(n))
        .await
        .unwrap();
    assert_eq!(written, [1000, 2000, 2500], "progress per round trip");
    assert_eq!(
        queue.backlog().await.unwrap(),
        Backlog {
            frames: 2500,
            in_flight: 0
        }
    );
    let mut frames = Vec::new();
    loop {
        let taken = queue.take("a", 700, NO_WAIT).await.unwrap();
        if taken.is_empty() {
            break;
        }
        for delivery in taken {
            let frame = delivery.message.unwrap();
            assert_eq!(
                (frame.job.as_str(), frame.enqueued_ms),
                (id.as_str(), NOW_MS)
            );
            frames.push((delivery.entry, frame));
        }
    }
    assert_eq!(frames.len(), 2500);
    assert_eq!(queue.backlog().await.unwrap().in_flight, 2500);
    for (entry, frame) in &frames {
        assert_eq!(
            queue.complete(entry, frame, "a/1").await.unwrap(),
            Completion::First
        );
    }
    // The same render's completion sent again (after a timeout) counts nothing; another render
    // of a done frame is a duplicate, never a second done frame.
    let (entry, frame) = &frames[0];
    assert_eq!(
        queue.complete(entry, frame, "a/1").await.unwrap(),
        Completion::Again
    );
    assert_eq!(
        queue.complete(entry, frame, "b/7").await.unwrap(),
        Completion::Duplicate
    );
    assert_eq!(
        queue.progress(&id).await.unwrap(),
        Progress {
            total: 2500,
            done: 2500,
            failed: 0,
            duplicates: 1
        }
    );
    assert_eq!(queue.backlog().await.unwrap(), Backlog::default());
}

#[tokio::test]
async fn frames_of_a_consumer_that_stopped_are_reclaimed_and_renewed_ones_kept() {
    let server = RedisServer::start();
    let queue = queue(&server);
    let id = submitted(&queue, &job("spheres", 1..=4)).await;
    let held = queue.take("gone", 2, NO_WAIT).await.unwrap();
    let kept = queue.take("alive", 2, NO_WAIT).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kept_entries: Vec<Entry> = kept.iter().map(|d| d.entry.clone()).collect();
    queue.renew("alive", &kept_entries).await.unwrap();
    let mut cursor = ReclaimCursor::default();
    let reclaimed = queue
        .reclaim("other", Duration::from_millis(250), &mut cursor, 10)
        .await
        .unwrap();
    let ids = |d: &[framescale_queue::Delivery]| -> Vec<Entry> {
        let mut ids: Vec<Entry> = d.iter().map(|d| d.entry.clone()).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&reclaimed), ids(&held), "only the frames not renewed");
    // Both render the reclaimed frames: one is done, the other a duplicate.
    for delivery in &reclaimed {
        let frame = delivery.message.as_ref().unwrap();
        let done = queue
            .complete(&delivery.entry, frame, "other/1")
            .await
            .unwrap();
        assert_eq!(done, Completion::First);
    }
    for delivery in &held {
        let frame = delivery.message.as_ref().unwrap();
        let done = queue
            .complete(&delivery.entry, frame, "gone/1")
            .await
            .unwrap();
        assert_eq!(done, Completion::Duplicate);
    }
    // Renewed frames stay with their holder, however long they render.
    let mut cursor = ReclaimCursor::default();
    let again = queue
        .reclaim("other", Duration::from_millis(250), &mut cursor, 10)
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    let progress = queue.progress(&id).await.unwrap();
    assert_eq!((progress.done, progress.duplicates), (2, 2));
}

#[tokio::test]
async fn a_malformed_entry_is_moved_aside_with_its_reason() {
    let server = RedisServer::start();
    let queue = queue(&server);
    submitted(&queue, &job("spheres", 1..=1)).await;
    let _: String = redis::cmd("XADD")
        .arg("test:frames")
        .arg("*")
        .arg("frame")
        .arg("seven")
        .query(&mut server.connection())
        .unwrap();
    let taken = queue.take("a", 10, NO_WAIT).await.unwrap();
    assert_eq!(taken.len(), 2);
    let bad = taken.iter().find(|d| d.message.is_err()).unwrap();
    let reason = bad.message.as_ref().unwrap_err().to_string();
    assert_eq!(reason, r#"field "job" is missing"#);
    queue.dead_letter(bad, &reason).await.unwrap();
    assert_eq!(queue.dead_letters().await.unwrap(), 1);
    assert_eq!(
        queue.backlog().await.unwrap().frames,
        1,
        "the good frame stays"
    );
    let dead: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg("test:frames:dead")
        .arg("-")
        .arg("+")
        .query(&mut server.connection())
        .unwrap();
    let entry = &dead.ids[0];
    assert_eq!(
        entry.get::<String>("reason").as_deref(),
        Some(reason.as_str())
    );
    assert_eq!(entry.get::<String>("field.frame").as_deref(), Some("seven"));
}

#[tokio::test]
async fn a_bad_job_or_an_unknown_scene_enqueues_nothing() {
    let server = RedisServer::start();
    let queue = queue(&server);
    let error = queue
        .submit(
            &job(
                "spheres",
                framescale_queue::job::parse_range("9..1").unwrap(),
            ),
            NOW_MS,
            |_| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        QueueError::Job(JobError::EmptyRange { .. })
    ));
    queue
        .register_scenes(&["spheres".into(), "classroom".into()])
        .await
        .unwrap();
    let error = queue
        .submit(&job("bmw27", 1..=10), NOW_MS, |_| {})
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"scene "bmw27" is unknown to the render workers (they render: classroom, spheres)"#
    );
    assert_eq!(queue.backlog().await.unwrap().frames, 0);
    assert!(matches!(
        queue.progress("j99").await,
        Err(QueueError::UnknownJob(_))
    ));
}

#[tokio::test]
async fn redis_down_is_an_error_never_an_empty_queue_and_nothing_enqueued_is_lost() {
    let mut server = RedisServer::start();
    let queue = queue(&server);
    submitted(&queue, &job("spheres", 1..=50)).await;
    assert_eq!(queue.backlog().await.unwrap().frames, 50);
    server.stop();
    let error = queue.backlog().await.unwrap_err();
    assert!(matches!(error, QueueError::Unavailable { .. }), "{error:?}");
    assert!(error.to_string().contains("cannot answer"), "{error}");
    server.restart();
    let mut backlog = queue.backlog().await;
    for _ in 0..50 {
        if backlog.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        backlog = queue.backlog().await;
    }
    assert_eq!(
        backlog.unwrap().frames,
        50,
        "the queue survived the restart"
    );
}

#[tokio::test]
async fn urgent_frames_go_first_are_reclaimed_first_and_count_in_the_backlog() {
    let server = RedisServer::start();
    let queue = queue(&server);
    let normal = submitted(&queue, &job("spheres", 1..=5)).await;
    let urgent = queue
        .submit(&urgent_job(101..=103), NOW_MS + 1, |_| {})
        .await
        .unwrap();
    let priority: String = redis::cmd("HGET")
        .arg(format!("test:frames:job:{urgent}"))
        .arg("priority")
        .query(&mut server.connection())
        .unwrap();
    assert_eq!(priority, "urgent");
    assert_eq!(queue.backlog().await.unwrap().frames, 8, "both streams");
    // Submitted last, taken first, in order; then the normal job's.
    let taken = queue.take("gone", 4, NO_WAIT).await.unwrap();
    let seen: Vec<(Priority, u64)> = taken
        .iter()
        .map(|d| (d.entry.priority, d.message.as_ref().unwrap().frame))
        .collect();
    assert_eq!(
        seen,
        [
            (Priority::Urgent, 101),
            (Priority::Urgent, 102),
            (Priority::Urgent, 103),
            (Priority::Normal, 1)
        ]
    );
    assert_eq!(queue.backlog().await.unwrap().in_flight, 4);
    // The consumer stops: its urgent frames are reclaimed before its normal one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut cursor = ReclaimCursor::default();
    for (count, expected) in [(2, &taken[..2]), (10, &taken[2..])] {
        let reclaimed = queue
            .reclaim("other", Duration::from_millis(250), &mut cursor, count)
            .await
            .unwrap();
        let entries: Vec<&Entry> = reclaimed.iter().map(|d| &d.entry).collect();
        let expected: Vec<&Entry> = expected.iter().map(|d| &d.entry).collect();
        assert_eq!(entries, expected);
    }
    // Completed and moved aside on the stream each came from.
    for delivery in &taken[..3] {
        let frame = delivery.message.as_ref().unwrap();
        let done = queue
            .complete(&delivery.entry, frame, "other/1")
            .await
            .unwrap();
        assert_eq!(done, Completion::First);
    }
    queue.dead_letter(&taken[3], "test").await.unwrap();
    assert_eq!(queue.progress(&urgent).await.unwrap().done, 3);
    assert_eq!(queue.progress(&normal).await.unwrap().failed, 1);
    assert_eq!(
        queue.backlog().await.unwrap(),
        Backlog {
            frames: 4,
            in_flight: 0
        }
    );
    // A worker waiting on an empty queue wakes for an urgent frame.
    for _ in 0..4 {
        queue.take("other", 1, NO_WAIT).await.unwrap();
    }
    let waiting = queue.take("other", 1, Duration::from_secs(5));
    let submitting = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        submitted(&queue, &urgent_job(7..=7)).await;
    };
    let (woke, ()) = tokio::join!(waiting, submitting);
    let woke = woke.unwrap();
    assert_eq!(woke.len(), 1);
    assert_eq!(woke[0].entry.priority, Priority::Urgent);
    assert_eq!(woke[0].message.as_ref().unwrap().frame, 7);
}

#[tokio::test]
async fn frames_of_both_priorities_arriving_together_come_urgent_first() {
    let server = RedisServer::start();
    let queue = queue(&server);
    queue.backlog().await.unwrap();
    let waiting = queue.take("a", 1, Duration::from_secs(5));
    let adding = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _: () = redis::pipe()
            .atomic()
            .xadd("test:frames", "*", &[("frame", "1")])
            .ignore()
            .xadd("test:frames:urgent", "*", &[("frame", "2")])
            .ignore()
            .query(&mut server.connection())
            .unwrap();
    };
    let (woke, ()) = tokio::join!(waiting, adding);
    // Both at once, urgent first (Redis 7.0 answers the wait with the normal stream that woke
    // it alone; the urgent frame is read after it).
    let priorities: Vec<Priority> = woke.unwrap().iter().map(|d| d.entry.priority).collect();
    assert_eq!(priorities, [Priority::Urgent, Priority::Normal]);
    assert_eq!(queue.backlog().await.unwrap().in_flight, 2);
}
