//! One HPA as the controller reconciles it (`docs/reference/hpa-algorithm.md` §2, §4): the
//! min/max bypass, the metrics' proposals and their partial failure, normalization, and the
//! history (recommendations, scale events) that the controller keeps in memory between syncs.

use std::collections::BTreeMap;

use super::behavior::{
    self, Behavior, Limit, PolicyKind, Recommendation, Resolved, ScaleEvent, SelectPolicy,
    legacy_rules, legacy_stabilize,
};
use super::replicas::{self, MetricError, PodState, Proposal, Tolerance};

/// The controller's own settings (kube-controller-manager flags).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ControllerConfig {
    /// `--horizontal-pod-autoscaler-tolerance` (0.1).
    pub tolerance: f64,
    /// `--horizontal-pod-autoscaler-downscale-stabilization`, seconds (300).
    pub downscale_stabilization_seconds: f64,
    /// `--horizontal-pod-autoscaler-sync-period`, seconds (15).
    pub sync_period_seconds: f64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            tolerance: 0.1,
            downscale_stabilization_seconds: 300.0,
            sync_period_seconds: 15.0,
        }
    }
}

/// The parts of an HPA's spec the algorithm reads.
#[derive(Debug, Clone, PartialEq)]
pub struct HpaSpec {
    /// `minReplicas` (API default 1).
    pub min_replicas: i32,
    /// `maxReplicas`.
    pub max_replicas: i32,
    /// `behavior`; `None` takes the legacy path.
    pub behavior: Option<Behavior>,
}

impl HpaSpec {
    /// The spec and the controller's settings in words, for reports and the terminal: `1 to 4
    /// replicas; up: at once, by at most 4 pods or 100 % per 15 s, whichever allows more; …`.
    #[must_use]
    pub fn describe(&self, controller: &ControllerConfig) -> String {
        let tolerance = format!(
            "the metric may be {} % off its target before anything moves; a sync every {} s",
            (controller.tolerance * 1000.0).round() / 10.0,
            controller.sync_period_seconds
        );
        let Some(behavior) = &self.behavior else {
            return format!(
                "{} to {} replicas; no behavior: up at once by at most double (at least 4), down \
                 to the highest recommendation of the last {} s; {tolerance}",
                self.min_replicas, self.max_replicas, controller.downscale_stabilization_seconds
            );
        };
        let (up, down) = behavior.resolve(controller.downscale_stabilization_seconds);
        format!(
            "{} to {} replicas; up: {}; down: {}; {tolerance}",
            self.min_replicas,
            self.max_replicas,
            describe_rules(&up, "lowest"),
            describe_rules(&down, "highest"),
        )
    }
}

/// One direction's resolved rules in words; `kept` is the recommendation its window keeps.
fn describe_rules(rules: &Resolved, kept: &str) -> String {
    if rules.select == SelectPolicy::Disabled {
        return "never".to_owned();
    }
    let window = if rules.window_seconds > 0.0 {
        format!(
            "to the {kept} recommendation of the last {} s",
            rules.window_seconds
        )
    } else {
        "at once".to_owned()
    };
    let policies: Vec<String> = rules
        .policies
        .iter()
        .map(|p| match p.kind {
            PolicyKind::Pods => format!("{} pods per {} s", p.value, p.period_seconds),
            PolicyKind::Percent => format!("{} % per {} s", p.value, p.period_seconds),
        })
        .collect();
    let which = match (policies.len(), rules.select) {
        (0 | 1, _) => "",
        (_, SelectPolicy::Min) => ", whichever allows less",
        _ => ", whichever allows more",
    };
    format!("{window}, by at most {}{which}", policies.join(" or "))
}

/// The target's scale subresource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    /// `spec.replicas` ("currentReplicas").
    pub spec_replicas: i32,
    /// `status.replicas`.
    pub status_replicas: i32,
}

