//! `framescale demo`: the whole loop on one machine, with nothing to install but this binary.
//!
//! Worker processes (the synthetic backend) write CRI logs under a demo pods root; the real
//! exporter reads them and the workers' CPU duty; the real adapter serves the custom metrics
//! API over HTTPS with a certificate the demo makes; a local HPA ([`local_hpa`]) reads
//! `render_scaling_score` from that API every sync period and starts or stops workers; a load
//! generator drives a step profile. Progress goes to the terminal each second; at the end a
//! CSV and an HTML report are written. Every child is stopped on exit, Ctrl-C or SIGTERM.
//!
//! With `--shared-queue` it is a render farm instead ([`farm`]): a `redis-server` of its own
//! holds the frames, the workers pull them, render jobs are submitted at set times, and the
//! local HPA scales on the queue's backlog alone, from zero workers.

mod control;
mod farm;
mod fleet;
mod local_hpa;
mod process;
mod services;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use framescale_sim::hpa::controller::{ControllerConfig, HpaSpec};
use framescale_sim::report::Report;
use framescale_worker::loadgen::{self, LoadConfig};
use framescale_worker::profile::Profile;

use control::{control_loop, summary};
use farm::{Feed, JobPlan};
use fleet::{Fleet, FleetConfig};
use local_hpa::MetricsClient;
pub use local_hpa::{spec_from_flags, spec_from_manifest};
use services::start_services;

/// Flags of `framescale demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long the demo runs.
    #[arg(long, default_value = "4m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Seed of the load's arrival times.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Load profile in frames per second (constant:R, step:LOW,HIGH,AT[,UNTIL], ramp:FROM,TO, sine:MEAN,AMP,PERIOD, csv:FILE); default: a step from 0.25 to 2 times one worker's measured capacity, from 15 % to 55 % of the run.
    #[arg(long)]
    profile: Option<String>,
    /// Fewest workers; default: 1 (with --shared-queue: 0, the backlog wakes them).
    #[arg(long)]
    min_replicas: Option<i32>,
    /// Most workers; default: this machine's cores, at least 2 and at most 4 (a worker stands in for a GPU pod: more workers than cores only share them, and each frame renders slower).
    #[arg(long)]
    max_replicas: Option<i32>,
    /// How often the local HPA syncs (kube-controller-manager's --horizontal-pod-autoscaler-sync-period).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    sync_period: Duration,
    /// The HPA's tolerance around the target.
    #[arg(long, default_value_t = 0.1)]
    tolerance: f64,
    /// Scale-down stabilization window of the default behavior (the API default is 5m, too long for a demo).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    scale_down_window: Duration,
    /// An HPA manifest (YAML) whose minReplicas, maxReplicas and behavior replace the flags above.
    #[arg(long)]
    hpa: Option<PathBuf>,
    /// The frame latency users accept (P95 of queue + render), ms: the score's frame target, and what counts a frame as late in the summary's bad frames; default: 5 × the render time measured at start-up (with --shared-queue: 30 s from submit to done).
    #[arg(long)]
    frame_target_ms: Option<f64>,
    /// Duty target of the score, percent.
    #[arg(long, default_value_t = 65.0)]
    gpu_target_pct: f64,
    /// How long a regime must hold before the score may exceed 1, for every regime (the adapter's default is none since tune measured holds costing frames and pods; the demo keeps 5s, what the figures of docs/demo.md were measured with).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    hold: Duration,
    /// Width of each frame, pixels.
    #[arg(long, default_value_t = 128)]
    width: u32,
    /// Height of each frame, pixels.
    #[arg(long, default_value_t = 128)]
    height: u32,
    /// Samples per pixel.
    #[arg(long, default_value_t = 8)]
    samples: u32,
    /// Render slots per worker.
    #[arg(long, default_value_t = 1)]
    slots: usize,
    /// Queue places per worker (429 beyond).
    #[arg(long, default_value_t = 4)]
    queue: usize,
    /// Window of the exporter's frame-time quantiles.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    window: Duration,
    /// Run as a render farm: a redis-server of its own (from PATH) holds the frames, the workers pull them (the worker's queue mode), render jobs (--job) are submitted instead of the load profile, and the local HPA scales on the queue's backlog alone (an Object metric), from zero workers.
    #[arg(long, conflicts_with = "profile")]
    shared_queue: bool,
    /// With --shared-queue: a render job, AT:FRAMES[:urgent] (30s:1200, 60s:200:urgent), submitted AT into the run; repeat for several. Default: two jobs of 10 s of work for --max-replicas workers, at 10 % and 55 % of the run.
    #[arg(long, value_parser = farm::parse_job, requires = "shared_queue")]
    job: Vec<JobPlan>,
    /// With --shared-queue: the backlog's target, frames waiting and in flight per worker; default: what one worker renders in 5 s.
    #[arg(long, requires = "shared_queue")]
    backlog_per_replica: Option<f64>,
    /// Where the report (report.csv, report.html) is written.
    #[arg(long, default_value = "framescale-demo")]
    report_dir: PathBuf,
}

