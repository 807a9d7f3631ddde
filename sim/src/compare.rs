//! Scaling policies side by side on the same load, through the per-frame worker model
//! ([`crate::frames`]) and the HPA model: what each costs (replica-hours) and what users feel
//! (bad frames: later than the SLO or rejected; minutes with the P95 of their frames' latency
//! above the SLO), with the same HPA behavior, replica bounds and sync period for all.
//!
//! A policy is what the HPA is given to scale on:
//!
//! - **fused**: framescale's score (`render_scaling_score`, target 1), with its holds and boost;
//! - **latency only**: one Pods metric, the P95 frame latency (queue + render) against its target;
//! - **render time only**: one Pods metric, the P95 render time (what the exporter served before
//!   latency; it does not grow with the queue);
//! - **duty only**: one Pods metric, the device duty against its target;
//! - **two metrics**: latency and duty as two Pods metrics (the HPA takes the larger proposal);
//! - **CPU**: CPU utilization against `averageUtilization` (a Resource metric; with equal
//!   requests per pod its ratio is the pods' mean utilization over the target, computed here as
//!   a Pods average);
//! - **queue depth**: the frames each pod holds (running and queued) against a target per pod,
//!   as KEDA scales a render queue on its length.
//!
//! With a shared queue ([`WorkerModel::shared_queue`]: the worker's queue mode, frames waiting
//! in one durable queue that pods pull from), two more, which can wake a Deployment scaled to
//! zero (`minReplicas: 0`):
//!
//! - **backlog only**: the frames waiting plus in flight, an Object metric on the Deployment
//!   with an `AverageValue` target per replica — how KEDA's Redis-streams scaler scales;
//! - **fused + backlog**: the fused score (Pods) and the backlog (Object) as two metrics; the
//!   HPA takes the larger proposal.

use std::collections::{BTreeMap, VecDeque};

use crate::frames::{Felt, Pod, PodReading, REFUSED_MS, Rng, WorkerModel, work};
use crate::hpa::controller::{Controller, MetricSource, Observation, Scale};
use crate::hpa::replicas::{Phase, PodState};
use crate::report::Row;
use crate::simulation::{SimulationConfig, mean};
use framescale_core::metrics::custom;
use framescale_core::quantity;
use framescale_core::score::{HoldTracker, ScoreConfig, Signals, score};

/// The experimental predictive term: Holt's linear trend of the workload's frame throughput
/// (what the exporters' frame counters give), and the score raised by the growth it forecasts
/// one start-up time plus one sync period ahead — never lowered, at most by `bound`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forecast {
    /// Smoothing of the level (0..1).
    pub alpha: f64,
    /// Smoothing of the trend (0..1).
    pub beta: f64,
    /// The largest factor on the score is `1 + bound`.
    pub bound: f64,
    /// Forecast growth below this is noise: the factor stays 1 (the HPA's tolerance is 0.1).
    pub deadband: f64,
}

impl Default for Forecast {
    fn default() -> Self {
        Forecast {
            alpha: 0.1,
            beta: 0.05,
            bound: 0.5,
            deadband: 0.0,
        }
    }
}

/// Holt's linear trend, one observation a second.
#[derive(Debug, Clone, Copy, Default)]
struct Holt {
    level: f64,
    trend: f64,
    seen: u32,
}

impl Holt {
    fn observe(&mut self, forecast: &Forecast, value: f64) {
        if self.seen == 0 {
            self.level = value;
        } else {
            let previous = self.level;
            self.level =
                forecast.alpha * value + (1.0 - forecast.alpha) * (self.level + self.trend);
            self.trend =
                forecast.beta * (self.level - previous) + (1.0 - forecast.beta) * self.trend;
        }
        self.seen += 1;
    }

    /// The factor on the score: forecast `horizon_s` ahead over the level, in `[1, 1 + bound]`.
    fn factor(&self, forecast: &Forecast, horizon_s: f64) -> f64 {
        if self.seen < 30 || self.level < 1.0 {
            return 1.0;
        }
        let growth = (self.level + horizon_s * self.trend) / self.level;
        if growth < 1.0 + forecast.deadband {
            return 1.0;
        }
        growth.min(1.0 + forecast.bound)
    }
}

/// What the HPA scales on.
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    /// framescale's fused score with these settings.
    Fused(ScoreConfig),
    /// The fused score raised by a forecast of the load (experimental).
    Predictive(ScoreConfig, Forecast),
    /// The P95 render time, target in ms.
    FrameOnly(f64),
    /// The P95 latency, target in ms.
    LatencyOnly(f64),
    /// The device duty, target in percent.
    GpuOnly(f64),
    /// Latency and duty as two metrics: (latency target ms, duty target percent).
    TwoMetrics(f64, f64),
    /// CPU utilization, target in percent.
    Cpu(f64),
    /// Frames held per pod (running and queued), target in frames.
    QueueDepth(f64),
    /// The shared queue's backlog (waiting + in flight) per replica, target in frames.
    Backlog(f64),
    /// The fused score and the shared queue's backlog per replica (frames) as two metrics.
    FusedAndBacklog(ScoreConfig, f64),
    /// The shared queue's backlog per replica (frames) and how long its oldest waiting frame has
    /// waited (an Object metric with a `Value` target, ms), as two metrics.
    BacklogAndWait(f64, f64),
}

