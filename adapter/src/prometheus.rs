//! The Prometheus backend: signals and holds from a Prometheus (or anything speaking its HTTP
//! API: Thanos, Mimir), so that every adapter replica answers alike.
//!
//! One instant query per signal and request selects every pod of the namespace at once — never
//! a query per pod, never a list of pod names in the URL — and carries, as parts told apart by
//! an `fs_part` label, everything the adapter needs of that signal:
//!
//! | part | expression (for `X` = the signal's series in the namespace) | use |
//! |---|---|---|
//! | `value` | `AGG by (ns, pod) (X)` | the value |
//! | `ts` | `min by (ns, pod) (timestamp(X))` | when it was measured (for the max age) |
//! | `window` | `max by (ns, pod) (X * 0 + on (instance) group_left () max by (instance) (W))` | the window the value covers: the exporter's own gauge `W` (the metrics file's `window_series`), joined on `instance`; left out when the file states the window |
//! | `min<hold>` | `AGG by (ns, pod) (min_over_time(X[hold+g]) and (max_over_time(age(X)[hold+g:step]) <= g) and (count_over_time(timestamp(X)[hold+g:step]) >= steps))` | over target throughout the hold, made of samples only: the minimum over the window, where the series had a sample at every step of `hold + g` and none older than `g` (`score.holds.max_gap`) |
//!
//! A hold is made of samples: where a series stops (an exporter dead behind a remote-write or
//! federation path that writes no staleness marker), or has a gap longer than `g` (`age(X)` is
//! `time() - timestamp(X)` at each step of a subquery), the hold is not met, as with the direct
//! backend. As PromQL cannot evaluate at each series' last sample, the window reaches `g` further
//! back than the hold: a hold is met up to `g` later than the direct backend would meet it, never
//! earlier (samples at most `g` apart cover the window, so the first of them is at most `hold`
//! after its start: the series was over target for at least `hold`).
//!
//! A value out of its signal's range ([`Signal::accepts`]) is refused as read, and counted.
//!
//! Values are scaled in the adapter. A failed query is retried once; then the request answers 503.
//!
//! A Prometheus behind authentication (kube-rbac-proxy, an OAuth proxy, Thanos Querier with
//! mutual TLS) is asked with a bearer token read from a file — re-read when the file changes, so
//! a projected service-account token rotates with no restart — and/or a client certificate.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use framescale_core::score::Holds;

use crate::config::{Aggregate, MetricsConfig, SignalMetric, WindowSource};
use crate::source::{
    BoxFuture, PodSignals, Reading, Signal, SignalSource, SourceError, with_causes,
};
use crate::telemetry::Telemetry;

mod answer;

pub use answer::QueryError;

/// Reads signals from Prometheus.
#[derive(Clone)]
pub struct PrometheusSource {
    http: reqwest::Client,
    /// `{url}/api/v1/query`.
    query_url: reqwest::Url,
    config: Arc<MetricsConfig>,
    timeout: Duration,
    token: Option<Arc<TokenFile>>,
    telemetry: Option<Arc<Telemetry>>,
}

/// A bearer token in a file, read again when the file's modification time changes.
#[derive(Debug)]
pub struct TokenFile {
    path: std::path::PathBuf,
    cached: std::sync::Mutex<Option<(std::time::SystemTime, String)>>,
}

impl TokenFile {
    /// The token of `path`, read at first use.
    #[must_use]
    pub fn new(path: std::path::PathBuf) -> Self {
        TokenFile {
            path,
            cached: std::sync::Mutex::new(None),
        }
    }

    /// The token now.
    pub fn token(&self) -> Result<String, SourceError> {
        let unreadable = |detail: String| SourceError::Credentials {
            path: self.path.display().to_string(),
            detail,
        };
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .map_err(|e| unreadable(e.to_string()))?;
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, token)) = cached.as_ref()
            && *at == modified
        {
            return Ok(token.clone());
        }
        let token = std::fs::read_to_string(&self.path)
            .map_err(|e| unreadable(e.to_string()))?
            .trim()
            .to_owned();
        if token.is_empty() || token.contains(char::is_whitespace) {
            return Err(unreadable("not one token".into()));
        }
        *cached = Some((modified, token.clone()));
        Ok(token)
    }
}

/// Why the Prometheus backend cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The HTTP client cannot be built.
    #[error("cannot make the HTTP client for Prometheus: {0}")]
    Client(#[source] reqwest::Error),
    /// The URL is not one a client can use.
    #[error("--prometheus-url {url:?}: {detail}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        detail: String,
    },
}

