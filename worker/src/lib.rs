//! framescale's bundled render service, the Deployment the HPA scales: an HTTP render API in
//! front of a fixed number of render slots and a bounded queue ([`server`]), or, in queue mode,
//! a puller of frames from the durable queue ([`puller`]), rendering on a
//! backend ([`backend`], one [`frame::Renderer`] trait): the synthetic CPU path tracer
//! ([`tracer`]) for machines without a GPU, or Blender ([`blender`]). A frame's request, result
//! and errors are [`frame`]'s.
//! Each frame is logged on stdout in the `framescale.frame` format, so the exporter measures the
//! worker like any other render pod. The load generator ([`loadgen`], [`profile`]) drives it.

pub mod backend;
pub mod blender;
pub mod frame;
pub mod loadgen;
pub mod profile;
pub mod puller;
pub mod random;
pub mod server;
pub mod tracer;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::backend::Backend;
use crate::server::Worker;

/// Everything the worker needs to run.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// HTTP address of the render API.
    pub listen: SocketAddr,
    /// Where frames are rendered.
    pub backend: Backend,
    /// Frames rendered at once.
    pub slots: usize,
    /// Frames that may wait for a slot; beyond them, 429.
    pub queue: usize,
}

/// Queue mode: where frames come from.
#[derive(Debug, Clone)]
pub struct QueueMode {
    /// The queue.
    pub queue: Arc<framescale_queue::Queue>,
    /// How frames are pulled.
    pub pull: puller::PullConfig,
}

/// Why the worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address cannot be bound.
    #[error("cannot listen on {addr} (set --listen): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server failed.
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

/// The listener on `listen`, and the address it got.
async fn bind(listen: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), Error> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| Error::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(Error::Serve)?;
    Ok((listener, addr))
}

/// Serves until `shutdown` resolves, then stops accepting, finishes every admitted frame and
/// returns.
pub async fn run(
    config: WorkerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let (listener, addr) = bind(config.listen).await?;
    let worker = Arc::new(Worker::new(
        Arc::new(config.backend.clone()),
        config.slots,
        config.queue,
    ));
    tracing::info!(%addr, backend = ?config.backend, slots = config.slots, queue = config.queue, "Worker listening");
    let draining = worker.clone();
    axum::serve(listener, server::router(worker.clone()))
        .with_graceful_shutdown(async move {
            shutdown.await;
            draining.start_draining();
            tracing::info!(
                in_flight = draining.in_flight(),
                "Worker draining: no new connections, finishing admitted frames"
            );
        })
        .await
        .map_err(Error::Serve)?;
    tracing::info!(frames = worker.frames(), "Worker stopped");
    Ok(())
}

/// Queue mode: pulls frames from the queue and renders them until `shutdown` resolves, then
/// takes no more, finishes those in hand and returns. `/livez` and `/readyz` are served on
/// `config.listen` (no render API).
pub async fn run_pulling(
    config: WorkerConfig,
    mode: QueueMode,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let (listener, addr) = bind(config.listen).await?;
    // Only its draining flag is used: /readyz turns 503 on shutdown.
    let health = Arc::new(Worker::new(Arc::new(config.backend.clone()), 1, 0));
    let scenes = config.backend.scenes();
    if let Err(error) = mode.queue.register_scenes(&scenes).await {
        tracing::warn!(%error, "Cannot tell the queue which scenes this worker renders (submit then checks only their names)");
    }
    tracing::info!(%addr, backend = ?config.backend, slots = mode.pull.slots, queue = mode.queue.url(), stream = mode.queue.stream(), consumer = %mode.pull.consumer, "Worker pulling frames from the queue");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let counts = Arc::new(puller::PullCounts::default());
    let pulling = tokio::spawn(puller::pull(
        mode.queue.clone(),
        Arc::new(config.backend.clone()),
        mode.pull.clone(),
        counts.clone(),
        stopped,
    ));
    let draining = health.clone();
    axum::serve(listener, server::health_router(health))
        .with_graceful_shutdown(async move {
            shutdown.await;
            draining.start_draining();
            let _ = stop.send(true);
        })
        .await
        .map_err(Error::Serve)?;
    let _ = pulling.await;
    let (done, duplicates, reclaimed, dead_lettered) = counts.snapshot();
    tracing::info!(done, duplicates, reclaimed, dead_lettered, "Worker stopped");
    Ok(())
}
