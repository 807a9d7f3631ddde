//! framescale's bundled render service, the Deployment the HPA scales: an HTTP render API in
//! front of a fixed number of render slots and a bounded queue ([`server`]), rendering on a
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

/// Serves until `shutdown` resolves, then stops accepting, finishes every admitted frame and
/// returns.
pub async fn run(
    config: WorkerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(Error::Serve)?;
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