/// What one metric of the spec observed this sync: its inputs, or why it could not be fetched.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// `type: Pods`, target `AverageValue`: the listed pods and the values the metrics API
    /// returned, by pod name.
    PodsAverageValue {
        /// Metric name.
        name: String,
        /// Target, milli-units.
        target_milli: i64,
        /// Pods the selector lists.
        pods: Vec<PodState>,
        /// Returned values, milli-units.
        values_milli: BTreeMap<String, i64>,
    },
    /// `type: Object` or `External`, target `Value`.
    Value {
        /// Which of the two.
        source: MetricSource,
        /// How the metric is described in messages (`Deployment metric x`).
        description: String,
        /// The object's value, or the sum of the external values, milli-units.
        usage_milli: i64,
        /// Target, milli-units.
        target_milli: i64,
        /// Pods the selector lists (the multiplier counts the Running and Ready ones).
        pods: Vec<PodState>,
    },
    /// `type: Object` or `External`, target `AverageValue`.
    AverageValue {
        /// Which of the two.
        source: MetricSource,
        /// How the metric is described in messages.
        description: String,
        /// The value, milli-units.
        usage_milli: i64,
        /// Target per replica, milli-units.
        target_average_milli: i64,
    },
    /// A proposal computed elsewhere (a CPU metric in the reference's vectors).
    Proposal {
        /// How the metric is described in messages.
        description: String,
        /// Replicas proposed.
        replicas: i32,
    },
    /// The metric could not be fetched or computed.
    Failed {
        /// The condition reason (`FailedGetObjectMetric`, …).
        reason: String,
        /// What went wrong.
        message: String,
    },
}

/// Where a `Value` or `AverageValue` metric comes from (it names the condition reason when the
/// metric fails).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricSource {
    /// `type: Object` (`custom.metrics.k8s.io`).
    Object,
    /// `type: External` (`external.metrics.k8s.io`).
    External,
}

/// What one sync decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The replicas the target should have (the status' `desiredReplicas`).
    pub desired: i32,
    /// Whether the target's scale is updated.
    pub rescale: bool,
    /// Condition `ScalingActive`.
    pub scaling_active: bool,
    /// Its reason (`ValidMetricFound`, `ScalingDisabled`, the first failure's reason).
    pub active_reason: String,
    /// Condition `ScalingLimited`'s reason, when normalization ran.
    pub limited: Option<Limit>,
    /// Why: the rescale reason, or what stopped it.
    pub message: String,
    /// Each metric's proposal, in spec order, or its error.
    pub proposals: Vec<Result<Proposal, String>>,
}

/// The controller's memory of one HPA between syncs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Controller {
    /// Past recommendations; `None` until the first sync seeds them.
    pub recommendations: Option<Vec<Recommendation>>,
    /// Past scale-ups (behavior path only).
    pub up_events: Vec<ScaleEvent>,
    /// Past scale-downs (behavior path only).
    pub down_events: Vec<ScaleEvent>,
    /// Settings.
    pub config: ControllerConfig,
}

impl Controller {
    /// A controller with no history yet.
    #[must_use]
    pub fn new(config: ControllerConfig) -> Self {
        Controller {
            config,
            ..Controller::default()
        }
    }

    /// The tolerances of `spec`: the global one, overridden per direction by the behavior's.
    #[must_use]
    pub fn tolerance(&self, spec: &HpaSpec) -> Tolerance {
        let global = self.config.tolerance;
        let rules = spec.behavior.as_ref();
        Tolerance {
            down: rules
                .and_then(|b| b.scale_down.as_ref()?.tolerance)
                .unwrap_or(global),
            up: rules
                .and_then(|b| b.scale_up.as_ref()?.tolerance)
                .unwrap_or(global),
        }
    }

