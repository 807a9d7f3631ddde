//! The settings search of `framescale tune`: a grid over the fused score's weights, targets,
//! holds and boost and the HPA's scale-down behavior, and each other policy over its target and
//! the same behaviors; each setting run through the per-frame model ([`crate::compare`]) on
//! every load profile, scored on the users' bad frames (late or rejected) and the
//! replica-hours, and the Pareto front of the two. Deterministic: the grid is sampled with a
//! seed, every run is seeded, and the threads only share out the work.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::compare::{self, Load, Policy};
use crate::frames::{Rng, WorkerModel};
use crate::hpa::behavior::{Behavior, Policy as RatePolicy, PolicyKind, Rules};
use crate::simulation::SimulationConfig;
use framescale_core::score::ScoreConfig;

/// The scale-down behaviors every family is tried with: (stabilization window s, % per minute).
const DOWN: [(u32, i32); 4] = [(300, 100), (60, 50), (60, 100), (300, 50)];

/// One point of the search: a policy with its settings, and the HPA's scale-down behavior.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// What the HPA scales on, with its targets (and for the fused score, all its settings).
    pub policy: Policy,
    /// Scale-down stabilization window, seconds.
    pub down_window_s: u32,
    /// Scale-down rate: at most this percent of the replicas per minute.
    pub down_percent: i32,
}

impl Setting {
    /// The HPA behavior: the API's default scale-up, this setting's scale-down.
    #[must_use]
    pub fn behavior(&self) -> Behavior {
        Behavior {
            scale_up: None,
            scale_down: Some(Rules {
                stabilization_window_seconds: Some(self.down_window_s),
                select_policy: None,
                policies: Some(vec![RatePolicy {
                    kind: PolicyKind::Percent,
                    value: self.down_percent,
                    period_seconds: 60,
                }]),
                tolerance: None,
            }),
        }
    }

    /// The fused score's settings, for a fused setting.
    #[must_use]
    pub fn score(&self) -> Option<&ScoreConfig> {
        match &self.policy {
            Policy::Fused(score)
            | Policy::Predictive(score, _)
            | Policy::FusedAndBacklog(score, _) => Some(score),
            _ => None,
        }
    }

    /// A short description for tables.
    #[must_use]
    pub fn describe(&self) -> String {
        let down = format!(
            "down {} s at {} %/min",
            self.down_window_s, self.down_percent
        );
        let Some(s) = self.score() else {
            return format!("{}, {down}", self.policy.name());
        };
        let backlog = match self.policy {
            Policy::FusedAndBacklog(_, per_replica) => format!("backlog {per_replica}/replica, "),
            _ => String::new(),
        };
        format!(
            "{backlog}weights {}/{}, targets {} ms/{} %, holds {}/{}/{} s, boost {}, {down}",
            s.frame_weight,
            s.gpu_weight,
            s.frame_target_ms,
            s.gpu_target_pct,
            s.frame_bound_hold.as_secs(),
            s.gpu_bound_hold.as_secs(),
            s.both_hold.as_secs(),
            s.boost,
        )
    }

    /// The adapter's metrics file for a fused setting (`score:` keys only; the rest default).
    #[must_use]
    pub fn metrics_file(&self, header: &str) -> Option<String> {
        let s = self.score()?;
        let mut out = String::new();
        for line in header.lines() {
            let _ = writeln!(out, "# {line}");
        }
        let _ = write!(
            out,
            "score:\n  frame_target_ms: {}\n  gpu_target_pct: {}\n  frame_weight: {}\n  gpu_weight: {}\n  holds:\n    frame_bound: {}s\n    gpu_bound: {}s\n    both: {}s\n  boost: {}\n",
            s.frame_target_ms,
            s.gpu_target_pct,
            s.frame_weight,
            s.gpu_weight,
            s.frame_bound_hold.as_secs(),
            s.gpu_bound_hold.as_secs(),
            s.both_hold.as_secs(),
            s.boost
        );
        Some(out)
    }

    /// An HPA manifest with this setting's behavior, on the fused score.
    #[must_use]
    pub fn hpa_manifest(&self, header: &str, min_replicas: i32, max_replicas: i32) -> String {
        let mut out = String::new();
        for line in header.lines() {
            let _ = writeln!(out, "# {line}");
        }
        let _ = write!(
            out,
            "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: render\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: render}}\n  minReplicas: {min_replicas}\n  maxReplicas: {max_replicas}\n  metrics:\n    - type: Pods\n      pods:\n        metric: {{name: render_scaling_score}}\n        target: {{type: AverageValue, averageValue: \"1\"}}\n  behavior:\n    scaleDown:\n      stabilizationWindowSeconds: {}\n      policies:\n        - {{type: Percent, value: {}, periodSeconds: 60}}\n",
            self.down_window_s, self.down_percent
        );
        out
    }
}

