//! The adapter's own metrics, served on the admin port's `/metrics` as OpenMetrics text (the
//! `prometheus-client` crate: one registry, label sets as derived structs).
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `framescale_adapter_requests_total{route,code}` | counter | API requests by route (`discovery`, `pods`, `pod`, `deployment`, `namespace`, `other`) and status |
//! | `framescale_adapter_request_duration_seconds{route}` | histogram | time to answer, TLS excluded |
//! | `framescale_adapter_backend_duration_seconds` | histogram | time of one backend fetch (a namespace's signals) |
//! | `framescale_adapter_backend_errors_total` | counter | backend fetches that failed |
//! | `framescale_adapter_cache_requests_total{cache="signals"\|"responses",result="hit"\|"miss"}` | counter | lookups answered from a cache (or a fetch in flight) vs fetches |
//! | `framescale_adapter_served_data_age_seconds` | gauge | age of the oldest value in the last answer with values |
//! | `framescale_adapter_exporters{state="scraped"\|"failing"}` | gauge | direct backend: exporters scraped in the last round, and of those the failing |
//! | `framescale_adapter_scrape_round_duration_seconds` | gauge | direct backend: time of the last round (every exporter at once) |
//! | `framescale_adapter_values_refused_total` | counter | values out of their signal's range, refused as read (either backend) |
//! | `framescale_adapter_ready` | gauge | 1 when `/readyz` answers 200, 0 while it answers 503 (read at each scrape) |
//! | `framescale_adapter_watches_synced` | gauge | 1 once the watches of pods and Deployments have listed, 0 before; only when the adapter watches the Kubernetes API |

use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Telemetry::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 11] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Which cache a lookup went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// A namespace's signals from the backend.
    Signals,
    /// A whole answer.
    Responses,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    code: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
    result: &'static str,
}

impl CacheLabels {
    fn new(cache: Cache, fetched: bool) -> Self {
        CacheLabels {
            cache: match cache {
                Cache::Signals => "signals",
                Cache::Responses => "responses",
            },
            result: if fetched { "miss" } else { "hit" },
        }
    }
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// Everything the adapter counts about itself.
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    backend: Histogram,
    backend_errors: Counter,
    lookups: Family<CacheLabels, Counter>,
    data_age: Gauge<f64, AtomicU64>,
    exporters: Family<StateLabels, Gauge>,
    scrape_round: Gauge<f64, AtomicU64>,
    connections: Gauge,
    connections_refused: Counter,
    ready: Gauge,
    values_refused: Counter,
    watches_synced: Family<Vec<(String, String)>, Gauge>,
    last_auth_log: Mutex<Option<(Instant, u64)>>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

impl Default for Telemetry {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = LatencyFamily::new_with_constructor(latency_histogram);
        let backend = latency_histogram();
        let backend_errors = Counter::default();
        let lookups = Family::<CacheLabels, Counter>::default();
        let data_age = Gauge::<f64, AtomicU64>::default();
        let exporters = Family::<StateLabels, Gauge>::default();
        let scrape_round = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "framescale_adapter_requests",
            "API requests by route and status code",
            requests.clone(),
        );
        registry.register(
            "framescale_adapter_request_duration_seconds",
            "Time to answer an API request",
            latency.clone(),
        );
        registry.register(
            "framescale_adapter_backend_duration_seconds",
            "Time of one backend fetch",
            backend.clone(),
        );
        registry.register(
            "framescale_adapter_backend_errors",
            "Backend fetches that failed",
            backend_errors.clone(),
        );
        registry.register(
            "framescale_adapter_cache_requests",
            "Lookups in the caches of signals and of whole answers, by result",
            lookups.clone(),
        );
        registry.register(
            "framescale_adapter_served_data_age_seconds",
            "Age of the oldest value in the last answer with values",
            data_age.clone(),
        );
        registry.register(
            "framescale_adapter_exporters",
            "Exporters the direct backend scraped in its last round, and of those the failing",
            exporters.clone(),
        );
        registry.register(
            "framescale_adapter_scrape_round_duration_seconds",
            "Time of the direct backend's last scrape round",
            scrape_round.clone(),
        );
        let connections = Gauge::default();
        let connections_refused = Counter::default();
        registry.register(
            "framescale_adapter_connections",
            "HTTPS connections open",
            connections.clone(),
        );
        registry.register(
            "framescale_adapter_connections_refused",
            "HTTPS connections closed at once: --max-connections were open",
            connections_refused.clone(),
        );
        let values_refused = Counter::default();
        registry.register(
            "framescale_adapter_values_refused",
            "Values out of their signal's range (a negative time, a duty over 100 %, 1e300 s), refused as the backend read them",
            values_refused.clone(),
        );
        let ready = Gauge::default();
        let watches_synced = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register(
            "framescale_adapter_ready",
            "1 when /readyz answers 200, 0 while it answers 503",
            ready.clone(),
        );
        registry.register(
            "framescale_adapter_watches_synced",
            "1 once the watches of pods and Deployments have listed from the Kubernetes API, 0 before",
            watches_synced.clone(),
        );
        Telemetry {
            registry,
            ready,
            values_refused,
            watches_synced,
            connections,
            connections_refused,
            exporters,
            scrape_round,
            requests,
            latency,
            backend,
            backend_errors,
            lookups,
            data_age,
            last_auth_log: Mutex::new(None),
        }
    }
}