/// The parts of one signal, per pod.
#[derive(Debug, Default, Clone, PartialEq)]
struct Parts {
    value: Option<f64>,
    timestamp_secs: Option<f64>,
    window_secs: Option<f64>,
    minimums: BTreeMap<u64, f64>,
    /// The value was out of range: the pod has none of this signal.
    refused: bool,
}

impl PrometheusSource {
    /// A source querying the Prometheus at `url` (`http://prometheus:9090`, or `https://…`
    /// verified against `tls`).
    pub fn new(
        url: &str,
        config: Arc<MetricsConfig>,
        timeout: Duration,
        tls: rustls::ClientConfig,
        token: Option<TokenFile>,
    ) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(Error::Client)?;
        let query_url = query_url(url).map_err(|detail| Error::Url {
            url: url.to_owned(),
            detail,
        })?;
        Ok(PrometheusSource {
            http,
            query_url,
            config,
            timeout,
            token: token.map(Arc::new),
            telemetry: None,
        })
    }

    /// The same source, counting the values it refuses in `telemetry`.
    #[must_use]
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    async fn signal(
        &self,
        metric: &SignalMetric,
        signal: Signal,
        namespace: &str,
        holds: &[Duration],
    ) -> Result<BTreeMap<String, Parts>, SourceError> {
        let query = signal_query(metric, namespace, holds, self.config.hold_max_gap);
        let authorization = match &self.token {
            Some(token) => {
                let value = format!("Bearer {}", token.token()?);
                Some(reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
                    SourceError::Credentials {
                        path: token.path.display().to_string(),
                        detail: "the token is not a valid header value".into(),
                    }
                })?)
            }
            None => None,
        };
        let mut url = self.query_url.clone();
        url.query_pairs_mut()
            .append_pair("query", &query)
            .append_pair("timeout", &format!("{}ms", self.timeout.as_millis()));
        let attempt = || async {
            let mut request = self.http.get(url.clone());
            if let Some(value) = &authorization {
                request = request.header(reqwest::header::AUTHORIZATION, value.clone());
            }
            let response = request.send().await?;
            let status = response.status().as_u16();
            let body = response.bytes().await?;
            let samples = answer::samples(status, &body)?;
            Ok::<_, QueryError>(collect_parts(metric, signal, &samples))
        };
        let result = match attempt().await {
            Ok(result) => Ok(result),
            Err(_) => attempt().await,
        };
        match result {
            Ok((parts, refused)) => {
                if let (Some(telemetry), true) = (&self.telemetry, refused > 0) {
                    telemetry.values_refused(refused);
                }
                Ok(parts)
            }
            Err(error) => Err(SourceError::QueryFailed {
                metric: metric.name.clone(),
                detail: with_causes(&error),
                source: Arc::new(error),
            }),
        }
    }
}

/// `{url}/api/v1/query`, for an `http` or `https` URL (a path prefix kept: Thanos, a proxy).
fn query_url(url: &str) -> Result<reqwest::Url, String> {
    let mut parsed = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err("not an http:// or https:// URL with a host".into());
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err("a query or fragment has no place in it".into());
    }
    let path = format!("{}/api/v1/query", parsed.path().trim_end_matches('/'));
    parsed.set_path(&path);
    Ok(parsed)
}

impl std::fmt::Debug for PrometheusSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusSource")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SignalSource for PrometheusSource {
    fn namespace_signals<'a>(
        &'a self,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, PodSignals>, SourceError>> {
        Box::pin(async move {
            let score = &self.config.score;
            let (frame_holds, gpu_holds) = (
                [score.frame_bound_hold, score.both_hold],
                [score.gpu_bound_hold, score.both_hold],
            );
            let (latency, frame, gpu) = tokio::join!(
                self.signal(
                    &self.config.latency,
                    Signal::Latency,
                    namespace,
                    &frame_holds
                ),
                self.signal(&self.config.frame, Signal::Frame, namespace, &[]),
                self.signal(&self.config.gpu, Signal::Gpu, namespace, &gpu_holds),
            );
            let (latency, frame, gpu) = (latency?, frame?, gpu?);
            let over = |parts: Option<&Parts>, hold: Duration, target: f64| {
                let lowest = if hold.is_zero() {
                    parts.and_then(|p| p.value)
                } else {
                    parts.and_then(|p| p.minimums.get(&(hold.as_millis() as u64)).copied())
                };
                lowest.is_some_and(|min| min > target)
            };
            let pods: std::collections::BTreeSet<&String> = latency
                .keys()
                .chain(frame.keys())
                .chain(gpu.keys())
                .collect();
            Ok(pods
                .into_iter()
                .map(|pod| {
                    let (f, g) = (latency.get(pod), gpu.get(pod));
                    let holds = Holds {
                        frame_over: over(f, score.frame_bound_hold, score.frame_target_ms),
                        gpu_over: over(g, score.gpu_bound_hold, score.gpu_target_pct),
                        both_over: over(f, score.both_hold, score.frame_target_ms)
                            && over(g, score.both_hold, score.gpu_target_pct),
                    };
                    (
                        pod.clone(),
                        PodSignals {
                            latency_ms: f.and_then(|p| reading(&self.config.latency, p)),
                            p95_ms: frame.get(pod).and_then(|p| reading(&self.config.frame, p)),
                            duty_pct: g.and_then(|p| reading(&self.config.gpu, p)),
                            holds,
                        },
                    )
                })
                .collect())
        })
    }
}

