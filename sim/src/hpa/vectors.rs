//! Test vectors of the HPA algorithm (`docs/reference/hpa-vectors.json` and any file of that
//! shape): a JSON array of `{id, kind, inputs, expected, unsure?, notes?}`, values in
//! milli-units, ages in seconds before "now". [`check`] runs one vector through the model and
//! lists every expected field the model disagrees with.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::behavior::{
    self, Behavior, Recommendation, Resolved, Rules, ScaleEvent, legacy_rules, legacy_stabilize,
};
use super::controller::{Controller, ControllerConfig, HpaSpec, MetricSource, Observation, Scale};
use super::replicas::{self, PodState, Proposal, Tolerance};

/// One vector.
#[derive(Debug, Clone, Deserialize)]
pub struct Vector {
    /// Unique name.
    pub id: String,
    /// Which part of the algorithm it exercises.
    pub kind: String,
    /// Inputs, shaped by `kind`.
    pub inputs: Value,
    /// Expected outputs: every field is checked.
    pub expected: Value,
    /// Whether the reference marks the expectation as derived rather than upstream's.
    #[serde(default)]
    pub unsure: bool,
}

/// An expected field the model disagrees with.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    /// The field of `expected`.
    pub field: String,
    /// What the vector expects.
    pub expected: Value,
    /// What the model computed (`null` if it computes no such field).
    pub got: Value,
}

/// The outcome of one vector.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every expected field matches.
    Pass,
    /// Some fields differ.
    Fail(Vec<Mismatch>),
    /// The vector cannot be run (unknown kind, inputs of the wrong shape).
    Invalid(String),
}

/// Parses a vectors file.
pub fn parse(text: &str) -> Result<Vec<Vector>, String> {
    serde_json::from_str(text).map_err(|e| format!("not an array of HPA vectors: {e}"))
}

/// Runs `vector` through the model.
#[must_use]
pub fn check(vector: &Vector) -> Outcome {
    let computed = match compute(&vector.kind, &vector.inputs) {
        Ok(computed) => computed,
        Err(error) => return Outcome::Invalid(error),
    };
    let Some(expected) = vector.expected.as_object() else {
        return Outcome::Invalid("`expected` is not an object".into());
    };
    if expected.is_empty() {
        // A vector that expects nothing would pass whatever the model computes.
        return Outcome::Invalid("`expected` is empty: the vector checks nothing".into());
    }
    let mismatches: Vec<Mismatch> = expected
        .iter()
        .filter_map(|(field, want)| {
            let got = computed.get(field.as_str()).cloned().unwrap_or(Value::Null);
            (got != *want).then(|| Mismatch {
                field: field.clone(),
                expected: want.clone(),
                got,
            })
        })
        .collect();
    if mismatches.is_empty() {
        Outcome::Pass
    } else {
        Outcome::Fail(mismatches)
    }
}

/// A clock far from zero, so that `now − age` is never negative.
const NOW: f64 = 1.0e6;

type Computed = BTreeMap<&'static str, Value>;

fn inputs<T: DeserializeOwned>(inputs: &Value) -> Result<T, String> {
    T::deserialize(inputs).map_err(|e| format!("inputs: {e}"))
}

fn compute(kind: &str, raw: &Value) -> Result<Computed, String> {
    match kind {
        "pods_average_value"
        | "object_value"
        | "external_value"
        | "object_average_value"
        | "external_average_value" => metric_proposal(kind, raw),
        "controller_sync" => controller_sync(&inputs(raw)?),
        _ => normalization(kind, raw),
    }
}

/// Vectors of one metric's proposal (§3).
fn metric_proposal(kind: &str, raw: &Value) -> Result<Computed, String> {
    Ok(match kind {
        "pods_average_value" => {
            let i: PodsInputs = inputs(raw)?;
            let (pods, values) = split_pods(&i.pods);
            let p = replicas::pods_average_value(
                i.current_replicas,
                &pods,
                values,
                i.target_average_value_milli,
                i.tolerance,
            );
            proposal(p, "reportedAverageValueMilli")
        }
        "object_value" | "external_value" => {
            let i: ValueInputs = inputs(raw)?;
            let usage = usage(i.object_value_milli, i.external_values_milli.as_deref())?;
            let (pods, _) = split_pods(&i.pods);
            let p = usage.and_then(|usage| {
                replicas::value(
                    i.current_replicas,
                    usage,
                    i.target_value_milli,
                    &pods,
                    i.tolerance,
                )
            });
            proposal(p, "reportedValueMilli")
        }
        "object_average_value" | "external_average_value" => {
            let i: AverageInputs = inputs(raw)?;
            let usage = usage(i.object_value_milli, i.external_values_milli.as_deref())?;
            let p = usage.and_then(|usage| {
                replicas::average_value(
                    i.status_replicas,
                    usage,
                    i.target_average_value_milli,
                    i.tolerance,
                )
            });
            proposal(p, "reportedAverageValueMilli")
        }
        _ => return Err(format!("unknown kind {kind:?}")),
    })
}

