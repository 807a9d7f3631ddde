//! Which exporters the direct backend scrapes: a fixed list (`--exporter`, for local use), or in a
//! cluster the ready endpoints of the exporter DaemonSet's headless Service, from a watch of its
//! EndpointSlices (kube's reflector, as for pods), so exporters that come and go — a node drained,
//! a rollout — are scraped or dropped at the next round with no restart.
//!
//! EndpointSlices are `discovery.k8s.io/v1` from Kubernetes 1.21 and `v1beta1` before (1.17–1.20);
//! the version the API server serves is asked once at start. An endpoint is scraped when its
//! `conditions.ready` is not false, at each of its addresses, on the Service port named by
//! `--exporter-port-name` (the only port when there is one).
//!
//! Needs `list` and `watch` on `endpointslices.discovery.k8s.io` in the exporter's namespace.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::Store;
use kube::runtime::reflector::store::Writer;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;

/// The label EndpointSlices carry with their Service's name.
const SERVICE_LABEL: &str = "kubernetes.io/service-name";

/// Where the exporters are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExporterTargets {
    /// These `/metrics` URLs.
    Fixed(Vec<String>),
    /// The ready endpoints of a Service.
    Service {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The name of its metrics port; `None`: its only (or first) port.
        port_name: Option<String>,
    },
}

/// The exporters to scrape now.
#[derive(Clone)]
pub enum Exporters {
    /// A fixed list.
    Fixed(Arc<Vec<String>>),
    /// Watched EndpointSlices.
    Watched(WatchedExporters),
}

/// EndpointSlices of one Service, kept by a watch.
#[derive(Clone)]
pub struct WatchedExporters {
    slices: Store<DynamicObject>,
    port_name: Option<String>,
    synced: Arc<AtomicBool>,
    service: String,
}

/// Why the watch of EndpointSlices cannot start.
#[derive(Debug, thiserror::Error)]
#[error("cannot tell which EndpointSlice version the Kubernetes API serves: {0}")]
pub struct DiscoveryError(#[source] pub kube::Error);

impl Exporters {
    /// The exporters of `targets`; a Service's are watched through `client` on the current
    /// runtime.
    pub async fn start(
        targets: &ExporterTargets,
        client: Option<&kube::Client>,
    ) -> Result<Self, DiscoveryError> {
        match (targets, client) {
            (ExporterTargets::Fixed(urls), _) => Ok(Exporters::Fixed(Arc::new(urls.clone()))),
            (ExporterTargets::Service { .. }, None) => {
                unreachable!("a Service target comes with a Kubernetes client")
            }
            (
                ExporterTargets::Service {
                    namespace,
                    name,
                    port_name,
                },
                Some(client),
            ) => {
                let version = slice_version(client).await.map_err(DiscoveryError)?;
                Ok(Exporters::Watched(WatchedExporters::watch(
                    client,
                    namespace,
                    name,
                    port_name.clone(),
                    version,
                )))
            }
        }
    }

    /// The `/metrics` URLs to scrape this round.
    #[must_use]
    pub fn urls(&self) -> Vec<String> {
        match self {
            Exporters::Fixed(urls) => urls.to_vec(),
            Exporters::Watched(watched) => watched.urls(),
        }
    }

    /// Whether the list is known: always for a fixed one, after the first list for a watch.
    #[must_use]
    pub fn is_synced(&self) -> bool {
        match self {
            Exporters::Fixed(_) => true,
            Exporters::Watched(watched) => watched.synced.load(Ordering::Acquire),
        }
    }

    /// What is watched, for messages.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Exporters::Fixed(urls) => format!("{} exporters given with --exporter", urls.len()),
            Exporters::Watched(watched) => {
                format!("the ready endpoints of Service {}", watched.service)
            }
        }
    }
}

/// `v1` when the API server serves EndpointSlices at `discovery.k8s.io/v1`, else `v1beta1`.
async fn slice_version(client: &kube::Client) -> Result<&'static str, kube::Error> {
    match client.list_api_group_resources("discovery.k8s.io/v1").await {
        Ok(list) if list.resources.iter().any(|r| r.name == "endpointslices") => Ok("v1"),
        Ok(_) => Ok("v1beta1"),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok("v1beta1"),
        Err(error) => Err(error),
    }
}

impl WatchedExporters {
    fn watch(
        client: &kube::Client,
        namespace: &str,
        service: &str,
        port_name: Option<String>,
        version: &str,
    ) -> Self {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
            "discovery.k8s.io",
            version,
            "EndpointSlice",
        ));
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource);
        let writer = Writer::new(resource);
        let slices = writer.as_reader();
        let config = watcher::Config::default().labels(&format!("{SERVICE_LABEL}={service}"));
        let events = watcher(api, config).default_backoff().reflect(writer);
        let synced = Arc::new(AtomicBool::new(false));
        let what = format!("{namespace}/{service}");
        tokio::spawn(drive(events, slices.clone(), synced.clone(), what.clone()));
        tracing::info!(service = %what, version, "Watching the exporters' EndpointSlices");
        WatchedExporters {
            slices,
            port_name,
            synced,
            service: what,
        }
    }

    fn urls(&self) -> Vec<String> {
        let mut urls: Vec<String> = self
            .slices
            .state()
            .iter()
            .flat_map(|slice| endpoint_urls(&slice.data, self.port_name.as_deref()))
            .collect();
        urls.sort();
        urls.dedup();
        urls
    }
}

/// Drives the watch for ever, noting when it has listed and logging failures once each.
async fn drive(
    events: impl futures_util::Stream<Item = Result<watcher::Event<DynamicObject>, watcher::Error>>,
    slices: Store<DynamicObject>,
    synced: Arc<AtomicBool>,
    service: String,
) {
    let mut events = std::pin::pin!(events);
    let mut failing = false;
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                if matches!(event, watcher::Event::InitDone) && !synced.swap(true, Ordering::AcqRel)
                {
                    tracing::info!(%service, slices = slices.len(), "Exporter EndpointSlices listed");
                }
                if failing {
                    failing = false;
                    tracing::info!(%service, "EndpointSlice watch recovered");
                }
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%service, %error, "EndpointSlice watch failed; retrying with backoff, scraping the exporters last seen");
                }
                failing = true;
            }
        }
    }
}

/// The `/metrics` URLs of an EndpointSlice's ready endpoints (`v1` or `v1beta1`: both carry
/// `endpoints[].addresses`, `endpoints[].conditions.ready` and `ports[].{name,port}`).
#[must_use]
pub fn endpoint_urls(slice: &Value, port_name: Option<&str>) -> Vec<String> {
    let ports = slice["ports"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let port = ports
        .iter()
        .find(|p| port_name.is_none_or(|name| p["name"].as_str() == Some(name)))
        .and_then(|p| p["port"].as_u64());
    let Some(port) = port else {
        return Vec::new();
    };
    let ipv6 = slice["addressType"].as_str() == Some("IPv6");
    slice["endpoints"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        // An unknown readiness counts as ready, as the API says.
        .filter(|e| e["conditions"]["ready"].as_bool() != Some(false))
        .flat_map(|e| {
            e["addresses"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(Value::as_str)
                .map(move |address| {
                    if ipv6 {
                        format!("http://[{address}]:{port}/metrics")
                    } else {
                        format!("http://{address}:{port}/metrics")
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests;
