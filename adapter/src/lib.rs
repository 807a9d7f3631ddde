//! framescale's adapter: serves render metrics through the `custom.metrics.k8s.io` API so a plain
//! HorizontalPodAutoscaler can scale on them.
//!
//! It owns the API ([`api`]: routes and handlers; [`request`]: what a path asks; [`values`]:
//! the values served; [`status`]: errors; [`wire`]: the JSON documents; [`selector`]), the
//! metrics file ([`config`]), where signals come from ([`source`]: the direct backend scrapes
//! exporters; [`prometheus`]), which pods a selector picks ([`cluster`]: watches of the
//! Kubernetes API; [`pods`]: a file), and HTTPS ([`tls`]). The score itself is
//! `framescale_core::score`. Callers are checked by [`auth`] (delegated to the cluster), answers
//! cached by [`cache`], and the adapter counts itself in [`telemetry`]. With a render queue it
//! also serves the queue's backlog as an Object metric on the render Deployment ([`backlog`]).

pub mod api;
pub mod auth;
pub mod backlog;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod exporters;
pub mod pods;
pub mod prometheus;
pub mod request;
pub mod selector;
pub mod series;
pub mod source;
pub mod status;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tls;
pub mod values;
pub mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;

use crate::api::AppState;
use crate::auth::Authenticator;
use crate::cache::CachedSource;
use crate::cluster::ClusterPods;
use crate::config::MetricsConfig;
use crate::exporters::{ExporterTargets, Exporters};
use crate::pods::{PodLister, PodsFile};
use crate::prometheus::{PrometheusSource, TokenFile};
use crate::source::{DirectSource, SignalSource};
use crate::telemetry::Telemetry;
use crate::tls::CertSource;

/// Everything the adapter needs to run, validated.
#[derive(Debug, Clone)]
pub struct AdapterConfig {
    /// HTTPS address of the API.
    pub listen: SocketAddr,
    /// Plain-HTTP address of `/livez` and `/readyz`.
    pub admin_listen: SocketAddr,
    /// The serving certificate.
    pub tls: CertSource,
    /// Metric definitions and score settings.
    pub metrics: MetricsConfig,
    /// Where signals come from.
    pub backend: Backend,
    /// How label selectors and Deployments become pods.
    pub pods: PodSource,
    /// How long a namespace's signals are reused.
    pub cache_ttl: Duration,
    /// How callers are checked.
    pub auth: AuthMode,
    /// Kubeconfig of the Kubernetes API (for delegated auth and the pod watch); `KUBECONFIG` or
    /// the pod's service account when `None`.
    pub kubeconfig: Option<PathBuf>,
    /// What a client is allowed before it is cut off.
    pub limits: ConnectionLimits,
    /// The render queue's backlog, when served ([`backlog`]).
    pub backlog: Option<backlog::BacklogMetric>,
}

/// Bounds on what one client may hold of the adapter: slow or hostile clients are cut off
/// with bounded memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time for a TLS handshake, and for a request's headers once a connection is open.
    pub header_read_timeout: Duration,
    /// Connections open at once; past it new ones are closed at once.
    pub max_connections: usize,
    /// Largest request head (request line and headers), bytes; larger ones are answered 431.
    pub max_header_bytes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_header_bytes: 64 << 10,
        }
    }
}

/// How the adapter checks its callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Not at all (local use only).
    Disabled,
    /// Delegated to the Kubernetes API.
    Delegated,
}

/// Where the adapter learns which pods a label selector or a Deployment picks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodSource {
    /// Watches of pods and Deployments through the Kubernetes API.
    Kubernetes,
    /// A pods file (YAML), re-read when it changes.
    File(PathBuf),
    /// No pod list: the pods the backend has data for, without labels (selectors with
    /// requirements then pick none; Deployments are unknown).
    Signals,
}

/// Where the adapter reads signals.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Scrape exporters' `/metrics` directly.
    Direct {
        /// Where the exporters are.
        exporters: ExporterTargets,
        /// How often they are scraped.
        scrape_interval: Duration,
    },
    /// Query a Prometheus.
    Prometheus {
        /// Its base URL (`http://prometheus:9090` or `https://…`).
        url: String,
        /// Timeout of one query.
        timeout: Duration,
        /// CA certificates (PEM) that an HTTPS Prometheus is verified against; the system's
        /// when `None`.
        ca_file: Option<PathBuf>,
        /// A file holding the bearer token sent with every query.
        bearer_token_file: Option<PathBuf>,
        /// A client certificate and key (PEM) presented to an HTTPS Prometheus.
        client_cert: Option<(PathBuf, PathBuf)>,
    },
}

/// HTTP/1 and HTTP/2 within `limits`: a request's head must arrive within the header read
/// timeout and fit in the head size; HTTP/2 connections are pinged and hold at most 256 streams.
fn bound_http<A: axum_server::Address, Acc>(
    server: &mut axum_server::Server<A, Acc>,
    limits: &ConnectionLimits,
) {
    let timer = hyper_util::rt::TokioTimer::new();
    server
        .http_builder()
        .http1()
        .timer(timer.clone())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    server
        .http_builder()
        .http2()
        .timer(timer)
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(limits.header_read_timeout);
}

