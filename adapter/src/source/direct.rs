//! The direct backend: the adapter scrapes the exporters' `/metrics` itself, on an interval, and
//! keeps the latest value of each pod's signals with a [`HoldTracker`] per pod for the regimes'
//! hold times.
//!
//! Every exporter of a round is scraped at once (one task each on the adapter's runtime), each
//! with a timeout shorter than the interval, so one slow or hung exporter delays no other. An
//! exposition is read as it arrives, line by line, keeping only the series the metrics file
//! selects; it is never held whole. An exporter's answer is the whole truth about its pods: a
//! series it stops serving (a window emptied of frames, a pod gone) is missing at once, not kept
//! until it ages out. An exporter that fails keeps its pods' last values, which go stale after
//! `max_age` and are then missing, never 0; their holds are made of observations only, so they
//! neither grow nor complete while it fails, and start over when it answers again. A failing exporter is logged when it
//! starts failing and when it recovers, not at every scrape, and shows in `/readyz`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use framescale_core::score::{HoldTracker, Signals};

use super::{BoxFuture, PodSignals, Reading, SignalSource, SourceError, now_millis};
use crate::config::{MetricsConfig, SignalMetric, WindowSource};
use crate::exporters::Exporters;
use crate::series::{self, Sample};
use crate::telemetry::Telemetry;

/// Largest exposition read from one exporter.
const BODY_LIMIT: usize = 256 << 20;

/// Scrapes exporters and answers from what they served.
#[derive(Debug, Clone)]
pub struct DirectSource {
    config: Arc<MetricsConfig>,
    state: Arc<Mutex<DirectState>>,
    telemetry: Option<Arc<Telemetry>>,
}

#[derive(Debug, Default)]
struct DirectState {
    pods: BTreeMap<(String, String), PodState>,
    /// The pods each exporter served at its last answer.
    served_by: BTreeMap<String, BTreeSet<(String, String)>>,
    /// Why each failing target failed at its last scrape.
    failing: BTreeMap<String, String>,
    rounds: u64,
    targets: usize,
}

/// How the scraping goes, for `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Rounds finished.
    pub rounds: u64,
    /// Exporters scraped in the last round.
    pub targets: usize,
    /// `target: error` for each exporter failing now.
    pub failures: Vec<String>,
}

#[derive(Debug, Default, Clone, Copy)]
struct PodState {
    latency_ms: Option<Reading>,
    p95_ms: Option<Reading>,
    duty_pct: Option<Reading>,
    tracker: HoldTracker,
}

