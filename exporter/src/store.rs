//! The per-series state behind `/metrics`: one sliding window and counters per container.
//!
//! A series is (namespace, pod, container). Log tailing and push ingest both record into it;
//! the exposition reads it. A series lives while its source does: the discovery of log files
//! touches it every scan, a push touches it on arrival, and [`SeriesStore::sweep`] drops the
//! ones not touched for the grace period, so label sets stay bounded as pods come and go.

use std::collections::BTreeMap;
use std::time::Duration;

use framescale_core::frame::{FrameRecord, Outcome, REFUSED_LATENCY, RenderEvent};
use framescale_core::frame_line::MAX_DURATION;
use framescale_core::window::{QuantileWindow, Scratch, WindowConfig, WindowSnapshot};

/// Identity of a series: the labels it carries.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct SeriesKey {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The container's name.
    pub container: String,
}

impl SeriesKey {
    /// A key from its three labels.
    #[must_use]
    pub fn new(namespace: &str, pod: &str, container: &str) -> Self {
        SeriesKey {
            namespace: namespace.into(),
            pod: pod.into(),
            container: container.into(),
        }
    }
}

/// A series' counters, as a checkpoint keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SeriesCounts {
    /// Frames that succeeded.
    pub frames_ok: u64,
    /// Frames that failed.
    pub frames_failed: u64,
    /// Frames the pod refused.
    #[serde(default)]
    pub frames_refused: u64,
    /// Successful frames with a duration.
    pub duration_count: u64,
    /// Sum of their durations, seconds.
    pub duration_sum_seconds: f64,
    /// Frames in the latency summary (produced and refused).
    #[serde(default)]
    pub latency_count: u64,
    /// Sum of their latencies, seconds (a refused frame counts [`REFUSED_LATENCY`]).
    #[serde(default)]
    pub latency_sum_seconds: f64,
    /// Whether the pod has reported queue times (or refusals).
    #[serde(default)]
    pub queue_reported: bool,
    /// Errors outside any frame.
    pub job_errors: u64,
}

/// What a series' latency is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyMeasure {
    /// Queue plus render: the pod reports the time each frame waited (and its refusals).
    QueueAndRender,
    /// Render time alone: the pod reports no queue time (Blender's console).
    Render,
}

impl LatencyMeasure {
    /// The value of the `measure` label on the latency summary.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            LatencyMeasure::QueueAndRender => "queue_and_render",
            LatencyMeasure::Render => "render",
        }
    }
}

/// One summary of a series: its sliding window of quantiles, and the cumulative `_sum` and
/// `_count` of what entered it.
#[derive(Debug, Clone)]
pub struct Summary {
    window: QuantileWindow,
    /// Values recorded, ever (the summary's `_count`).
    pub count: u64,
    /// Their sum in seconds (the summary's `_sum`).
    pub sum_seconds: f64,
}

impl Summary {
    fn new(config: WindowConfig) -> Self {
        Summary {
            window: QuantileWindow::new(config),
            count: 0,
            sum_seconds: 0.0,
        }
    }

    /// Counts `value`, placed at `at_millis`; false when it was too old for the window.
    fn record(&mut self, value: Duration, at_millis: u64) -> bool {
        self.count += 1;
        self.sum_seconds += value.as_secs_f64();
        self.window.record(value.min(MAX_DURATION), at_millis)
    }

    /// Quantiles of the window ending `now_millis`; `None` when it holds no value.
    pub fn snapshot(
        &self,
        now_millis: u64,
        quantiles: &[f64],
        scratch: &mut Scratch,
    ) -> Option<WindowSnapshot> {
        self.window.snapshot(now_millis, quantiles, scratch)
    }
}

