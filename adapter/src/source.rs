//! Where per-pod signals come from: the backend trait, an in-memory source, and the direct
//! backend that scrapes exporters itself.
//!
//! A source answers one question — the signals of every pod it knows in a namespace — with the
//! time each value was measured and whether each over-target regime has held, so the serving
//! layer can apply the max age and the score the same way for every backend.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use framescale_core::score::{HoldTracker, Holds, Signals};

use crate::config::{MetricsConfig, SignalMetric};
use crate::series::Sample;

/// A boxed future, so sources can be used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A value and when it was measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// The value, in the metric's unit.
    pub value: f64,
    /// When it was measured, in ms since the epoch.
    pub at_millis: u64,
}

/// What a source knows of one pod.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PodSignals {
    /// P95 frame time, milliseconds.
    pub p95_ms: Option<Reading>,
    /// Device duty, percent.
    pub duty_pct: Option<Reading>,
    /// Which regimes have held for their hold time.
    pub holds: Holds,
}

/// Why a source cannot answer (served as 503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metrics backend unavailable: {0}")]
pub struct SourceError(pub String);

/// A backend of per-pod signals.
pub trait SignalSource: Send + Sync {
    /// The signals of every pod of `namespace` the source knows, by pod name.
    fn namespace_signals<'a>(
        &'a self,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, PodSignals>, SourceError>>;
}

/// A source holding fixed signals, for tests and offline tools.
#[derive(Debug, Default, Clone)]
pub struct MemorySource {
    pods: Arc<Mutex<BTreeMap<(String, String), PodSignals>>>,
    down: Arc<Mutex<Option<String>>>,
}

impl MemorySource {
    /// Sets one pod's signals.
    pub fn set(&self, namespace: &str, pod: &str, signals: PodSignals) {
        self.pods
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((namespace.into(), pod.into()), signals);
    }

    /// Makes every query fail with `reason` (or succeed again with `None`).
    pub fn set_down(&self, reason: Option<&str>) {
        *self.down.lock().unwrap_or_else(PoisonError::into_inner) = reason.map(str::to_owned);
    }
}

impl SignalSource for MemorySource {
    fn namespace_signals<'a>(
        &'a self,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, PodSignals>, SourceError>> {
        Box::pin(async move {
            if let Some(reason) = self
                .down
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
            {
                return Err(SourceError(reason));
            }
            let pods = self.pods.lock().unwrap_or_else(PoisonError::into_inner);
            Ok(pods
                .iter()
                .filter(|((ns, _), _)| ns == namespace)
                .map(|((_, pod), s)| (pod.clone(), *s))
                .collect())
        })
    }
}

/// The direct backend: scrapes exporter `/metrics` endpoints on an interval and keeps the latest
/// value of each pod's signals, with a [`HoldTracker`] per pod for the regimes' hold times.
#[derive(Debug, Clone)]
pub struct DirectSource {
    config: Arc<MetricsConfig>,
    state: Arc<Mutex<DirectState>>,
}

#[derive(Debug, Default)]
struct DirectState {
    pods: BTreeMap<(String, String), PodState>,
    /// Scrapes of the last round that failed, with why.
    failures: Vec<String>,
    rounds: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct PodState {
    p95_ms: Option<Reading>,
    duty_pct: Option<Reading>,
    tracker: HoldTracker,
}

impl DirectSource {
    /// An empty source reading the series `config` names; feed it with
    /// [`DirectSource::ingest`] or run [`DirectSource::scrape_loop`].
    #[must_use]
    pub fn new(config: Arc<MetricsConfig>) -> Self {
        DirectSource {
            config,
            state: Arc::new(Mutex::new(DirectState::default())),
        }
    }

    /// Takes the samples of one exporter scraped at `at_millis`.
    pub fn ingest(&self, samples: &[Sample], at_millis: u64) {
        let config = &self.config;
        let frame = per_pod(&config.frame, samples);
        let gpu = per_pod(&config.gpu, samples);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let pods: std::collections::BTreeSet<&(String, String)> =
            frame.keys().chain(gpu.keys()).collect();
        for pod in pods {
            let entry = state.pods.entry(pod.clone()).or_default();
            if let Some(&value) = frame.get(pod) {
                entry.p95_ms = Some(Reading { value, at_millis });
            }
            if let Some(&value) = gpu.get(pod) {
                entry.duty_pct = Some(Reading { value, at_millis });
            }
            let signals = Signals {
                p95_ms: frame.get(pod).copied(),
                duty_pct: gpu.get(pod).copied(),
            };
            entry.tracker.observe(&config.score, signals, at_millis);
        }
    }

    /// Scrapes every target every `interval` until the process ends. Blocking: run it on its
    /// own thread. A target that fails keeps its pods' last values, which go stale.
    pub fn scrape_loop(&self, targets: &[String], interval: Duration) {
        let max_age = self.config.max_age;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(interval.min(Duration::from_secs(10))))
            .build()
            .into();
        loop {
            let mut failures = Vec::new();
            for target in targets {
                let at = now_millis();
                match scrape(&agent, target, &self.config) {
                    Ok(samples) => self.ingest(&samples, at),
                    Err(error) => {
                        tracing::warn!(%target, %error, "Cannot scrape exporter");
                        failures.push(format!("{target}: {error}"));
                    }
                }
            }
            self.forget_older_than(now_millis().saturating_sub(10 * max_age.as_millis() as u64));
            {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                state.failures = failures;
                state.rounds += 1;
            }
            std::thread::sleep(interval);
        }
    }

