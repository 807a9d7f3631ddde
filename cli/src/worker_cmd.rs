//! `framescale worker`: flags, their validation, and the run.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use clap::Args;
use framescale_worker::WorkerConfig;
use framescale_worker::render::Backend;

/// Flags of `framescale worker`; each has a `FRAMESCALE_` environment variable.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// HTTP address of the render API.
    #[arg(long, env = "FRAMESCALE_WORKER_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Renderer: `synthetic` (built-in CPU path tracer).
    #[arg(long, env = "FRAMESCALE_WORKER_BACKEND", default_value = "synthetic")]
    backend: String,
    /// Frames rendered at once (default: 1).
    #[arg(long, env = "FRAMESCALE_WORKER_SLOTS", default_value_t = 1)]
    slots: usize,
    /// Frames that may wait for a slot; a request beyond them is answered 429.
    #[arg(long, env = "FRAMESCALE_WORKER_QUEUE", default_value_t = 4)]
    queue: usize,
}

/// Runs the worker until SIGTERM or Ctrl-C, then drains.
pub fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let WorkerArgs {
        listen,
        backend,
        slots,
        queue,
    } = args;
    let backend = match backend.as_str() {
        "synthetic" => Backend::Synthetic,
        other => bail!("--backend {other:?} is not known: use synthetic"),
    };
    if slots == 0 || slots > 256 {
        bail!("--slots must be between 1 and 256");
    }
    if queue > 10_000 {
        bail!("--queue must be at most 10000");
    }
    let config = WorkerConfig {
        listen,
        backend,
        slots,
        queue,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(slots)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(framescale_worker::run(config, crate::shutdown::signal()))?;
    Ok(())
}
