//! Offline runs of the HPA model (`framescale simulate`), one row per second for the report.
//!
//! Two inputs:
//!
//! - **a load profile** through a per-pod load model ([`LoadModel`]): the offered rate is
//!   shared evenly by the Ready pods; a pod with `slots` render slots and a render time of
//!   `render_ms` per frame is busy `ρ = rate_per_pod × render_ms / 1000 / slots` of the time.
//!   Its duty is `min(ρ, 1) × 100 %`; its P95 frame time is `render_ms × max(1, ρ)` — an
//!   overloaded device is time-sliced, so every frame stretches by the overload. A new pod is
//!   Pending, with no load and no metrics, for `startup_s`. The HPA's decisions change the pods.
//! - **a trace** ([`parse_trace`]): recorded per-pod values over time. The pods are those of the
//!   trace; the decisions are computed and reported but do not change the trace.
//!
//! Either way each pod's score comes from [`framescale_core::score`] with its own hold tracker, as the
//! adapter's direct mode computes it, and the controller syncs every sync period.

use std::collections::BTreeMap;

use crate::hpa::controller::{Controller, ControllerConfig, Decision, HpaSpec, Observation, Scale};
use crate::hpa::replicas::{Phase, PodState};
use crate::report::Row;
use framescale_core::quantity;
use framescale_core::score::{HoldTracker, ScoreConfig, Signals, score};

/// How load becomes per-pod signals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadModel {
    /// Render time of one frame on an idle pod, ms.
    pub render_ms: f64,
    /// Frames a pod renders at once.
    pub slots: f64,
    /// Seconds a new pod is Pending before it is Ready.
    pub startup_s: f64,
}

impl LoadModel {
    /// (P95 ms, duty %) of a pod offered `rate_per_pod` frames per second.
    #[must_use]
    pub fn signals(&self, rate_per_pod: f64) -> (f64, f64) {
        let busy = rate_per_pod * self.render_ms / 1000.0 / self.slots;
        (self.render_ms * busy.max(1.0), busy.min(1.0) * 100.0)
    }
}

/// Everything a run needs besides its input.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulationConfig {
    /// Seconds simulated (a trace runs to its end when shorter).
    pub duration_s: f64,
    /// Seconds between syncs.
    pub sync_period_s: f64,
    /// The HPA.
    pub spec: HpaSpec,
    /// The controller's settings.
    pub controller: ControllerConfig,
    /// The score's settings.
    pub score: ScoreConfig,
}

struct SimPod {
    name: String,
    ready_at: f64,
    tracker: HoldTracker,
}

/// Runs a load profile (`rate(t)`, frames per second) through `model` and the HPA.
pub fn run_profile(
    config: &SimulationConfig,
    model: LoadModel,
    rate: &dyn Fn(f64) -> f64,
) -> Vec<Row> {
    let mut controller = Controller::new(config.controller);
    let mut pods: Vec<SimPod> = Vec::new();
    let mut started = 0_u32;
    let mut add = |pods: &mut Vec<SimPod>, t: f64, ready_at: f64| {
        pods.push(SimPod {
            name: format!("pod-{started}"),
            ready_at: t + ready_at,
            tracker: HoldTracker::default(),
        });
        started += 1;
    };
    for _ in 0..config.spec.min_replicas {
        add(&mut pods, -model.startup_s, model.startup_s);
    }
    let mut rows = Vec::new();
    let mut next_sync = config.sync_period_s;
    let mut t = 0.0;
    while t < config.duration_s {
        let offered = rate(t);
        let ready = pods.iter().filter(|p| p.ready_at <= t).count();
        let (p95, duty) = model.signals(if ready == 0 {
            0.0
        } else {
            offered / ready as f64
        });
        let mut scores = BTreeMap::new();
        let mut states = Vec::with_capacity(pods.len());
        for pod in &mut pods {
            let is_ready = pod.ready_at <= t;
            states.push(PodState {
                name: pod.name.clone(),
                phase: if is_ready {
                    Phase::Running
                } else {
                    Phase::Pending
                },
                ready: is_ready,
                deleted: false,
            });
            if is_ready {
                let value = pod_score(&config.score, &mut pod.tracker, p95, duty, t);
                if let Some(milli) = value.and_then(|v| quantity::to_milli(v).ok()) {
                    scores.insert(pod.name.clone(), milli);
                }
            }
        }
        let mut row = Row {
            t,
            offered_rate: Some(offered),
            replicas: pods.len() as u32,
            p95_ms: (ready > 0).then_some(p95),
            duty_pct: (ready > 0).then_some(duty),
            score: mean_milli(&scores),
            ..Row::default()
        };
        if t >= next_sync {
            next_sync += config.sync_period_s;
            let decision = sync(&mut controller, config, t, pods.len(), states, scores);
            record(&mut row, &decision, pods.len());
            while pods.len() < decision.desired as usize {
                add(&mut pods, t, model.startup_s);
            }
            pods.truncate(decision.desired as usize);
        }
        rows.push(row);
        t += 1.0;
    }
    rows
}