impl Policy {
    /// The six policies with the targets of contract 3, CPU at 70 % and 2 frames per pod.
    #[must_use]
    pub fn standard(score: &ScoreConfig) -> Vec<Policy> {
        vec![
            Policy::Fused(score.clone()),
            Policy::LatencyOnly(score.frame_target_ms),
            Policy::GpuOnly(score.gpu_target_pct),
            Policy::TwoMetrics(score.frame_target_ms, score.gpu_target_pct),
            Policy::Cpu(70.0),
            Policy::QueueDepth(2.0),
        ]
    }

    /// The family's name, without its settings (fronts are drawn per family).
    #[must_use]
    pub fn family(&self) -> &'static str {
        match self {
            Policy::Fused(_) => "fused score",
            Policy::Predictive(..) => "fused + forecast",
            Policy::FrameOnly(_) => "render time only",
            Policy::LatencyOnly(_) => "latency only",
            Policy::GpuOnly(_) => "duty only",
            Policy::TwoMetrics(..) => "latency and duty",
            Policy::Cpu(_) => "CPU utilization",
            Policy::QueueDepth(_) => "queue depth",
            Policy::Backlog(_) => "backlog only",
            Policy::FusedAndBacklog(..) => "fused + backlog",
            Policy::BacklogAndWait(..) => "backlog + oldest wait",
        }
    }

    /// A short name for tables.
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            Policy::Fused(_) => "fused score".into(),
            Policy::Predictive(..) => "fused + forecast".into(),
            Policy::FrameOnly(t) => format!("render time only ({t} ms)"),
            Policy::LatencyOnly(t) => format!("latency only ({t} ms)"),
            Policy::GpuOnly(t) => format!("duty only ({t} %)"),
            Policy::TwoMetrics(f, g) => format!("latency and duty ({f} ms, {g} %)"),
            Policy::Cpu(t) => format!("CPU utilization ({t} %)"),
            Policy::QueueDepth(t) => format!("queue depth ({t} frames/pod)"),
            Policy::Backlog(t) => format!("backlog only ({t} frames/replica)"),
            Policy::FusedAndBacklog(_, t) => format!("fused + backlog ({t} frames/replica)"),
            Policy::BacklogAndWait(t, w) => {
                format!("backlog ({t} frames/replica) + oldest wait ({w} ms)")
            }
        }
    }

    /// The fused score's settings, for the policies that scale on it.
    fn score(&self) -> Option<&ScoreConfig> {
        match self {
            Policy::Fused(config)
            | Policy::Predictive(config, _)
            | Policy::FusedAndBacklog(config, _) => Some(config),
            _ => None,
        }
    }
}

/// What arrives: frames per second at `t`, and what each frame arriving at `t` costs to render
/// (a multiple of the model's render time; 1 unless the load says otherwise — a render farm's
/// final frames cost many times its previews'). A closure of `t` is a load of that rate.
pub trait Load {
    /// Frames per second at `t`.
    fn rate(&self, t: f64) -> f64;

    /// The render time of a frame arriving at `t`, in multiples of the model's.
    fn cost(&self, _t: f64) -> f64 {
        1.0
    }
}

impl<F: Fn(f64) -> f64> Load for F {
    fn rate(&self, t: f64) -> f64 {
        self(t)
    }
}

/// How a run went.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The policy's name.
    pub policy: String,
    /// Minutes in which the P95 of the frames' latency (queue + render; a rejected frame counts
    /// as too slow) was above the SLO.
    pub slo_minutes: u32,
    /// Frames that arrived.
    pub frames: u64,
    /// Frames rejected (a full pod, no Ready pod, or lost with a removed pod).
    pub rejected: u64,
    /// Frames done later than the SLO.
    pub late: u64,
    /// Replica-hours, Pending pods included.
    pub replica_hours: f64,
    /// Rescales.
    pub scale_events: u32,
    /// Rescales whose direction differs from the one before, per 10 minutes.
    pub flaps_per_10_min: f64,
    /// Seconds from the load's largest rise (at least doubling from one second to the next)
    /// until the frames are back within the SLO for a minute; `None` without such a rise, or
    /// when they never are.
    pub recovery_s: Option<f64>,
    /// One row per second, for the report.
    pub rows: Vec<Row>,
}

impl Outcome {
    /// Frames users got late or never, percent of the frames that arrived.
    #[must_use]
    pub fn bad_frames_pct(&self) -> f64 {
        bad_pct(self.late, self.rejected, self.frames)
    }
}

