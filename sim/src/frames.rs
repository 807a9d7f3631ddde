//! A per-frame, discrete-event model of the render worker, for comparing scaling policies on
//! what users feel.
//!
//! Frames arrive as a Poisson process at the profile's rate and go to a Ready pod chosen at
//! random (as a Service spreads them). A pod renders up to `slots` frames at once and queues up
//! to `queue` more; a frame that finds both full is rejected (the worker's 429). A frame's work
//! is drawn from a log-normal around `render_ms`; the device runs `parallelism` frames at full
//! speed, and more than that share it (time-slicing: each runs at `parallelism / running`). A new
//! pod is Pending for `startup_s`; a removed pod's frames are lost with it, counted as rejected.
//!
//! Each second every Ready pod is observed the way the exporter observes it: over the last
//! `window_s`, the P95 of the render times of the frames it finished and the P95 of their
//! latencies (queue + render, from the worker's frame lines; a frame it refused counts as an
//! hour, as the exporter counts a `refused` line), the device duty over the last second, the
//! frames it holds (running and queued: what a queue-depth scaler reads), and the CPU
//! utilization a kubelet would report (`cpu_share` of the duty: a GPU render keeps a CPU core
//! busy only part of the time). What the user feels is each frame's latency, and the rejected
//! frames: a frame is bad when it is later than the SLO or rejected.

use std::collections::VecDeque;

use framescale_core::frame::REFUSED_LATENCY;

/// The worker and its pods.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkerModel {
    /// Median render time of a frame alone on an idle device, ms.
    pub render_ms: f64,
    /// Spread of render times: the log-normal's sigma (0: every frame takes `render_ms`).
    pub render_sigma: f64,
    /// Frames a pod renders at once.
    pub slots: usize,
    /// Frames a pod queues beyond its slots; more are rejected.
    pub queue: usize,
    /// Frames the device runs at full speed at once; more share it.
    pub parallelism: f64,
    /// Seconds a new pod is Pending.
    pub startup_s: f64,
    /// The exporter's window for the P95, seconds.
    pub window_s: f64,
    /// CPU utilization of a pod per unit of device duty (1: the CPU is the device).
    pub cpu_share: f64,
    /// Frames wait in one shared, durable queue that pods pull from as they have free slots
    /// (the worker's queue mode), instead of going to a pod at random: none is rejected, a
    /// frame's latency is its wait plus its render, and a pod scaled away hands its frames
    /// back. `queue` (per-pod places) is unused.
    pub shared_queue: bool,
}

impl Default for WorkerModel {
    /// A GPU render pod as the bundled worker runs by default: 20 ms frames, 1 slot, 4 queue
    /// places, 10 s to start, the exporter's default 60 s window, a CPU core 30 % as busy as the
    /// GPU.
    fn default() -> Self {
        WorkerModel {
            render_ms: 20.0,
            render_sigma: 0.2,
            slots: 1,
            queue: 4,
            parallelism: 1.0,
            startup_s: 10.0,
            window_s: 60.0,
            cpu_share: 0.3,
            shared_queue: false,
        }
    }
}

impl WorkerModel {
    /// The frames per second that keep `pods` pods at `duty_pct` duty on average (by the mean
    /// of the log-normal work, not its median).
    #[must_use]
    pub fn steady_rate(&self, pods: f64, duty_pct: f64) -> f64 {
        let mean_work_ms = self.render_ms * (self.render_sigma.powi(2) / 2.0).exp();
        pods * self.parallelism * 1000.0 / mean_work_ms * duty_pct / 100.0
    }
}

/// What the exporter (and a kubelet) would report for one pod at one second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PodReading {
    /// P95 render time over the window, ms; `None` when no frame ended in it.
    pub p95_ms: Option<f64>,
    /// P95 latency (queue + render, a refused frame at an hour) over the window, ms; `None`
    /// when no frame ended or was refused in it.
    pub latency_p95_ms: Option<f64>,
    /// Frames the pod holds, running and queued.
    pub held: usize,
    /// Device duty over the last second, percent.
    pub duty_pct: f64,
    /// CPU utilization of the pod's request over the last second, percent.
    pub cpu_pct: f64,
}

/// A small, fast, seeded generator (SplitMix64): runs are deterministic for a seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Exponential with mean `mean`.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * self.unit().ln()
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// An index below `n` (> 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64).ceil() as usize - 1
    }
}

/// Log-spaced buckets of render times (5 % wide, 0.1 ms to about 100 s): the P95 is read from
/// counts, as the exporter's HDR histograms are, to within one bucket.
const BUCKETS: usize = 284;
const BUCKET_BASE_MS: f64 = 0.1;
const BUCKET_GROWTH: f64 = 1.05;