/// One recorded value of a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSample {
    /// Seconds since the trace's start.
    pub t: f64,
    /// The pod.
    pub pod: String,
    /// P95 frame time, ms; `None` when missing.
    pub p95_ms: Option<f64>,
    /// Device duty, percent; `None` when missing.
    pub duty_pct: Option<f64>,
}

/// Why a trace cannot be read; each names the line to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TraceError {
    /// The first line is not the header.
    #[error("the first line must be the header t_s,pod,p95_ms,duty_pct")]
    NoHeader,
    /// A line has another number of cells.
    #[error("line {line}: expected 4 cells, got {cells}")]
    Cells {
        /// The line number.
        line: usize,
        /// How many it has.
        cells: usize,
    },
    /// A cell is not a number ≥ 0.
    #[error("line {line}: {column} {text:?} is not a number >= 0")]
    NotANumber {
        /// The line number.
        line: usize,
        /// `t_s`, `p95_ms` or `duty_pct`.
        column: &'static str,
        /// The cell.
        text: String,
    },
    /// A line has no time or no pod.
    #[error("line {line}: {column} is empty")]
    Empty {
        /// The line number.
        line: usize,
        /// `t_s` or `pod`.
        column: &'static str,
    },
    /// A line is earlier than the one before it.
    #[error("line {line}: t_s {t} goes back in time")]
    BackInTime {
        /// The line number.
        line: usize,
        /// Its time.
        t: f64,
    },
    /// Only the header.
    #[error("the trace has no samples")]
    NoSamples,
}

/// Parses a trace CSV: a header `t_s,pod,p95_ms,duty_pct`, then one line per pod and time;
/// an empty cell is a missing value. Lines must be in time order.
pub fn parse_trace(text: &str) -> Result<Vec<TraceSample>, TraceError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        Some((_, header)) if header.trim() == "t_s,pod,p95_ms,duty_pct" => {}
        _ => return Err(TraceError::NoHeader),
    }
    let mut samples: Vec<TraceSample> = Vec::new();
    for (index, line) in lines {
        let line_number = index + 1;
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let [t, pod, p95, duty] = cells.as_slice() else {
            return Err(TraceError::Cells {
                line: line_number,
                cells: cells.len(),
            });
        };
        let number = |cell: &str, column: &'static str| -> Result<Option<f64>, TraceError> {
            if cell.is_empty() {
                return Ok(None);
            }
            match cell.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
                _ => Err(TraceError::NotANumber {
                    line: line_number,
                    column,
                    text: cell.to_owned(),
                }),
            }
        };
        let empty = |column| TraceError::Empty {
            line: line_number,
            column,
        };
        let t = number(t, "t_s")?.ok_or_else(|| empty("t_s"))?;
        if samples.last().is_some_and(|s| s.t > t) {
            return Err(TraceError::BackInTime {
                line: line_number,
                t,
            });
        }
        if pod.is_empty() {
            return Err(empty("pod"));
        }
        samples.push(TraceSample {
            t,
            pod: (*pod).to_owned(),
            p95_ms: number(p95, "p95_ms")?,
            duty_pct: number(duty, "duty_pct")?,
        });
    }
    if samples.is_empty() {
        return Err(TraceError::NoSamples);
    }
    Ok(samples)
}