/// Every target of `targets` with every scale-down behavior.
fn with_behaviors(policies: impl IntoIterator<Item = Policy>) -> Vec<Setting> {
    policies
        .into_iter()
        .flat_map(|policy| {
            DOWN.map(|(down_window_s, down_percent)| Setting {
                policy: policy.clone(),
                down_window_s,
                down_percent,
            })
        })
        .collect()
}

/// `base` with this frame weight (the duty's the rest, to a tenth), `(frame ms, duty %)` targets,
/// `(frame-bound, GPU-bound, both)` holds in seconds and boost: one point of a grid.
fn score_at(
    base: &ScoreConfig,
    frame_weight: f64,
    (frame_target_ms, gpu_target_pct): (f64, f64),
    (frame_bound, gpu_bound, both): (u64, u64, u64),
    boost: f64,
) -> ScoreConfig {
    ScoreConfig {
        frame_weight,
        gpu_weight: ((1.0 - frame_weight) * 10.0_f64).round() / 10.0,
        gpu_target_pct,
        frame_target_ms,
        frame_bound_hold: Duration::from_secs(frame_bound),
        gpu_bound_hold: Duration::from_secs(gpu_bound),
        both_hold: Duration::from_secs(both),
        boost,
        ..base.clone()
    }
}

/// The fused score's grid around `base` (its targets' neighbours, weights, holds, boost,
/// scale-down), the setting closest to the defaults first. The weights keep a frame term (a
/// frame weight of 0 is duty alone, a family of its own).
#[must_use]
pub fn grid(base: &ScoreConfig) -> Vec<Setting> {
    let mut scores = Vec::new();
    let holds = [(0, 0, 0), (30, 15, 10), (10, 5, 5)];
    for frame_weight in [0.4, 0.2, 0.6, 0.8] {
        for gpu_target_pct in [65.0, 55.0, 45.0, 35.0, 75.0, 85.0] {
            for frame_factor in [1.0, 0.7, 0.5, 0.35, 0.25, 1.4] {
                for holds in holds {
                    for boost in [1.5, 1.0] {
                        scores.push(score_at(
                            base,
                            frame_weight,
                            (
                                (base.frame_target_ms * frame_factor).round(),
                                (base.gpu_target_pct * gpu_target_pct / 65.0).round(),
                            ),
                            holds,
                            boost,
                        ));
                    }
                }
            }
        }
    }
    with_behaviors(scores.into_iter().map(Policy::Fused))
}

/// Every other family's settings: each one's target over a range around its usual value (the
/// latency's around `slo_ms`, CPU's up to `cpu_share` × 100 %, where a saturated pod's CPU
/// stands), each with every scale-down behavior.
#[must_use]
pub fn alternatives(slo_ms: f64, cpu_share: f64) -> Vec<Setting> {
    let latency = [0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0].map(|f| (slo_ms * f).round());
    let duty = [35.0, 45.0, 55.0, 65.0, 75.0, 85.0, 95.0];
    let cpu_top = (100.0 * cpu_share).clamp(10.0, 100.0);
    let cpu = [0.3, 0.45, 0.6, 0.75, 0.9].map(|f| (cpu_top * f).round());
    let queue = [0.5, 1.0, 1.5, 2.0, 3.0, 4.0];
    let mut policies: Vec<Policy> = Vec::new();
    policies.extend(duty.map(Policy::GpuOnly));
    policies.extend(latency.map(Policy::LatencyOnly));
    for l in [0.35, 0.5, 0.7, 1.0, 1.4].map(|f| (slo_ms * f).round()) {
        for d in [45.0, 55.0, 65.0, 75.0, 85.0] {
            policies.push(Policy::TwoMetrics(l, d));
        }
    }
    policies.extend(cpu.map(Policy::Cpu));
    policies.extend(queue.map(Policy::QueueDepth));
    with_behaviors(policies)
}

/// The backlog targets of the shared queue's search, as fractions of what one replica renders
/// in the SLO (a target of 1 lets a frame wait about the SLO behind the others).
const BACKLOG_OF_SLO: [f64; 10] = [0.02, 0.05, 0.1, 0.15, 0.25, 0.35, 0.5, 0.7, 1.0, 1.5];