    /// Reconciles once at time `now` (seconds).
    pub fn sync(
        &mut self,
        now: f64,
        spec: &HpaSpec,
        scale: Scale,
        metrics: &[Observation],
    ) -> Decision {
        let current = scale.spec_replicas;
        self.recommendations.get_or_insert_with(|| {
            vec![Recommendation {
                replicas: current,
                at: now,
            }]
        });
        let mut decision = Decision {
            desired: current,
            rescale: false,
            scaling_active: true,
            active_reason: "ValidMetricFound".into(),
            limited: None,
            message: String::new(),
            proposals: Vec::new(),
        };
        let rules = spec
            .behavior
            .as_ref()
            .map(|b| b.resolve(self.config.downscale_stabilization_seconds));
        if current == 0 && spec.min_replicas != 0 {
            decision.desired = 0;
            decision.scaling_active = false;
            decision.active_reason = "ScalingDisabled".into();
            decision.message =
                "scaling is disabled since the replica count of the target is zero".into();
            return decision;
        }
        if current > spec.max_replicas || current < spec.min_replicas {
            let (desired, message) = if current > spec.max_replicas {
                (
                    spec.max_replicas,
                    "Current number of replicas above Spec.MaxReplicas",
                )
            } else {
                (
                    spec.min_replicas,
                    "Current number of replicas below Spec.MinReplicas",
                )
            };
            decision.desired = desired;
            decision.message = message.into();
            decision.rescale = true;
            self.store_event(rules.as_ref(), now, current, desired);
            return decision;
        }

        let tolerance = self.tolerance(spec);
        decision.proposals = metrics
            .iter()
            .map(|m| propose(m, scale, tolerance).map_err(|e| e.0))
            .collect();
        let mut best: Option<(i32, String)> = None;
        let mut first_failure: Option<(String, String)> = None;
        let mut failures = 0;
        for (metric, proposal) in metrics.iter().zip(&decision.proposals) {
            match proposal {
                Ok(p) if best.as_ref().is_none_or(|(r, _)| p.replicas > *r) => {
                    best = Some((p.replicas, describe(metric)));
                }
                Ok(_) => {}
                Err(message) => {
                    failures += 1;
                    first_failure.get_or_insert_with(|| (failure_reason(metric), message.clone()));
                }
            }
        }
        let proposal = best.as_ref().map_or(0, |(r, _)| *r);
        if let Some((reason, message)) = first_failure
            && (best.is_none() || proposal < current)
        {
            decision.scaling_active = false;
            decision.active_reason = reason;
            decision.message = format!(
                "invalid metrics ({failures} invalid out of {}), first error is: {message}",
                metrics.len()
            );
            return decision;
        }
        let desired = proposal.max(0);
        let description = best.map(|(_, d)| d).unwrap_or_default();
        decision.message = match desired.cmp(&current) {
            std::cmp::Ordering::Greater => format!("{description} above target"),
            std::cmp::Ordering::Less => "All metrics below target".into(),
            std::cmp::Ordering::Equal => format!("{description} at target"),
        };
        let (normalized, limit) = self.normalize(spec, rules.as_ref(), now, current, desired);
        decision.desired = normalized;
        decision.limited = Some(limit);
        decision.rescale = normalized != current;
        if decision.rescale {
            self.store_event(rules.as_ref(), now, current, normalized);
        }
        decision
    }

    /// §5 without `rules` (no behavior), §6 with the behavior's resolved rules; records
    /// `desired` in the history.
    fn normalize(
        &mut self,
        spec: &HpaSpec,
        rules: Option<&(Resolved, Resolved)>,
        now: f64,
        current: i32,
        desired: i32,
    ) -> (i32, Limit) {
        let down_default = self.config.downscale_stabilization_seconds;
        let history = self.recommendations.get_or_insert_with(Vec::new);
        let Some((up, down)) = rules else {
            let stabilized = legacy_stabilize(history, now, desired, down_default);
            history.retain(|r| now - r.at <= down_default);
            history.push(Recommendation {
                replicas: desired,
                at: now,
            });
            return legacy_rules(current, stabilized, spec.min_replicas, spec.max_replicas);
        };
        let stabilized = behavior::stabilize(
            history,
            now,
            current,
            desired,
            up.window_seconds,
            down.window_seconds,
        );
        let keep = up.window_seconds.max(down.window_seconds);
        history.retain(|r| now - r.at < keep);
        history.push(Recommendation {
            replicas: desired,
            at: now,
        });
        behavior::rate_limit(
            current,
            stabilized,
            spec.min_replicas,
            spec.max_replicas,
            up,
            down,
            &self.up_events,
            &self.down_events,
            now,
        )
    }