/// Replays a trace: each second, each pod's latest sample no older than `max_age_s` is its
/// value; the pods with one are the replicas.
#[must_use]
pub fn run_trace(config: &SimulationConfig, trace: &[TraceSample], max_age_s: f64) -> Vec<Row> {
    let mut controller = Controller::new(config.controller);
    let end = trace.last().map_or(0.0, |s| s.t).min(config.duration_s);
    let mut latest: BTreeMap<&str, &TraceSample> = BTreeMap::new();
    let mut trackers: BTreeMap<String, HoldTracker> = BTreeMap::new();
    let (mut next, mut next_sync, mut t) = (0, config.sync_period_s, 0.0);
    let mut rows = Vec::new();
    while t <= end {
        while next < trace.len() && trace[next].t <= t {
            latest.insert(&trace[next].pod, &trace[next]);
            next += 1;
        }
        latest.retain(|_, s| t - s.t <= max_age_s);
        trackers.retain(|pod, _| latest.contains_key(pod.as_str()));
        let (mut scores, mut states) = (BTreeMap::new(), Vec::new());
        let (mut p95s, mut duties) = (Vec::new(), Vec::new());
        for (pod, sample) in &latest {
            states.push(PodState {
                name: (*pod).to_owned(),
                phase: Phase::Running,
                ready: true,
                deleted: false,
            });
            p95s.extend(sample.p95_ms);
            duties.extend(sample.duty_pct);
            let tracker = trackers.entry((*pod).to_owned()).or_default();
            let signals = Signals {
                p95_ms: sample.p95_ms,
                duty_pct: sample.duty_pct,
            };
            // Observed when the sample was taken, not each second it stays the latest: a hold
            // is made of observations only.
            tracker.observe(&config.score, signals, (sample.t.max(0.0) * 1000.0) as u64);
            let holds = tracker.holds(&config.score);
            if let Some(milli) =
                score(&config.score, signals, holds).and_then(|s| quantity::to_milli(s.value).ok())
            {
                scores.insert((*pod).to_owned(), milli);
            }
        }
        let replicas = latest.len();
        let mut row = Row {
            t,
            replicas: replicas as u32,
            p95_ms: mean(&p95s),
            duty_pct: mean(&duties),
            score: mean_milli(&scores),
            ..Row::default()
        };
        if t >= next_sync {
            next_sync += config.sync_period_s;
            let decision = sync(&mut controller, config, t, replicas, states, scores);
            record(&mut row, &decision, replicas);
        }
        rows.push(row);
        t += 1.0;
    }
    rows
}

fn pod_score(
    config: &ScoreConfig,
    tracker: &mut HoldTracker,
    p95_ms: f64,
    duty_pct: f64,
    t: f64,
) -> Option<f64> {
    let signals = Signals {
        p95_ms: Some(p95_ms),
        duty_pct: Some(duty_pct),
    };
    let at = (t.max(0.0) * 1000.0) as u64;
    tracker.observe(config, signals, at);
    score(config, signals, tracker.holds(config)).map(|s| s.value)
}

fn sync(
    controller: &mut Controller,
    config: &SimulationConfig,
    t: f64,
    replicas: usize,
    pods: Vec<PodState>,
    values_milli: BTreeMap<String, i64>,
) -> Decision {
    let observation = Observation::PodsAverageValue {
        name: framescale_core::metrics::custom::SCALING_SCORE.into(),
        target_milli: 1000,
        pods,
        values_milli,
    };
    let replicas = i32::try_from(replicas).unwrap_or(i32::MAX);
    let scale = Scale {
        spec_replicas: replicas,
        status_replicas: replicas,
    };
    controller.sync(t, &config.spec, scale, &[observation])
}

fn record(row: &mut Row, decision: &Decision, replicas: usize) {
    row.desired = Some(decision.desired as u32);
    row.decision = Some(if decision.rescale {
        format!("{replicas} → {}: {}", decision.desired, decision.message)
    } else {
        format!("keep {replicas}: {}", decision.message)
    });
}

/// The mean, `None` of nothing.
pub(crate) fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

