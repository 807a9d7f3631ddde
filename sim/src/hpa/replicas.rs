//! What each metric proposes (`docs/reference/hpa-algorithm.md` §3): the replica calculator of
//! the HPA controller for `Pods` (`AverageValue`), `Object` and `External` (`Value` and
//! `AverageValue`) metrics, with its integer and float semantics reproduced exactly — int64
//! milli-values, truncating integer averages, float64 ratios, `ceil`, MaxInt32 clamps.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The largest replica count (int32).
pub const MAX_REPLICAS: i32 = i32::MAX;

/// How far a ratio may stray from 1.0 before the HPA acts (§7): inclusive bounds
/// `1 − down ≤ ratio ≤ 1 + up`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Tolerance {
    /// Below 1.0.
    pub down: f64,
    /// Above 1.0.
    pub up: f64,
}

impl Default for Tolerance {
    /// The controller's default, 0.1 both ways.
    fn default() -> Self {
        Tolerance { down: 0.1, up: 0.1 }
    }
}

impl Tolerance {
    /// Whether `ratio` is close enough to 1.0 to leave the replicas alone.
    #[must_use]
    pub fn within(self, ratio: f64) -> bool {
        (1.0 - self.down) <= ratio && ratio <= (1.0 + self.up)
    }
}

/// A pod's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Phase {
    /// Not yet running.
    Pending,
    /// Running.
    Running,
    /// Done.
    Succeeded,
    /// Failed.
    Failed,
    /// Unknown.
    Unknown,
}

/// What the controller knows of a pod the selector lists.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PodState {
    /// Its name.
    pub name: String,
    /// Its phase.
    pub phase: Phase,
    /// Its Ready condition.
    pub ready: bool,
    /// Whether it has a deletion timestamp.
    #[serde(default)]
    pub deleted: bool,
}

/// Why a metric proposes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MetricError(pub String);

/// A metric's proposal and the value it reports in the HPA's status (milli-units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    /// Replicas the metric asks for.
    pub replicas: i32,
    /// The value reported in `status.currentMetrics` (a usage or an average).
    pub reported_milli: i64,
}

/// `type: Pods`, target `AverageValue` (§3.2). `metrics` maps pod names to milli-values, as the
/// custom metrics API returned them; `current` is `scale.spec.replicas`.
pub fn pods_average_value(
    current: i32,
    pods: &[PodState],
    mut metrics: BTreeMap<String, i64>,
    target_milli: i64,
    tolerance: Tolerance,
) -> Result<Proposal, MetricError> {
    if pods.is_empty() {
        return Err(MetricError(
            "no pods returned by selector while calculating replica count".into(),
        ));
    }
    let (mut ready, mut unready, mut missing) = (0_i64, Vec::new(), Vec::new());
    for pod in pods {
        if pod.deleted || pod.phase == Phase::Failed {
            metrics.remove(&pod.name);
        } else if pod.phase == Phase::Pending {
            metrics.remove(&pod.name);
            unready.push(pod.name.clone());
        } else if !metrics.contains_key(&pod.name) {
            missing.push(pod.name.clone());
        } else {
            ready += 1;
        }
    }
    if metrics.is_empty() {
        return Err(MetricError(
            "did not receive metrics for targeted pods (pods might be unready)".into(),
        ));
    }
    let usage = truncating_mean(&metrics);
    let ratio = usage as f64 / target_milli as f64;
    let up_with_unready = !unready.is_empty() && ratio > 1.0;
    let proposal = |replicas| Proposal {
        replicas,
        reported_milli: usage,
    };
    if !up_with_unready && missing.is_empty() {
        if tolerance.within(ratio) {
            return Ok(proposal(current));
        }
        return Ok(proposal(ceil_replicas(ratio * ready as f64)));
    }
    // Missing pods are assumed at target on a scale-down, idle on a scale-up, and left out at
    // exactly 1.0.
    let assumed = if ratio < 1.0 {
        Some(target_milli)
    } else if ratio > 1.0 {
        Some(0)
    } else {
        None
    };
    if let Some(assumed) = assumed {
        for name in missing {
            metrics.insert(name, assumed);
        }
    }
    if up_with_unready {
        for name in unready {
            metrics.insert(name, 0);
        }
    }
    let new_ratio = truncating_mean(&metrics) as f64 / target_milli as f64;
    if tolerance.within(new_ratio)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(proposal(current));
    }
    let replicas = ceil_replicas(new_ratio * metrics.len() as f64);
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(proposal(current));
    }
    Ok(proposal(replicas))
}