/// Vectors of normalization (§5, §6).
fn normalization(kind: &str, raw: &Value) -> Result<Computed, String> {
    match kind {
        "behavior_rate_limit" => {
            let i: RateInputs = inputs(raw)?;
            let behavior = Behavior {
                scale_up: i.scale_up,
                scale_down: i.scale_down,
            };
            let (up, down) =
                behavior.resolve(ControllerConfig::default().downscale_stabilization_seconds);
            let (desired, limit) = behavior::rate_limit(
                i.current_replicas,
                i.prenormalized_desired_replicas,
                i.min_replicas,
                i.max_replicas,
                &up,
                &down,
                &events(&i.scale_up_events),
                &events(&i.scale_down_events),
                NOW,
            );
            Ok(Computed::from([
                ("desiredReplicas", json!(desired)),
                ("scalingLimitedReason", json!(limit.reason())),
            ]))
        }
        "scale_limit_function" => {
            let i: LimitInputs = inputs(raw)?;
            let (up_default, down_default) = Behavior::default().resolve(0.0);
            let fill = |default: Resolved| Resolved {
                window_seconds: i.rules.stabilization_window_seconds.map_or(0.0, f64::from),
                select: i.rules.select_policy.unwrap_or(default.select),
                policies: i.rules.policies.clone().unwrap_or(default.policies),
            };
            let limit = match i.direction.as_str() {
                "up" => {
                    behavior::scale_up_limit(i.current_replicas, &[], &[], &fill(up_default), NOW)
                }
                "down" => behavior::scale_down_limit(
                    i.current_replicas,
                    &[],
                    &[],
                    &fill(down_default),
                    NOW,
                ),
                other => return Err(format!("inputs: direction {other:?} is not up or down")),
            };
            Ok(Computed::from([("limit", json!(limit))]))
        }
        "behavior_stabilization" => {
            let i: StabilizationInputs = inputs(raw)?;
            let stabilized = behavior::stabilize(
                &recommendations(&i.recommendations),
                NOW,
                i.current_replicas,
                i.prenormalized_desired_replicas,
                i.scale_up_stabilization_window_seconds,
                i.scale_down_stabilization_window_seconds,
            );
            Ok(Computed::from([("stabilizedReplicas", json!(stabilized))]))
        }
        "legacy_stabilization" => {
            let i: LegacyStabilizationInputs = inputs(raw)?;
            let stabilized = legacy_stabilize(
                &recommendations(&i.recommendations),
                NOW,
                i.prenormalized_desired_replicas,
                i.window_seconds,
            );
            Ok(Computed::from([("stabilizedReplicas", json!(stabilized))]))
        }
        "legacy_rules" => {
            let i: LegacyRulesInputs = inputs(raw)?;
            let (desired, limit) = legacy_rules(
                i.current_replicas,
                i.prenormalized_desired_replicas,
                i.min_replicas,
                i.max_replicas,
            );
            Ok(Computed::from([
                ("desiredReplicas", json!(desired)),
                ("scalingLimitedReason", json!(limit.reason())),
            ]))
        }
        other => Err(format!("unknown kind {other:?}")),
    }
}

fn controller_sync(i: &SyncInputs) -> Result<Computed, String> {
    let mut controller = Controller::new(ControllerConfig::default());
    controller.recommendations = i.recommendations.as_deref().map(recommendations);
    controller.up_events = events(&i.scale_up_events);
    controller.down_events = events(&i.scale_down_events);
    let spec = HpaSpec {
        min_replicas: i.min_replicas,
        max_replicas: i.max_replicas,
        behavior: i.behavior.clone(),
    };
    let metrics = i
        .metrics
        .iter()
        .map(observation)
        .collect::<Result<Vec<_>, _>>()?;
    let scale = Scale {
        spec_replicas: i.spec_replicas,
        status_replicas: i.status_replicas,
    };
    let decision = controller.sync(NOW, &spec, scale, &metrics);
    let mut computed = Computed::from([
        ("desiredReplicas", json!(decision.desired)),
        ("scalingActive", json!(decision.scaling_active)),
    ]);
    if let Some(limit) = decision.limited {
        computed.insert("scalingLimitedReason", json!(limit.reason()));
    }
    Ok(computed)
}