/// What is known of one series.
#[derive(Debug, Clone)]
pub struct Series {
    /// Render times of produced frames.
    pub render: Summary,
    /// Latencies (queue + render) of produced frames, and refused frames at
    /// [`REFUSED_LATENCY`].
    pub latency: Summary,
    /// Frames that ended, by outcome.
    pub frames_ok: u64,
    /// Frames that failed.
    pub frames_failed: u64,
    /// Frames the pod refused.
    pub frames_refused: u64,
    /// Whether any frame carried a queue time or was refused.
    pub queue_reported: bool,
    /// Errors the renderer reported outside any frame.
    pub job_errors: u64,
    /// The last time (ms since the epoch) its source was seen.
    last_seen_millis: u64,
}

impl Series {
    fn new(config: WindowConfig, now_millis: u64) -> Self {
        Series {
            render: Summary::new(config),
            latency: Summary::new(config),
            frames_ok: 0,
            frames_failed: 0,
            frames_refused: 0,
            queue_reported: false,
            job_errors: 0,
            last_seen_millis: now_millis,
        }
    }

    /// What the series' latency is made of.
    #[must_use]
    pub fn latency_measure(&self) -> LatencyMeasure {
        if self.queue_reported {
            LatencyMeasure::QueueAndRender
        } else {
            LatencyMeasure::Render
        }
    }

    /// Counts a frame; false when it was too old for the windows.
    fn record_frame(&mut self, frame: &FrameRecord, at_millis: u64) -> bool {
        match frame.outcome {
            Outcome::Ok => self.frames_ok += 1,
            Outcome::Failed => self.frames_failed += 1,
            Outcome::Refused => self.frames_refused += 1,
        }
        self.queue_reported |= frame.queue.is_some() || frame.outcome == Outcome::Refused;
        // A failed frame's time says how fast it failed, not how fast frames render: only
        // produced frames enter the render summary. A refused frame never reached the user: it
        // enters the latency summary as later than any target.
        let latency = match frame.outcome {
            Outcome::Refused => Some(REFUSED_LATENCY),
            _ => frame.latency(),
        };
        let mut in_window = true;
        if let (Outcome::Ok, Some(duration)) = (frame.outcome, frame.duration) {
            in_window &= self.render.record(duration, at_millis);
        }
        if let Some(latency) = latency {
            in_window &= self.latency.record(latency, at_millis);
        }
        in_window
    }
}

/// Every series of this exporter.
#[derive(Debug)]
pub struct SeriesStore {
    config: WindowConfig,
    series: BTreeMap<SeriesKey, Series>,
}

impl SeriesStore {
    /// An empty store whose windows have `config`.
    #[must_use]
    pub fn new(config: WindowConfig) -> Self {
        SeriesStore {
            config,
            series: BTreeMap::new(),
        }
    }

    /// The window every series' quantiles cover.
    #[must_use]
    pub fn window(&self) -> std::time::Duration {
        self.config.window()
    }

    /// Records one event of `key`'s log, which happened at `at_millis`. Returns false when a
    /// frame was too old to join the window (it still counts in the totals).
    pub fn record(&mut self, key: &SeriesKey, event: &RenderEvent, at_millis: u64) -> bool {
        let series = self.entry(key, at_millis);
        match event {
            RenderEvent::Frame(frame) => series.record_frame(frame, at_millis),
            RenderEvent::JobError(_) => {
                series.job_errors += 1;
                true
            }
        }
    }

    /// Notes that `key`'s source still exists at `now_millis`. A series is created by its first
    /// event, not by a touch, so containers that never render add no series.
    pub fn touch(&mut self, key: &SeriesKey, now_millis: u64) {
        if let Some(series) = self.series.get_mut(key) {
            series.last_seen_millis = series.last_seen_millis.max(now_millis);
        }
    }

    /// Drops series whose source was last seen more than `grace` before `now_millis`; returns
    /// how many.
    pub fn sweep(&mut self, now_millis: u64, grace: Duration) -> usize {
        let cutoff = now_millis.saturating_sub(grace.as_millis() as u64);
        let before = self.series.len();
        self.series.retain(|_, s| s.last_seen_millis >= cutoff);
        before - self.series.len()
    }