/// `late + rejected` as a percent of `frames` (0 of none).
#[must_use]
pub fn bad_pct(late: u64, rejected: u64, frames: u64) -> f64 {
    if frames == 0 {
        return 0.0;
    }
    100.0 * (late + rejected) as f64 / frames as f64
}

/// How a run settled over its second half (a constant load, after the first scale-ups).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settled {
    /// Mean device duty of the pods, percent.
    pub duty_pct: f64,
    /// Mean replicas.
    pub replicas: f64,
    /// Changes of direction of the replica count, per 10 minutes.
    pub flaps_per_10_min: f64,
}

impl Outcome {
    /// How the run settled over its second half; `None` for a run of no rows.
    #[must_use]
    pub fn settled(&self) -> Option<Settled> {
        let half = &self.rows[self.rows.len() / 2..];
        let (first, last) = (half.first()?, half.last()?);
        let duties: Vec<f64> = half.iter().filter_map(|r| r.duty_pct).collect();
        let replicas: Vec<f64> = half.iter().map(|r| f64::from(r.replicas)).collect();
        let (mut flaps, mut direction) = (0_u32, 0_i64);
        for pair in half.windows(2) {
            let change = (i64::from(pair[1].replicas) - i64::from(pair[0].replicas)).signum();
            if change != 0 {
                if direction != 0 && change != direction {
                    flaps += 1;
                }
                direction = change;
            }
        }
        let minutes = (last.t - first.t).max(1.0) / 60.0;
        Some(Settled {
            duty_pct: mean(&duties)?,
            replicas: mean(&replicas)?,
            flaps_per_10_min: f64::from(flaps) * 10.0 / minutes,
        })
    }
}

/// The per-pod state a policy keeps between seconds.
struct Scaled {
    pod: Pod,
    tracker: HoldTracker,
    reading: Option<PodReading>,
}

/// Runs `policy` over `rate(t)` frames per second for `config.duration_s`; `slo_ms` is the
/// latency users accept. Deterministic for `seed`.
pub fn run(
    policy: &Policy,
    model: &WorkerModel,
    config: &SimulationConfig,
    load: &dyn Load,
    slo_ms: f64,
    seed: u64,
) -> Outcome {
    let mut rng = Rng::new(seed);
    let mut controller = Controller::new(config.controller);
    let mut pods: Vec<Scaled> = Vec::new();
    let mut started = 0_u32;
    let mut add = |pods: &mut Vec<Scaled>, ready_at: f64| {
        pods.push(Scaled {
            pod: Pod::new(format!("pod-{started}"), ready_at),
            tracker: HoldTracker::default(),
            reading: None,
        });
        started += 1;
    };
    for _ in 0..config.spec.min_replicas {
        add(&mut pods, 0.0);
    }
    let mut felt = Felt::watching(slo_ms);
    let mut step = StepWatch::default();
    let (mut frames, mut replica_seconds) = (0_u64, 0.0);
    let mut rescales = Rescales::default();
    let mut rows = Vec::new();
    let mut next_arrival = 0.0;
    let mut next_sync = config.sync_period_s;
    let (mut holt, mut finished) = (Holt::default(), 0);
    let horizon_s = model.startup_s + config.sync_period_s;
    let mut waiting: VecDeque<(f64, f64)> = VecDeque::new();
    let mut t = 0.0;
    while t < config.duration_s {
        let offered = load.rate(t);
        step.see(t, offered);
        let arrivals = Arrivals {
            t,
            offered,
            cost: load.cost(t),
            next: &mut next_arrival,
        };
        frames += offer(
            &mut pods,
            model,
            &mut rng,
            &mut felt,
            arrivals,
            &mut waiting,
        );
        let now = t + 1.0;
        let mut observed = observe(&mut pods, model, policy, now, &mut felt);
        let factor = match policy {
            Policy::Predictive(_, forecast) => {
                holt.observe(forecast, (felt.finished - finished) as f64);
                holt.factor(forecast, horizon_s)
            }
            _ => 1.0,
        };
        finished = felt.finished;
        for value in &mut observed.values {
            *value *= factor;
        }
        replica_seconds += pods.len() as f64;
        let mut row = observed.row(now, offered, pods.len());
        if now >= next_sync {
            next_sync += config.sync_period_s;
            let replicas = i32::try_from(pods.len()).unwrap_or(i32::MAX);
            let decision = controller.sync(
                now,
                &config.spec,
                Scale {
                    spec_replicas: replicas,
                    status_replicas: replicas,
                },
                &observations(policy, &pods, factor, queue_reading(&pods, &waiting, now)),
            );
            row.desired = Some(decision.desired as u32);
            row.decision = Some(rescales.count(&decision, replicas));
            while pods.len() < decision.desired as usize {
                add(&mut pods, now + model.startup_s);
            }
            let keep = (decision.desired as usize).min(pods.len());
            remove(pods.drain(keep..), model, &mut felt, &mut waiting);
        }
        rows.push(row);
        t = now;
    }
    if model.shared_queue {
        count_unfinished(&pods, waiting, &mut felt, t);
    }
    for row in &mut rows {
        row.bad_pct = felt.bad_pct_at(row.t - 1.0);
    }
    Outcome {
        policy: policy.name(),
        slo_minutes: felt.minutes_over(slo_ms),
        frames,
        rejected: felt.rejected,
        late: felt.late,
        replica_hours: replica_seconds / 3600.0,
        recovery_s: step.at.and_then(|(at, _)| felt.recovery(at)),
        scale_events: rescales.events,
        flaps_per_10_min: f64::from(rescales.flaps) / (config.duration_s / 600.0),
        rows,
    }
}