fn observation(m: &MetricInputs) -> Result<Observation, String> {
    let name = m.metric_name.clone().unwrap_or_else(|| m.kind.clone());
    if m.fails {
        let reason = match m.kind.as_str() {
            "pods_average_value" => "FailedGetPodsMetric",
            "object_value" | "object_average_value" => "FailedGetObjectMetric",
            "external_value" | "external_average_value" => "FailedGetExternalMetric",
            "cpu_utilization" => "FailedGetResourceMetric",
            _ => "InvalidMetricSourceType",
        };
        return Ok(Observation::Failed {
            reason: reason.into(),
            message: format!("metric {name} ({}) failed", m.kind),
        });
    }
    let need = |field: &str, value: Option<i64>| {
        value.ok_or_else(|| format!("metric {name} ({}) has no {field}", m.kind))
    };
    let described = || match &m.described_object {
        Some(object) => format!("{} metric {name}", object.kind),
        None => format!("external metric {name}"),
    };
    Ok(match m.kind.as_str() {
        "pods_average_value" => {
            let (pods, values) = split_pods(&m.pods);
            Observation::PodsAverageValue {
                name: name.clone(),
                target_milli: need("targetAverageValueMilli", m.target_average_value_milli)?,
                pods,
                values_milli: values,
            }
        }
        "object_value" | "external_value" => Observation::Value {
            source: source(&m.kind),
            description: described(),
            usage_milli: usage(m.object_value_milli, m.external_values_milli.as_deref())?
                .map_err(|e| e.0)?,
            target_milli: need("targetValueMilli", m.target_value_milli)?,
            pods: split_pods(&m.pods).0,
        },
        "object_average_value" | "external_average_value" => Observation::AverageValue {
            source: source(&m.kind),
            description: described(),
            usage_milli: usage(m.object_value_milli, m.external_values_milli.as_deref())?
                .map_err(|e| e.0)?,
            target_average_milli: need("targetAverageValueMilli", m.target_average_value_milli)?,
        },
        "cpu_utilization" => Observation::Proposal {
            description: "cpu resource utilization (percentage of request)".into(),
            replicas: need("proposal", m.proposal)? as i32,
        },
        other => return Err(format!("metric {name}: unknown type {other:?}")),
    })
}

/// Object or External, from a vector's metric type.
fn source(kind: &str) -> MetricSource {
    if kind.starts_with("external") {
        MetricSource::External
    } else {
        MetricSource::Object
    }
}

/// An Object value, or the sum of External values.
fn usage(
    object: Option<i64>,
    external: Option<&[i64]>,
) -> Result<Result<i64, replicas::MetricError>, String> {
    match (object, external) {
        (Some(value), None) => Ok(Ok(value)),
        (None, Some(values)) => Ok(replicas::external_usage(values)),
        _ => Err("inputs: give exactly one of objectValueMilli and externalValuesMilli".into()),
    }
}

fn proposal(p: Result<Proposal, replicas::MetricError>, reported: &'static str) -> Computed {
    match p {
        Ok(p) => Computed::from([
            ("desiredReplicas", json!(p.replicas)),
            (reported, json!(p.reported_milli)),
        ]),
        Err(error) => Computed::from([("error", json!(error.0))]),
    }
}

fn split_pods(pods: &[PodInput]) -> (Vec<PodState>, BTreeMap<String, i64>) {
    let states = pods.iter().map(|p| p.state.clone()).collect();
    let values = pods
        .iter()
        .filter_map(|p| Some((p.state.name.clone(), p.metric?)))
        .collect();
    (states, values)
}

fn recommendations(recs: &[RecommendationInput]) -> Vec<Recommendation> {
    recs.iter()
        .map(|r| Recommendation {
            replicas: r.recommendation,
            at: NOW - r.age_seconds,
        })
        .collect()
}

fn events(events: &[EventInput]) -> Vec<ScaleEvent> {
    events
        .iter()
        .map(|e| ScaleEvent {
            change: e.replica_change,
            at: NOW - e.age_seconds,
        })
        .collect()
}