fn mean_milli(values: &BTreeMap<String, i64>) -> Option<f64> {
    (!values.is_empty()).then(|| values.values().sum::<i64>() as f64 / 1000.0 / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::hpa::behavior::Behavior;

    fn config() -> SimulationConfig {
        let behavior: Behavior = serde_json::from_value(serde_json::json!({
            "scaleDown": {"stabilizationWindowSeconds": 30}
        }))
        .unwrap();
        SimulationConfig {
            duration_s: 300.0,
            sync_period_s: 15.0,
            spec: HpaSpec {
                min_replicas: 1,
                max_replicas: 10,
                behavior: Some(behavior),
            },
            controller: ControllerConfig::default(),
            score: ScoreConfig {
                gpu_bound_hold: Duration::from_secs(5),
                frame_bound_hold: Duration::from_secs(5),
                both_hold: Duration::from_secs(5),
                ..ScoreConfig::default()
            },
        }
    }

    #[test]
    fn the_load_model_is_duty_until_saturation_then_stretched_frames() {
        let model = LoadModel {
            render_ms: 20.0,
            slots: 1.0,
            startup_s: 5.0,
        };
        assert_eq!(model.signals(25.0), (20.0, 50.0));
        assert_eq!(model.signals(100.0), (40.0, 100.0));
    }

    #[test]
    fn a_step_scales_up_then_down() {
        let model = LoadModel {
            render_ms: 20.0,
            slots: 1.0,
            startup_s: 5.0,
        };
        // 10 frames/s, then 120 from 60 s to 180 s: 2.4 busy pods' worth.
        let rate = |t: f64| {
            if (60.0..180.0).contains(&t) {
                120.0
            } else {
                10.0
            }
        };
        let rows = run_profile(&config(), model, &rate);
        assert_eq!(rows.len(), 300);
        let at = |t: usize| rows[t].replicas;
        assert_eq!(at(59), 1);
        let peak = rows.iter().map(|r| r.replicas).max().unwrap();
        // 2.4 pods of work at 65 % each: the HPA settles at 4 (score just under 1.1).
        assert!((3..=5).contains(&peak), "peak {peak}");
        assert!(at(299) < peak, "down after the step");
        assert!(rows.iter().any(|r| {
            r.decision
                .as_deref()
                .is_some_and(|d| d.contains("above target"))
        }));
        // A new pod is Pending for 5 s: no metrics from it, so the mean score is over Ready pods.
        assert!(rows.iter().all(|r| r.score.is_some()));
    }

    #[test]
    fn traces_are_parsed_and_replayed() {
        let text = "t_s,pod,p95_ms,duty_pct\n0,a,20,90\n0,b,,95\n10,a,20,95\n10,b,30,99\n20,a,20,95\n20,b,30,99\n";
        let trace = parse_trace(text).unwrap();
        assert_eq!(trace[1].p95_ms, None);
        let mut config = config();
        config.sync_period_s = 5.0;
        let rows = run_trace(&config, &trace, 45.0);
        assert_eq!(rows.len(), 21);
        assert!(rows.iter().all(|r| r.replicas == 2));
        let up = rows
            .iter()
            .find(|r| r.desired.is_some_and(|d| d > 2))
            .unwrap();
        assert!(up.t >= 5.0, "after the 5 s hold");
        let header = "t_s,pod,p95_ms,duty_pct\n";
        for (bad, want) in [
            (String::new(), TraceError::NoHeader),
            ("t,pod\n".to_owned(), TraceError::NoHeader),
            (
                format!("{header}1,a,2\n"),
                TraceError::Cells { line: 2, cells: 3 },
            ),
            (
                format!("{header}5,a,1,1\n4,a,1,1\n"),
                TraceError::BackInTime { line: 3, t: 4.0 },
            ),
            (
                format!("{header}1,a,-1,1\n"),
                TraceError::NotANumber {
                    line: 2,
                    column: "p95_ms",
                    text: "-1".into(),
                },
            ),
            (
                format!("{header}1,,1,1\n"),
                TraceError::Empty {
                    line: 2,
                    column: "pod",
                },
            ),
            (header.to_owned(), TraceError::NoSamples),
        ] {
            assert_eq!(parse_trace(&bad), Err(want), "{bad:?}");
        }
    }
}