/// Shared queue: frames still waiting or rendering at `end` count with what they waited so far
/// (a lower bound), so a policy that leaves a backlog is not spared it.
fn count_unfinished(pods: &[Scaled], waiting: VecDeque<(f64, f64)>, felt: &mut Felt, end: f64) {
    let unfinished = pods.iter().flat_map(|p| p.pod.release()).chain(waiting);
    for (arrived, _) in unfinished {
        felt.done(arrived, (end - arrived) * 1000.0);
    }
}

/// Pods scaled away: their frames are lost (rejected), or, with a shared queue, handed back to
/// it and rendered again from the start by another pod.
fn remove(
    removed: impl Iterator<Item = Scaled>,
    model: &WorkerModel,
    felt: &mut Felt,
    waiting: &mut VecDeque<(f64, f64)>,
) {
    for scaled in removed {
        if model.shared_queue {
            for frame in scaled.pod.release().into_iter().rev() {
                waiting.push_front(frame);
            }
        } else {
            for arrived in scaled.pod.held() {
                felt.reject(arrived);
            }
        }
    }
}

/// The load's largest rise that at least doubles it from one second to the next.
#[derive(Default)]
struct StepWatch {
    /// (time, rise) of the largest.
    at: Option<(f64, f64)>,
    last: Option<f64>,
}

impl StepWatch {
    fn see(&mut self, t: f64, rate: f64) {
        if let Some(last) = self.last {
            let rise = rate - last;
            if rate >= 2.0 * last && rise > 0.0 && self.at.is_none_or(|(_, r)| rise > r) {
                self.at = Some((t, rise));
            }
        }
        self.last = Some(rate);
    }
}

/// Rescales so far, and changes of their direction.
#[derive(Default)]
struct Rescales {
    events: u32,
    flaps: u32,
    last_direction: i32,
}

impl Rescales {
    /// Counts `decision` (taken at `replicas`); returns it in words for the report.
    fn count(&mut self, decision: &crate::hpa::controller::Decision, replicas: i32) -> String {
        if !decision.rescale {
            return format!("keep {replicas}: {}", decision.message);
        }
        self.events += 1;
        let direction = (decision.desired - replicas).signum();
        if self.last_direction != 0 && direction != self.last_direction {
            self.flaps += 1;
        }
        self.last_direction = direction;
        format!("{replicas} → {}: {}", decision.desired, decision.message)
    }
}

/// The second `[t, t + 1)` of arrivals, Poisson at `offered` per second; `next` is when the
/// next frame arrives.
struct Arrivals<'a> {
    t: f64,
    offered: f64,
    /// What each frame costs, in multiples of the model's render time.
    cost: f64,
    next: &'a mut f64,
}

impl Arrivals<'_> {
    /// Whether any frame arrives this second (the next arrival set up if so).
    fn start(&mut self, rng: &mut Rng) -> bool {
        if self.offered <= 0.0 {
            *self.next = self.t + 1.0;
            return false;
        }
        if *self.next < self.t {
            *self.next = self.t + rng.exponential(1.0 / self.offered);
        }
        true
    }
}

/// What the shared queue shows: its backlog and how long its oldest waiting frame has waited.
#[derive(Debug, Clone, Copy)]
struct QueueReading {
    /// Frames waiting plus those the pods render.
    frames: u64,
    /// How long the oldest frame not yet taken has waited, ms (0 when none waits).
    oldest_wait_ms: f64,
}

fn queue_reading(pods: &[Scaled], waiting: &VecDeque<(f64, f64)>, now: f64) -> QueueReading {
    let oldest = waiting
        .iter()
        .map(|&(arrived, _)| arrived)
        .fold(now, f64::min);
    QueueReading {
        frames: (waiting.len() + pods.iter().map(|p| p.pod.running()).sum::<usize>()) as u64,
        oldest_wait_ms: (now - oldest) * 1000.0,
    }
}