/// Everything the loop needs, settled before it starts.
struct Plan {
    spec: HpaSpec,
    controller: ControllerConfig,
    profile: Profile,
    frame_target_ms: f64,
    /// Queue mode: the backlog's target per worker.
    backlog_per_replica: Option<f64>,
    /// Queue mode: the jobs.
    jobs: Vec<JobPlan>,
    notes: Vec<String>,
}

/// Runs the demo; returns once the report is written (or the demo was stopped and cleaned up).
#[allow(clippy::needless_pass_by_value)] // every subcommand's run takes its flags by value
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    validate(&args)?;
    let spec = hpa_spec(&args)?;
    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(stop.clone());
    let work = tempfile::Builder::new()
        .prefix("framescale-demo-")
        .tempdir()
        .context("cannot create the demo's working directory")?;
    eprintln!("framescale demo: working in {}", work.path().display());
    let result = run_in(&args, spec, work.path(), &stop);
    if result.is_err() {
        let kept = work.keep();
        eprintln!(
            "framescale demo: failed; its logs are kept in {}",
            kept.display()
        );
    }
    result
}

fn run_in(
    args: &DemoArgs,
    spec: HpaSpec,
    dir: &Path,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let redis = if args.shared_queue {
        Some(farm::start_redis(dir)?)
    } else {
        None
    };
    let queue_url = redis.as_ref().map(|r| r.url.clone());
    let mut fleet = Fleet::new(FleetConfig {
        dir: dir.into(),
        log_root: dir.join("pods"),
        processes_file: dir.join("processes"),
        pods_file: dir.join("pods.yaml"),
        slots: args.slots,
        queue: args.queue,
        queue_url: queue_url.clone(),
    })?;
    let render_ms = calibrate(args)?;
    fleet.scale_to(spec.min_replicas as usize)?;
    let plan = plan(args, spec, render_ms)?;
    for note in &plan.notes {
        eprintln!("  {note}");
    }

    let (cert_pem, services) =
        start_services(args, dir, plan.frame_target_ms, queue_url.as_deref())?;
    let client = MetricsClient::new(services.adapter_url.clone(), &cert_pem)?;
    let started = Instant::now();
    let load = match &queue_url {
        Some(url) => Load::Jobs(farm::feed(
            Feed {
                url: url.clone(),
                jobs: plan.jobs.clone(),
                frame: (args.width, args.height, args.samples),
                slo_ms: plan.frame_target_ms,
            },
            started,
            stop.clone(),
        )),
        None => Load::Requests(start_load(args, &plan.profile, &fleet, stop)),
    };
    let outcome = control_loop(args, &plan, &mut fleet, &client, stop, started);
    stop.store(true, Ordering::Relaxed);
    let load = load.join();
    eprintln!("framescale demo: stopping the workers, the adapter and the exporter");
    fleet.shutdown();
    drop(services);
    drop(redis);
    let mut rows = outcome?;

    let mut notes = plan.notes.clone();
    notes.extend(summary(&rows, args, &plan));
    match &load {
        Some(LoadReport::Requests(load)) => {
            felt(&mut rows, load, plan.frame_target_ms);
            notes.extend(load.summary().lines().map(|l| format!("load: {l}")));
            let (bad, all) = load.bad_frames(plan.frame_target_ms);
            notes.push(format!(
                "users: {:.1} % bad frames ({bad} of {all} later than {} ms or never answered)",
                100.0 * bad as f64 / all.max(1) as f64,
                plan.frame_target_ms
            ));
        }
        Some(LoadReport::Jobs(runs)) => {
            notes.extend(farm::summary(runs, &rows, plan.frame_target_ms));
        }
        None => {}
    }
    let report = Report {
        title: "framescale demo".into(),
        notes,
        figures: Vec::new(),
        frame_target_ms: plan.frame_target_ms,
        gpu_target_pct: args.gpu_target_pct,
        rows,
    };
    let (csv, html) = report
        .write(&args.report_dir)
        .with_context(|| format!("cannot write the report to {}", args.report_dir.display()))?;
    for line in report.notes.iter().skip(plan.notes.len()) {
        eprintln!("  {line}");
    }
    eprintln!(
        "framescale demo: report written to {} and {}",
        csv.display(),
        html.display()
    );
    Ok(())
}

