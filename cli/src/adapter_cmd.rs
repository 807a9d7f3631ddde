//! `framescale adapter`: flags, their validation, and the run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use std::sync::Arc;

use framescale_adapter::backlog::BacklogMetric;
use framescale_adapter::config::MetricsConfig;
use framescale_adapter::exporters::ExporterTargets;
use framescale_adapter::tls::CertSource;
use framescale_adapter::{AdapterConfig, AuthMode, Backend, ConnectionLimits, PodSource};

/// Flags of `framescale adapter`; each has a `FRAMESCALE_` environment variable.
#[derive(Debug, Args)]
pub struct AdapterArgs {
    /// HTTPS address of the custom metrics API.
    #[arg(
        long,
        env = "FRAMESCALE_ADAPTER_LISTEN",
        default_value = "0.0.0.0:6443"
    )]
    listen: SocketAddr,
    /// Plain-HTTP address of /livez, /readyz and the adapter's own /metrics.
    #[arg(
        long,
        env = "FRAMESCALE_ADAPTER_ADMIN_LISTEN",
        default_value = "0.0.0.0:9478"
    )]
    admin_listen: SocketAddr,
    /// Time a client has for the TLS handshake, and for a request's headers once connected; slower ones are cut off.
    #[arg(long, env = "FRAMESCALE_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    header_read_timeout: Duration,
    /// HTTPS connections open at once; past it new connections are closed at once (the aggregator keeps a few).
    #[arg(long, env = "FRAMESCALE_MAX_CONNECTIONS", default_value_t = 4096)]
    max_connections: usize,
    /// Serving certificate (PEM), reloaded when it changes.
    #[arg(long, env = "FRAMESCALE_TLS_CERT_FILE", requires = "tls_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// Serving private key (PEM), reloaded when it changes.
    #[arg(long, env = "FRAMESCALE_TLS_KEY_FILE", requires = "tls_cert_file")]
    tls_key_file: Option<PathBuf>,
    /// Serve a certificate generated at start-up for localhost and 127.0.0.1 (local use only).
    #[arg(long, env = "FRAMESCALE_SELF_SIGNED", conflicts_with = "tls_cert_file")]
    self_signed: bool,
    /// Metrics file (YAML): series, units and score settings; the defaults of ARCHITECTURE.md when absent.
    #[arg(long, env = "FRAMESCALE_METRICS_CONFIG")]
    metrics_config: Option<PathBuf>,
    /// Exporter /metrics URL for the direct backend (local use); repeat for each exporter (comma-separated in the environment).
    #[arg(
        long = "exporter",
        env = "FRAMESCALE_EXPORTERS",
        value_delimiter = ',',
        required_unless_present_any = ["prometheus_url", "exporter_service"],
        conflicts_with_all = ["prometheus_url", "exporter_service"]
    )]
    exporters: Vec<String>,
    /// The exporters' headless Service, `NAMESPACE/NAME`, for the direct backend in a cluster: its ready EndpointSlice endpoints are scraped, followed by a watch.
    #[arg(
        long,
        env = "FRAMESCALE_EXPORTER_SERVICE",
        conflicts_with = "prometheus_url"
    )]
    exporter_service: Option<String>,
    /// The name of the exporter Service's metrics port.
    #[arg(long, env = "FRAMESCALE_EXPORTER_PORT_NAME", default_value = "metrics")]
    exporter_port_name: String,
    /// Prometheus base URL for the Prometheus backend (http://prometheus:9090 or https://…), instead of --exporter.
    #[arg(long, env = "FRAMESCALE_PROMETHEUS_URL")]
    prometheus_url: Option<String>,
    /// CA certificates (PEM) an https:// --prometheus-url is verified against; default: the system's CAs.
    #[arg(
        long,
        env = "FRAMESCALE_PROMETHEUS_CA_FILE",
        requires = "prometheus_url"
    )]
    prometheus_ca_file: Option<PathBuf>,
    /// File holding a bearer token sent with every Prometheus query (a Prometheus behind kube-rbac-proxy or an OAuth proxy); re-read when it changes.
    #[arg(
        long,
        env = "FRAMESCALE_PROMETHEUS_BEARER_TOKEN_FILE",
        requires = "prometheus_url"
    )]
    prometheus_bearer_token_file: Option<PathBuf>,
    /// Client certificate (PEM) presented to an https:// --prometheus-url that requires one.
    #[arg(
        long,
        env = "FRAMESCALE_PROMETHEUS_CLIENT_CERT_FILE",
        requires_all = ["prometheus_url", "prometheus_client_key_file"]
    )]
    prometheus_client_cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(
        long,
        env = "FRAMESCALE_PROMETHEUS_CLIENT_KEY_FILE",
        requires = "prometheus_client_cert_file"
    )]
    prometheus_client_key_file: Option<PathBuf>,
    /// Timeout of one Prometheus query.
    #[arg(long, env = "FRAMESCALE_PROMETHEUS_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    prometheus_timeout: Duration,
    /// How often the direct backend scrapes the exporters.
    #[arg(long, env = "FRAMESCALE_SCRAPE_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    scrape_interval: Duration,
    /// How long a namespace's signals are reused across requests (concurrent requests always share one fetch).
    #[arg(long, env = "FRAMESCALE_CACHE_TTL", default_value = "2s", value_parser = humantime::parse_duration)]
    cache_ttl: Duration,
    /// Pods and Deployments file (YAML) used to resolve label selectors instead of watching the Kubernetes API.
    #[arg(long, env = "FRAMESCALE_PODS_FILE")]
    pods_file: Option<PathBuf>,
    /// Kubeconfig of the Kubernetes API, used for authentication delegation and the watch of pods and Deployments; default: KUBECONFIG or the pod's service account.
    #[arg(long, env = "FRAMESCALE_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Serve the render queue's backlog (frames waiting plus in flight) from the Redis at this URL, as an Object metric on --backlog-deployment.
    #[arg(long, env = "FRAMESCALE_QUEUE_URL", requires = "backlog_deployment")]
    queue_url: Option<String>,
    /// The render queue's stream.
    #[arg(long, env = "FRAMESCALE_QUEUE_STREAM", default_value = framescale_queue::DEFAULT_STREAM)]
    queue_stream: String,
    /// The Deployment (NAMESPACE/NAME) the backlog metric describes: the workers that pull from the queue.
    #[arg(long, env = "FRAMESCALE_BACKLOG_DEPLOYMENT", requires = "queue_url")]
    backlog_deployment: Option<String>,
    /// The backlog metric's name.
    #[arg(long, env = "FRAMESCALE_BACKLOG_METRIC", default_value = framescale_adapter::backlog::DEFAULT_NAME)]
    backlog_metric: String,
    /// Serve without authenticating or authorizing callers: local use only, never in a cluster. With no --kubeconfig and no --pods-file, selectors then see only the pods the backend has data for, without labels.
    #[arg(long, env = "FRAMESCALE_INSECURE_DISABLE_AUTH")]
    insecure_disable_auth: bool,
}