/// Shared-queue mode: the frames arriving in `[t, t + 1)` join the queue, and the Ready pods
/// take the oldest as their slots free, event by event; returns how many arrived.
fn offer_shared(
    pods: &mut [Scaled],
    model: &WorkerModel,
    rng: &mut Rng,
    felt: &mut Felt,
    mut arrivals: Arrivals,
    waiting: &mut VecDeque<(f64, f64)>,
) -> u64 {
    let t = arrivals.t;
    let arriving = arrivals.start(rng);
    let ready: Vec<usize> = (0..pods.len())
        .filter(|&i| pods[i].pod.ready_at <= t)
        .collect();
    let mut frames = 0;
    let mut now = t;
    loop {
        // Free slots take the oldest frames, from a pod chosen at random first (as consumers
        // race for entries).
        if !ready.is_empty() {
            let first = rng.below(ready.len());
            for k in 0..ready.len() {
                let pod = &mut pods[ready[(first + k) % ready.len()]].pod;
                pod.advance(model, now, felt);
                while pod.running() < model.slots {
                    let Some((arrived, work_ms)) = waiting.pop_front() else {
                        break;
                    };
                    pod.take(model, now, arrived, work_ms, felt);
                }
            }
        }
        let arrival = if arriving {
            *arrivals.next
        } else {
            f64::INFINITY
        };
        let finish = ready
            .iter()
            .filter_map(|&i| pods[i].pod.next_finish(model))
            .fold(f64::INFINITY, f64::min);
        now = arrival.min(finish);
        if now >= t + 1.0 {
            return frames;
        }
        if arrival <= finish {
            waiting.push_back((arrival, work(model, rng) * arrivals.cost));
            frames += 1;
            *arrivals.next += rng.exponential(1.0 / arrivals.offered);
        }
    }
}

/// The frames arriving in `[t, t + 1)`: into the shared queue, or each to a pod; returns how
/// many arrived.
fn offer(
    pods: &mut [Scaled],
    model: &WorkerModel,
    rng: &mut Rng,
    felt: &mut Felt,
    arrivals: Arrivals,
    waiting: &mut VecDeque<(f64, f64)>,
) -> u64 {
    if model.shared_queue {
        offer_shared(pods, model, rng, felt, arrivals, waiting)
    } else {
        offer_per_pod(pods, model, rng, felt, arrivals)
    }
}

/// The frames arriving in `[t, t + 1)`, each sent to a Ready pod at random (or rejected when
/// none is); returns how many arrived.
fn offer_per_pod(
    pods: &mut [Scaled],
    model: &WorkerModel,
    rng: &mut Rng,
    felt: &mut Felt,
    mut arrivals: Arrivals,
) -> u64 {
    if !arrivals.start(rng) {
        return 0;
    }
    let (t, offered, cost, next_arrival) =
        (arrivals.t, arrivals.offered, arrivals.cost, arrivals.next);
    // The pods Ready during this second (a pod Ready mid-second takes frames from the next
    // one), listed once: the Service's endpoints.
    let ready: Vec<usize> = (0..pods.len())
        .filter(|&i| pods[i].pod.ready_at <= t)
        .collect();
    let mut frames = 0;
    while *next_arrival < t + 1.0 {
        frames += 1;
        if ready.is_empty() {
            felt.reject(*next_arrival);
        } else {
            let i = ready[rng.below(ready.len())];
            let w = work(model, rng) * cost;
            pods[i].pod.arrive(model, *next_arrival, w, felt);
        }
        *next_arrival += rng.exponential(1.0 / offered);
    }
    frames
}

/// What the Ready pods' exporters served at one second.
#[derive(Default)]
struct Observed {
    /// P95 render times.
    p95s: Vec<f64>,
    /// P95 latencies, pods refusing frames (an hour) left out.
    latencies: Vec<f64>,
    duties: Vec<f64>,
    /// The fused scores.
    values: Vec<f64>,
}

impl Observed {
    /// The report's row at `t`: the means over the pods.
    fn row(&self, t: f64, offered: f64, replicas: usize) -> Row {
        Row {
            t,
            offered_rate: Some(offered),
            replicas: replicas as u32,
            p95_ms: mean(&self.p95s),
            latency_ms: mean(&self.latencies),
            duty_pct: mean(&self.duties),
            score: mean(&self.values),
            ..Row::default()
        }
    }
}

/// Advances every pod to `now` and reads it as the exporter would; the fused policy's hold
/// trackers observe the readings.
fn observe(
    pods: &mut [Scaled],
    model: &WorkerModel,
    policy: &Policy,
    now: f64,
    felt: &mut Felt,
) -> Observed {
    let mut observed = Observed::default();
    for scaled in pods {
        scaled.pod.advance(model, now, felt);
        scaled.reading = (scaled.pod.ready_at <= now).then(|| scaled.pod.observe(model, now));
        let Some(reading) = scaled.reading else {
            continue;
        };
        observed.p95s.extend(reading.p95_ms);
        // A refusing pod's P95 is an hour: left out of the chart's mean (bad frames show it).
        observed
            .latencies
            .extend(reading.latency_p95_ms.filter(|&ms| ms < REFUSED_MS));
        observed.duties.push(reading.duty_pct);
        if let Some(config) = policy.score() {
            let signals = fused_signals(&reading);
            scaled
                .tracker
                .observe(config, signals, (now * 1000.0) as u64);
            if let Some(s) = score(config, signals, scaled.tracker.holds(config)) {
                observed.values.push(s.value);
            }
        }
    }
    observed
}