/// Backlog targets in frames per replica: [`BACKLOG_OF_SLO`] of `per_replica_in_slo`, the
/// frames one replica renders in the SLO.
fn backlog_targets(per_replica_in_slo: f64) -> impl Iterator<Item = f64> {
    BACKLOG_OF_SLO
        .into_iter()
        .map(move |f| (per_replica_in_slo * f).round().max(1.0))
}

/// The shared queue's search, for the fused score + backlog: queue-mode scores (the latency
/// target around the SLO `slo_ms`, where a farm's frames wait; the duty's target up to 100 %,
/// where a pod pulling as fast as it renders stands, and 200 %, where duty never asks for more
/// pods) with every backlog target and behavior; the setting closest to `base` with
/// `base_backlog` first.
#[must_use]
pub fn queue_grid(
    base: &ScoreConfig,
    base_backlog: f64,
    slo_ms: f64,
    per_replica_in_slo: f64,
) -> Vec<Setting> {
    let mut scores = vec![base.clone()];
    for frame_weight in [1.0, 0.7, 0.4] {
        // With the frame term alone, the duty's target still bounds its max(): every one.
        for gpu_target_pct in [100.0, 85.0, 65.0, 200.0] {
            for slo_factor in [0.25, 0.5, 1.0] {
                for holds in [(0, 0, 0), (30, 15, 10)] {
                    for boost in [1.0, 1.5] {
                        let targets = ((slo_ms * slo_factor).round(), gpu_target_pct);
                        scores.push(score_at(base, frame_weight, targets, holds, boost));
                    }
                }
            }
        }
    }
    let mut policies = vec![Policy::FusedAndBacklog(base.clone(), base_backlog)];
    for score in scores {
        for target in backlog_targets(per_replica_in_slo) {
            policies.push(Policy::FusedAndBacklog(score.clone(), target));
        }
    }
    with_behaviors(policies)
}

/// Backlog only (how KEDA scales a queue) at every backlog target of the shared queue's search,
/// and the backlog with the oldest frame's wait (targets ¼, ½ and ¾ of the SLO `slo_ms`), each
/// with every behavior.
#[must_use]
pub fn backlog_alternatives(per_replica_in_slo: f64, slo_ms: f64) -> Vec<Setting> {
    let mut policies: Vec<Policy> = backlog_targets(per_replica_in_slo)
        .map(Policy::Backlog)
        .collect();
    for target in backlog_targets(per_replica_in_slo) {
        for wait in [0.25, 0.5, 0.75] {
            policies.push(Policy::BacklogAndWait(target, (slo_ms * wait).round()));
        }
    }
    with_behaviors(policies)
}

/// At most `max` settings of `grid`: the first (the defaults) always, the rest drawn with `seed`.
#[must_use]
pub fn sample(mut grid: Vec<Setting>, max: usize, seed: u64) -> Vec<Setting> {
    if grid.len() <= max {
        return grid;
    }
    let mut rng = Rng::new(seed);
    // Fisher–Yates over everything after the first.
    for i in (2..grid.len()).rev() {
        let j = 1 + rng.below(i);
        grid.swap(i, j);
    }
    grid.truncate(max.max(1));
    grid
}

/// How one setting did over every profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The setting.
    pub setting: Setting,
    /// SLO minutes, summed over the profiles.
    pub slo_minutes: u32,
    /// Replica-hours, summed.
    pub replica_hours: f64,
    /// Rejected frames, summed.
    pub rejected: u64,
    /// Frames done later than the SLO, summed.
    pub late: u64,
    /// Frames offered, summed.
    pub frames: u64,
    /// Direction changes per 10 minutes, the mean over the profiles.
    pub flaps_per_10_min: f64,
    /// Each profile's run, in the profiles' order.
    pub runs: Vec<RunSummary>,
}

/// One run of a setting on one profile, without its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// Frames that arrived.
    pub frames: u64,
    /// Frames done later than the SLO.
    pub late: u64,
    /// Frames rejected.
    pub rejected: u64,
    /// Minutes with the users' P95 over the SLO.
    pub slo_minutes: u32,
    /// Replica-hours.
    pub replica_hours: f64,
    /// Rescales.
    pub scale_events: u32,
    /// Direction changes per 10 minutes.
    pub flaps_per_10_min: f64,
    /// Seconds to recover after the largest rise.
    pub recovery_s: Option<f64>,
}

impl Scored {
    /// Frames users got late or never, percent of all the frames of every profile.
    #[must_use]
    pub fn bad_pct(&self) -> f64 {
        compare::bad_pct(self.late, self.rejected, self.frames)
    }
}