/// `NAMESPACE/NAME` of `flag`, split.
fn namespaced<'a>(flag: &str, value: &'a str) -> anyhow::Result<(&'a str, &'a str)> {
    match value.split_once('/') {
        Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() => {
            Ok((namespace, name))
        }
        _ => bail!("{flag} {value:?} must be NAMESPACE/NAME"),
    }
}

impl AdapterArgs {
    /// The backlog metric the queue flags ask for, if any.
    fn backlog(&self, metrics: &MetricsConfig) -> anyhow::Result<Option<BacklogMetric>> {
        let (Some(url), Some(deployment)) = (&self.queue_url, &self.backlog_deployment) else {
            return Ok(None);
        };
        let (namespace, name) = namespaced("--backlog-deployment", deployment)?;
        if metrics
            .metric_names()
            .contains(&self.backlog_metric.as_str())
        {
            bail!(
                "--backlog-metric {:?} is already one of the metrics file's metrics",
                self.backlog_metric
            );
        }
        let queue = framescale_queue::Queue::new(url, &self.queue_stream, Duration::from_secs(2))
            .context("--queue-url")?;
        Ok(Some(BacklogMetric {
            name: self.backlog_metric.clone(),
            namespace: namespace.to_owned(),
            deployment: name.to_owned(),
            queue: Arc::new(queue),
        }))
    }