fn bucket(ms: f64) -> usize {
    if ms <= BUCKET_BASE_MS {
        return 0;
    }
    ((ms / BUCKET_BASE_MS).ln() / BUCKET_GROWTH.ln())
        .ceil()
        .min((BUCKETS - 1) as f64) as usize
}

fn bucket_top(index: usize) -> f64 {
    BUCKET_BASE_MS * BUCKET_GROWTH.powf(index as f64)
}

/// The latency the exporter gives a refused frame, ms: an hour, later than any target.
pub const REFUSED_MS: f64 = REFUSED_LATENCY.as_secs_f64() * 1000.0;

/// Counts of a sliding window of values, in [`BUCKETS`], with refusals (above every bucket)
/// apart: its P95 reads as the exporter's does, to within one bucket.
#[derive(Debug, Clone)]
struct WindowCounts {
    entries: VecDeque<(f64, Option<usize>)>,
    counts: Vec<u32>,
    refused: u32,
}

impl WindowCounts {
    fn new() -> Self {
        WindowCounts {
            entries: VecDeque::new(),
            counts: vec![0; BUCKETS],
            refused: 0,
        }
    }

    /// A value of `ms` at `at` (`None`: a refusal).
    fn record(&mut self, at: f64, ms: Option<f64>) {
        let b = ms.map(bucket);
        match b {
            Some(b) => self.counts[b] += 1,
            None => self.refused += 1,
        }
        self.entries.push_back((at, b));
    }

    /// The P95 of what is newer than `t - window_s`; `None` when nothing is.
    fn p95(&mut self, t: f64, window_s: f64) -> Option<f64> {
        while let Some(&(at, b)) = self.entries.front() {
            if at > t - window_s {
                break;
            }
            self.entries.pop_front();
            match b {
                Some(b) => self.counts[b] -= 1,
                None => self.refused -= 1,
            }
        }
        let total = self.entries.len() as u32;
        if total == 0 {
            return None;
        }
        let rank = (0.95 * f64::from(total)).ceil() as u32;
        let mut seen = 0;
        Some(
            self.counts
                .iter()
                .position(|c| {
                    seen += c;
                    seen >= rank
                })
                .map_or(REFUSED_MS, bucket_top),
        )
    }
}

struct Running {
    /// The frame's whole work, ms of solo rendering.
    work: f64,
    /// Work left, ms of solo rendering.
    left: f64,
    arrived: f64,
    started: f64,
}

/// One pod of the model.
pub struct Pod {
    /// Its name.
    pub name: String,
    /// When it is Ready.
    pub ready_at: f64,
    running: Vec<Running>,
    queue: VecDeque<(f64, f64)>,
    clock: f64,
    busy: f64,
    render_window: WindowCounts,
    latency_window: WindowCounts,
}

/// What users felt: each minute's frame latencies (queue + render) as bucket counts, and the
/// rejected frames, counted by the minute they arrived in. Memory does not grow with frames.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Felt {
    minutes: Vec<Minute>,
    /// Frames rejected in all.
    pub rejected: u64,
    /// Frames finished later than the SLO (with [`Felt::watching`]).
    pub late: u64,
    /// Frames finished in all (what the exporters' frame counters count).
    pub finished: u64,
    /// Every latency, `(arrived, ms)`, when asked for with [`Felt::logging`] (tests).
    pub log: Option<Vec<(f64, f64)>>,
    /// With [`Felt::watching`]: per second of arrival, (frames, frames slower than the SLO or
    /// rejected).
    seconds: Option<(f64, Vec<(u32, u32)>)>,
}

#[derive(Debug, Clone, PartialEq)]
struct Minute {
    counts: Vec<u32>,
    rejected: u32,
}

impl Felt {
    /// A record that also keeps every latency.
    #[must_use]
    pub fn logging() -> Self {
        Felt {
            log: Some(Vec::new()),
            ..Felt::default()
        }
    }

    /// A record that also counts, per second, the frames slower than `slo_ms` (for the time
    /// to recover after a step).
    #[must_use]
    pub fn watching(slo_ms: f64) -> Self {
        Felt {
            seconds: Some((slo_ms, Vec::new())),
            ..Felt::default()
        }
    }

    fn second(&mut self, arrived: f64, slow: bool) {
        if let Some((_, seconds)) = &mut self.seconds {
            let index = arrived.max(0.0) as usize;
            if seconds.len() <= index {
                seconds.resize(index + 1, (0, 0));
            }
            seconds[index].0 += 1;
            seconds[index].1 += u32::from(slow);
        }
    }