impl Telemetry {
    /// Counts `n` values refused as out of range.
    pub fn values_refused(&self, n: u64) {
        self.values_refused.inc_by(n);
    }

    /// A connection opened (`+1`) or closed (`-1`).
    pub fn connection(&self, delta: i64) {
        self.connections.inc_by(delta);
    }

    /// Counts a connection refused for the limit.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// Counts one answered request.
    pub fn request(&self, route: &'static str, code: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels { route, code })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { route })
            .observe(took.as_secs_f64());
    }

    /// Counts one backend fetch, and whether it failed.
    pub fn backend_fetch(&self, took: Duration, failed: bool) {
        self.backend.observe(took.as_secs_f64());
        if failed {
            self.backend_errors.inc();
        }
    }

    /// Counts one lookup in `cache`: a fetch, or an answer from the cache (or a fetch in flight).
    pub fn lookup(&self, cache: Cache, fetched: bool) {
        self.lookups
            .get_or_create(&CacheLabels::new(cache, fetched))
            .inc();
    }

    /// Lookups in `cache` so far that fetched (`true`) or were answered from it (`false`).
    #[must_use]
    pub fn lookups(&self, cache: Cache, fetched: bool) -> u64 {
        self.lookups
            .get(&CacheLabels::new(cache, fetched))
            .map_or(0, |c| c.get())
    }

    /// Backend fetches that failed so far.
    #[must_use]
    pub fn backend_errors(&self) -> u64 {
        self.backend_errors.get()
    }

    /// Whether a refused request may be logged now (one every 10 s), and how many were not.
    pub fn throttle_auth_log(&self) -> Option<u64> {
        let mut last = self
            .last_auth_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match last.as_mut() {
            Some((at, held)) if at.elapsed() < Duration::from_secs(10) => {
                *held += 1;
                None
            }
            _ => {
                let held = last.map_or(0, |(_, held)| held);
                *last = Some((Instant::now(), 0));
                Some(held)
            }
        }
    }

    /// Notes a finished scrape round of the direct backend.
    pub fn scrape_round(&self, took: Duration, scraped: usize, failing: usize) {
        self.scrape_round.set(took.as_secs_f64());
        for (state, count) in [("scraped", scraped), ("failing", failing)] {
            self.exporters
                .get_or_create(&StateLabels { state })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Notes the age of the oldest value just served.
    pub fn served_age(&self, age: Duration) {
        self.data_age.set(age.as_secs_f64());
    }

    /// Notes whether the adapter is ready, and whether its watches of the Kubernetes API have
    /// listed (`None`: it does not watch).
    pub fn readiness(&self, ready: bool, watches_synced: Option<bool>) {
        self.ready.set(i64::from(ready));
        if let Some(synced) = watches_synced {
            self.watches_synced
                .get_or_create(&Vec::new())
                .set(i64::from(synced));
        }
    }

    /// The OpenMetrics text ([`CONTENT_TYPE`]).
    ///
    /// # Panics
    /// Never: writing to a `String` cannot fail.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String does not fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition() {
        let telemetry = Telemetry::default();
        telemetry.request("pods", 200, Duration::from_micros(800));
        telemetry.request("pods", 200, Duration::from_millis(3));
        telemetry.request("pod", 404, Duration::from_micros(100));
        telemetry.served_age(Duration::from_millis(2500));
        telemetry.lookup(Cache::Responses, false);
        telemetry.backend_fetch(Duration::from_millis(2), true);
        let text = telemetry.render();
        for want in [
            "framescale_adapter_requests_total{route=\"pods\",code=\"200\"} 2\n",
            "framescale_adapter_requests_total{route=\"pod\",code=\"404\"} 1\n",
            "framescale_adapter_request_duration_seconds_bucket{le=\"0.001\",route=\"pods\"} 1\n",
            "framescale_adapter_request_duration_seconds_bucket{le=\"0.005\",route=\"pods\"} 2\n",
            "framescale_adapter_request_duration_seconds_bucket{le=\"+Inf\",route=\"pods\"} 2\n",
            "framescale_adapter_request_duration_seconds_count{route=\"pods\"} 2\n",
            "framescale_adapter_backend_duration_seconds_count 1\n",
            "framescale_adapter_backend_errors_total 1\n",
            "framescale_adapter_cache_requests_total{cache=\"responses\",result=\"hit\"} 1\n",
            "framescale_adapter_served_data_age_seconds 2.5\n",
            "# EOF\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert_eq!(telemetry.lookups(Cache::Responses, false), 1);
        assert_eq!(telemetry.lookups(Cache::Signals, true), 0);
    }
}
