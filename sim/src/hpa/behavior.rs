//! From the metrics' proposal to the replicas the HPA sets (`docs/reference/hpa-algorithm.md`
//! §5–6): the legacy path (no `behavior`: downscale stabilization, then at most doubling) and the
//! `behavior` path (stabilization windows both ways, then Pods/Percent rate policies), with the
//! history they read — past recommendations and scale events — kept by the caller.
//!
//! Times are seconds on the caller's clock (a simulation's or the wall clock); an age is
//! `now − at`.

use serde::Deserialize;

/// `spec.behavior` of an HPA, as written in its manifest. Unset fields take the API's defaults
/// (§6.1) through [`Behavior::resolve`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Behavior {
    /// Rules for scaling up.
    #[serde(default)]
    pub scale_up: Option<Rules>,
    /// Rules for scaling down.
    #[serde(default)]
    pub scale_down: Option<Rules>,
}

/// One direction's rules, as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rules {
    /// Stabilization window, seconds.
    #[serde(default)]
    pub stabilization_window_seconds: Option<u32>,
    /// How the policies' limits combine.
    #[serde(default)]
    pub select_policy: Option<SelectPolicy>,
    /// Rate policies; a given list replaces the default list entirely.
    #[serde(default)]
    pub policies: Option<Vec<Policy>>,
    /// Per-direction tolerance (KEP-4951): a Kubernetes quantity, as the API server writes it
    /// back (`50m`), or a plain number (`0.05`).
    #[serde(default, deserialize_with = "tolerance")]
    pub tolerance: Option<f64>,
}

/// A tolerance written as a quantity string or a number; a negative one or a string that is no
/// quantity is refused, naming it.
fn tolerance<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Number(f64),
        Quantity(String),
    }
    let value = match Option::<Written>::deserialize(deserializer)? {
        None => return Ok(None),
        Some(Written::Number(n)) => n,
        Some(Written::Quantity(text)) => {
            let milli = framescale_core::quantity::parse_milli(&text).ok_or_else(|| {
                serde::de::Error::custom(format!("tolerance {text:?} is not a quantity"))
            })?;
            milli as f64 / 1000.0
        }
    };
    if !(value.is_finite() && value >= 0.0) {
        return Err(serde::de::Error::custom(format!(
            "tolerance must be 0 or more, got {value}"
        )));
    }
    Ok(Some(value))
}

/// How several policies combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SelectPolicy {
    /// The policy allowing the biggest change.
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// A rate policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    /// `Pods` or `Percent`.
    #[serde(rename = "type")]
    pub kind: PolicyKind,
    /// Pods, or percent of the replicas at the start of the period.
    pub value: i32,
    /// The period, seconds.
    pub period_seconds: i32,
}

/// What a policy's value counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum PolicyKind {
    /// A number of pods.
    Pods,
    /// A percentage of the replicas at the start of the period.
    Percent,
}

/// One direction's rules with every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// Stabilization window, seconds.
    pub window_seconds: f64,
    /// How the policies combine.
    pub select: SelectPolicy,
    /// The policies.
    pub policies: Vec<Policy>,
}

impl Behavior {
    /// Both directions with the API's defaults (§6.1): up — no window, `Max` of 4 pods or 100 %
    /// per 15 s; down — the controller's downscale stabilization (`default_down_window`, 300 s
    /// by default), `Max`, 100 % per 15 s.
    #[must_use]
    pub fn resolve(&self, default_down_window: f64) -> (Resolved, Resolved) {
        let resolve = |rules: Option<&Rules>, window: f64, policies: Vec<Policy>| {
            let rules = rules.cloned().unwrap_or_default();
            Resolved {
                window_seconds: rules.stabilization_window_seconds.map_or(window, f64::from),
                select: rules.select_policy.unwrap_or(SelectPolicy::Max),
                policies: rules.policies.unwrap_or(policies),
            }
        };
        let per_15s = |kind, value| Policy {
            kind,
            value,
            period_seconds: 15,
        };
        (
            resolve(
                self.scale_up.as_ref(),
                0.0,
                vec![
                    per_15s(PolicyKind::Pods, 4),
                    per_15s(PolicyKind::Percent, 100),
                ],
            ),
            resolve(
                self.scale_down.as_ref(),
                default_down_window,
                vec![per_15s(PolicyKind::Percent, 100)],
            ),
        )
    }
}