fn reading(metric: &SignalMetric, parts: &Parts) -> Option<Reading> {
    let at_millis = (parts.timestamp_secs? * 1000.0) as u64;
    let window = match &metric.window {
        WindowSource::Fixed(window) => Some(*window),
        WindowSource::Series(_) => parts
            .window_secs
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .filter(|w| !w.is_zero()),
    };
    Some(Reading {
        value: parts.value?,
        at_millis,
        window,
    })
}

/// The one query of a signal in a namespace (see the module table).
fn signal_query(
    metric: &SignalMetric,
    namespace: &str,
    holds: &[Duration],
    max_gap: Duration,
) -> String {
    let by = format!("by ({}, {})", metric.namespace_label, metric.pod_label);
    let agg = match metric.aggregate {
        Aggregate::Max => "max",
        Aggregate::Avg => "avg",
        Aggregate::Sum => "sum",
    };
    let series = metric
        .series
        .with_matcher(&metric.namespace_label, namespace);
    let part =
        |expr: String, name: &str| format!(r#"label_replace({expr}, "fs_part", "{name}", "", "")"#);
    let mut query = part(format!("{agg} {by} ({series})"), "value");
    let _ = write!(
        query,
        " or {}",
        part(format!("min {by} (timestamp({series}))"), "ts")
    );
    if let WindowSource::Series(window) = &metric.window {
        let joined = format!(
            "{agg} {by} ({series} * 0 + on (instance) group_left () max by (instance) ({window}))"
        );
        let _ = write!(query, " or {}", part(joined, "window"));
    }
    let mut seen = Vec::new();
    for hold in holds {
        let ms = hold.as_millis();
        // A hold of zero is met by the value itself: no history to ask for.
        if ms == 0 || seen.contains(&ms) {
            continue;
        }
        seen.push(ms);
        let gap = max_gap.as_millis();
        let (values, steps, step) = (ms + gap, ms + gap, (gap / 4).max(1_000));
        let subquery = format!("[{steps}ms:{step}ms]");
        let window = format!(
            "{agg} {by} (min_over_time({series}[{values}ms]) \
             and (max_over_time((time() - timestamp({series})){subquery}) <= {gap_s}) \
             and (count_over_time(timestamp({series}){subquery}) >= scalar(count_over_time(vector(1){subquery}))))",
            gap_s = max_gap.as_secs_f64(),
        );
        let _ = write!(query, " or {}", part(window, &format!("min{ms}")));
    }
    query
}

/// Each pod's parts of one signal, and how many values were refused as out of range (the pod
/// then has no value, and no hold, of that signal).
fn collect_parts(
    metric: &SignalMetric,
    signal: Signal,
    samples: &[answer::Sample<'_>],
) -> (BTreeMap<String, Parts>, u64) {
    let mut pods: BTreeMap<String, Parts> = BTreeMap::new();
    let mut refused = 0;
    for sample in samples {
        let labels = &sample.metric;
        let (Some(pod), Some(part)) = (labels.get(&metric.pod_label), labels.get("fs_part")) else {
            continue;
        };
        let value = sample.value();
        if !value.is_finite() {
            continue;
        }
        let parts = match pods.get_mut(pod) {
            Some(parts) => parts,
            None => pods.entry(pod.to_owned()).or_default(),
        };
        match part {
            "value" if !signal.accepts(value * metric.scale) => {
                refused += 1;
                parts.refused = true;
            }
            "value" => parts.value = Some(value * metric.scale),
            "ts" => parts.timestamp_secs = Some(value),
            "window" => parts.window_secs = Some(value),
            other => {
                if let Some(ms) = other.strip_prefix("min").and_then(|ms| ms.parse().ok()) {
                    parts.minimums.insert(ms, value * metric.scale);
                }
            }
        }
    }
    for parts in pods.values_mut().filter(|p| p.refused) {
        parts.minimums.clear();
    }
    (pods, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Prometheus answers for one signal, as its HTTP API writes `data`.
    fn answer(pods: &[(&str, &str, &str)]) -> Vec<u8> {
        let result: Vec<serde_json::Value> = pods
            .iter()
            .map(|(pod, part, value)| {
                serde_json::json!({
                    "metric": {"namespace": "render", "pod": pod, "fs_part": part},
                    "value": [1_800_000_000.0, value],
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "status": "success",
            "data": {"resultType": "vector", "result": result},
        }))
        .unwrap()
    }

    fn read(metric: &SignalMetric, signal: Signal, body: &[u8]) -> (BTreeMap<String, Parts>, u64) {
        collect_parts(metric, signal, &answer::samples(200, body).unwrap())
    }

    #[test]
    fn the_query_url_keeps_a_path_prefix_and_refuses_what_is_not_http() {
        assert_eq!(
            query_url("http://prometheus:9090").unwrap().as_str(),
            "http://prometheus:9090/api/v1/query"
        );
        assert_eq!(
            query_url("https://thanos.example/prefix/")
                .unwrap()
                .as_str(),
            "https://thanos.example/prefix/api/v1/query"
        );
        for bad in [
            "prometheus:9090",
            "ftp://prometheus",
            "http://p:9090/?x=1",
            "not a url",
        ] {
            assert!(query_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_out_of_range_are_refused_with_their_holds() {
        let config = MetricsConfig::default();
        let data = answer(&[
            ("huge", "value", "1e300"),
            ("huge", "min30000", "1e300"),
            ("negative", "value", "-0.01"),
            ("fine", "value", "0.2"),
            ("fine", "min30000", "0.15"),
        ]);
        let (parts, refused) = read(&config.latency, Signal::Latency, &data);
        assert_eq!(refused, 2);
        assert_eq!(parts["huge"].value, None);
        assert!(
            parts["huge"].minimums.is_empty(),
            "no hold on a refused value"
        );
        assert_eq!(parts["negative"].value, None);
        assert!((parts["fine"].value.unwrap() - 200.0).abs() < 1e-9);
        let (_, refused) = read(&config.gpu, Signal::Gpu, &answer(&[("a", "value", "1.5")]));
        assert_eq!(refused, 1, "150 % is no duty");
    }

    #[test]
    fn one_query_per_signal_selects_the_namespace() {
        let config = MetricsConfig::default();
        let query = signal_query(
            &config.frame,
            "render",
            &[
                Duration::from_secs(30),
                Duration::from_secs(10),
                Duration::from_secs(10),
            ],
            config.hold_max_gap,
        );
        let series = r#"framescale_frame_duration_seconds{quantile="0.95",namespace="render"}"#;
        assert!(
            query.starts_with(&format!(
                r#"label_replace(max by (namespace, pod) ({series}), "fs_part", "value", "", "")"#
            )),
            "{query}"
        );
        assert!(query.contains(&format!("min by (namespace, pod) (timestamp({series}))")));
        assert!(
            query.contains(&format!(
                "min_over_time({series}[50000ms]) \
                 and (max_over_time((time() - timestamp({series}))[50000ms:5000ms]) <= 20) \
                 and (count_over_time(timestamp({series})[50000ms:5000ms]) >= scalar(count_over_time(vector(1)[50000ms:5000ms])))"
            )),
            "{query}"
        );
        assert_eq!(
            query.matches("min_over_time").count(),
            2,
            "the shared 10 s hold is asked once: {query}"
        );
        assert!(
            !query.contains("pod=\""),
            "never a list of pods in the query"
        );
        assert!(
            query.contains(&format!(
                "max by (namespace, pod) ({series} * 0 + on (instance) group_left () max by (instance) (framescale_exporter_window_seconds))"
            )),
            "the window joined from the exporter's gauge: {query}"
        );
        let no_holds = signal_query(
            &config.latency,
            "render",
            &[Duration::ZERO, Duration::ZERO],
            config.hold_max_gap,
        );
        assert!(
            !no_holds.contains("min_over_time"),
            "a hold of zero is met by the value: no history asked for: {no_holds}"
        );
        let stated = MetricsConfig::parse("metrics: { frame: { window: 1m } }").unwrap();
        assert!(
            !signal_query(&stated.frame, "render", &[], stated.hold_max_gap).contains("group_left"),
            "a window the file states is not asked for"
        );
    }
}