    /// Whether at least one scrape round finished, and the failures of the last one.
    #[must_use]
    pub fn health(&self) -> (u64, Vec<String>) {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        (state.rounds, state.failures.clone())
    }

    /// Drops pods whose newest value is older than `cutoff_millis`, bounding memory as pods go.
    fn forget_older_than(&self, cutoff_millis: u64) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.pods.retain(|_, p| {
            let newest = p
                .p95_ms
                .map(|r| r.at_millis)
                .max(p.duty_pct.map(|r| r.at_millis));
            newest.is_some_and(|at| at >= cutoff_millis)
        });
    }
}

impl SignalSource for DirectSource {
    fn namespace_signals<'a>(
        &'a self,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, PodSignals>, SourceError>> {
        Box::pin(async move { Ok(self.snapshot(namespace, now_millis())) })
    }
}

impl DirectSource {
    /// The signals of `namespace` as of `now_millis`, with holds derived from the trackers.
    #[must_use]
    pub fn snapshot(&self, namespace: &str, now_millis: u64) -> BTreeMap<String, PodSignals> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let score = &self.config.score;
        state
            .pods
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .map(|((_, pod), p)| {
                (
                    pod.clone(),
                    PodSignals {
                        p95_ms: p.p95_ms,
                        duty_pct: p.duty_pct,
                        holds: p.tracker.holds(score, now_millis),
                    },
                )
            })
            .collect()
    }
}

/// The value of `metric` per (namespace, pod) in `samples`, scaled and aggregated.
fn per_pod(metric: &SignalMetric, samples: &[Sample]) -> BTreeMap<(String, String), f64> {
    let mut values: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for sample in samples {
        if !sample.value.is_finite() || !metric.series.matches(&sample.name, &sample.labels) {
            continue;
        }
        let (Some(namespace), Some(pod)) = (
            sample.labels.get(&metric.namespace_label),
            sample.labels.get(&metric.pod_label),
        ) else {
            continue;
        };
        values
            .entry((namespace.clone(), pod.clone()))
            .or_default()
            .push(sample.value * metric.scale);
    }
    values
        .into_iter()
        .filter_map(|(pod, v)| Some((pod, metric.aggregate.apply(&v)?)))
        .collect()
}

/// Scrapes one exporter, keeping only the samples the configured series select.
fn scrape(agent: &ureq::Agent, url: &str, config: &MetricsConfig) -> Result<Vec<Sample>, String> {
    let mut response = agent
        .get(url)
        .header("Accept", "text/plain;version=0.0.4")
        .call()
        .map_err(|e| e.to_string())?;
    let reader =
        std::io::BufReader::new(response.body_mut().with_config().limit(256 << 20).reader());
    let metrics = [&config.frame, &config.gpu];
    let mut samples = Vec::new();
    crate::series::visit_exposition(
        reader,
        |name| metrics.iter().any(|m| m.series.name == name),
        |sample| {
            if metrics
                .iter()
                .any(|m| m.series.matches(&sample.name, &sample.labels))
            {
                samples.push(sample);
            }
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(samples)
}

/// Milliseconds since the Unix epoch, now.
#[must_use]
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::parse_exposition;

    const EXPOSITION: &str = r#"
framescale_frame_duration_seconds{namespace="render",pod="a",container="blender",quantile="0.95"} 0.064
framescale_frame_duration_seconds{namespace="render",pod="a",container="sidecar",quantile="0.95"} 0.010
framescale_frame_duration_seconds{namespace="render",pod="a",container="blender",quantile="0.5"} 0.020
framescale_frame_duration_seconds{namespace="render",pod="b",container="blender",quantile="0.95"} 0.016
framescale_gpu_duty_cycle_ratio{namespace="render",pod="a",container="blender",device="gpu",uuid="GPU-1"} 0.91
framescale_frame_duration_seconds{namespace="other",pod="c",container="x",quantile="0.95"} 0.5
"#;

    #[test]
    fn ingest_picks_aggregates_and_scales() {
        let source = DirectSource::new(Arc::new(MetricsConfig::default()));
        source.ingest(&parse_exposition(EXPOSITION).unwrap(), 1_000);
        let render = source.snapshot("render", 1_000);
        assert_eq!(render.len(), 2);
        assert_eq!(
            render["a"].p95_ms,
            Some(Reading {
                value: 64.0,
                at_millis: 1_000
            })
        );
        assert!((render["a"].duty_pct.unwrap().value - 91.0).abs() < 1e-9);
        assert_eq!(render["b"].duty_pct, None, "missing stays missing");
        assert_eq!(source.snapshot("other", 1_000).len(), 1);
    }

    #[test]
    fn holds_build_up_over_scrapes() {
        let source = DirectSource::new(Arc::new(MetricsConfig::default()));
        let samples = parse_exposition(EXPOSITION).unwrap();
        for at in (0..=30_000).step_by(5_000) {
            source.ingest(&samples, at);
        }
        let holds = source.snapshot("render", 30_000)["a"].holds;
        assert_eq!(
            holds,
            Holds {
                frame_over: true,
                gpu_over: true,
                both_over: true
            }
        );
        assert_eq!(
            source.snapshot("render", 30_000)["b"].holds,
            Holds::default()
        );
    }

    #[test]
    fn pods_without_fresh_values_are_forgotten() {
        let source = DirectSource::new(Arc::new(MetricsConfig::default()));
        source.ingest(&parse_exposition(EXPOSITION).unwrap(), 1_000);
        source.forget_older_than(2_000);
        assert!(source.snapshot("render", 2_000).is_empty());
    }
}
