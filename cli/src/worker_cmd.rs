//! `framescale worker`: flags, their validation, and the run.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use framescale_worker::WorkerConfig;
use framescale_worker::backend::Backend;
use framescale_worker::blender::BlenderBackend;

/// Flags of `framescale worker`; each has a `FRAMESCALE_` environment variable.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// HTTP address of the render API.
    #[arg(long, env = "FRAMESCALE_WORKER_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Renderer: `synthetic` (built-in CPU path tracer) or `blender` (one Blender process per frame).
    #[arg(long, env = "FRAMESCALE_WORKER_BACKEND", default_value = "synthetic")]
    backend: String,
    /// The Blender executable (`--backend blender`).
    #[arg(long, env = "FRAMESCALE_WORKER_BLENDER", default_value = "blender")]
    blender: PathBuf,
    /// Directory of `<scene>.blend` files (`--backend blender`).
    #[arg(long, env = "FRAMESCALE_WORKER_SCENES", default_value = "/scenes")]
    scenes: PathBuf,
    /// Directory where Blender writes each frame before it is sent (`--backend blender`); default: the system's temporary directory.
    #[arg(long, env = "FRAMESCALE_WORKER_OUTPUT_DIR")]
    output_dir: Option<PathBuf>,
    /// Frames rendered at once (default: 1).
    #[arg(long, env = "FRAMESCALE_WORKER_SLOTS", default_value_t = 1)]
    slots: usize,
    /// Frames that may wait for a slot; a request beyond them is answered 429.
    #[arg(long, env = "FRAMESCALE_WORKER_QUEUE", default_value_t = 4)]
    queue: usize,
    /// Queue mode: pull frames from the Redis at this URL (`redis://HOST:6379/0`, `rediss://` for TLS) instead of serving the render API.
    #[arg(long, env = "FRAMESCALE_QUEUE_URL")]
    queue_url: Option<String>,
    /// The queue's stream (queue mode).
    #[arg(long, env = "FRAMESCALE_QUEUE_STREAM", default_value = framescale_queue::DEFAULT_STREAM)]
    queue_stream: String,
    /// A frame held this long by a worker that stopped renewing it is rendered by another (queue mode).
    #[arg(long, env = "FRAMESCALE_WORKER_CLAIM_AFTER", default_value = "60s", value_parser = humantime::parse_duration)]
    claim_after: std::time::Duration,
    /// This worker's name in the queue's consumer group (queue mode); default: the pod's name ($HOSTNAME) and the process id.
    #[arg(long, env = "FRAMESCALE_WORKER_CONSUMER")]
    consumer: Option<String>,
}

/// Runs the worker until SIGTERM or Ctrl-C, then drains.
pub fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let WorkerArgs {
        listen,
        backend,
        blender,
        scenes,
        output_dir,
        slots,
        queue,
        queue_url,
        queue_stream,
        claim_after,
        consumer,
    } = args;
    let backend = match backend.as_str() {
        "synthetic" => Backend::Synthetic,
        "blender" => {
            if !scenes.is_dir() {
                bail!("--scenes {} is not a directory", scenes.display());
            }
            let output = output_dir.unwrap_or_else(std::env::temp_dir);
            if !output.is_dir() {
                bail!("--output-dir {} is not a directory", output.display());
            }
            Backend::Blender(BlenderBackend {
                binary: blender,
                scenes,
                output,
            })
        }
        other => bail!("--backend {other:?} is not known: use synthetic or blender"),
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
    let Some(url) = queue_url else {
        runtime.block_on(framescale_worker::run(config, crate::shutdown::signal()))?;
        return Ok(());
    };
    if claim_after < std::time::Duration::from_secs(1) {
        bail!("--claim-after must be at least 1s (frames are renewed every third of it)");
    }
    let queue =
        framescale_queue::Queue::new(&url, &queue_stream, std::time::Duration::from_secs(5))?;
    let consumer = consumer.unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    });
    let mode = framescale_worker::QueueMode {
        queue: std::sync::Arc::new(queue),
        pull: framescale_worker::puller::PullConfig {
            consumer,
            slots,
            claim_after,
        },
    };
    runtime.block_on(framescale_worker::run_pulling(
        config,
        mode,
        crate::shutdown::signal(),
    ))?;
    Ok(())
}