/// Why one exporter could not be scraped.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// The request failed or the answer was not a success.
    #[error("{}", super::with_causes(.0))]
    Http(#[from] reqwest::Error),
    /// No full answer within the timeout.
    #[error("no answer within {}", humantime::format_duration(*.0))]
    TimedOut(Duration),
    /// The exposition is larger than the adapter reads.
    #[error("the exposition is larger than {} MiB", BODY_LIMIT >> 20)]
    TooLarge,
    /// A line is not valid UTF-8 text.
    #[error("line {0} is not UTF-8 text")]
    NotText(usize),
    /// A selected sample does not parse.
    #[error(transparent)]
    Exposition(#[from] series::Error),
}

impl DirectSource {
    /// An empty source reading the series `config` names; feed it with
    /// [`DirectSource::ingest`] or run [`DirectSource::scrape_loop`].
    #[must_use]
    pub fn new(config: Arc<MetricsConfig>) -> Self {
        DirectSource {
            config,
            state: Arc::new(Mutex::new(DirectState::default())),
            telemetry: None,
        }
    }

    /// The same source, counting its rounds and exporters in `telemetry`.
    #[must_use]
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// Takes the samples `target` answered when scraped at `at_millis`. What it no longer serves
    /// of a pod is missing from now on; a pod it no longer serves at all is forgotten.
    pub fn ingest(&self, target: &str, samples: &[Sample], at_millis: u64) {
        let config = &self.config;
        let (latency, frame, gpu) = (
            per_pod(&config.latency, samples),
            per_pod(&config.frame, samples),
            per_pod(&config.gpu, samples),
        );
        let (latency_window, frame_window, gpu_window) = (
            window(&config.latency, samples),
            window(&config.frame, samples),
            window(&config.gpu, samples),
        );
        let pods: BTreeSet<(String, String)> = latency
            .keys()
            .chain(frame.keys())
            .chain(gpu.keys())
            .cloned()
            .collect();
        let mut state = self.lock();
        let before = state
            .served_by
            .insert(target.to_owned(), pods.clone())
            .unwrap_or_default();
        for gone in before.difference(&pods) {
            state.pods.remove(gone);
        }
        for pod in &pods {
            let entry = state.pods.entry(pod.clone()).or_default();
            let reading = |value: f64, window| Reading {
                value,
                at_millis,
                window,
            };
            entry.latency_ms = latency.get(pod).map(|&v| reading(v, latency_window));
            entry.p95_ms = frame.get(pod).map(|&v| reading(v, frame_window));
            entry.duty_pct = gpu.get(pod).map(|&v| reading(v, gpu_window));
            let signals = Signals {
                p95_ms: latency.get(pod).copied(),
                duty_pct: gpu.get(pod).copied(),
            };
            entry.tracker.observe(&config.score, signals, at_millis);
        }
    }

    /// Scrapes the exporters every `interval` with `client`, for as long as the task runs; a
    /// watched list is read again at every round, once it has listed.
    pub async fn scrape_loop(
        self,
        client: reqwest::Client,
        exporters: Exporters,
        interval: Duration,
    ) {
        let timeout = scrape_timeout(interval);
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut empty_logged = false;
        loop {
            ticks.tick().await;
            if !exporters.is_synced() {
                continue;
            }
            let targets = exporters.urls();
            if targets.is_empty() != empty_logged {
                empty_logged = targets.is_empty();
                if empty_logged {
                    tracing::warn!(exporters = %exporters.describe(), "No exporter to scrape: every pod is missing");
                }
            }
            let started = std::time::Instant::now();
            self.scrape_round(&client, &targets, timeout).await;
            if let Some(telemetry) = &self.telemetry {
                let failing = self.lock().failing.len();
                telemetry.scrape_round(started.elapsed(), targets.len(), failing);
            }
        }
    }

    /// Scrapes every target once, all at once, each within `timeout`; then forgets pods whose
    /// newest value is ten max ages old.
    pub async fn scrape_round(
        &self,
        client: &reqwest::Client,
        targets: &[String],
        timeout: Duration,
    ) {
        let scrapes = targets.iter().map(|target| async move {
            let at = now_millis();
            let result =
                match tokio::time::timeout(timeout, scrape(client, target, &self.config)).await {
                    Ok(result) => result,
                    Err(_) => Err(ScrapeError::TimedOut(timeout)),
                };
            (target, at, result)
        });
        let results = futures_util::future::join_all(scrapes).await;
        {
            // Exporters no longer listed (a node drained) are no longer failing either.
            let mut state = self.lock();
            state.failing.retain(|target, _| targets.contains(target));
            state.served_by.retain(|target, _| targets.contains(target));
            state.targets = targets.len();
        }
        for (target, at, result) in results {
            match result {
                Ok(samples) => {
                    self.ingest(target, &samples, at);
                    if let Some(error) = self.lock().failing.remove(target) {
                        tracing::info!(%target, previous_error = %error, "Exporter answers again");
                    }
                }
                Err(error) => {
                    let error = error.to_string();
                    let mut state = self.lock();
                    // No observation of its pods this round: their holds start over.
                    let served = state.served_by.get(target).cloned().unwrap_or_default();
                    for pod in &served {
                        if let Some(p) = state.pods.get_mut(pod) {
                            p.tracker.interrupt();
                        }
                    }
                    if !state.failing.contains_key(target) {
                        tracing::warn!(%target, %error, "Cannot scrape exporter; its pods go missing after max_age (logged again when it recovers)");
                    }
                    state.failing.insert(target.clone(), error);
                }
            }
        }
        let max_age = self.config.max_age.as_millis() as u64;
        self.forget_older_than(now_millis().saturating_sub(10 * max_age));
        self.lock().rounds += 1;
    }

    /// How the scraping goes.
    #[must_use]
    pub fn health(&self) -> Health {
        let state = self.lock();
        Health {
            rounds: state.rounds,
            targets: state.targets,
            failures: state
                .failing
                .iter()
                .map(|(target, error)| format!("{target}: {error}"))
                .collect(),
        }
    }

    /// The latest signals of `namespace`, with the holds as of each pod's latest observation.
    #[must_use]
    pub fn snapshot(&self, namespace: &str) -> BTreeMap<String, PodSignals> {
        let state = self.lock();
        let score = &self.config.score;
        state
            .pods
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .map(|((_, pod), p)| {
                (
                    pod.clone(),
                    PodSignals {
                        latency_ms: p.latency_ms,
                        p95_ms: p.p95_ms,
                        duty_pct: p.duty_pct,
                        holds: p.tracker.holds(score),
                    },
                )
            })
            .collect()
    }

    /// Drops pods whose newest value is older than `cutoff_millis`, bounding memory as pods go.
    fn forget_older_than(&self, cutoff_millis: u64) {
        self.lock().pods.retain(|_, p| {
            let newest = [p.latency_ms, p.p95_ms, p.duty_pct]
                .into_iter()
                .flatten()
                .map(|r| r.at_millis)
                .max();
            newest.is_some_and(|at| at >= cutoff_millis)
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DirectState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SignalSource for DirectSource {
    fn namespace_signals<'a>(
        &'a self,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, PodSignals>, SourceError>> {
        Box::pin(async move { Ok(self.snapshot(namespace)) })
    }
}

/// The timeout of one scrape: under the interval, so a round ends before the next, and at most
/// 10 s.
#[must_use]
pub fn scrape_timeout(interval: Duration) -> Duration {
    interval.mul_f64(0.8).min(Duration::from_secs(10))
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

/// The window of `metric`'s values in one exporter's samples: stated in the metrics file, or
/// the exporter's own gauge of it (seconds); `None` when neither says.
fn window(metric: &SignalMetric, samples: &[Sample]) -> Option<Duration> {
    match &metric.window {
        WindowSource::Fixed(window) => Some(*window),
        WindowSource::Series(selector) => samples
            .iter()
            .filter(|s| selector.matches(&s.name, &s.labels))
            .find_map(|s| {
                Duration::try_from_secs_f64(s.value)
                    .ok()
                    .filter(|w| !w.is_zero())
            }),
    }
}

/// Scrapes one exporter, keeping only the samples the configured series select.
async fn scrape(
    client: &reqwest::Client,
    url: &str,
    config: &MetricsConfig,
) -> Result<Vec<Sample>, ScrapeError> {
    let mut response = client
        .get(url)
        .header(reqwest::header::ACCEPT, "text/plain;version=0.0.4")
        .send()
        .await?
        .error_for_status()?;
    let selectors: Vec<&series::SeriesSelector> = [&config.latency, &config.frame, &config.gpu]
        .into_iter()
        .flat_map(|m| {
            let window = match &m.window {
                WindowSource::Series(selector) => Some(selector),
                WindowSource::Fixed(_) => None,
            };
            std::iter::once(&m.series).chain(window)
        })
        .collect();
    let keep = |name: &str| selectors.iter().any(|s| s.name == name);
    let mut samples = Vec::new();
    let mut visit = |sample: Sample| {
        if selectors
            .iter()
            .any(|s| s.matches(&sample.name, &sample.labels))
        {
            samples.push(sample);
        }
    };
    let mut pending: Vec<u8> = Vec::new();
    let (mut lines, mut read) = (0, 0);
    let mut visit_line = |line: &[u8], lines: &mut usize| -> Result<(), ScrapeError> {
        *lines += 1;
        let text = std::str::from_utf8(line).map_err(|_| ScrapeError::NotText(*lines))?;
        Ok(series::visit_line(*lines, text, keep, &mut visit)?)
    };
    while let Some(chunk) = response.chunk().await? {
        read += chunk.len();
        if read > BODY_LIMIT {
            return Err(ScrapeError::TooLarge);
        }
        pending.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(end) = memchr::memchr(b'\n', &pending[start..]) {
            visit_line(&pending[start..start + end], &mut lines)?;
            start += end + 1;
        }
        pending.drain(..start);
    }
    if !pending.is_empty() {
        visit_line(&pending, &mut lines)?;
    }
    Ok(samples)
}

#[cfg(test)]
mod tests;