    /// Validates the flags into a configuration; each error names the flag to change.
    pub fn into_config(self) -> anyhow::Result<AdapterConfig> {
        let limits = self.limits()?;
        let metrics = match &self.metrics_config {
            Some(path) => MetricsConfig::load(path).context("--metrics-config")?,
            None => MetricsConfig::default(),
        };
        let backlog = self.backlog(&metrics)?;
        let tls = match (self.tls_cert_file, self.tls_key_file, self.self_signed) {
            (Some(cert), Some(key), false) => CertSource::Files { cert, key },
            (None, None, true) => {
                CertSource::SelfSigned(vec!["localhost".into(), "127.0.0.1".into()])
            }
            _ => bail!("give --tls-cert-file and --tls-key-file, or --self-signed for local use"),
        };
        for url in &self.exporters {
            if !url.starts_with("http://") {
                bail!("--exporter {url:?} must be an http:// URL of an exporter's /metrics");
            }
        }
        if self.scrape_interval < Duration::from_millis(100)
            || self.scrape_interval > Duration::from_mins(5)
        {
            bail!("--scrape-interval must be between 100ms and 5m");
        }

        let client_cert = self
            .prometheus_client_cert_file
            .zip(self.prometheus_client_key_file);
        let backend = match self.prometheus_url {
            Some(url) if url.starts_with("https://") => Backend::Prometheus {
                url,
                timeout: self.prometheus_timeout,
                ca_file: self.prometheus_ca_file,
                bearer_token_file: self.prometheus_bearer_token_file,
                client_cert,
            },
            Some(url) if url.starts_with("http://") => {
                if self.prometheus_ca_file.is_some() || client_cert.is_some() {
                    bail!(
                        "--prometheus-ca-file and --prometheus-client-cert-file need an https:// --prometheus-url, not {url:?}"
                    );
                }
                if self.prometheus_bearer_token_file.is_some() {
                    tracing::warn!(%url, "The Prometheus bearer token is sent over plain HTTP");
                }
                Backend::Prometheus {
                    url,
                    timeout: self.prometheus_timeout,
                    ca_file: None,
                    bearer_token_file: self.prometheus_bearer_token_file,
                    client_cert: None,
                }
            }
            Some(url) => bail!("--prometheus-url {url:?} must be an http:// or https:// URL"),
            None => Backend::Direct {
                exporters: match self.exporter_service {
                    Some(service) => {
                        let (namespace, name) = namespaced("--exporter-service", &service)?;
                        ExporterTargets::Service {
                            namespace: namespace.to_owned(),
                            name: name.to_owned(),
                            port_name: Some(self.exporter_port_name),
                        }
                    }
                    None => ExporterTargets::Fixed(self.exporters),
                },
                scrape_interval: self.scrape_interval,
            },
        };
        Ok(AdapterConfig {
            listen: self.listen,
            admin_listen: self.admin_listen,
            tls,
            metrics,
            backend,
            pods: match (self.pods_file, &self.kubeconfig, self.insecure_disable_auth) {
                (Some(path), _, _) => PodSource::File(path),
                (None, None, true) => PodSource::Signals,
                (None, _, _) => PodSource::Kubernetes,
            },
            cache_ttl: self.cache_ttl,
            auth: if self.insecure_disable_auth {
                AuthMode::Disabled
            } else {
                AuthMode::Delegated
            },
            kubeconfig: self.kubeconfig,
            limits,
            backlog,
        })
    }

    fn limits(&self) -> anyhow::Result<ConnectionLimits> {
        if self.header_read_timeout < Duration::from_millis(100)
            || self.header_read_timeout > Duration::from_mins(5)
        {
            bail!("--header-read-timeout must be between 100ms and 5m");
        }
        if self.max_connections == 0 {
            bail!("--max-connections must be at least 1");
        }
        Ok(ConnectionLimits {
            header_read_timeout: self.header_read_timeout,
            max_connections: self.max_connections,
            ..ConnectionLimits::default()
        })
    }
}

/// Runs the adapter until SIGTERM or Ctrl-C.
pub fn run(args: AdapterArgs) -> anyhow::Result<()> {
    let config = args.into_config()?;
    if matches!(config.auth, AuthMode::Disabled) {
        tracing::warn!(
            "Authentication and authorization are OFF (--insecure-disable-auth): any client can read every metric"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(framescale_adapter::run(config, crate::shutdown::signal()))?;
    Ok(())
}