    /// §6.4: with a behavior (its resolved `rules`), a rescale is remembered for the rate
    /// policies.
    fn store_event(&mut self, rules: Option<&(Resolved, Resolved)>, now: f64, from: i32, to: i32) {
        let Some((up, down)) = rules else {
            return;
        };
        let (events, rules, change) = if to > from {
            (&mut self.up_events, up, to - from)
        } else {
            (&mut self.down_events, down, from - to)
        };
        let longest = rules
            .policies
            .iter()
            .map(|p| f64::from(p.period_seconds))
            .fold(0.0, f64::max);
        events.retain(|e| now - e.at <= longest);
        events.push(ScaleEvent { change, at: now });
    }
}

/// What one metric proposes.
fn propose(
    metric: &Observation,
    scale: Scale,
    tolerance: Tolerance,
) -> Result<Proposal, MetricError> {
    match metric {
        Observation::PodsAverageValue {
            target_milli,
            pods,
            values_milli,
            ..
        } => replicas::pods_average_value(
            scale.spec_replicas,
            pods,
            values_milli.clone(),
            *target_milli,
            tolerance,
        ),
        Observation::Value {
            usage_milli,
            target_milli,
            pods,
            ..
        } => replicas::value(
            scale.spec_replicas,
            *usage_milli,
            *target_milli,
            pods,
            tolerance,
        ),
        Observation::AverageValue {
            usage_milli,
            target_average_milli,
            ..
        } => replicas::average_value(
            scale.status_replicas,
            *usage_milli,
            *target_average_milli,
            tolerance,
        ),
        Observation::Proposal { replicas, .. } => Ok(Proposal {
            replicas: *replicas,
            reported_milli: 0,
        }),
        Observation::Failed { message, .. } => Err(MetricError(message.clone())),
    }
}

fn describe(metric: &Observation) -> String {
    match metric {
        Observation::PodsAverageValue { name, .. } => format!("pods metric {name}"),
        Observation::Value { description, .. }
        | Observation::AverageValue { description, .. }
        | Observation::Proposal { description, .. } => description.clone(),
        Observation::Failed { reason, .. } => reason.clone(),
    }
}