/// Why the adapter could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] tls::Error),
    /// The Prometheus backend cannot be set up.
    #[error(transparent)]
    Prometheus(#[from] prometheus::Error),
    /// The kubeconfig given cannot be used.
    #[error("--kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        source: kube::config::KubeconfigError,
    },
    /// No kubeconfig was given and none can be found.
    #[error("no Kubernetes API settings (set --kubeconfig, or run in a pod): {0}")]
    NoKubernetes(#[source] kube::config::InferConfigError),
    /// A client of the Kubernetes API cannot be made from the settings found.
    #[error("cannot make a Kubernetes client: {0}")]
    KubeClient(#[source] kube::Error),
    /// The HTTP client that scrapes the exporters cannot be built.
    #[error("cannot make the HTTP client that scrapes the exporters: {0}")]
    ScrapeClient(#[source] reqwest::Error),
    /// The watch of the exporters' EndpointSlices cannot start.
    #[error(transparent)]
    Discovery(#[from] exporters::DiscoveryError),
    /// Delegated authentication cannot start.
    #[error(transparent)]
    Auth(#[from] auth::DelegationError),
    /// An address cannot be bound.
    #[error("cannot listen on {addr} (set {flag}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The flag that sets it.
        flag: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// A server failed.
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

/// Runs the adapter until `shutdown` resolves, then drains connections for up to 10 s.
pub async fn run(
    config: AdapterConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let metrics = Arc::new(config.metrics.clone());
    let telemetry = Arc::new(Telemetry::default());
    let discovers = matches!(
        config.backend,
        Backend::Direct {
            exporters: ExporterTargets::Service { .. },
            ..
        }
    );
    let needs_kubernetes =
        config.auth == AuthMode::Delegated || config.pods == PodSource::Kubernetes || discovers;
    let client = if needs_kubernetes {
        Some(kube_client(config.kubeconfig.as_deref()).await?)
    } else {
        None
    };
    let BackendParts {
        source,
        direct: health,
        scraper,
    } = backend(&config.backend, &metrics, &telemetry, client.as_ref()).await?;
    let source = Arc::new(CachedSource::new(
        source,
        config.cache_ttl,
        telemetry.clone(),
    ));
    let (pods, cluster): (Option<Arc<dyn PodLister>>, _) = match (&config.pods, &client) {
        (PodSource::Kubernetes, Some(client)) => {
            let cluster = Arc::new(ClusterPods::watch(client));
            (Some(cluster.clone()), Some(cluster))
        }
        (PodSource::File(path), _) => (Some(Arc::new(PodsFile::new(path.clone()))), None),
        _ => (None, None),
    };
    let mut state = AppState::new(metrics, source, pods, telemetry.clone(), config.cache_ttl);
    if let Some(backlog) = config.backlog.clone() {
        state = state.with_backlog(backlog);
    }
    if let (AuthMode::Delegated, Some(client)) = (config.auth, client) {
        let authenticator = Arc::new(Authenticator::new(client).await?);
        tokio::spawn(authenticator.clone().refresh_loop(Duration::from_mins(1)));
        state = state.with_auth(authenticator);
    }
    let state = Arc::new(state);
    let tls = tls::load(&config.tls, Duration::from_secs(10))?;

    let admin = tokio::net::TcpListener::bind(config.admin_listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.admin_listen,
            flag: "--admin-listen",
            source,
        })?;
    let admin_addr = admin.local_addr().map_err(Error::Serve)?;
    let handle = axum_server::Handle::new();
    // TCP_NODELAY: answers span several TLS records, and Nagle's algorithm waiting on the client's
    // delayed ACK would add tens of milliseconds to them. The acceptor sets it and attaches each
    // connection's client certificate chain to its requests.
    let limits = config.limits;
    let acceptor = tls::PeerCertAcceptor::new(tls, &limits, telemetry.clone());
    let mut server = axum_server::bind(config.listen)
        .acceptor(acceptor)
        .handle(handle.clone());
    bound_http(&mut server, &limits);
    let api = server.serve(api::router(state).into_make_service());
    let api = tokio::spawn(api);
    let Some(addr) = handle.listening().await else {
        let source = match api.await {
            Ok(Err(error)) => error,
            Ok(Ok(())) => std::io::Error::other("the HTTPS server stopped at start-up"),
            Err(error) => std::io::Error::other(error),
        };
        return Err(Error::Bind {
            addr: config.listen,
            flag: "--listen",
            source,
        });
    };
    tracing::info!(%addr, %admin_addr, backend = ?config.backend, pods = ?config.pods, "Adapter listening");
    let readiness = Readiness {
        direct: health,
        cluster,
    };
    let admin =
        axum::serve(admin, admin_router(telemetry, readiness)).with_graceful_shutdown(async move {
            shutdown.await;
            handle.graceful_shutdown(Some(Duration::from_secs(10)));
        });
    admin.await.map_err(Error::Serve)?;
    api.await
        .map_err(|e| Error::Serve(std::io::Error::other(e)))?
        .map_err(Error::Serve)?;
    if let Some(scraper) = scraper {
        scraper.abort();
    }
    tracing::info!("Adapter stopped");
    Ok(())
}

/// A client of the Kubernetes API from a kubeconfig file, or from `KUBECONFIG` / the pod's
/// service account.
async fn kube_client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, Error> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig_error = |source| Error::Kubeconfig {
                path: path.to_owned(),
                source,
            };
            let file = kube::config::Kubeconfig::read_from(path).map_err(kubeconfig_error)?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(kubeconfig_error)?
        }
        None => kube::Config::infer().await.map_err(Error::NoKubernetes)?,
    };
    kube::Client::try_from(config).map_err(Error::KubeClient)
}

/// A backend, started.
struct BackendParts {
    /// Where signals come from.
    source: Arc<dyn SignalSource>,
    /// The direct backend's handle, for readiness.
    direct: Option<DirectSource>,
    /// The direct backend's scraping task (on the current runtime, stopped with the adapter).
    scraper: Option<tokio::task::JoinHandle<()>>,
}

/// Starts the configured backend.
async fn backend(
    backend: &Backend,
    metrics: &Arc<MetricsConfig>,
    telemetry: &Arc<Telemetry>,
    client: Option<&kube::Client>,
) -> Result<BackendParts, Error> {
    match backend {
        Backend::Direct {
            exporters,
            scrape_interval,
        } => {
            let exporters = Exporters::start(exporters, client).await?;
            let direct = DirectSource::new(metrics.clone()).with_telemetry(telemetry.clone());
            // Exporters are plain HTTP; the TLS settings are there because the client needs some.
            let http = reqwest::Client::builder()
                .tls_backend_preconfigured(tls::client_config(rustls::RootCertStore::empty())?)
                .build()
                .map_err(Error::ScrapeClient)?;
            let scraper = tokio::spawn(direct.clone().scrape_loop(
                http,
                exporters,
                *scrape_interval,
            ));
            Ok(BackendParts {
                source: Arc::new(direct.clone()),
                direct: Some(direct),
                scraper: Some(scraper),
            })
        }
        Backend::Prometheus {
            url,
            timeout,
            ca_file,
            bearer_token_file,
            client_cert,
        } => {
            let roots = if url.starts_with("https://") {
                tls::trusted_roots(ca_file.as_deref())?
            } else {
                rustls::RootCertStore::empty()
            };
            let identity = client_cert
                .as_ref()
                .map(|(cert, key)| (cert.as_path(), key.as_path()));
            let tls = tls::client_config_with_identity(roots, identity)?;
            let token = bearer_token_file.clone().map(TokenFile::new);
            let source = PrometheusSource::new(url, metrics.clone(), *timeout, tls, token)?
                .with_telemetry(telemetry.clone());
            Ok(BackendParts {
                source: Arc::new(source),
                direct: None,
                scraper: None,
            })
        }
    }
}

/// What `/readyz` checks: the direct backend has scraped every exporter once, the Kubernetes
/// watches have listed once.
struct Readiness {
    direct: Option<DirectSource>,
    cluster: Option<Arc<ClusterPods>>,
}

impl Readiness {
    fn check(&self) -> (StatusCode, String) {
        if self.cluster.as_ref().is_some_and(|c| !c.is_synced()) {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the watches of pods and Deployments have not listed from the Kubernetes API yet\n"
                    .to_owned(),
            );
        }
        let Some(direct) = &self.direct else {
            return (StatusCode::OK, "ok\n".to_owned());
        };
        let health = direct.health();
        if health.rounds == 0 {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the first scrape of the exporters has not finished (or their EndpointSlices have not listed)\n".to_owned(),
            )
        } else if health.targets == 0 {
            (
                StatusCode::OK,
                "ok; no exporter to scrape: every pod's value is missing\n".to_owned(),
            )
        } else if health.failures.is_empty() {
            (
                StatusCode::OK,
                format!("ok; {} exporters\n", health.targets),
            )
        } else {
            (
                StatusCode::OK,
                format!(
                    "ok; {} exporters, failing: {}\n",
                    health.targets,
                    health.failures.join("; ")
                ),
            )
        }
    }
}

/// `/livez`, `/readyz` and the adapter's own `/metrics`.
fn admin_router(telemetry: Arc<Telemetry>, readiness: Readiness) -> Router {
    let readiness = Arc::new(readiness);
    let for_metrics = readiness.clone();
    let metrics = get(move || {
        let ready = for_metrics.check().0 == StatusCode::OK;
        let synced = for_metrics.cluster.as_ref().map(|c| c.is_synced());
        telemetry.readiness(ready, synced);
        let text = telemetry.render();
        async move {
            (
                [(axum::http::header::CONTENT_TYPE, telemetry::CONTENT_TYPE)],
                text,
            )
        }
    });
    let readyz = get(move || {
        let answer = readiness.check();
        async move { answer }
    });
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", readyz)
        .route("/metrics", metrics)
}
