//! The direct backend: the adapter scrapes the exporters' `/metrics` itself, on an interval, and
//! keeps the latest value of each pod's signals with a [`HoldTracker`] per pod for the regimes'
//! hold times.
//!
//! Every exporter of a round is scraped at once (one task each on the adapter's runtime), each
//! with a timeout shorter than the interval, so one slow or hung exporter delays no other. An
//! exposition is read as it arrives, line by line, keeping only the series the metrics file
//! selects; it is never held whole. An exporter's answer is the whole truth about what it serves
//! of its pods: a series it stops serving (a window emptied of frames, a pod gone) is missing at
//! once, not kept until it ages out. Each exporter's answer is kept apart and a pod's signals are
//! merged per signal, from the exporter that measured each last (frames from framescale's
//! exporter, GPU from dcgm-exporter), so one exporter's half-answer never wipes out another's. A
//! sample's own timestamp, when the exposition has one, is when its value was measured; values
//! out of their signal's range are refused and counted. An exporter that fails keeps its pods' last values, which go stale after
//! `max_age` and are then missing, never 0; their holds are made of observations only, so they
//! neither grow nor complete while it fails, and start over when it answers again. A failing exporter is logged when it
//! starts failing and when it recovers, not at every scrape, and shows in `/readyz`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use framescale_core::score::{HoldTracker, Signals};

use super::{BoxFuture, PodSignals, Reading, Signal, SignalSource, SourceError, now_millis};
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
    pods: BTreeMap<PodKey, PodState>,
    /// The pods each exporter served at its last answer.
    served_by: BTreeMap<String, BTreeSet<PodKey>>,
    /// Why each failing target failed at its last scrape.
    failing: BTreeMap<String, String>,
    rounds: u64,
    targets: usize,
}

/// (namespace, pod).
type PodKey = (String, String);

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

/// One pod: what each exporter serving it served of it, and its holds.
#[derive(Debug, Default, Clone)]
struct PodState {
    by_target: BTreeMap<String, Served>,
    tracker: HoldTracker,
}

/// One exporter's signals of one pod at its last answer.
#[derive(Debug, Default, Clone, Copy)]
struct Served {
    latency_ms: Option<Reading>,
    p95_ms: Option<Reading>,
    duty_pct: Option<Reading>,
    /// When this exporter began serving the pod: between two exporters whose values are as
    /// fresh, the one that began later is where the pod runs now.
    since_millis: u64,
}

impl PodState {
    /// Each signal from the exporter that measured it last (per signal: frames from
    /// framescale's exporter and GPU from dcgm-exporter make one pod).
    fn merged(&self) -> Served {
        let freshest = |signal: fn(&Served) -> Option<Reading>| {
            self.by_target
                .values()
                .filter_map(|served| Some((signal(served)?, served.since_millis)))
                .max_by_key(|(reading, since)| (reading.at_millis, *since))
                .map(|(reading, _)| reading)
        };
        Served {
            latency_ms: freshest(|s| s.latency_ms),
            p95_ms: freshest(|s| s.p95_ms),
            duty_pct: freshest(|s| s.duty_pct),
            since_millis: 0,
        }
    }
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
    /// of a pod is missing from now on, unless another exporter serves it; a pod no exporter
    /// serves is forgotten. A sample's own timestamp, when it has one, is when it was measured.
    pub fn ingest(&self, target: &str, samples: &[Sample], at_millis: u64) {
        let config = &self.config;
        let mut refused = 0;
        let [latency, frame, gpu] = [
            (&config.latency, Signal::Latency),
            (&config.frame, Signal::Frame),
            (&config.gpu, Signal::Gpu),
        ]
        .map(|(metric, signal)| {
            let window = window(metric, samples);
            let (values, out_of_range) = per_pod(metric, signal, samples, at_millis, window);
            refused += out_of_range;
            values
        });
        if refused > 0 {
            if let Some(telemetry) = &self.telemetry {
                telemetry.values_refused(refused);
            }
            tracing::debug!(%target, refused, "Values out of range refused");
        }
        let pods: BTreeSet<PodKey> = latency
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
            if let Some(pod) = state.pods.get_mut(gone) {
                pod.by_target.remove(target);
                if pod.by_target.is_empty() {
                    state.pods.remove(gone);
                }
            }
        }
        for pod in &pods {
            let entry = state.pods.entry(pod.clone()).or_default();
            let since_millis = entry
                .by_target
                .get(target)
                .map_or(at_millis, |s| s.since_millis);
            entry.by_target.insert(
                target.to_owned(),
                Served {
                    latency_ms: latency.get(pod).copied(),
                    p95_ms: frame.get(pod).copied(),
                    duty_pct: gpu.get(pod).copied(),
                    since_millis,
                },
            );
            let merged = entry.merged();
            let signals = Signals {
                p95_ms: merged.latency_ms.map(|r| r.value),
                duty_pct: merged.duty_pct.map(|r| r.value),
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
                let merged = p.merged();
                (
                    pod.clone(),
                    PodSignals {
                        latency_ms: merged.latency_ms,
                        p95_ms: merged.p95_ms,
                        duty_pct: merged.duty_pct,
                        holds: p.tracker.holds(score),
                    },
                )
            })
            .collect()
    }

    /// Drops what an exporter served of a pod when its newest value is older than
    /// `cutoff_millis`, and pods left with nothing, bounding memory as pods go.
    fn forget_older_than(&self, cutoff_millis: u64) {
        self.lock().pods.retain(|_, p| {
            p.by_target.retain(|_, served| {
                let newest = [served.latency_ms, served.p95_ms, served.duty_pct]
                    .into_iter()
                    .flatten()
                    .map(|r| r.at_millis)
                    .max();
                newest.is_some_and(|at| at >= cutoff_millis)
            });
            !p.by_target.is_empty()
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

/// The reading of `metric` per (namespace, pod) in `samples`, scaled and aggregated, as of the
/// oldest sample's own timestamp (or `at_millis`, the scrape, for samples without one; never
/// later than it); and how many samples were refused as out of `signal`'s range.
fn per_pod(
    metric: &SignalMetric,
    signal: Signal,
    samples: &[Sample],
    at_millis: u64,
    window: Option<Duration>,
) -> (BTreeMap<PodKey, Reading>, u64) {
    let mut values: BTreeMap<PodKey, (Vec<f64>, u64)> = BTreeMap::new();
    let mut refused = 0;
    for sample in samples {
        if !metric.series.matches(&sample.name, &sample.labels) {
            continue;
        }
        let (Some(namespace), Some(pod)) = (
            sample.labels.get(&metric.namespace_label),
            sample.labels.get(&metric.pod_label),
        ) else {
            continue;
        };
        let value = sample.value * metric.scale;
        if value.is_nan() {
            // An empty summary's quantile (client libraries serve NaN): missing, not wrong.
            continue;
        }
        if !signal.accepts(value) {
            refused += 1;
            continue;
        }
        let measured = sample
            .timestamp_millis
            .map_or(at_millis, |t| t.min(at_millis));
        let entry = values
            .entry((namespace.clone(), pod.clone()))
            .or_insert_with(|| (Vec::new(), measured));
        entry.0.push(value);
        entry.1 = entry.1.min(measured);
    }
    let readings = values
        .into_iter()
        .filter_map(|(pod, (v, measured))| {
            let value = metric.aggregate.apply(&v)?;
            Some((
                pod,
                Reading {
                    value,
                    at_millis: measured,
                    window,
                },
            ))
        })
        .collect();
    (readings, refused)
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
