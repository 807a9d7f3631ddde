//! From a metric request to the values served: which pods it describes, each pod's fresh value
//! of the metric asked for, and the mean for a Deployment or a namespace. No HTTP here: the API
//! ([`crate::api`]) turns the answer into a `MetricValueList` and an error into a `Status`.
//!
//! A value is served only when fresh (not older than the metrics file's `max_age`) and finite; a
//! pod without one is left out of a list, never given a 0, and a single object without one is
//! [`ValuesError::NotFound`]. Each value keeps the time and window of the data it came from: for
//! the score, the older input's time and the longer input's window; for a mean, the oldest time
//! and the longest window of the pods it averages.

use std::collections::BTreeMap;
use std::time::Duration;

use framescale_core::quantity;
use framescale_core::score::{self, Signals};

use crate::backlog::BacklogMetric;
use crate::config::MetricsConfig;
use crate::pods::{ListError, PodLister};
use crate::request::{MetricRequest, Target};
use crate::selector::Selector;
use crate::source::{PodSignals, Reading, SignalSource, SourceError};
use crate::wire::{DescribedObject, MetricValue};

/// Why a request has no values.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ValuesError {
    /// The metric, the object or a fresh value of it does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The backend cannot answer (503).
    #[error(transparent)]
    Backend(#[from] SourceError),
    /// The pods a selector picks cannot be listed (503).
    #[error(transparent)]
    Pods(#[from] ListError),
}

/// Which of the four served metrics a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    Latency,
    Frame,
    Gpu,
    Score,
}

/// Where values come from.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    /// Metric definitions and score settings.
    pub config: &'a MetricsConfig,
    /// The signals of a namespace's pods.
    pub source: &'a dyn SignalSource,
    /// How selectors and Deployments become pods; `None`: the pods the source has data for,
    /// with no labels.
    pub pods: Option<&'a dyn PodLister>,
    /// The render queue's backlog, when the adapter serves it.
    pub backlog: Option<&'a BacklogMetric>,
}

/// The values `request` asks for, as of `now_millis`.
pub async fn values(
    inputs: Inputs<'_>,
    request: &MetricRequest,
    now_millis: u64,
) -> Result<Vec<MetricValue>, ValuesError> {
    let config = inputs.config;
    let not_found = |what: String| {
        ValuesError::NotFound(format!(
            "the server could not find the metric {} for {what}",
            request.metric
        ))
    };
    if let Some(backlog) = inputs.backlog.filter(|b| b.name == request.metric) {
        if !backlog.describes(request) {
            return Err(ValuesError::NotFound(format!(
                "the server could not find the metric {} for {}: it describes only deployments.apps {} in namespace {}, with no metric selector",
                request.metric,
                request.target.resource(),
                backlog.deployment,
                backlog.namespace
            )));
        }
        return Ok(vec![backlog.value(&request.metric, now_millis).await?]);
    }
    let served = match request.metric.as_str() {
        name if name == config.latency.name => Served::Latency,
        name if name == config.frame.name => Served::Frame,
        name if name == config.gpu.name => Served::Gpu,
        name if name == config.score_name => Served::Score,
        _ => return Err(not_found(request.target.resource().to_owned())),
    };
    if let Some(selector) = &request.metric_selector {
        // framescale's metrics are one series per pod: there are no series labels to select.
        return Err(not_found(format!(
            "{} with selector {selector}",
            request.target.resource()
        )));
    }
    let value_of = |signals: &PodSignals| value_of(config, served, signals, now_millis);
    match &request.target {
        Target::Selected {
            namespace,
            resource,
            selector,
        } if resource == "pods" => {
            let (pods, signals) = pods_and_signals(inputs, namespace, selector).await?;
            Ok(pods
                .iter()
                .filter_map(|pod| {
                    let reading = value_of(signals.get(pod)?)?;
                    metric_value(request, pod_object(namespace, pod), reading)
                })
                .collect())
        }
        Target::Object {
            namespace,
            resource,
            name,
        } if resource == "pods" => {
            let signals = inputs.source.namespace_signals(namespace).await?;
            let value = signals
                .get(name)
                .and_then(value_of)
                .and_then(|reading| metric_value(request, pod_object(namespace, name), reading));
            Ok(vec![value.ok_or_else(|| no_value(request, name))?])
        }
        Target::Object {
            namespace,
            resource,
            name,
        } if resource == "deployments.apps" => {
            let lister = inputs.pods.ok_or_else(|| {
                ValuesError::NotFound(format!(
                    "deployments need the Kubernetes API or a pods file listing them; cannot resolve deployment {name}"
                ))
            })?;
            let selector = lister
                .deployment_selector(namespace, name)?
                .ok_or_else(|| not_found(format!("deployments.apps {name}")))?;
            let (pods, signals) = pods_and_signals(inputs, namespace, &selector).await?;
            let object = DescribedObject {
                kind: "Deployment",
                api_version: "apps/v1",
                namespace: Some(namespace.clone()),
                name: name.clone(),
            };
            let value = mean(pods.iter().filter_map(|pod| value_of(signals.get(pod)?)))
                .and_then(|reading| metric_value(request, object, reading));
            Ok(vec![value.ok_or_else(|| no_value(request, name))?])
        }
        Target::Namespace { namespace } => {
            // The namespace's pods as they are now (with a lister): not a pod gone minutes ago
            // that an exporter still serves for its grace period.
            let (pods, signals) = pods_and_signals(inputs, namespace, &Selector::default()).await?;
            let object = DescribedObject {
                kind: "Namespace",
                api_version: "v1",
                namespace: None,
                name: namespace.clone(),
            };
            let value = mean(pods.iter().filter_map(|pod| value_of(signals.get(pod)?)))
                .and_then(|reading| metric_value(request, object, reading));
            Ok(vec![value.ok_or_else(|| no_value(request, namespace))?])
        }
        other => Err(not_found(other.resource().to_owned())),
    }
}