/// What drives the demo: frames sent to the workers' render API, or render jobs on the queue.
enum Load {
    Requests(std::thread::JoinHandle<loadgen::Report>),
    Jobs(std::thread::JoinHandle<Vec<farm::JobRun>>),
}

/// What the load saw, once it stopped.
enum LoadReport {
    Requests(loadgen::Report),
    Jobs(Vec<farm::JobRun>),
}

impl Load {
    fn join(self) -> Option<LoadReport> {
        match self {
            Load::Requests(handle) => handle.join().ok().map(LoadReport::Requests),
            Load::Jobs(handle) => handle.join().ok().map(LoadReport::Jobs),
        }
    }
}

/// The HPA: from `--hpa`, or from the flags (with `--shared-queue`, from zero workers unless
/// `--min-replicas` says otherwise).
fn hpa_spec(args: &DemoArgs) -> anyhow::Result<HpaSpec> {
    let spec = if let Some(path) = &args.hpa {
        spec_from_manifest(path)?
    } else {
        // 1, or 0 with the queue, whose backlog wakes the workers.
        let min = args
            .min_replicas
            .unwrap_or_else(|| i32::from(!args.shared_queue));
        let max = args.max_replicas.unwrap_or_else(default_max_replicas);
        spec_from_flags(min, max, args.scale_down_window)?
    };
    if spec.max_replicas > 64 {
        bail!("at most 64 replicas: each one is a process on this machine");
    }
    if spec.min_replicas == 0 && !args.shared_queue {
        bail!(
            "--hpa: minReplicas 0 needs --shared-queue: only the queue's backlog wakes workers from zero"
        );
    }
    Ok(spec)
}

/// What users felt, from the load generator: each row gets the latency P95 and the bad frames
/// of the frames that arrived in the second before it.
fn felt(rows: &mut [framescale_sim::report::Row], load: &loadgen::Report, target_ms: f64) {
    for row in rows {
        let Some(second) = (row.t.floor() as usize)
            .checked_sub(1)
            .and_then(|i| load.seconds.get(i))
        else {
            continue;
        };
        row.users_p95_ms = second.quantile(0.95);
        if second.frames() > 0 {
            row.bad_pct = Some(100.0 * second.bad(target_ms) as f64 / second.frames() as f64);
        }
    }
}

fn validate(args: &DemoArgs) -> anyhow::Result<()> {
    if args.duration < Duration::from_secs(10) {
        bail!("--duration must be at least 10s");
    }
    if args.gpu_target_pct.is_nan() || args.gpu_target_pct <= 0.0 {
        bail!("--gpu-target-pct must be above 0");
    }
    if args.frame_target_ms.is_some_and(|t| t.is_nan() || t <= 0.0) {
        bail!("--frame-target-ms must be above 0");
    }
    if args.sync_period < Duration::from_secs(1) {
        bail!("--sync-period must be at least 1s");
    }
    if !(0.0..1.0).contains(&args.tolerance) {
        bail!("--tolerance must be in [0, 1)");
    }
    if args.slots == 0 || args.width == 0 || args.height == 0 || args.samples == 0 {
        bail!("--slots, --width, --height and --samples must be positive");
    }
    match args.min_replicas {
        Some(min) if min < 0 => bail!("--min-replicas must be at least 0"),
        Some(0) if !args.shared_queue => bail!(
            "--min-replicas 0 needs --shared-queue: only the queue's backlog wakes workers from zero"
        ),
        _ => {}
    }
    if args
        .backlog_per_replica
        .is_some_and(|t| !(t.is_finite() && t > 0.0))
    {
        bail!("--backlog-per-replica must be above 0");
    }
    Ok(())
}

/// Sets `stop` on the first SIGINT or SIGTERM, from a thread of its own.
fn watch_signals(stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(crate::shutdown::signal());
        stop.store(true, Ordering::Relaxed);
    });
}