/// What every setting is run on.
pub struct Bench<'a> {
    /// The worker model.
    pub model: &'a WorkerModel,
    /// The HPA, controller and run length (the behavior and score are the setting's).
    pub base: &'a SimulationConfig,
    /// The loads.
    pub profiles: &'a [&'a (dyn Load + Sync)],
    /// The users' latency SLO, ms.
    pub slo_ms: f64,
    /// The seed of every run.
    pub seed: u64,
}

impl Bench<'_> {
    /// Runs every setting on every profile (`threads` at a time), calling `progress(done)`
    /// after each; the results are in the settings' order.
    pub fn evaluate(
        &self,
        settings: &[Setting],
        threads: usize,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Vec<Scored> {
        let next = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Scored>>> = Mutex::new(vec![None; settings.len()]);
        std::thread::scope(|scope| {
            for _ in 0..threads.max(1) {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(setting) = settings.get(i) else {
                            break;
                        };
                        let scored = self.score(setting);
                        results.lock().unwrap_or_else(PoisonError::into_inner)[i] = Some(scored);
                        progress(done.fetch_add(1, Ordering::Relaxed) + 1);
                    }
                });
            }
        });
        results
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .into_iter()
            .flatten()
            .collect()
    }

    /// One setting over every profile.
    #[must_use]
    pub fn score(&self, setting: &Setting) -> Scored {
        let mut config = self.base.clone();
        config.spec.behavior = Some(setting.behavior());
        if let Some(score) = setting.score() {
            config.score = score.clone();
        }
        let mut scored = Scored {
            setting: setting.clone(),
            slo_minutes: 0,
            replica_hours: 0.0,
            rejected: 0,
            late: 0,
            frames: 0,
            flaps_per_10_min: 0.0,
            runs: Vec::with_capacity(self.profiles.len()),
        };
        for &profile in self.profiles {
            let outcome = compare::run(
                &setting.policy,
                self.model,
                &config,
                profile,
                self.slo_ms,
                self.seed,
            );
            scored.slo_minutes += outcome.slo_minutes;
            scored.replica_hours += outcome.replica_hours;
            scored.rejected += outcome.rejected;
            scored.late += outcome.late;
            scored.frames += outcome.frames;
            scored.flaps_per_10_min += outcome.flaps_per_10_min / self.profiles.len() as f64;
            scored.runs.push(RunSummary {
                frames: outcome.frames,
                late: outcome.late,
                rejected: outcome.rejected,
                slo_minutes: outcome.slo_minutes,
                replica_hours: outcome.replica_hours,
                scale_events: outcome.scale_events,
                flaps_per_10_min: outcome.flaps_per_10_min,
                recovery_s: outcome.recovery_s,
            });
        }
        scored
    }
}

/// A setting of `policy` (at the first scale-down behavior) scored `bad` bad frames of 100 at
/// `hours` replica-hours: the fronts' tests' points.
#[cfg(test)]
pub(crate) fn scored_for_tests(policy: Policy, bad: u64, hours: f64) -> Scored {
    let (down_window_s, down_percent) = DOWN[0];
    Scored {
        setting: Setting {
            policy,
            down_window_s,
            down_percent,
        },
        slo_minutes: 0,
        replica_hours: hours,
        rejected: 0,
        late: bad,
        frames: 100,
        flaps_per_10_min: 0.0,
        runs: Vec::new(),
    }
}

/// The indices of the Pareto front of bad frames against replica-hours among `among` (no other
/// of them is as good on both and better on one), by replica-hours.
#[must_use]
pub fn pareto(scored: &[Scored], among: &[usize]) -> Vec<usize> {
    let dominates = |o: &Scored, s: &Scored| {
        o.bad_pct() <= s.bad_pct()
            && o.replica_hours <= s.replica_hours
            && (o.bad_pct() < s.bad_pct() || o.replica_hours < s.replica_hours)
    };
    let mut front: Vec<usize> = among
        .iter()
        .copied()
        .filter(|&i| !among.iter().any(|&o| dominates(&scored[o], &scored[i])))
        .collect();
    front.sort_by(|&a, &b| scored[a].replica_hours.total_cmp(&scored[b].replica_hours));
    // One of each (bad frames, replica-hours) pair: equal settings add nothing.
    front.dedup_by(|a, b| {
        (scored[*a].bad_pct() - scored[*b].bad_pct()).abs() < 1e-12
            && (scored[*a].replica_hours - scored[*b].replica_hours).abs() < 1e-9
    });
    front
}