/// The names of the pods `selector` picks in `namespace`, and the namespace's signals. Without a
/// pod lister the pods are those the source has data for, with no labels: an empty selector
/// picks them all, any other none (a negative one such as `!app` or `app!=web` too, though it
/// would match a pod without labels: the pods' labels are unknown, not absent).
async fn pods_and_signals(
    inputs: Inputs<'_>,
    namespace: &str,
    selector: &Selector,
) -> Result<(Vec<String>, BTreeMap<String, PodSignals>), ValuesError> {
    let signals = inputs.source.namespace_signals(namespace).await?;
    let pods = if let Some(lister) = inputs.pods {
        lister.pods(namespace, selector)?
    } else if selector.is_empty() {
        signals.keys().cloned().collect()
    } else {
        Vec::new()
    };
    Ok((pods, signals))
}

/// The value of `served` for a pod, if fresh; the time and window are those of the data.
fn value_of(
    config: &MetricsConfig,
    served: Served,
    signals: &PodSignals,
    now: u64,
) -> Option<Reading> {
    let max_age = config.max_age.as_millis() as u64;
    let fresh = |r: Option<Reading>| {
        r.filter(|r| now.saturating_sub(r.at_millis) <= max_age && r.value.is_finite())
    };
    let (latency, duty) = (fresh(signals.latency_ms), fresh(signals.duty_pct));
    match served {
        Served::Latency => latency,
        Served::Frame => fresh(signals.p95_ms),
        Served::Gpu => duty,
        Served::Score => {
            let fused = score::score(
                &config.score,
                Signals {
                    p95_ms: latency.map(|r| r.value),
                    duty_pct: duty.map(|r| r.value),
                },
                signals.holds,
            )?;
            let inputs = || latency.into_iter().chain(duty);
            Some(Reading {
                value: fused.value,
                at_millis: inputs().map(|r| r.at_millis).min()?,
                window: inputs().filter_map(|r| r.window).max(),
            })
        }
    }
}

/// The mean of `readings`, as of the oldest of them, over the longest window; `None` for none.
fn mean(readings: impl Iterator<Item = Reading>) -> Option<Reading> {
    let readings: Vec<Reading> = readings.collect();
    let at_millis = readings.iter().map(|r| r.at_millis).min()?;
    Some(Reading {
        value: readings.iter().map(|r| r.value).sum::<f64>() / readings.len() as f64,
        at_millis,
        window: readings.iter().filter_map(|r| r.window).max(),
    })
}

fn no_value(request: &MetricRequest, name: &str) -> ValuesError {
    ValuesError::NotFound(format!(
        "the server could not find the metric {} for {} {name}: no fresh value",
        request.metric,
        request.target.resource()
    ))
}

fn pod_object(namespace: &str, name: &str) -> DescribedObject {
    DescribedObject {
        kind: "Pod",
        api_version: "v1",
        namespace: Some(namespace.to_owned()),
        name: name.to_owned(),
    }
}

/// The item for one object; `None` when the value cannot be a quantity (too large), which is
/// treated like a missing value rather than replaced by anything.
fn metric_value(
    request: &MetricRequest,
    object: DescribedObject,
    reading: Reading,
) -> Option<MetricValue> {
    Some(MetricValue {
        object,
        metric: request.metric.clone(),
        selector: None,
        timestamp_millis: reading.at_millis,
        window_seconds: reading.window.map(|w| whole_seconds(w).max(1)),
        quantity: quantity::format(reading.value).ok()?,
    })
}

/// A window in whole seconds, rounded to the nearest (a 500 ms poll is 1 s, never 0).
fn whole_seconds(window: Duration) -> u64 {
    (window.as_millis() as u64 + 500) / 1000
}

#[cfg(test)]
mod tests;
