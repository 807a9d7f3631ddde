//! `framescale simulate`: runs the HPA model offline — over a load profile through the per-pod
//! load model, or over a recorded trace, writing the demo's CSV/HTML report — or checks files
//! of HPA test vectors (`--check-vectors`).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use framescale_adapter::config::MetricsConfig;
use framescale_sim::hpa::controller::ControllerConfig;
use framescale_sim::hpa::vectors::{self, Outcome};
use framescale_sim::report::Report;
use framescale_sim::simulation::{self, LoadModel, SimulationConfig};
use framescale_worker::profile::Profile;

use crate::demo::{spec_from_flags, spec_from_manifest};

/// Flags of `framescale simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// A JSON file of HPA test vectors (the shape of docs/reference/hpa-vectors.json): prints one
    /// line per vector id with PASS, FAIL and the values that differ, or INVALID and why; exits
    /// non-zero unless every vector passes.
    #[arg(long, value_name = "FILE")]
    check_vectors: Option<PathBuf>,
    /// Simulate this load profile (frames/s: constant:R, step:LOW,HIGH,AT[,UNTIL], ramp:FROM,TO, sine:MEAN,AMP,PERIOD, csv:FILE) through the per-pod load model.
    #[arg(long)]
    profile: Option<String>,
    /// Replay a trace: CSV with the header t_s,pod,p95_ms,duty_pct, one line per pod and time, empty cells for missing values.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Time simulated (a trace stops at its end).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Load model: render time of one frame on an idle pod, ms.
    #[arg(long, default_value_t = 20.0)]
    render_ms: f64,
    /// Load model: frames a pod renders at once.
    #[arg(long, default_value_t = 1.0)]
    slots: f64,
    /// Load model: how long a new pod is Pending, without load or metrics.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    startup: Duration,
    #[command(flatten)]
    hpa: HpaFlags,
    /// Where report.csv and report.html are written.
    #[arg(long, default_value = "framescale-simulation")]
    report_dir: PathBuf,
}

/// The HPA's and the score's settings, shared by `simulate` and `tune`.
/// The autoscaling/v2 API's scale-down stabilization window when a behavior sets none.
pub const API_SCALE_DOWN_WINDOW: Duration = Duration::from_mins(5);

#[derive(Debug, Args)]
pub struct HpaFlags {
    /// The adapter's metrics file (YAML) for the score's targets, weights, holds and max age; default: ARCHITECTURE.md's.
    #[arg(long, value_name = "FILE")]
    metrics_config: Option<PathBuf>,
    /// An HPA manifest (YAML) whose minReplicas, maxReplicas and behavior replace the flags below.
    #[arg(long = "hpa", value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// Fewest replicas.
    #[arg(long, default_value_t = 1)]
    min_replicas: i32,
    /// Most replicas.
    #[arg(long, default_value_t = 10)]
    max_replicas: i32,
    /// Scale-down stabilization window; default: the API's 5m (tune --shared-queue: 60s, the chart's queue.scaleDownWindowSeconds).
    #[arg(long, value_parser = humantime::parse_duration)]
    scale_down_window: Option<Duration>,
    /// Seconds between syncs (kube-controller-manager's default 15s).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    sync_period: Duration,
    /// The HPA's tolerance.
    #[arg(long, default_value_t = 0.1)]
    tolerance: f64,
}

impl HpaFlags {
    /// Whether a metrics file was given (the score's settings are not the defaults).
    pub fn has_metrics_config(&self) -> bool {
        self.metrics_config.is_some()
    }

    /// The metrics file, or the defaults.
    pub fn metrics(&self) -> anyhow::Result<MetricsConfig> {
        match &self.metrics_config {
            Some(path) => MetricsConfig::load(path)
                .with_context(|| format!("--metrics-config {}", path.display())),
            None => MetricsConfig::parse("").map_err(anyhow::Error::msg),
        }
    }

    /// The HPA, the controller and the score, for a run of `duration`; the scale-down window is
    /// `default_window` unless the flag or the manifest says.
    pub fn simulation_config(
        &self,
        duration: Duration,
        default_window: Duration,
    ) -> anyhow::Result<SimulationConfig> {
        let score = self.metrics()?;
        let spec = match &self.manifest {
            Some(path) => spec_from_manifest(path)?,
            None => spec_from_flags(
                self.min_replicas,
                self.max_replicas,
                self.scale_down_window.unwrap_or(default_window),
            )?,
        };
        if spec.min_replicas < 1 {
            bail!(
                "minReplicas 0 scales from zero only on an Object or External metric; the policies run here scale on Pods metrics: raise --min-replicas or the --hpa manifest's minReplicas to 1 (tune --shared-queue runs its backlog policies at minReplicas 0 itself)"
            );
        }
        if self.sync_period < Duration::from_secs(1) {
            bail!("--sync-period must be at least 1s");
        }
        if !(0.0..1.0).contains(&self.tolerance) {
            bail!("--tolerance must be in [0, 1)");
        }
        Ok(SimulationConfig {
            duration_s: duration.as_secs_f64(),
            sync_period_s: self.sync_period.as_secs_f64(),
            spec,
            controller: ControllerConfig {
                tolerance: self.tolerance,
                sync_period_seconds: self.sync_period.as_secs_f64(),
                ..ControllerConfig::default()
            },
            score: score.score,
        })
    }
}