    /// Every series' counters, for a checkpoint.
    #[must_use]
    pub fn counts(&self) -> Vec<(SeriesKey, SeriesCounts)> {
        self.series
            .iter()
            .map(|(key, s)| {
                let counts = SeriesCounts {
                    frames_ok: s.frames_ok,
                    frames_failed: s.frames_failed,
                    frames_refused: s.frames_refused,
                    duration_count: s.render.count,
                    duration_sum_seconds: s.render.sum_seconds,
                    latency_count: s.latency.count,
                    latency_sum_seconds: s.latency.sum_seconds,
                    queue_reported: s.queue_reported,
                    job_errors: s.job_errors,
                };
                (key.clone(), counts)
            })
            .collect()
    }

    /// Goes on from a checkpoint's counters (at `now_millis`): the series exist again, with
    /// empty windows.
    pub fn restore_counts(&mut self, counts: &[(SeriesKey, SeriesCounts)], now_millis: u64) {
        for (key, c) in counts {
            let series = self.entry(key, now_millis);
            series.frames_ok = c.frames_ok;
            series.frames_failed = c.frames_failed;
            series.frames_refused = c.frames_refused;
            series.render.count = c.duration_count;
            series.render.sum_seconds = c.duration_sum_seconds;
            series.latency.count = c.latency_count;
            series.latency.sum_seconds = c.latency_sum_seconds;
            series.queue_reported = c.queue_reported;
            series.job_errors = c.job_errors;
        }
    }

    /// The series, in label order.
    pub fn iter(&self) -> impl Iterator<Item = (&SeriesKey, &Series)> {
        self.series.iter()
    }

    /// Whether `key` has a series.
    #[must_use]
    pub fn contains(&self, key: &SeriesKey) -> bool {
        self.series.contains_key(key)
    }

    /// How many series are tracked.
    #[must_use]
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether no series is tracked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// How many distinct pods are tracked.
    #[must_use]
    pub fn pod_count(&self) -> usize {
        let mut pods = 0;
        let mut last: Option<(&str, &str)> = None;
        for key in self.series.keys() {
            let pod = (key.namespace.as_str(), key.pod.as_str());
            if last != Some(pod) {
                pods += 1;
                last = Some(pod);
            }
        }
        pods
    }