/// Median render time of a few frames rendered here by the workers' synthetic backend, in ms.
fn calibrate(args: &DemoArgs) -> anyhow::Result<f64> {
    use framescale_worker::frame::{FrameRequest, Renderer as _};
    let mut times = Vec::new();
    for frame in 0..5 {
        let request = FrameRequest {
            scene: framescale_worker::tracer::SCENES[0].to_owned(),
            frame,
            width: args.width,
            height: args.height,
            samples: args.samples,
        };
        let rendered = framescale_worker::backend::Backend::Synthetic
            .render(&request)
            .map_err(|e| anyhow::anyhow!("calibration frame: {e}"))?;
        times.push(rendered.render_time.as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn plan(args: &DemoArgs, spec: HpaSpec, render_ms: f64) -> anyhow::Result<Plan> {
    let capacity = args.slots as f64 * 1000.0 / render_ms;
    let seconds = args.duration.as_secs_f64();
    let profile = match &args.profile {
        Some(text) => Profile::parse(text).context("--profile")?,
        None => Profile::Step {
            low: round2(0.25 * capacity),
            high: round2(2.0 * capacity),
            at: (0.15 * seconds).round(),
            until: Some((0.55 * seconds).round()),
        },
    };
    let frame_target_ms = args.frame_target_ms.unwrap_or(if args.shared_queue {
        30_000.0
    } else {
        (5.0 * render_ms).ceil().max(1.0)
    });
    let controller = ControllerConfig {
        tolerance: args.tolerance,
        sync_period_seconds: args.sync_period.as_secs_f64(),
        ..ControllerConfig::default()
    };
    let mut notes = vec![format!(
        "render: {}x{} px, {} samples: {render_ms:.1} ms per frame on an idle worker, so one worker with {} slot(s) renders {capacity:.1} frames/s",
        args.width, args.height, args.samples, args.slots
    )];
    let (mut backlog_per_replica, mut jobs) = (None, Vec::new());
    if args.shared_queue {
        let per_replica = args
            .backlog_per_replica
            .unwrap_or_else(|| (5.0 * capacity).round().max(1.0));
        backlog_per_replica = Some(per_replica);
        jobs.clone_from(&args.job);
        if jobs.is_empty() {
            let frames = (10.0 * capacity * f64::from(spec.max_replicas))
                .round()
                .max(1.0) as u64;
            jobs = [0.1, 0.55]
                .map(|at| JobPlan {
                    at: Duration::from_secs_f64((at * seconds).round()),
                    frames,
                    priority: framescale_queue::Priority::Normal,
                })
                .to_vec();
        }
        let listed: Vec<String> = jobs.iter().map(JobPlan::describe).collect();
        notes.push(format!(
            "queue: a redis-server of its own; the workers pull frames (a stopped worker's are rendered by another after 10 s); jobs: {}; users accept {frame_target_ms} ms from submit to done",
            listed.join(", ")
        ));
        notes.push(format!(
            "HPA metric: the backlog alone (frames waiting and in flight, an Object metric on the Deployment), {per_replica} frames per worker"
        ));
    } else {
        notes.push(format!(
            "load: {profile} over {}, seed {}",
            humantime::format_duration(args.duration),
            args.seed
        ));
        notes.push(format!(
            "score: at 1.0 when the frames' latency P95 (queue + render) is {frame_target_ms} ms, the latency users accept, or CPU duty {} % (the CPU stands in for the GPU here); it goes above 1 once a regime has held for {}",
            args.gpu_target_pct,
            humantime::format_duration(args.hold),
        ));
    }
    notes.push(format!("HPA: {}", spec.describe(&controller)));
    Ok(Plan {
        spec,
        controller,
        profile,
        frame_target_ms,
        backlog_per_replica,
        jobs,
        notes,
    })
}

/// One worker per core, 2 to 4: the CPU stands in for the GPU, and a worker beyond the cores
/// adds no capacity (measured on 2 cores: a step to 2 workers' capacity with up to 4 workers,
/// 60.6 % of frames late or refused; with up to 2, 16.4 %, docs/demo.md).
fn default_max_replicas() -> i32 {
    std::thread::available_parallelism()
        .map_or(2, |n| i32::try_from(n.get()).unwrap_or(4).clamp(2, 4))
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn start_load(
    args: &DemoArgs,
    profile: &Profile,
    fleet: &Fleet,
    stop: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<loadgen::Report> {
    let config = LoadConfig {
        targets: Vec::new(),
        profile: profile.clone(),
        duration: args.duration,
        seed: args.seed,
        width: args.width,
        height: args.height,
        samples: args.samples,
        timeout: Duration::from_secs(10),
        max_in_flight: 512,
    };
    let (urls, stop) = (fleet.urls(), stop.clone());
    std::thread::spawn(move || {
        let target = |i: usize| {
            let urls = urls.read().unwrap_or_else(PoisonError::into_inner);
            (!urls.is_empty()).then(|| urls[i % urls.len()].clone())
        };
        loadgen::run_with(&config, target, &stop, |_| {})
    })
}
