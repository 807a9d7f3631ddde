//! `framescale submit`: puts a render job (a scene and a range of frames) on the durable queue
//! that workers in queue mode pull from, and can wait for it, printing progress.

use std::io::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Args;
use framescale_queue::{JobSpec, Priority, Queue, job};

/// Flags of `framescale submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The queue's Redis (`redis://HOST:6379/0`, `rediss://` for TLS).
    #[arg(long, env = "FRAMESCALE_QUEUE_URL")]
    queue_url: String,
    /// The queue's stream.
    #[arg(long, env = "FRAMESCALE_QUEUE_STREAM", default_value = framescale_queue::DEFAULT_STREAM)]
    queue_stream: String,
    /// The scene (for Blender workers, `<scene>.blend` in their scenes directory).
    #[arg(long, default_value = "spheres")]
    scene: String,
    /// The frames: FIRST..LAST (both included) or one frame number.
    #[arg(long)]
    frames: String,
    #[command(flatten)]
    frame: crate::frame_args::FrameArgs,
    /// normal, or urgent: workers take every urgent frame waiting before any normal one.
    #[arg(long, default_value = "normal")]
    priority: Priority,
    /// Wait until every frame is done (or failed), printing progress; exit non-zero if any failed.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up after this long (the job stays on the queue).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// With --wait: how often progress is printed.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    progress_every: Duration,
}

/// Submits the job and, with `--wait`, follows it.
pub fn run(args: &SubmitArgs) -> anyhow::Result<()> {
    let spec = JobSpec {
        scene: args.scene.clone(),
        frames: job::parse_range(&args.frames)?,
        width: args.frame.width,
        height: args.frame.height,
        samples: args.frame.samples,
        priority: args.priority,
    };
    spec.validate()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(submit(args, &spec))
}

async fn submit(args: &SubmitArgs, spec: &JobSpec) -> anyhow::Result<()> {
    let queue = Queue::new(&args.queue_url, &args.queue_stream, Duration::from_secs(5))?;
    let total = spec.frame_count();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut last_said = Instant::now();
    let job = queue
        .submit(spec, now_ms, |written| {
            if written < total && last_said.elapsed() >= Duration::from_secs(1) {
                eprintln!("enqueued {written}/{total} frames");
                last_said = Instant::now();
            }
        })
        .await?;
    println!(
        "job {job}: {total} frames of {} ({}..{}), {} priority, on {} stream {}",
        spec.scene,
        spec.frames.start(),
        spec.frames.end(),
        spec.priority,
        queue.url(),
        queue.stream()
    );
    std::io::stdout().flush().ok();
    if !args.wait {
        return Ok(());
    }
    let started = Instant::now();
    let deadline = started + args.timeout;
    let mut last_done = 0;
    loop {
        match queue.progress(&job).await {
            Ok(progress) => {
                let rate = progress.done as f64 / started.elapsed().as_secs_f64().max(0.001);
                if progress.done != last_done || progress.finished() {
                    eprintln!(
                        "job {job}: {}/{} done ({:.1} %), {} failed, {} duplicates, {rate:.1} frames/s",
                        progress.done,
                        progress.total,
                        100.0 * progress.done as f64 / progress.total.max(1) as f64,
                        progress.failed,
                        progress.duplicates,
                    );
                    last_done = progress.done;
                }
                if progress.finished() {
                    println!(
                        "job {job}: finished in {:.1} s: {} done, {} failed, {} duplicates",
                        started.elapsed().as_secs_f64(),
                        progress.done,
                        progress.failed,
                        progress.duplicates
                    );
                    if progress.failed > 0 {
                        bail!(
                            "job {job}: {} frames failed; their reasons are in the stream {}:dead",
                            progress.failed,
                            queue.stream()
                        );
                    }
                    return Ok(());
                }
            }
            Err(error) => eprintln!("job {job}: cannot read progress ({error}); trying again"),
        }
        if Instant::now() >= deadline {
            bail!(
                "job {job}: not finished after {} (it stays on the queue)",
                humantime::format_duration(args.timeout)
            );
        }
        tokio::time::sleep(args.progress_every).await;
    }
}