/// The fused score's inputs: the latency P95 and the duty.
fn fused_signals(reading: &PodReading) -> Signals {
    Signals {
        p95_ms: reading.latency_p95_ms,
        duty_pct: Some(reading.duty_pct),
    }
}

/// What the HPA observes this sync, for `policy` (`queue`: what the shared queue shows).
fn observations(
    policy: &Policy,
    pods: &[Scaled],
    factor: f64,
    queue: QueueReading,
) -> Vec<Observation> {
    let states: Vec<PodState> = pods
        .iter()
        .map(|p| {
            let ready = p.reading.is_some();
            PodState {
                name: p.pod.name.clone(),
                phase: if ready {
                    Phase::Running
                } else {
                    Phase::Pending
                },
                ready,
                deleted: false,
            }
        })
        .collect();
    let pods_metric = |name: &str, target: f64, value: &dyn Fn(&Scaled) -> Option<f64>| {
        let values_milli: BTreeMap<String, i64> = pods
            .iter()
            .filter_map(|p| Some((p.pod.name.clone(), quantity::to_milli(value(p)?).ok()?)))
            .collect();
        Observation::PodsAverageValue {
            name: name.to_owned(),
            target_milli: (target * 1000.0).round() as i64,
            pods: states.clone(),
            values_milli,
        }
    };
    let frame = |target| pods_metric(custom::FRAME_DURATION_MS, target, &|p| p.reading?.p95_ms);
    let latency = |target| {
        pods_metric(custom::FRAME_LATENCY_MS, target, &|p| {
            p.reading?.latency_p95_ms
        })
    };
    let duty = |target| {
        pods_metric(custom::GPU_DUTY_CYCLE, target, &|p| {
            Some(p.reading?.duty_pct)
        })
    };
    let fused = |config: &ScoreConfig| {
        pods_metric(custom::SCALING_SCORE, 1.0, &|p| {
            let signals = fused_signals(&p.reading?);
            score(config, signals, p.tracker.holds(config)).map(|s| s.value * factor)
        })
    };
    let backlog = |per_replica: f64| Observation::AverageValue {
        source: MetricSource::Object,
        description: "Deployment metric render_backlog_frames".into(),
        usage_milli: i64::try_from(queue.frames.saturating_mul(1000)).unwrap_or(i64::MAX),
        target_average_milli: (per_replica * 1000.0).round() as i64,
    };
    let oldest_wait = |target_ms: f64| Observation::Value {
        source: MetricSource::Object,
        description: "Deployment metric render_queue_oldest_wait_ms".into(),
        usage_milli: (queue.oldest_wait_ms * 1000.0).round() as i64,
        target_milli: (target_ms * 1000.0).round() as i64,
        pods: states.clone(),
    };
    match policy {
        Policy::Fused(config) | Policy::Predictive(config, _) => vec![fused(config)],
        Policy::Backlog(per_replica) => vec![backlog(*per_replica)],
        Policy::FusedAndBacklog(config, per_replica) => {
            vec![fused(config), backlog(*per_replica)]
        }
        Policy::BacklogAndWait(per_replica, target_ms) => {
            vec![backlog(*per_replica), oldest_wait(*target_ms)]
        }
        Policy::FrameOnly(target) => vec![frame(*target)],
        Policy::LatencyOnly(target) => vec![latency(*target)],
        Policy::GpuOnly(target) => vec![duty(*target)],
        Policy::TwoMetrics(f, g) => vec![latency(*f), duty(*g)],
        Policy::Cpu(target) => vec![pods_metric("cpu", *target, &|p| Some(p.reading?.cpu_pct))],
        Policy::QueueDepth(target) => vec![pods_metric("queue_depth", *target, &|p| {
            Some(p.reading?.held as f64)
        })],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hpa::behavior::Behavior;
    use crate::hpa::controller::{ControllerConfig, HpaSpec};

    fn config(duration_s: f64) -> SimulationConfig {
        let behavior: Behavior = serde_json::from_value(serde_json::json!({
            "scaleDown": {"stabilizationWindowSeconds": 60}
        }))
        .unwrap();
        SimulationConfig {
            duration_s,
            sync_period_s: 15.0,
            spec: HpaSpec {
                min_replicas: 1,
                max_replicas: 10,
                behavior: Some(behavior),
            },
            controller: ControllerConfig::default(),
            score: ScoreConfig::default(),
        }
    }

    fn step(t: f64) -> f64 {
        if (120.0..600.0).contains(&t) {
            150.0
        } else {
            10.0
        }
    }

    #[test]
    fn the_forecast_raises_on_a_trend_only_and_within_its_bound() {
        let forecast = Forecast::default();
        let mut flat = Holt::default();
        for _ in 0..120 {
            flat.observe(&forecast, 100.0);
        }
        assert!((flat.factor(&forecast, 25.0) - 1.0).abs() < 1e-12);
        let mut rising = Holt::default();
        for t in 0..120 {
            rising.observe(&forecast, 100.0 + f64::from(t));
        }
        let factor = rising.factor(&forecast, 25.0);
        assert!(factor > 1.1 && factor < 1.5, "{factor}");
        let mut steep = Holt::default();
        for t in 0..120 {
            steep.observe(&forecast, 100.0 * 1.05_f64.powi(t));
        }
        assert!(
            (steep.factor(&forecast, 25.0) - 1.5).abs() < 1e-12,
            "bounded"
        );
        let mut falling = Holt::default();
        for t in 0..120 {
            falling.observe(&forecast, 500.0 - f64::from(t));
        }
        assert!(
            (falling.factor(&forecast, 25.0) - 1.0).abs() < 1e-12,
            "never below the reactive score"
        );
    }

    #[test]
    fn the_forecast_scales_earlier_on_a_ramp() {
        let model = WorkerModel::default();
        let ramp = |t: f64| 25.0 + 375.0 * t / 1200.0;
        let reactive = run(
            &Policy::Fused(ScoreConfig::default()),
            &model,
            &config(1200.0),
            &ramp,
            100.0,
            1,
        );
        let predictive = run(
            &Policy::Predictive(ScoreConfig::default(), Forecast::default()),
            &model,
            &config(1200.0),
            &ramp,
            100.0,
            1,
        );
        assert!(
            predictive.bad_frames_pct() < reactive.bad_frames_pct(),
            "{} vs {}",
            predictive.bad_frames_pct(),
            reactive.bad_frames_pct()
        );
        assert!(predictive.rejected < reactive.rejected);
        assert!(predictive.slo_minutes <= reactive.slo_minutes);
    }

    #[test]
    fn runs_are_deterministic_for_a_seed() {
        let model = WorkerModel::default();
        let policy = Policy::Fused(ScoreConfig::default());
        let a = run(&policy, &model, &config(300.0), &step, 32.0, 3);
        let b = run(&policy, &model, &config(300.0), &step, 32.0, 3);
        assert_eq!(a, b);
        let c = run(&policy, &model, &config(300.0), &step, 32.0, 4);
        assert_ne!(a.frames, c.frames, "another seed, other arrivals");
    }

    /// Peak replicas during the step, and replicas at the end.
    fn peak_and_end(outcome: &Outcome) -> (u32, u32) {
        let peak = outcome.rows.iter().map(|r| r.replicas).max().unwrap();
        (peak, outcome.rows.last().unwrap().replicas)
    }

    #[test]
    fn every_policy_that_sees_the_load_scales_up_on_the_step_and_back_down() {
        // The CPU renders here (as in the demo), so CPU utilization sees the load too.
        let model = WorkerModel {
            cpu_share: 1.0,
            ..WorkerModel::default()
        };
        for policy in Policy::standard(&ScoreConfig::default()) {
            if matches!(policy, Policy::FrameOnly(_)) {
                continue;
            }
            let outcome = run(&policy, &model, &config(900.0), &step, 64.0, 1);
            let (peak, end) = peak_and_end(&outcome);
            assert_eq!(outcome.rows[100].replicas, 1, "{}", outcome.policy);
            assert!(
                peak >= 3,
                "{}: 150 frames/s of 20 ms frames need 3 pods, got {peak}",
                outcome.policy
            );
            // With one slot the render time's P95 does not fall with the load either: an HPA
            // that takes the larger of two proposals keeps the pods the P95 asked for.
            if !matches!(policy, Policy::TwoMetrics(..)) {
                assert!(end < peak, "{}: down after the step", outcome.policy);
            }
            let arrived = outcome.frames as f64;
            let offered = 10.0 * 420.0 + 150.0 * 480.0;
            assert!((arrived - offered).abs() < offered * 0.05, "{arrived}");
        }
    }

    #[test]
    fn render_time_sees_overload_only_where_frames_share_the_device() {
        // One slot: an overloaded pod queues frames (users wait), but each render takes as
        // long as ever, so a P95 of render time never asks for pods.
        let one_slot = WorkerModel::default();
        let outcome = run(
            &Policy::FrameOnly(32.0),
            &one_slot,
            &config(900.0),
            &step,
            64.0,
            1,
        );
        assert_eq!(peak_and_end(&outcome).0, 1);
        assert!(outcome.rejected > 10_000, "{}", outcome.rejected);
        // Two slots time-sliced on one device: overload stretches every render.
        let shared = WorkerModel {
            slots: 2,
            ..WorkerModel::default()
        };
        let outcome = run(
            &Policy::FrameOnly(45.0),
            &shared,
            &config(900.0),
            &step,
            64.0,
            1,
        );
        assert!(
            peak_and_end(&outcome).0 >= 3,
            "{:?}",
            peak_and_end(&outcome)
        );
    }

    #[test]
    fn a_cpu_policy_blind_to_a_gpu_renders_too_few_pods() {
        // A GPU render that keeps the CPU 20 % busy: CPU utilization never reaches 70 %, the
        // HPA on it never scales, and users feel it.
        let model = WorkerModel {
            cpu_share: 0.2,
            ..WorkerModel::default()
        };
        let fused = run(
            &Policy::Fused(ScoreConfig::default()),
            &model,
            &config(900.0),
            &step,
            64.0,
            1,
        );
        let cpu = run(&Policy::Cpu(70.0), &model, &config(900.0), &step, 64.0, 1);
        assert_eq!(cpu.rows.iter().map(|r| r.replicas).max(), Some(1));
        assert!(
            cpu.slo_minutes >= fused.slo_minutes,
            "cpu {} vs fused {}",
            cpu.slo_minutes,
            fused.slo_minutes
        );
        assert!(
            cpu.rejected > fused.rejected * 5,
            "cpu {} vs fused {}",
            cpu.rejected,
            fused.rejected
        );
    }

    /// A farm: idle, a job of 3,000 frames submitted within 10 s at 200 s, idle again.
    fn job(t: f64) -> f64 {
        if (200.0..210.0).contains(&t) {
            300.0
        } else {
            0.0
        }
    }

    fn farm() -> (WorkerModel, SimulationConfig) {
        let model = WorkerModel {
            shared_queue: true,
            ..WorkerModel::default()
        };
        let mut config = config(900.0);
        config.spec.min_replicas = 0;
        (model, config)
    }

    #[test]
    fn the_backlog_wakes_a_deployment_at_zero_and_lets_it_return_to_zero() {
        let (model, config) = farm();
        for policy in [
            Policy::Backlog(10.0),
            Policy::FusedAndBacklog(ScoreConfig::default(), 10.0),
        ] {
            let outcome = run(&policy, &model, &config, &job, 100.0, 1);
            let replicas: Vec<u32> = outcome.rows.iter().map(|r| r.replicas).collect();
            assert_eq!(replicas[150], 0, "{}: idle at zero", outcome.policy);
            let peak = *replicas.iter().max().unwrap();
            assert!(peak >= 3, "{}: woken, to {peak}", outcome.policy);
            assert_eq!(
                replicas.last(),
                Some(&0),
                "{}: back to zero",
                outcome.policy
            );
            assert_eq!(
                outcome.rejected, 0,
                "{}: a queue rejects nothing",
                outcome.policy
            );
            let finished = outcome.frames;
            assert!((2_700..3_300).contains(&finished), "{finished}");
        }
        // The fused score alone cannot wake it: zero pods have no values.
        let asleep = run(
            &Policy::Fused(ScoreConfig::default()),
            &model,
            &config,
            &job,
            100.0,
            1,
        );
        assert!(asleep.rows.iter().all(|r| r.replicas == 0));
        assert!(
            asleep.bad_frames_pct() > 99.0,
            "{}",
            asleep.bad_frames_pct()
        );
    }

    #[test]
    fn a_shared_queue_loses_nothing_when_pods_are_scaled_away() {
        let model = WorkerModel {
            shared_queue: true,
            ..WorkerModel::default()
        };
        let outcome = run(
            &Policy::FusedAndBacklog(ScoreConfig::default(), 10.0),
            &model,
            &config(900.0),
            &step,
            64.0,
            1,
        );
        let (peak, end) = peak_and_end(&outcome);
        assert!(peak >= 3 && end < peak, "{peak} → {end}");
        assert_eq!(outcome.rejected, 0);
    }

    /// A load of `rate` frames per second, each costing `cost` times the model's render time.
    struct Dear {
        rate: f64,
        cost: f64,
    }

    impl Load for Dear {
        fn rate(&self, _t: f64) -> f64 {
            self.rate
        }

        fn cost(&self, _t: f64) -> f64 {
            self.cost
        }
    }

    #[test]
    fn frames_that_cost_more_take_more_pods() {
        let model = WorkerModel {
            shared_queue: true,
            render_sigma: 0.0,
            ..WorkerModel::default()
        };
        // 20 frames/s of 20 ms: 0.4 of a pod's time; at 10× the cost, 4 pods' worth.
        let mean_replicas = |cost: f64| {
            let outcome = run(
                &Policy::Backlog(20.0),
                &model,
                &config(600.0),
                &Dear { rate: 20.0, cost },
                1_000.0,
                1,
            );
            let tail = &outcome.rows[300..];
            tail.iter().map(|r| f64::from(r.replicas)).sum::<f64>() / tail.len() as f64
        };
        let (cheap, dear) = (mean_replicas(1.0), mean_replicas(10.0));
        assert!(cheap <= 1.5, "{cheap}");
        assert!(dear >= 3.5, "{dear}");
    }
}