/// `type: Object` or `External`, target `Value` (§3.3, §3.4): `usage` against `target`, the
/// multiplier being the Running and Ready pods; from zero replicas, `ceil(ratio)`.
pub fn value(
    current: i32,
    usage_milli: i64,
    target_milli: i64,
    pods: &[PodState],
    tolerance: Tolerance,
) -> Result<Proposal, MetricError> {
    let ratio = usage_milli as f64 / target_milli as f64;
    let replicas = if current == 0 {
        ceil_replicas(ratio)
    } else if tolerance.within(ratio) {
        current
    } else {
        if pods.is_empty() {
            return Err(MetricError(
                "unable to calculate ready pods: no pods returned by selector while calculating replica count".into(),
            ));
        }
        let ready = pods
            .iter()
            .filter(|p| p.phase == Phase::Running && p.ready)
            .count();
        ceil_replicas(ratio * ready as f64)
    };
    Ok(Proposal {
        replicas,
        reported_milli: usage_milli,
    })
}

/// `type: Object` or `External`, target `AverageValue` (§3.3, §3.4): `usage` shared by
/// `scale.status.replicas`. At zero replicas (an HPA with `minReplicas: 0`) the ratio is
/// infinite, or not a number for no usage, never within the tolerance: the proposal is
/// `ceil(usage / target)`, as `GetObjectPerPodMetricReplicas` computes it — what wakes a
/// Deployment scaled to zero.
pub fn average_value(
    status_replicas: i32,
    usage_milli: i64,
    target_average_milli: i64,
    tolerance: Tolerance,
) -> Result<Proposal, MetricError> {
    let ratio = usage_milli as f64 / (target_average_milli as f64 * f64::from(status_replicas));
    let replicas = if tolerance.within(ratio) {
        status_replicas
    } else {
        ceil_replicas(usage_milli as f64 / target_average_milli as f64)
    };
    Ok(Proposal {
        replicas,
        // Float to int saturates, as Go's conversion of an overflowing value does here.
        reported_milli: (usage_milli as f64 / f64::from(status_replicas)).ceil() as i64,
    })
}

/// The usage of an External metric: every returned value summed, saturating at MaxInt64; an
/// empty answer is an error.
pub fn external_usage(values_milli: &[i64]) -> Result<i64, MetricError> {
    if values_milli.is_empty() {
        return Err(MetricError(
            "no metrics returned from external metrics API".into(),
        ));
    }
    Ok(values_milli
        .iter()
        .fold(0_i64, |sum, v| sum.saturating_add(*v)))
}

/// The mean of the values, truncated toward zero as Go's int64 division does.
fn truncating_mean(metrics: &BTreeMap<String, i64>) -> i64 {
    let sum: i128 = metrics.values().map(|v| i128::from(*v)).sum();
    (sum / metrics.len() as i128) as i64
}

/// `ceil(f)` as a replica count, clamped to MaxInt32.
fn ceil_replicas(f: f64) -> i32 {
    if f > f64::from(MAX_REPLICAS) {
        MAX_REPLICAS
    } else {
        f.ceil() as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(n: usize) -> Vec<PodState> {
        (0..n)
            .map(|i| PodState {
                name: format!("p{i}"),
                phase: Phase::Running,
                ready: true,
                deleted: false,
            })
            .collect()
    }

    #[test]
    fn failed_and_deleted_pods_never_count() {
        let mut pods = running(3);
        pods[1].phase = Phase::Failed;
        pods[2].deleted = true;
        let metrics: BTreeMap<String, i64> = [("p0", 30_000), ("p1", 1), ("p2", 1)]
            .map(|(k, v)| (k.to_owned(), v))
            .into();
        let proposal = pods_average_value(3, &pods, metrics, 10_000, Tolerance::default()).unwrap();
        assert_eq!(proposal.replicas, 3, "one ready pod at 3× target");
        assert_eq!(proposal.reported_milli, 30_000);
    }

    #[test]
    fn an_average_value_at_zero_replicas_proposes_the_usage_over_the_target() {
        // GetObjectPerPodMetricReplicas at statusReplicas 0 (minReplicas: 0): the ratio is
        // +Inf (or NaN for no usage), never within the tolerance.
        let waking = average_value(0, 25_000, 10_000, Tolerance::default()).unwrap();
        assert_eq!(waking.replicas, 3);
        let idle = average_value(0, 0, 10_000, Tolerance::default()).unwrap();
        assert_eq!(idle.replicas, 0);
    }

    #[test]
    fn errors() {
        let none: BTreeMap<String, i64> = BTreeMap::new();
        assert!(pods_average_value(1, &[], none.clone(), 1, Tolerance::default()).is_err());
        assert!(pods_average_value(1, &running(1), none, 1, Tolerance::default()).is_err());
        assert!(value(2, 10, 1, &[], Tolerance::default()).is_err());
        assert!(external_usage(&[]).is_err());
        assert_eq!(external_usage(&[i64::MAX, 5]).unwrap(), i64::MAX);
    }
}