/// The recommendation: on the front, the fewest replica-hours among the settings within 10 %
/// (at least 0.1 points) of the fewest bad frames.
#[must_use]
pub fn recommend(scored: &[Scored], front: &[usize]) -> Option<usize> {
    let best = front
        .iter()
        .map(|&i| scored[i].bad_pct())
        .min_by(f64::total_cmp)?;
    let allowed = best + (best * 0.1).max(0.1);
    front
        .iter()
        .copied()
        .filter(|&i| scored[i].bad_pct() <= allowed)
        .min_by(|&a, &b| scored[a].replica_hours.total_cmp(&scored[b].replica_hours))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scored setting with `bad` bad frames of 100 at `hours` replica-hours.
    fn scored(bad: u64, hours: f64) -> Scored {
        scored_for_tests(Policy::Fused(ScoreConfig::default()), bad, hours)
    }

    #[test]
    fn the_front_keeps_what_nothing_beats() {
        let all = [
            scored(10, 1.0),
            scored(5, 2.0),
            scored(6, 2.5),
            scored(1, 4.0),
            scored(5, 2.0),
        ];
        let every: Vec<usize> = (0..all.len()).collect();
        assert_eq!(pareto(&all, &every), [0, 1, 3]);
        assert_eq!(pareto(&all, &[0, 2]), [0, 2], "a front of the ones given");
        // Within 0.1 points of the best (1 %): only index 3.
        assert_eq!(recommend(&all, &pareto(&all, &every)), Some(3));
        let cheaper = [scored(40, 1.0), scored(44, 0.5), scored(45, 0.4)];
        // Within 10 % of 40 %: 44 % at 0.5 replica-hours, not 45 % at 0.4.
        assert_eq!(recommend(&cheaper, &pareto(&cheaper, &[0, 1, 2])), Some(1));
    }

    #[test]
    fn the_grid_starts_at_the_defaults_and_sampling_keeps_them() {
        let defaults = ScoreConfig::default();
        let grid = grid(&defaults);
        assert_eq!(grid.len(), 4 * 6 * 6 * 3 * 2 * 4);
        assert_eq!(grid[0].score(), Some(&defaults));
        assert_eq!((grid[0].down_window_s, grid[0].down_percent), (300, 100));
        for setting in &grid {
            setting.score().unwrap().validate().unwrap();
        }
        let a = sample(grid.clone(), 50, 9);
        assert_eq!(a.len(), 50);
        assert_eq!(a[0].score(), Some(&defaults));
        assert_eq!(
            a,
            sample(grid.clone(), 50, 9),
            "the same seed, the same sample"
        );
        assert_ne!(a, sample(grid, 50, 10));
    }

    #[test]
    fn a_setting_writes_files_framescale_reads() {
        let setting = &grid(&ScoreConfig::default())[5];
        let yaml = setting.metrics_file("a header\non two lines").unwrap();
        assert!(yaml.starts_with("# a header\n# on two lines\nscore:\n"));
        let behavior: Behavior = serde_json::from_value(serde_json::json!({
            "scaleDown": {"stabilizationWindowSeconds": setting.down_window_s,
                          "policies": [{"type": "Percent", "value": setting.down_percent, "periodSeconds": 60}]}
        }))
        .unwrap();
        assert_eq!(setting.behavior(), behavior);
    }

    #[test]
    fn the_queue_grid_starts_at_the_defaults_and_shares_the_backlog_targets() {
        let defaults = ScoreConfig::default();
        let grid = queue_grid(&defaults, 750.0, 30_000.0, 1_500.0);
        assert_eq!(grid.len(), (1 + (1 + 3 * 4 * 3 * 2 * 2) * 10) * 4);
        assert_eq!(
            grid[0].policy,
            Policy::FusedAndBacklog(defaults.clone(), 750.0)
        );
        for setting in &grid {
            setting.score().unwrap().validate().unwrap();
        }
        let alternatives = backlog_alternatives(1_500.0, 30_000.0);
        assert_eq!(alternatives.len(), (10 + 10 * 3) * 4);
        let alone: Vec<Setting> = alternatives
            .into_iter()
            .filter(|s| matches!(s.policy, Policy::Backlog(_)))
            .collect();
        let targets = |settings: &[Setting]| {
            let mut targets: Vec<u64> = settings
                .iter()
                .filter_map(|s| match s.policy {
                    Policy::Backlog(t) | Policy::FusedAndBacklog(_, t) => Some(t as u64),
                    _ => None,
                })
                .collect();
            targets.sort_unstable();
            targets.dedup();
            targets
        };
        assert_eq!(
            targets(&alone),
            [30, 75, 150, 225, 375, 525, 750, 1050, 1500, 2250]
        );
        assert_eq!(targets(&grid), targets(&alone), "the same targets for both");
        assert!(
            grid[4]
                .describe()
                .starts_with("backlog 30/replica, weights 0.4/0.6")
        );
    }
}