    /// Frames that arrived in the second starting at `t` and were late or rejected, percent of
    /// that second's frames; `None` without [`Felt::watching`] or when none arrived.
    #[must_use]
    pub fn bad_pct_at(&self, t: f64) -> Option<f64> {
        let (_, seconds) = self.seconds.as_ref()?;
        let &(frames, bad) = seconds.get(t.max(0.0) as usize)?;
        (frames > 0).then(|| 100.0 * f64::from(bad) / f64::from(frames))
    }

    /// Seconds from `from` until the frames are back within the SLO — the first second after
    /// which, for 60 s, at most 5 % of each second's frames are slower or rejected; `None` if
    /// that never happens (or without [`Felt::watching`]).
    #[must_use]
    pub fn recovery(&self, from: f64) -> Option<f64> {
        let (_, seconds) = self.seconds.as_ref()?;
        let good = |(frames, slow): &(u32, u32)| f64::from(*slow) <= 0.05 * f64::from(*frames);
        let start = from.max(0.0) as usize;
        (start..seconds.len().saturating_sub(60))
            .find(|&s| seconds[s..s + 60].iter().all(good))
            .map(|s| (s - start) as f64)
    }

    fn minute(&mut self, arrived: f64) -> &mut Minute {
        let index = (arrived.max(0.0) / 60.0) as usize;
        if self.minutes.len() <= index {
            self.minutes.resize(
                index + 1,
                Minute {
                    counts: vec![0; BUCKETS],
                    rejected: 0,
                },
            );
        }
        &mut self.minutes[index]
    }

    /// A frame that arrived at `arrived` and was done `latency_ms` later.
    pub fn done(&mut self, arrived: f64, latency_ms: f64) {
        self.minute(arrived).counts[bucket(latency_ms)] += 1;
        self.finished += 1;
        let slow = self
            .seconds
            .as_ref()
            .is_some_and(|(slo, _)| latency_ms > *slo);
        self.late += u64::from(slow);
        self.second(arrived, slow);
        if let Some(log) = &mut self.log {
            log.push((arrived, latency_ms));
        }
    }

    /// A frame that arrived at `arrived` and was rejected (or lost).
    pub fn reject(&mut self, arrived: f64) {
        self.minute(arrived).rejected += 1;
        self.rejected += 1;
        self.second(arrived, true);
    }

    /// Frames users got late or never: later than the SLO, or rejected.
    #[must_use]
    pub fn bad(&self) -> u64 {
        self.late + self.rejected
    }

    /// Minutes whose latency P95, a rejected frame counting as too slow, is above `slo_ms`
    /// (to within one 5 % bucket: a bucket counts as its top).
    #[must_use]
    pub fn minutes_over(&self, slo_ms: f64) -> u32 {
        self.minutes
            .iter()
            .filter(|m| {
                let total = m.counts.iter().sum::<u32>() + m.rejected;
                if total == 0 {
                    return false;
                }
                let rank = (0.95 * f64::from(total)).ceil() as u32;
                let mut seen = 0;
                match m.counts.iter().position(|c| {
                    seen += c;
                    seen >= rank
                }) {
                    Some(index) => bucket_top(index) > slo_ms,
                    None => true, // the rank falls among the rejected
                }
            })
            .count() as u32
    }
}

impl Pod {
    /// A pod named `name`, Ready at `ready_at`.
    #[must_use]
    pub fn new(name: String, ready_at: f64) -> Self {
        Pod {
            name,
            ready_at,
            running: Vec::new(),
            queue: VecDeque::new(),
            clock: ready_at,
            busy: 0.0,
            render_window: WindowCounts::new(),
            latency_window: WindowCounts::new(),
        }
    }

    /// Advances the pod's frames to time `t` (seconds), recording what finishes in `felt`.
    pub fn advance(&mut self, model: &WorkerModel, t: f64, felt: &mut Felt) {
        while self.clock < t {
            if self.running.is_empty() {
                self.clock = t;
                break;
            }
            let n = self.running.len() as f64;
            let rate = (model.parallelism / n).min(1.0);
            let (first, least) = self
                .running
                .iter()
                .enumerate()
                .map(|(i, r)| (i, r.left))
                .fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
            let finish = self.clock + least / rate / 1000.0;
            let until = finish.min(t);
            let elapsed_ms = (until - self.clock) * 1000.0;
            for r in &mut self.running {
                r.left -= elapsed_ms * rate;
            }
            self.busy += (until - self.clock) * (n / model.parallelism).min(1.0);
            self.clock = until;
            if finish <= t {
                let done = self.running.swap_remove(first);
                let render_ms = (self.clock - done.started) * 1000.0;
                let latency_ms = (self.clock - done.arrived) * 1000.0;
                felt.done(done.arrived, latency_ms);
                self.render_window.record(self.clock, Some(render_ms));
                self.latency_window.record(self.clock, Some(latency_ms));
                if let Some((arrived, work)) = self.queue.pop_front() {
                    self.running.push(Running {
                        work,
                        left: work,
                        arrived,
                        started: self.clock,
                    });
                }
            }
        }
    }