/// A past recommendation (a pre-normalization desired count).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recommendation {
    /// Replicas recommended.
    pub replicas: i32,
    /// When.
    pub at: f64,
}

/// A past rescale in one direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleEvent {
    /// Replicas added or removed (≥ 0).
    pub change: i32,
    /// When.
    pub at: f64,
}

/// Why the result differs from the stabilized recommendation (condition `ScalingLimited`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Not limited.
    DesiredWithinRange,
    /// Capped by `maxReplicas`.
    TooManyReplicas,
    /// Raised to `minReplicas`.
    TooFewReplicas,
    /// Capped by the up rate.
    ScaleUpLimit,
    /// Held by the down rate.
    ScaleDownLimit,
}

impl Limit {
    /// The condition reason, as the controller writes it.
    #[must_use]
    pub fn reason(self) -> &'static str {
        match self {
            Limit::DesiredWithinRange => "DesiredWithinRange",
            Limit::TooManyReplicas => "TooManyReplicas",
            Limit::TooFewReplicas => "TooFewReplicas",
            Limit::ScaleUpLimit => "ScaleUpLimit",
            Limit::ScaleDownLimit => "ScaleDownLimit",
        }
    }
}

/// Legacy stabilization (§5.1): the highest of `desired` and every recommendation at most
/// `window` old (inclusive).
#[must_use]
pub fn legacy_stabilize(
    recommendations: &[Recommendation],
    now: f64,
    desired: i32,
    window: f64,
) -> i32 {
    recommendations
        .iter()
        .filter(|r| now - r.at <= window)
        .fold(desired, |max, r| max.max(r.replicas))
}

/// Legacy rules (§5.2): at most `max(2 × current, 4)` per sync, within `[min, max]`.
#[must_use]
pub fn legacy_rules(current: i32, desired: i32, min: i32, max: i32) -> (i32, Limit) {
    let up_limit = (f64::from(current) * 2.0).max(4.0) as i32;
    let (cap, cap_limit) = if max > up_limit {
        (up_limit, Limit::ScaleUpLimit)
    } else {
        (max, Limit::TooManyReplicas)
    };
    if desired < min {
        (min, Limit::TooFewReplicas)
    } else if desired > cap {
        (cap, cap_limit)
    } else {
        (desired, Limit::DesiredWithinRange)
    }
}

/// Behavior stabilization (§6.2): `current` raised to the lowest recommendation of the up window
/// and capped by the highest of the down window (both exclusive of age == window), `desired`
/// included in both.
#[must_use]
pub fn stabilize(
    recommendations: &[Recommendation],
    now: f64,
    current: i32,
    desired: i32,
    up_window: f64,
    down_window: f64,
) -> i32 {
    let (mut up_floor, mut down_ceiling) = (desired, desired);
    for r in recommendations {
        let age = now - r.at;
        if age < up_window {
            up_floor = up_floor.min(r.replicas);
        }
        if age < down_window {
            down_ceiling = down_ceiling.max(r.replicas);
        }
    }
    current.max(up_floor).min(down_ceiling)
}

/// The replicas changed by `events` within `period` seconds (an event exactly `period` old no
/// longer counts).
fn change_in(events: &[ScaleEvent], now: f64, period: i32) -> i32 {
    events
        .iter()
        .filter(|e| now - e.at < f64::from(period))
        .map(|e| e.change)
        .sum()
}