    fn entry(&mut self, key: &SeriesKey, now_millis: u64) -> &mut Series {
        if !self.series.contains_key(key) {
            self.series
                .insert(key.clone(), Series::new(self.config, now_millis));
        }
        let series = self.series.get_mut(key).expect("inserted above");
        series.last_seen_millis = series.last_seen_millis.max(now_millis);
        series
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn ok(ms: u64) -> RenderEvent {
        RenderEvent::Frame(FrameRecord::ok(None, Duration::from_millis(ms)))
    }

    #[test]
    fn frames_and_errors_are_counted() {
        let mut store = SeriesStore::new(WindowConfig::default());
        let key = SeriesKey::new("render", "blender-0", "blender");
        store.record(&key, &ok(100), NOW);
        store.record(&key, &ok(300), NOW);
        store.record(
            &key,
            &RenderEvent::Frame(FrameRecord::failed(
                Some(3),
                Some(Duration::from_secs(9)),
                "x".into(),
            )),
            NOW,
        );
        store.record(&key, &RenderEvent::JobError("boom".into()), NOW);
        let (_, s) = store.iter().next().unwrap();
        assert_eq!(
            (s.frames_ok, s.frames_failed, s.job_errors, s.render.count),
            (2, 1, 1, 2)
        );
        assert!((s.render.sum_seconds - 0.4).abs() < 1e-9);
        let snap = s
            .render
            .snapshot(NOW, &[1.0], &mut Scratch::default())
            .unwrap();
        assert_eq!(
            snap.count, 2,
            "the failed frame's 9 s stays out of the window"
        );
    }

    #[test]
    fn latency_is_queue_plus_render_and_a_refusal_is_later_than_any_target() {
        let mut store = SeriesStore::new(WindowConfig::default());
        let worker = SeriesKey::new("render", "worker-0", "worker");
        let mut queued = FrameRecord::ok(Some(1), Duration::from_millis(20));
        queued.queue = Some(Duration::from_millis(30));
        for _ in 0..19 {
            store.record(&worker, &RenderEvent::Frame(queued.clone()), NOW);
        }
        let at = |store: &SeriesStore, key: &SeriesKey, q: f64| {
            let (_, s) = store.iter().find(|(k, _)| *k == key).unwrap();
            let snap = s.latency.snapshot(NOW, &[q], &mut Scratch::default());
            (snap.map(|s| s.values[0]), s.latency_measure())
        };
        let (p95, measure) = at(&store, &worker, 0.95);
        let p95 = p95.unwrap();
        assert!(
            p95.abs_diff(Duration::from_millis(50)) < Duration::from_micros(100),
            "{p95:?}"
        );
        assert_eq!(measure, LatencyMeasure::QueueAndRender);
        // One refused frame in 20 is the top 5 %: the P95 is still a produced frame's, the
        // maximum is the refusal's hour.
        let refused = RenderEvent::Frame(FrameRecord::refused(None, None));
        store.record(&worker, &refused, NOW);
        assert!(at(&store, &worker, 0.95).0.unwrap() < Duration::from_secs(1));
        assert!(at(&store, &worker, 1.0).0.unwrap() >= REFUSED_LATENCY);
        store.record(&worker, &refused, NOW);
        assert!(at(&store, &worker, 0.95).0.unwrap() >= REFUSED_LATENCY);
        let (_, s) = store.iter().next().unwrap();
        assert_eq!(
            (s.frames_ok, s.frames_refused, s.latency.count),
            (19, 2, 21)
        );
        assert_eq!(s.render.count, 19, "a refusal has no render time");

        // Blender's console carries no queue time: latency is the render time, and says so.
        let blender = SeriesKey::new("render", "blender-0", "blender");
        store.record(&blender, &ok(100), NOW);
        let (p95, measure) = at(&store, &blender, 0.95);
        assert!(p95.unwrap().abs_diff(Duration::from_millis(100)) < Duration::from_millis(1));
        assert_eq!(measure, LatencyMeasure::Render);
        // A failed frame is neither late nor on time.
        store.record(
            &blender,
            &RenderEvent::Frame(FrameRecord::failed(None, None, "x".into())),
            NOW,
        );
        let (_, s) = store.iter().find(|(k, _)| **k == blender).unwrap();
        assert_eq!(s.latency.count, 1);
    }

    #[test]
    fn series_not_seen_for_the_grace_period_are_dropped() {
        let mut store = SeriesStore::new(WindowConfig::default());
        let a = SeriesKey::new("ns", "a", "c");
        let b = SeriesKey::new("ns", "b", "c");
        store.record(&a, &ok(1), NOW);
        store.record(&b, &ok(1), NOW);
        store.touch(&b, NOW + 50_000);
        store.touch(&SeriesKey::new("ns", "never-rendered", "c"), NOW + 50_000);
        assert_eq!(store.sweep(NOW + 90_000, Duration::from_mins(1)), 1);
        assert_eq!(
            store
                .iter()
                .map(|(k, _)| k.pod.as_str())
                .collect::<Vec<_>>(),
            ["b"]
        );
    }

    #[test]
    fn pods_are_counted_once_per_pod() {
        let mut store = SeriesStore::new(WindowConfig::default());
        for (pod, container) in [("a", "x"), ("a", "y"), ("b", "x")] {
            store.record(&SeriesKey::new("ns", pod, container), &ok(1), NOW);
        }
        store.record(&SeriesKey::new("other", "a", "x"), &ok(1), NOW);
        assert_eq!(store.pod_count(), 3);
    }
}