    /// A frame of `work_ms` arriving at `t` (the pod is advanced to `t` first).
    pub fn arrive(&mut self, model: &WorkerModel, t: f64, work_ms: f64, felt: &mut Felt) {
        self.advance(model, t, felt);
        if self.running.len() < model.slots {
            self.running.push(Running {
                work: work_ms,
                left: work_ms,
                arrived: t,
                started: t,
            });
        } else if self.queue.len() < model.queue {
            self.queue.push_back((t, work_ms));
        } else {
            // The worker logs the refusal: the exporter counts it as later than any target.
            felt.reject(t);
            self.latency_window.record(t, None);
        }
    }

    /// What the exporter reports at `t` (the pod advanced to `t`): P95 over the window, duty
    /// and CPU over the last second. Resets the second's busy time.
    pub fn observe(&mut self, model: &WorkerModel, t: f64) -> PodReading {
        let p95_ms = self.render_window.p95(t, model.window_s);
        let latency_p95_ms = self.latency_window.p95(t, model.window_s);
        let duty = (self.busy * 100.0).min(100.0);
        self.busy = 0.0;
        PodReading {
            p95_ms,
            latency_p95_ms,
            held: self.running.len() + self.queue.len(),
            duty_pct: duty,
            cpu_pct: duty * model.cpu_share,
        }
    }

    /// Frames it renders now.
    #[must_use]
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// When its next frame finishes (as the device is shared now), if it renders any.
    #[must_use]
    pub fn next_finish(&self, model: &WorkerModel) -> Option<f64> {
        let rate = (model.parallelism / self.running.len() as f64).min(1.0);
        let least = self.running.iter().map(|r| r.left).reduce(f64::min)?;
        Some(self.clock + least / rate / 1000.0)
    }

    /// Shared-queue mode: a frame of `work_ms`, enqueued at `arrived`, taken at `t` into a
    /// free slot (the pod is advanced to `t` first).
    pub fn take(
        &mut self,
        model: &WorkerModel,
        t: f64,
        arrived: f64,
        work_ms: f64,
        felt: &mut Felt,
    ) {
        self.advance(model, t, felt);
        self.running.push(Running {
            work: work_ms,
            left: work_ms,
            arrived,
            started: t,
        });
    }

    /// Shared-queue mode: the frames it renders, `(enqueued, work)`, handed back to the queue
    /// when it is removed (rendered again from the start by another pod).
    #[must_use]
    pub fn release(&self) -> Vec<(f64, f64)> {
        self.running.iter().map(|r| (r.arrived, r.work)).collect()
    }

    /// Frames held (running and queued): lost when the pod is removed.
    #[must_use]
    pub fn held(&self) -> Vec<f64> {
        self.running
            .iter()
            .map(|r| r.arrived)
            .chain(self.queue.iter().map(|q| q.0))
            .collect()
    }
}