/// The replicas at the start of `policy`'s period: `current` without the changes made since.
fn period_start(
    current: i32,
    up_events: &[ScaleEvent],
    down_events: &[ScaleEvent],
    policy: &Policy,
    now: f64,
) -> i32 {
    current - change_in(up_events, now, policy.period_seconds)
        + change_in(down_events, now, policy.period_seconds)
}

/// The most replicas scaling up may reach now (§6.3).
#[must_use]
pub fn scale_up_limit(
    current: i32,
    up_events: &[ScaleEvent],
    down_events: &[ScaleEvent],
    rules: &Resolved,
    now: f64,
) -> i32 {
    if rules.select == SelectPolicy::Disabled {
        return current;
    }
    let proposals = rules.policies.iter().map(|policy| {
        let start = period_start(current, up_events, down_events, policy, now);
        match policy.kind {
            PolicyKind::Pods => start + policy.value,
            PolicyKind::Percent => {
                (f64::from(start) * (1.0 + f64::from(policy.value) / 100.0)).ceil() as i32
            }
        }
    });
    let limit = if rules.select == SelectPolicy::Max {
        proposals.max()
    } else {
        proposals.min()
    };
    limit.unwrap_or(current)
}

/// The fewest replicas scaling down may reach now (§6.3); `Max` allows the biggest change.
#[must_use]
pub fn scale_down_limit(
    current: i32,
    up_events: &[ScaleEvent],
    down_events: &[ScaleEvent],
    rules: &Resolved,
    now: f64,
) -> i32 {
    if rules.select == SelectPolicy::Disabled {
        return current;
    }
    let proposals = rules.policies.iter().map(|policy| {
        let start = period_start(current, up_events, down_events, policy, now);
        match policy.kind {
            PolicyKind::Pods => start - policy.value,
            PolicyKind::Percent => {
                (f64::from(start) * (1.0 - f64::from(policy.value) / 100.0)) as i32
            }
        }
    });
    let limit = if rules.select == SelectPolicy::Max {
        proposals.min()
    } else {
        proposals.max()
    };
    limit.unwrap_or(current)
}

/// The rate limits and `[min, max]` applied to a stabilized recommendation (§6.3).
#[allow(
    clippy::too_many_arguments,
    reason = "the inputs of one step of the algorithm, named as the reference names them"
)]
#[must_use]
pub fn rate_limit(
    current: i32,
    stabilized: i32,
    min: i32,
    max: i32,
    up: &Resolved,
    down: &Resolved,
    up_events: &[ScaleEvent],
    down_events: &[ScaleEvent],
    now: f64,
) -> (i32, Limit) {
    if stabilized > current {
        let limit = scale_up_limit(current, up_events, down_events, up, now).max(current);
        let (allowed, reason) = if max > limit {
            (limit, Limit::ScaleUpLimit)
        } else {
            (max, Limit::TooManyReplicas)
        };
        if stabilized > allowed {
            return (allowed, reason);
        }
    } else if stabilized < current {
        let limit = scale_down_limit(current, up_events, down_events, down, now).min(current);
        let (allowed, reason) = if min < limit {
            (limit, Limit::ScaleDownLimit)
        } else {
            (min, Limit::TooFewReplicas)
        };
        if stabilized < allowed {
            return (allowed, reason);
        }
    }
    (stabilized, Limit::DesiredWithinRange)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tolerance_reads_as_the_api_server_writes_it() {
        for (written, want) in [("\"50m\"", 0.05), ("0.1", 0.1), ("\"0.25\"", 0.25)] {
            let rules: Rules =
                serde_json::from_str(&format!(r#"{{"tolerance": {written}}}"#)).unwrap();
            assert!(
                (rules.tolerance.unwrap() - want).abs() < 1e-12,
                "{written}: {rules:?}"
            );
        }
        for bad in ["\"lots\"", "-0.1", "\"-50m\""] {
            let error = serde_json::from_str::<Rules>(&format!(r#"{{"tolerance": {bad}}}"#))
                .unwrap_err()
                .to_string();
            assert!(error.contains("tolerance"), "{bad}: {error}");
        }
    }
}
