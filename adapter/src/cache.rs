//! Short-lived caches with single-flight: of a signal source's answers, and of whole responses.
//!
//! The HPA asks for several metrics of the same pods every sync period, and two adapter replicas
//! or a dashboard may ask at once. Answers are kept per namespace for a short TTL (default 2 s,
//! far under the HPA's 15 s sync), and concurrent requests for a namespace whose answer is
//! being fetched wait for that one fetch instead of starting their own. Failures are shared by
//! the requests that waited for them but not kept: the next request tries again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::source::{BoxFuture, PodSignals, SignalSource, SourceError};
use crate::telemetry::{Cache, Telemetry};

type Answer = Result<Arc<BTreeMap<String, PodSignals>>, SourceError>;

/// A map of values kept for a TTL, where concurrent requests for a missing key share one fetch.
pub struct Memo<V, E> {
    ttl: Duration,
    slots: Mutex<HashMap<String, Arc<Slot<V, E>>>>,
}

struct Slot<V, E> {
    created: Instant,
    answer: OnceCell<Result<V, E>>,
}

impl<V: Clone, E: Clone> Memo<V, E> {
    /// An empty memo whose values live `ttl`.
    #[must_use]
    pub fn new(ttl: Duration) -> Self {
        Memo {
            ttl,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The value of `key`: kept, being fetched by another request, or fetched now with `fetch`.
    /// Returns whether this call fetched. An error is handed to the requests that waited for
    /// it, then forgotten.
    pub async fn get_or_fetch<F: Future<Output = Result<V, E>>>(
        &self,
        key: &str,
        fetch: impl FnOnce() -> F,
    ) -> (Result<V, E>, bool) {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            // Forget what has expired, so keys no longer asked for do not accumulate.
            slots.retain(|_, s| s.created.elapsed() < self.ttl);
            slots
                .entry(key.to_owned())
                .or_insert_with(|| {
                    Arc::new(Slot {
                        created: Instant::now(),
                        answer: OnceCell::new(),
                    })
                })
                .clone()
        };
        let mut fetched = false;
        let answer = slot
            .answer
            .get_or_init(|| {
                fetched = true;
                fetch()
            })
            .await
            .clone();
        if answer.is_err() && fetched {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            if slots.get(key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                slots.remove(key);
            }
        }
        (answer, fetched)
    }
}

/// Caches a source's answers per namespace for a TTL.
pub struct CachedSource {
    inner: Arc<dyn SignalSource>,
    memo: Memo<Arc<BTreeMap<String, PodSignals>>, SourceError>,
    telemetry: Arc<Telemetry>,
}

impl CachedSource {
    /// Wraps `inner`; hits, misses, fetch times and failures are counted in `telemetry`.
    #[must_use]
    pub fn new(inner: Arc<dyn SignalSource>, ttl: Duration, telemetry: Arc<Telemetry>) -> Self {
        CachedSource {
            inner,
            memo: Memo::new(ttl),
            telemetry,
        }
    }

    async fn get(&self, namespace: &str) -> Answer {
        let (answer, fetched) = self
            .memo
            .get_or_fetch(namespace, || async {
                let started = Instant::now();
                let answer = self.inner.namespace_signals(namespace).await.map(Arc::new);
                self.telemetry
                    .backend_fetch(started.elapsed(), answer.is_err());
                if let Err(error) = &answer {
                    tracing::warn!(%namespace, %error, "Backend fetch failed");
                }
                answer
            })
            .await;
        self.telemetry.lookup(Cache::Signals, fetched);
        answer
    }
}

impl SignalSource for CachedSource {
    fn namespace_signals<'a>(
        &'a self,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, PodSignals>, SourceError>> {
        Box::pin(async move { self.get(namespace).await.map(|map| (*map).clone()) })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::source::MemorySource;

    /// A source that counts its calls and takes a while to answer.
    struct Slow {
        calls: AtomicU64,
        inner: MemorySource,
    }

    impl SignalSource for Slow {
        fn namespace_signals<'a>(
            &'a self,
            namespace: &'a str,
        ) -> BoxFuture<'a, Result<BTreeMap<String, PodSignals>, SourceError>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
                self.inner.namespace_signals(namespace).await
            })
        }
    }

    fn slow() -> Arc<Slow> {
        let inner = MemorySource::default();
        inner.set("render", "w-0", PodSignals::default());
        Arc::new(Slow {
            calls: AtomicU64::new(0),
            inner,
        })
    }

    // Tokio's clock is paused in these tests: the slow source's 50 ms and the TTLs pass when
    // the test says, whatever the machine's speed.
    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_share_one_fetch() {
        let backend = slow();
        let telemetry = Arc::new(Telemetry::default());
        let cache = Arc::new(CachedSource::new(
            backend.clone(),
            Duration::from_secs(5),
            telemetry.clone(),
        ));
        let requests: Vec<_> = (0..20)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.namespace_signals("render").await.unwrap().len() })
            })
            .collect();
        for request in requests {
            assert_eq!(request.await.unwrap(), 1);
        }
        assert_eq!(backend.calls.load(Ordering::Relaxed), 1);
        assert_eq!(
            (
                telemetry.lookups(Cache::Signals, false),
                telemetry.lookups(Cache::Signals, true)
            ),
            (19, 1)
        );
        cache.namespace_signals("other").await.unwrap();
        assert_eq!(
            backend.calls.load(Ordering::Relaxed),
            2,
            "namespaces are cached apart"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn answers_expire_and_failures_are_not_kept() {
        let backend = slow();
        let cache = CachedSource::new(backend.clone(), Duration::from_millis(100), Arc::default());
        cache.namespace_signals("render").await.unwrap();
        tokio::time::advance(Duration::from_millis(40)).await;
        cache.namespace_signals("render").await.unwrap();
        assert_eq!(backend.calls.load(Ordering::Relaxed), 1, "within the TTL");
        tokio::time::advance(Duration::from_millis(100)).await;
        cache.namespace_signals("render").await.unwrap();
        assert_eq!(backend.calls.load(Ordering::Relaxed), 2, "past the TTL");

        let failing = MemorySource::default();
        failing.set_down(Some("down"));
        let telemetry = Arc::new(Telemetry::default());
        let cache = CachedSource::new(
            Arc::new(failing.clone()),
            Duration::from_mins(1),
            telemetry.clone(),
        );
        assert!(cache.namespace_signals("render").await.is_err());
        failing.set_down(None);
        assert!(
            cache.namespace_signals("render").await.is_ok(),
            "the failure was not cached"
        );
        assert_eq!(telemetry.backend_errors(), 1);
    }
}
