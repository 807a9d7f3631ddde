//! The adapter's own metrics, served on the admin port's `/metrics` (Prometheus text 0.0.4).
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `framescale_adapter_requests_total{route,code}` | counter | API requests by route (`discovery`, `pods`, `pod`, `deployment`, `namespace`, `other`) and status |
//! | `framescale_adapter_request_duration_seconds{route}` | histogram | time to answer, TLS excluded |
//! | `framescale_adapter_backend_duration_seconds` | histogram | time of one backend fetch (a namespace's signals) |
//! | `framescale_adapter_backend_errors_total` | counter | backend fetches that failed |
//! | `framescale_adapter_cache_requests_total{cache="signals"\|"responses",result="hit"\|"miss"}` | counter | lookups answered from a cache (or a fetch in flight) vs fetches |
//! | `framescale_adapter_served_data_age_seconds` | gauge | age of the oldest value in the last answer with values |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 11] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// A fixed-bucket latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, duration: Duration) {
        let secs = duration.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(duration.as_micros() as u64, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), ToString::to_string);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

/// Everything the adapter counts about itself.
#[derive(Debug, Default)]
pub struct Telemetry {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    latency: Mutex<BTreeMap<&'static str, std::sync::Arc<Histogram>>>,
    /// Backend fetch times.
    pub backend: Histogram,
    /// Backend fetches that failed.
    pub backend_errors: AtomicU64,
    /// Answers from the cache.
    pub cache_hits: AtomicU64,
    /// Fetches started.
    pub cache_misses: AtomicU64,
    /// Whole answers reused.
    pub response_hits: AtomicU64,
    /// Whole answers computed.
    pub response_misses: AtomicU64,
    data_age_millis: AtomicU64,
    last_auth_log: Mutex<Option<(std::time::Instant, u64)>>,
}

impl Telemetry {
    /// Counts one answered request.
    pub fn request(&self, route: &'static str, code: u16, took: Duration) {
        *self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((route, code))
            .or_default() += 1;
        let histogram = self
            .latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(route)
            .or_default()
            .clone();
        histogram.observe(took);
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
                *last = Some((std::time::Instant::now(), 0));
                Some(held)
            }
        }
    }

    /// Notes the age of the oldest value just served.
    pub fn served_age(&self, age: Duration) {
        self.data_age_millis
            .store(age.as_millis() as u64, Ordering::Relaxed);
    }

    /// The text exposition.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP framescale_adapter_requests_total API requests by route and status code.\n# TYPE framescale_adapter_requests_total counter\n");
        for ((route, code), count) in self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "framescale_adapter_requests_total{{route=\"{route}\",code=\"{code}\"}} {count}"
            );
        }
        out.push_str("# HELP framescale_adapter_request_duration_seconds Time to answer an API request.\n# TYPE framescale_adapter_request_duration_seconds histogram\n");
        for (route, histogram) in self
            .latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            histogram.write(
                &mut out,
                "framescale_adapter_request_duration_seconds",
                &format!("route=\"{route}\""),
            );
        }
        out.push_str("# HELP framescale_adapter_backend_duration_seconds Time of one backend fetch.\n# TYPE framescale_adapter_backend_duration_seconds histogram\n");
        self.backend
            .write(&mut out, "framescale_adapter_backend_duration_seconds", "");
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "# HELP framescale_adapter_backend_errors_total Backend fetches that failed.\n# TYPE framescale_adapter_backend_errors_total counter\n\
             framescale_adapter_backend_errors_total {}\n\
             # HELP framescale_adapter_cache_requests_total Lookups in the caches of signals and of whole answers, by result.\n# TYPE framescale_adapter_cache_requests_total counter\n\
             framescale_adapter_cache_requests_total{{cache=\"signals\",result=\"hit\"}} {}\nframescale_adapter_cache_requests_total{{cache=\"signals\",result=\"miss\"}} {}\n\
             framescale_adapter_cache_requests_total{{cache=\"responses\",result=\"hit\"}} {}\nframescale_adapter_cache_requests_total{{cache=\"responses\",result=\"miss\"}} {}\n\
             # HELP framescale_adapter_served_data_age_seconds Age of the oldest value in the last answer with values.\n# TYPE framescale_adapter_served_data_age_seconds gauge\n\
             framescale_adapter_served_data_age_seconds {}\n",
            load(&self.backend_errors),
            load(&self.cache_hits),
            load(&self.cache_misses),
            load(&self.response_hits),
            load(&self.response_misses),
            load(&self.data_age_millis) as f64 / 1000.0,
        );
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
        let text = telemetry.render();
        for want in [
            "framescale_adapter_requests_total{route=\"pods\",code=\"200\"} 2\n",
            "framescale_adapter_requests_total{route=\"pod\",code=\"404\"} 1\n",
            "framescale_adapter_request_duration_seconds_bucket{route=\"pods\",le=\"0.001\"} 1\n",
            "framescale_adapter_request_duration_seconds_bucket{route=\"pods\",le=\"0.005\"} 2\n",
            "framescale_adapter_request_duration_seconds_bucket{route=\"pods\",le=\"+Inf\"} 2\n",
            "framescale_adapter_request_duration_seconds_count{route=\"pods\"} 2\n",
            "framescale_adapter_backend_duration_seconds_count 0\n",
            "framescale_adapter_served_data_age_seconds 2.5\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}