#[derive(Deserialize)]
struct PodInput {
    #[serde(flatten)]
    state: PodState,
    metric: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodsInputs {
    current_replicas: i32,
    pods: Vec<PodInput>,
    target_average_value_milli: i64,
    #[serde(default)]
    tolerance: Tolerance,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ValueInputs {
    current_replicas: i32,
    object_value_milli: Option<i64>,
    external_values_milli: Option<Vec<i64>>,
    target_value_milli: i64,
    #[serde(default)]
    pods: Vec<PodInput>,
    #[serde(default)]
    tolerance: Tolerance,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AverageInputs {
    status_replicas: i32,
    object_value_milli: Option<i64>,
    external_values_milli: Option<Vec<i64>>,
    target_average_value_milli: i64,
    #[serde(default)]
    tolerance: Tolerance,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventInput {
    replica_change: i32,
    age_seconds: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecommendationInput {
    recommendation: i32,
    age_seconds: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RateInputs {
    current_replicas: i32,
    prenormalized_desired_replicas: i32,
    min_replicas: i32,
    max_replicas: i32,
    scale_up: Option<Rules>,
    scale_down: Option<Rules>,
    #[serde(default)]
    scale_up_events: Vec<EventInput>,
    #[serde(default)]
    scale_down_events: Vec<EventInput>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LimitInputs {
    direction: String,
    current_replicas: i32,
    rules: Rules,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StabilizationInputs {
    recommendations: Vec<RecommendationInput>,
    current_replicas: i32,
    prenormalized_desired_replicas: i32,
    scale_up_stabilization_window_seconds: f64,
    scale_down_stabilization_window_seconds: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LegacyStabilizationInputs {
    recommendations: Vec<RecommendationInput>,
    prenormalized_desired_replicas: i32,
    window_seconds: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(
    clippy::struct_field_names,
    reason = "the fields are the vector file's, named by the reference"
)]
struct LegacyRulesInputs {
    current_replicas: i32,
    prenormalized_desired_replicas: i32,
    min_replicas: i32,
    max_replicas: i32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyncInputs {
    min_replicas: i32,
    max_replicas: i32,
    spec_replicas: i32,
    status_replicas: i32,
    behavior: Option<Behavior>,
    recommendations: Option<Vec<RecommendationInput>>,
    #[serde(default)]
    scale_up_events: Vec<EventInput>,
    #[serde(default)]
    scale_down_events: Vec<EventInput>,
    metrics: Vec<MetricInputs>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribedObject {
    kind: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetricInputs {
    #[serde(rename = "type")]
    kind: String,
    metric_name: Option<String>,
    #[serde(default)]
    fails: bool,
    proposal: Option<i64>,
    described_object: Option<DescribedObject>,
    object_value_milli: Option<i64>,
    external_values_milli: Option<Vec<i64>>,
    target_value_milli: Option<i64>,
    target_average_value_milli: Option<i64>,
    #[serde(default)]
    pods: Vec<PodInput>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatches_and_bad_vectors_are_reported() {
        let vectors = parse(
            r#"[
              {"id": "ok", "kind": "legacy_rules", "inputs": {"currentReplicas": 3, "prenormalizedDesiredReplicas": 1000, "minReplicas": 1, "maxReplicas": 2000}, "expected": {"desiredReplicas": 6, "scalingLimitedReason": "ScaleUpLimit"}},
              {"id": "wrong", "kind": "legacy_rules", "inputs": {"currentReplicas": 3, "prenormalizedDesiredReplicas": 1000, "minReplicas": 1, "maxReplicas": 2000}, "expected": {"desiredReplicas": 7, "nonsense": 1}},
              {"id": "kind", "kind": "nope", "inputs": {}, "expected": {"desiredReplicas": 1}},
              {"id": "shape", "kind": "legacy_rules", "inputs": {"currentReplicas": "3"}, "expected": {"desiredReplicas": 1}},
              {"id": "empty", "kind": "legacy_rules", "inputs": {"currentReplicas": 3, "prenormalizedDesiredReplicas": 1000, "minReplicas": 1, "maxReplicas": 2000}, "expected": {}}
            ]"#,
        )
        .unwrap();
        assert_eq!(check(&vectors[0]), Outcome::Pass);
        let Outcome::Fail(mismatches) = check(&vectors[1]) else {
            panic!("a mismatch")
        };
        assert_eq!(mismatches.len(), 2);
        assert_eq!(mismatches[0].field, "desiredReplicas");
        assert_eq!(mismatches[0].got, json!(6));
        assert_eq!(mismatches[1].got, Value::Null);
        assert!(matches!(check(&vectors[2]), Outcome::Invalid(e) if e.contains("unknown kind")));
        assert!(matches!(check(&vectors[3]), Outcome::Invalid(e) if e.contains("inputs")));
        assert!(
            matches!(check(&vectors[4]), Outcome::Invalid(e) if e.contains("checks nothing")),
            "a vector that expects nothing cannot pass"
        );
        assert!(parse("{}").is_err());
    }
}
