//! framescale's per-node exporter: render logs in, per-pod frame-time quantiles out.
//!
//! It follows the kubelet's pods log root ([`log_root`]: the polling loop; [`discovery`]: which
//! logs; [`log_file`]: one file through rotation; [`cri`]: its records), parses each
//! container's output with the core render-log parser, keeps a sliding window per
//! (namespace, pod, container) ([`store`]), accepts pushed frames ([`push`]) and serves it all
//! as OpenMetrics ([`exposition`], [`server`]). Device duty comes from a [`device::DeviceSource`]
//! polled on its own thread, chosen at start ([`select`]): NVML ([`nvml`], with pods from the
//! kubelet's [`pod_resources`] and processes named by [`attribution`]) or the CPU source
//! ([`cpu`]). The adapter that serves the custom metrics API is another crate.

pub mod attribution;
pub mod cgroup;
pub mod checkpoint;
pub mod config;
pub mod cpu;
pub mod cri;
pub mod device;
pub mod discovery;
pub mod exposition;
pub mod log_file;
pub mod log_root;
pub mod nvml;
pub mod pod_resources;
pub mod procfs;
pub mod push;
pub mod select;
pub mod server;
pub mod stats;
pub mod store;
pub mod throttle;
pub mod watch;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use framescale_core::window::{Scratch, WindowConfig};

pub use config::{DeviceSourceConfig, ExporterConfig, PushConfig};

use crate::device::{DeviceState, DeviceStats};
use crate::discovery::PodFilter;
use crate::log_root::Tailer;
use crate::stats::ExporterStats;
use crate::store::SeriesStore;
use crate::throttle::Throttle;

/// State shared by the tailer thread and the HTTP handlers.
#[derive(Debug)]
pub struct Shared {
    /// Every series.
    pub store: Mutex<SeriesStore>,
    /// Buffers reused by `/metrics`.
    pub scratch: Mutex<Scratch>,
    /// Self metrics.
    pub stats: ExporterStats,
    /// Rate limits for warnings.
    pub throttle: Throttle,
    /// Set once the first scan of the log root is done.
    pub ready: AtomicBool,
    /// Whether and how much pods may push.
    pub push: PushConfig,
    /// Which namespaces and containers are watched: pushes for others are refused.
    pub filter: PodFilter,
    /// The device source's readings and figures.
    pub devices: DeviceState,
    /// When the windows started filling (the exporter's start: windows are not checkpointed).
    pub started: std::time::Instant,
}

impl Shared {
    /// Empty state, counting the device source in `device_stats`.
    #[must_use]
    pub fn new(
        window: WindowConfig,
        push: PushConfig,
        filter: PodFilter,
        device_stats: DeviceStats,
    ) -> Self {
        Shared {
            store: Mutex::new(SeriesStore::new(window)),
            scratch: Mutex::new(Scratch::default()),
            stats: ExporterStats::default(),
            throttle: Throttle::default(),
            ready: AtomicBool::new(false),
            push,
            filter,
            devices: DeviceState {
                readings: Mutex::new(Vec::new()),
                stats: device_stats,
            },
            started: std::time::Instant::now(),
        }
    }
}

/// Locks a mutex; a panic elsewhere while it was held leaves data that is still consistent
/// (every update is a single insert or increment), so poisoning is ignored.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log root is not a readable directory.
    #[error("cannot read the pods log root {path} (set --log-root): {source}")]
    LogRootUnreadable {
        /// The root.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The state directory cannot hold checkpoints.
    #[error("cannot keep checkpoints (set --state-dir): {0}")]
    StateDir(#[from] checkpoint::Error),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr} (set --listen): {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server failed.
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// Runs the exporter until `shutdown` resolves: the tailer on its own thread, the HTTP server
/// on the current runtime. Logs the bound address (`--listen` may ask for port 0).
pub async fn run(
    config: ExporterConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let selected = select::select(&config.device_source);
    run_with(config, selected, shutdown).await
}

/// The checkpoint under `dir`, its counters restored into `shared`; `None` on a first start.
/// A checkpoint that cannot be read is set aside (`.invalid`) and the start is a first one.
fn resume_from(
    dir: &std::path::Path,
    shared: &Shared,
) -> Result<Option<checkpoint::Checkpoint>, Error> {
    checkpoint::prepare(dir)?;
    match checkpoint::Checkpoint::load(dir) {
        Ok(Some(checkpoint)) => {
            lock(&shared.store).restore_counts(&checkpoint.series, log_file::now_millis());
            tracing::info!(
                streams = checkpoint.streams.len(),
                series = checkpoint.series.len(),
                age_ms = log_file::now_millis().saturating_sub(checkpoint.written_at_millis),
                "Going on from the checkpoint"
            );
            Ok(Some(checkpoint))
        }
        Ok(None) => Ok(None),
        Err(error @ checkpoint::Error::Invalid { .. }) => {
            let path = dir.join(checkpoint::FILE_NAME);
            let aside = dir.join(format!("{}.invalid", checkpoint::FILE_NAME));
            let _ = std::fs::rename(&path, &aside);
            tracing::error!(%error, aside = %aside.display(), "Checkpoint set aside; starting at the end of every file");
            Ok(None)
        }
        Err(error) => Err(error.into()),
    }
}

/// [`run`] with a device source chosen already (benchmarks bring a scripted one).
pub async fn run_with(
    config: ExporterConfig,
    selected: select::Selected,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    std::fs::read_dir(&config.log_root).map_err(|source| Error::LogRootUnreadable {
        path: config.log_root.display().to_string(),
        source,
    })?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(Error::Serve)?;
    tracing::info!(source = selected.name, why = %selected.why, "Device source chosen");
    let device_stats = DeviceStats::new(
        selected.name,
        selected
            .source
            .is_some()
            .then_some(config.device_poll_interval),
    );
    if let Some(reason) = selected.passed_over {
        device_stats.count(reason);
    }
    let shared = Arc::new(Shared::new(
        config.window,
        config.push,
        config.filter.clone(),
        device_stats,
    ));
    let resume = match &config.state_dir {
        Some(dir) => resume_from(dir, &shared)?,
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let tailer = {
        let (shared, stop) = (shared.clone(), stop.clone());
        let tailer = Tailer::new(config.clone(), resume);
        std::thread::Builder::new()
            .name("tailer".into())
            .spawn(move || tailer.run(&shared, &stop))
            .map_err(Error::Serve)?
    };
    let devices = match selected.source {
        None => None,
        Some(source) => {
            let (shared, stop, interval) =
                (shared.clone(), stop.clone(), config.device_poll_interval);
            let thread = std::thread::Builder::new()
                .name("devices".into())
                .spawn(move || {
                    device::run(source, interval, &shared.devices, &shared.throttle, &stop);
                })
                .map_err(Error::Serve)?;
            Some(thread)
        }
    };
    tracing::info!(%addr, root = %config.log_root.display(), window = ?config.window.window(), "Exporter listening");
    let served = axum::serve(listener, server::router(shared))
        .with_graceful_shutdown(shutdown)
        .await;
    stop.store(true, Ordering::Relaxed);
    let _ = tailer.join();
    if let Some(devices) = devices {
        let _ = devices.join();
    }
    tracing::info!("Exporter stopped");
    served.map_err(Error::Serve)
}
