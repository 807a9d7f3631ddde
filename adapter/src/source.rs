//! Where per-pod signals come from: the backend trait, and an in-memory source. The backends
//! are the direct one ([`direct`]: the adapter scrapes the exporters itself) and Prometheus
//! ([`crate::prometheus`]).
//!
//! A source answers one question — the signals of every pod it knows in a namespace — with the
//! time each value was measured, the window it covers and whether each over-target regime has
//! held, so the serving layer can apply the max age and the score the same way for every backend.

pub mod direct;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use framescale_core::score::Holds;

pub use direct::{DirectSource, Health};

/// A boxed future, so sources can be used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A value, when it was measured and over which window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// The value, in the metric's unit.
    pub value: f64,
    /// When it was measured, in ms since the epoch.
    pub at_millis: u64,
    /// The window the value covers (the exporter's, or the metrics file's); `None` when unknown.
    pub window: Option<Duration>,
}

/// Which signal a value is, for the range a valid one lies in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Frame latency, milliseconds.
    Latency,
    /// Render time, milliseconds.
    Frame,
    /// Device duty, percent.
    Gpu,
}

impl Signal {
    /// Whether `value` (scaled to the signal's unit) is one a measurement can give: a time from
    /// 0 to 2 h (a refused frame counts 1 h, and a quantile's precision can put it a little
    /// above), a duty from 0 to 101 % (a counter's rounding). Anything else — a negative time,
    /// 1e300 s, NaN — is a broken exporter or a wrong `scale`, and is refused rather than served
    /// (it would score 0, or overflow a Deployment's mean).
    #[must_use]
    pub fn accepts(self, value: f64) -> bool {
        let top = match self {
            Signal::Latency | Signal::Frame => 7_200_000.0,
            Signal::Gpu => 101.0,
        };
        (0.0..=top).contains(&value)
    }
}

/// What a source knows of one pod.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PodSignals {
    /// P95 frame latency (queue + render), milliseconds: the score's frame term.
    pub latency_ms: Option<Reading>,
    /// P95 render time, milliseconds.
    pub p95_ms: Option<Reading>,
    /// Device duty, percent.
    pub duty_pct: Option<Reading>,
    /// Which regimes have held for their hold time (the frame regimes on the latency).
    pub holds: Holds,
}

/// Why a source cannot answer (served as 503).
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// A Prometheus query failed, retry included.
    #[error("metrics backend unavailable: Prometheus query for {metric} failed twice: {detail}")]
    QueryFailed {
        /// The metric it was for.
        metric: String,
        /// The error and its causes, URLs shortened to their path.
        detail: String,
        /// The last error.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The credentials for the backend cannot be read.
    #[error("metrics backend unavailable: cannot read the bearer token {path}: {detail}")]
    Credentials {
        /// The token file.
        path: String,
        /// Why.
        detail: String,
    },
    /// The render queue cannot be read (the backlog metric).
    #[error("metrics backend unavailable: {0}")]
    Queue(String),
    /// The source was made to fail ([`MemorySource::set_down`]).
    #[error("metrics backend unavailable: {0}")]
    Down(String),
}

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
                return Err(SourceError::Down(reason));
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

/// An error and its causes, `outer: inner: …` (reqwest's own message leaves out why a request
/// failed, such as a refused connection or an untrusted certificate), with request URLs
/// shortened to their path: a query is long and the caller knows it.
pub(crate) fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        if let Some(url) = inner
            .downcast_ref::<reqwest::Error>()
            .and_then(reqwest::Error::url)
        {
            let short = format!("{}{}", url.origin().ascii_serialization(), url.path());
            text = text.replace(url.as_str(), &short);
        }
        cause = inner.source();
    }
    text
}

/// Milliseconds since the Unix epoch, now.
#[must_use]
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