/// Runs the simulation asked for.
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    match (&args.check_vectors, &args.profile, &args.trace) {
        (Some(path), None, None) => check_vectors(path),
        (None, Some(_), None) | (None, None, Some(_)) => simulate(args),
        _ => bail!("give one of --check-vectors FILE, --profile SPEC or --trace FILE"),
    }
}

#[allow(clippy::needless_pass_by_value)] // the flags are done with once the run starts
fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let max_age = args.hpa.metrics()?.max_age;
    let config = args
        .hpa
        .simulation_config(args.duration, API_SCALE_DOWN_WINDOW)?;
    let mut notes = settings(&config);
    let rows = if let Some(text) = &args.profile {
        let profile = Profile::parse(text).context("--profile")?;
        if !(args.render_ms > 0.0 && args.slots > 0.0) {
            bail!("--render-ms and --slots must be above 0");
        }
        let model = LoadModel {
            render_ms: args.render_ms,
            slots: args.slots,
            startup_s: args.startup.as_secs_f64(),
        };
        notes.push(format!(
            "load: {profile} over {}; each pod renders a frame in {} ms when idle, {} at once, and starts in {}",
            humantime::format_duration(args.duration),
            args.render_ms,
            args.slots,
            humantime::format_duration(args.startup)
        ));
        let duration = config.duration_s;
        simulation::run_profile(&config, model, &|t| profile.rate_at(t, duration))
    } else {
        let path = args.trace.as_ref().expect("checked above");
        let text =
            std::fs::read_to_string(path).with_context(|| format!("--trace {}", path.display()))?;
        let trace = simulation::parse_trace(&text)
            .with_context(|| format!("--trace {}", path.display()))?;
        notes.push(format!(
            "trace {} ({} samples)",
            path.display(),
            trace.len()
        ));
        simulation::run_trace(&config, &trace, max_age.as_secs_f64())
    };
    let changes = rows
        .iter()
        .filter(|r| {
            r.decision
                .as_deref()
                .is_some_and(|d| !d.starts_with("keep"))
        })
        .count();
    let peak = rows.iter().map(|r| r.replicas).max().unwrap_or(0);
    let over = rows
        .iter()
        .filter(|r| r.p95_ms.is_some_and(|p| p > config.score.frame_target_ms))
        .count();
    let replica_minutes = rows.iter().map(|r| f64::from(r.replicas)).sum::<f64>() / 60.0;
    notes.push(format!(
        "{} s simulated, {changes} rescale(s), up to {peak} replicas; mean P95 over its target for {over} s; {replica_minutes:.1} replica-minutes",
        rows.len()
    ));
    let report = Report {
        title: "framescale simulate".into(),
        notes,
        figures: Vec::new(),
        frame_target_ms: config.score.frame_target_ms,
        gpu_target_pct: config.score.gpu_target_pct,
        rows,
    };
    let (csv, html) = report
        .write(&args.report_dir)
        .with_context(|| format!("cannot write the report to {}", args.report_dir.display()))?;
    for note in &report.notes {
        println!("{note}");
    }
    println!("report: {} and {}", csv.display(), html.display());
    Ok(())
}

/// The HPA's and the score's settings in words, for the report.
fn settings(config: &SimulationConfig) -> Vec<String> {
    vec![
        format!("HPA: {}", config.spec.describe(&config.controller)),
        config.score.describe(),
    ]
}

fn check_vectors(path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--check-vectors {}", path.display()))?;
    let vectors = vectors::parse(&text)
        .map_err(|e| anyhow::anyhow!("--check-vectors {}: {e}", path.display()))?;
    let (mut failed, mut invalid) = (0, 0);
    let mut out = std::io::stdout().lock();
    for vector in &vectors {
        let unsure = if vector.unsure { " (unsure)" } else { "" };
        let line = match vectors::check(vector) {
            Outcome::Pass => format!("PASS {}{unsure}", vector.id),
            Outcome::Fail(mismatches) => {
                failed += 1;
                let mut line = format!("FAIL {}{unsure}:", vector.id);
                for m in mismatches {
                    let _ = write!(line, " {} expected {}, got {};", m.field, m.expected, m.got);
                }
                line.pop();
                line
            }
            Outcome::Invalid(why) => {
                invalid += 1;
                format!("INVALID {}: {why}", vector.id)
            }
        };
        writeln!(out, "{line}")?;
    }
    writeln!(
        out,
        "{} vectors: {} passed, {failed} failed, {invalid} invalid",
        vectors.len(),
        vectors.len() - failed - invalid
    )?;
    if failed + invalid > 0 {
        bail!(
            "{} of {} vectors did not pass",
            failed + invalid,
            vectors.len()
        );
    }
    Ok(())
}