fn failure_reason(metric: &Observation) -> String {
    match metric {
        Observation::Failed { reason, .. } => reason.clone(),
        Observation::PodsAverageValue { .. } => "FailedGetPodsMetric".into(),
        Observation::Value {
            source: MetricSource::External,
            ..
        }
        | Observation::AverageValue {
            source: MetricSource::External,
            ..
        } => "FailedGetExternalMetric".into(),
        Observation::Value { .. } | Observation::AverageValue { .. } => {
            "FailedGetObjectMetric".into()
        }
        Observation::Proposal { .. } => "FailedGetResourceMetric".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hpa::replicas::Phase;

    #[test]
    fn specs_read_in_words() {
        let behavior: Behavior =
            serde_json::from_str(r#"{"scaleDown": {"stabilizationWindowSeconds": 30}}"#).unwrap();
        let spec = HpaSpec {
            min_replicas: 1,
            max_replicas: 4,
            behavior: Some(behavior),
        };
        assert_eq!(
            spec.describe(&ControllerConfig::default()),
            "1 to 4 replicas; up: at once, by at most 4 pods per 15 s or 100 % per 15 s, \
             whichever allows more; down: to the highest recommendation of the last 30 s, by at \
             most 100 % per 15 s; the metric may be 10 % off its target before anything moves; \
             a sync every 15 s"
        );
        let legacy = HpaSpec {
            behavior: None,
            ..spec
        };
        assert!(
            legacy
                .describe(&ControllerConfig::default())
                .contains("no behavior: up at once by at most double (at least 4), down to the highest recommendation of the last 300 s")
        );
    }

    fn object(usage_milli: i64, replicas: i32) -> Observation {
        Observation::Value {
            source: MetricSource::Object,
            description: "Deployment metric render_scaling_score".into(),
            usage_milli,
            target_milli: 1000,
            pods: (0..replicas)
                .map(|i| PodState {
                    name: format!("w-{i}"),
                    phase: Phase::Running,
                    ready: true,
                    deleted: false,
                })
                .collect(),
        }
    }

    /// Syncs every 15 s from `replicas`, the score following `score(replicas)`; returns the
    /// replicas after each sync.
    fn run(
        spec: &HpaSpec,
        mut replicas: i32,
        syncs: usize,
        score: impl Fn(i32) -> i64,
    ) -> Vec<i32> {
        let mut controller = Controller::new(ControllerConfig::default());
        (0..syncs)
            .map(|i| {
                let scale = Scale {
                    spec_replicas: replicas,
                    status_replicas: replicas,
                };
                let decision = controller.sync(
                    i as f64 * 15.0,
                    spec,
                    scale,
                    &[object(score(replicas), replicas)],
                );
                replicas = decision.desired;
                replicas
            })
            .collect()
    }

    #[test]
    fn default_behavior_scales_up_at_most_four_pods_or_double_per_period() {
        let spec = HpaSpec {
            min_replicas: 1,
            max_replicas: 100,
            behavior: Some(Behavior::default()),
        };
        // The load needs 40 replicas whatever the count: the score is 40 / replicas.
        let replicas = run(&spec, 1, 6, |r| 40_000 / i64::from(r));
        assert_eq!(replicas, [5, 10, 20, 40, 40, 40]);
    }

    #[test]
    fn legacy_path_waits_out_the_downscale_window() {
        let spec = HpaSpec {
            min_replicas: 1,
            max_replicas: 10,
            behavior: None,
        };
        // 8 replicas, load for 2: the first sync seeds {8, 0 s}; 8 stays until that recommendation
        // is older than 300 s (sync 21 at 315 s), then it drops to 2 at once (no down rate limit).
        let replicas = run(&spec, 8, 23, |r| 2_000 / i64::from(r));
        assert!(replicas[..21].iter().all(|r| *r == 8), "{replicas:?}");
        assert_eq!(replicas[21..], [2, 2]);
    }

    #[test]
    fn a_failed_metric_blocks_a_scale_down_but_not_a_scale_up() {
        let spec = HpaSpec {
            min_replicas: 1,
            max_replicas: 10,
            behavior: Some(Behavior::default()),
        };
        let failed = Observation::Failed {
            reason: "FailedGetObjectMetric".into(),
            message: "no fresh value".into(),
        };
        let scale = Scale {
            spec_replicas: 4,
            status_replicas: 4,
        };
        let mut controller = Controller::new(ControllerConfig::default());
        controller.recommendations = Some(Vec::new());
        let down = controller.sync(0.0, &spec, scale, &[object(500, 4), failed.clone()]);
        assert_eq!((down.desired, down.scaling_active), (4, false));
        assert_eq!(down.active_reason, "FailedGetObjectMetric");
        assert!(
            down.message.contains("1 invalid out of 2"),
            "{}",
            down.message
        );
        let up = controller.sync(15.0, &spec, scale, &[object(2_000, 4), failed]);
        assert_eq!((up.desired, up.scaling_active), (8, true));
        assert!(up.message.contains("above target"), "{}", up.message);
    }
}