/// A frame's work, ms: log-normal around `render_ms`.
pub fn work(model: &WorkerModel, rng: &mut Rng) -> f64 {
    model.render_ms * (model.render_sigma * rng.normal()).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> WorkerModel {
        WorkerModel {
            render_sigma: 0.0,
            window_s: 20.0,
            ..WorkerModel::default()
        }
    }

    #[test]
    fn a_lone_frame_takes_its_render_time() {
        let (model, mut felt) = (model(), Felt::logging());
        let mut pod = Pod::new("p".into(), 0.0);
        pod.arrive(&model, 1.0, 20.0, &mut felt);
        pod.advance(&model, 2.0, &mut felt);
        let log = felt.log.unwrap();
        assert_eq!(log.len(), 1);
        assert!((log[0].1 - 20.0).abs() < 1e-6);
        let reading = pod.observe(&model, 2.0);
        assert!((reading.duty_pct - 2.0).abs() < 1e-6, "{reading:?}");
        assert!((reading.p95_ms.unwrap() - 20.0).abs() < 20.0 * 0.05);
    }

    #[test]
    fn a_full_pod_queues_then_rejects() {
        let (model, mut felt) = (model(), Felt::logging());
        let mut pod = Pod::new("p".into(), 0.0);
        for _ in 0..7 {
            pod.arrive(&model, 1.0, 20.0, &mut felt);
        }
        assert_eq!(felt.rejected, 2, "1 slot + 4 queued");
        assert_eq!(pod.observe(&model, 1.0).held, 5);
        pod.advance(&model, 2.0, &mut felt);
        let latencies: Vec<f64> = felt
            .clone()
            .log
            .unwrap()
            .iter()
            .map(|l| l.1.round())
            .collect();
        assert_eq!(latencies, [20.0, 40.0, 60.0, 80.0, 100.0]);
        // The exporter's view: render time 20 ms; latency up to 100 ms, and 2 refusals of 7
        // frames put the P95 at the refusals' hour.
        let reading = pod.observe(&model, 2.0);
        assert!((reading.p95_ms.unwrap() - 20.0).abs() < 1.0, "{reading:?}");
        assert!((reading.latency_p95_ms.unwrap() - REFUSED_MS).abs() < 1e-9);
        assert_eq!(reading.held, 0);
    }

    #[test]
    fn frames_beyond_the_device_share_it() {
        let model = WorkerModel {
            slots: 2,
            ..model()
        };
        let mut felt = Felt::logging();
        let mut pod = Pod::new("p".into(), 0.0);
        pod.arrive(&model, 1.0, 20.0, &mut felt);
        pod.arrive(&model, 1.0, 20.0, &mut felt);
        pod.advance(&model, 2.0, &mut felt);
        // Two frames on a device that runs one at full speed: both take 40 ms.
        for (_, latency) in felt.log.as_ref().unwrap() {
            assert!((latency - 40.0).abs() < 1e-6, "{felt:?}");
        }
        let reading = pod.observe(&model, 2.0);
        assert!((reading.duty_pct - 4.0).abs() < 1e-6, "{reading:?}");
    }

    #[test]
    fn minutes_over_the_slo_count_rejections_as_too_slow() {
        let mut felt = Felt::default();
        for i in 0..100 {
            felt.done(f64::from(i) * 0.5, 10.0);
        }
        for _ in 0..10 {
            felt.reject(70.0);
        }
        // Minute 0: 100 fast frames; minute 1: 10 rejected only.
        assert_eq!(felt.minutes_over(32.0), 1);
        for _ in 0..6 {
            felt.done(1.0, 50.0);
        }
        // Minute 0 now has 6 of 106 frames at 50 ms: its P95 is one of them.
        assert_eq!(felt.minutes_over(32.0), 2);
        assert_eq!(felt.rejected, 10);
    }

    #[test]
    fn recovery_is_the_time_until_a_minute_within_the_slo() {
        let mut felt = Felt::watching(50.0);
        felt.reject(0.5);
        for second in 0..200 {
            let latency = if (10..40).contains(&second) {
                500.0
            } else {
                20.0
            };
            for _ in 0..20 {
                felt.done(f64::from(second) + 0.5, latency);
            }
        }
        assert_eq!(felt.recovery(10.0), Some(30.0));
        assert_eq!(felt.late, 30 * 20, "frames later than the SLO");
        assert_eq!(felt.bad(), 30 * 20 + 1, "late, or rejected");
        assert_eq!(felt.recovery(150.0), None, "not a minute left to judge");
        assert_eq!(Felt::default().recovery(10.0), None);
    }

    #[test]
    fn the_window_forgets() {
        let (model, mut felt) = (model(), Felt::default());
        let mut pod = Pod::new("p".into(), 0.0);
        pod.arrive(&model, 1.0, 20.0, &mut felt);
        pod.advance(&model, 2.0, &mut felt);
        let reading = pod.observe(&model, 2.0);
        assert!(reading.p95_ms.is_some() && reading.latency_p95_ms.is_some());
        let reading = pod.observe(&model, 30.0);
        assert!(reading.p95_ms.is_none(), "absent, not 0");
        assert!(reading.latency_p95_ms.is_none(), "absent, not 0");
    }

    #[test]
    fn the_generator_is_deterministic_and_spread() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let xs: Vec<f64> = (0..1000).map(|_| a.exponential(2.0)).collect();
        let ys: Vec<f64> = (0..1000).map(|_| b.exponential(2.0)).collect();
        assert_eq!(xs, ys);
        let mean = xs.iter().sum::<f64>() / 1000.0;
        assert!((mean - 2.0).abs() < 0.2, "{mean}");
        assert!((0..1000).all(|_| a.below(3) < 3));
    }
}
