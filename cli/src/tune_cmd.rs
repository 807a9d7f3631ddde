//! `framescale tune`: scaling policies side by side on the same load — framescale's fused
//! score, P95 only, duty only, both as two metrics, and CPU utilization — through the
//! per-frame worker model (`framescale_sim::frames`) and the HPA model, with one HPA behavior,
//! replica bounds and sync period for all. Prints, per load profile, each policy's minutes with
//! the users' P95 above the SLO, rejected frames, replica-hours, rescales and flapping.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use framescale_sim::calibration;
use framescale_sim::compare::{self, Forecast, Load, Outcome, Policy};
use framescale_sim::frames::WorkerModel;
use framescale_sim::simulation::SimulationConfig;
use framescale_sim::sweep::{self, Bench, Scored};
use framescale_sim::{fronts, recommendation};
use framescale_worker::profile::Profile;

use crate::simulate_cmd::{API_SCALE_DOWN_WINDOW, HpaFlags};

/// The chart's HPA scale-down window in queue mode (`queue.scaleDownWindowSeconds`).
const QUEUE_SCALE_DOWN_WINDOW: Duration = Duration::from_mins(1);

mod shared_queue;

/// A load profile over a run of `seconds` (the rate of its csv and points forms depends on the
/// length), and the spans `(from, until, cost)` whose frames cost `cost` times the model's render
/// time (1 elsewhere).
struct ProfileLoad {
    name: String,
    rate: Profile,
    seconds: f64,
    dearer: Vec<(f64, f64, f64)>,
}

impl ProfileLoad {
    /// `rate` over `seconds`, every frame at the model's cost, named as the profile says itself.
    fn new(rate: Profile, seconds: f64) -> ProfileLoad {
        ProfileLoad {
            name: rate.to_string(),
            rate,
            seconds,
            dearer: Vec::new(),
        }
    }
}

impl Load for ProfileLoad {
    fn rate(&self, t: f64) -> f64 {
        self.rate.rate_at(t, self.seconds)
    }

    fn cost(&self, t: f64) -> f64 {
        self.dearer
            .iter()
            .find(|(from, until, _)| (*from..*until).contains(&t))
            .map_or(1.0, |&(_, _, cost)| cost)
    }
}

/// Flags of `framescale tune`.
#[derive(Debug, Args)]
pub struct TuneArgs {
    /// A load profile (frames/s: constant:R, step:LOW,HIGH,AT[,UNTIL], ramp:FROM,TO, sine:MEAN,AMP,PERIOD, csv:FILE); repeat for several. Default: a step, a ramp, a sine, bursts (sized to the model) and render jobs of 3,000 frames submitted at once.
    #[arg(long)]
    profile: Vec<String>,
    /// Time simulated per profile.
    #[arg(long, default_value = "20m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Seed of the arrivals and render times: a run is the same for the same seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The latency (queue + render) users accept, ms, as a P95 per minute; default: 5 × --render-ms (with --shared-queue: 30 s).
    #[arg(long)]
    slo_ms: Option<f64>,
    /// Model: median render time of a frame alone on an idle device, ms.
    #[arg(long, default_value_t = 20.0)]
    render_ms: f64,
    /// Model: spread of render times (sigma of a log-normal; 0: all alike).
    #[arg(long, default_value_t = 0.2)]
    render_sigma: f64,
    /// Model: frames a pod renders at once.
    #[arg(long, default_value_t = 1)]
    slots: usize,
    /// Model: frames a pod queues beyond its slots (rejected beyond).
    #[arg(long, default_value_t = 4)]
    queue: usize,
    /// Model: frames the device runs at full speed at once (more share it).
    #[arg(long, default_value_t = 1.0)]
    parallelism: f64,
    /// Model: how long a new pod is Pending.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    startup: Duration,
    /// Model: the exporter's window for the P95.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    window: Duration,
    /// Model: CPU utilization per unit of device duty (0.3: a GPU render feeding its device; 1: the CPU renders, as the demo's worker).
    #[arg(long, default_value_t = 0.3)]
    cpu_share: f64,
    /// Target of the CPU utilization policy, percent.
    #[arg(long, default_value_t = 70.0)]
    cpu_target_pct: f64,
    /// Calibrate the model against a real `framescale demo` run: its report.csv (the demo's own load replayed, the model's replicas and P95 compared with the demo's, second by second). Give the demo's settings: --render-ms (its start-up line), --window 20s, --cpu-share 1, --scale-down-window 30s, --max-replicas 4, and a metrics file with its holds and targets.
    #[arg(long, value_name = "REPORT_CSV")]
    calibrate: Option<PathBuf>,
    /// Also run the experimental predictive term (the fused score raised by a forecast of the frame throughput) and judge it against the reactive score.
    #[arg(long)]
    predictive: bool,
    /// Predictive term: smoothing of the throughput's level (Holt's alpha).
    #[arg(long, default_value_t = 0.1)]
    forecast_alpha: f64,
    /// Predictive term: smoothing of its trend (Holt's beta).
    #[arg(long, default_value_t = 0.05)]
    forecast_beta: f64,
    /// Predictive term: the most it raises the score (a factor of 1 + this).
    #[arg(long, default_value_t = 0.5)]
    forecast_bound: f64,
    /// Predictive term: forecast growth below this is noise and raises nothing.
    #[arg(long, default_value_t = 0.0)]
    forecast_deadband: f64,
    /// Settings of the fused score and scale-down behavior to search (a seeded sample of its grid of 3,456, the defaults always in), beside every other policy's 200; 0: compare the policies at their defaults only.
    #[arg(long, default_value_t = 1000)]
    max_settings: usize,
    /// Threads of the search; default: one per CPU.
    #[arg(long)]
    threads: Option<usize>,
    /// Compare on the worker's queue mode instead: frames wait in one shared queue that pods pull from, the HPA may scale to zero; backlog only (as KEDA) against the fused score + backlog, at minReplicas 0 and 1, on render-farm loads (or the --profile ones).
    #[arg(long)]
    shared_queue: bool,
    /// With --shared-queue: the backlog's target, frames waiting and in flight per replica; default: half of what one replica renders in the SLO.
    #[arg(long)]
    backlog_per_replica: Option<f64>,
    /// Where the search's report.html, runs.csv, recommended-metrics.yaml and recommended-hpa.yaml are written.
    #[arg(long, default_value = "framescale-tune")]
    report_dir: PathBuf,
    #[command(flatten)]
    hpa: HpaFlags,
}

/// Runs every policy on every profile and prints the tables.
#[allow(clippy::needless_pass_by_value)] // every subcommand's run takes its flags by value
pub fn run(args: TuneArgs) -> anyhow::Result<()> {
    let model = WorkerModel {
        render_ms: args.render_ms,
        render_sigma: args.render_sigma,
        slots: args.slots,
        queue: args.queue,
        parallelism: args.parallelism,
        startup_s: args.startup.as_secs_f64(),
        window_s: args.window.as_secs_f64(),
        cpu_share: args.cpu_share,
        shared_queue: false,
    };
    validate(&args, &model)?;
    if let Some(report) = &args.calibrate {
        return calibrate(&args, &model, report);
    }
    // In queue mode the chart's HPA scales down after 60 s (its queue.scaleDownWindowSeconds).
    let default_window = if args.shared_queue {
        QUEUE_SCALE_DOWN_WINDOW
    } else {
        API_SCALE_DOWN_WINDOW
    };
    let config = args.hpa.simulation_config(args.duration, default_window)?;
    // A render farm's frames wait seconds, not a multiple of one render: its SLO by default is
    // 30 s from submit to done.
    let slo_ms = args.slo_ms.unwrap_or(if args.shared_queue {
        30_000.0
    } else {
        5.0 * model.render_ms
    });
    if args.shared_queue {
        let mut config = config;
        // A frame's latency in a queue is mostly its wait: unless a metrics file says
        // otherwise, the score's latency target is the SLO (docs/queue.md).
        if !args.hpa.has_metrics_config() {
            config.score.frame_target_ms = slo_ms;
        }
        println!("HPA: {}", config.spec.describe(&config.controller));
        println!("{}", config.score.describe());
        return shared_queue::compare_farm(&args, &model, &config, slo_ms);
    }
    let mut policies = Policy::standard(&config.score);
    for policy in &mut policies {
        if let Policy::Cpu(target) = policy {
            *target = args.cpu_target_pct;
        }
    }
    if args.predictive {
        policies.push(Policy::Predictive(config.score.clone(), forecast(&args)?));
    }
    let profiles = profiles(&args, &model)?;
    println!("HPA: {}", config.spec.describe(&config.controller));
    println!("{}", config.score.describe());
    println!(
        "model: {} ms frames (sigma {}), {} slot(s) and {} queue places per pod, {} at full speed, {} to start, CPU {} × duty; SLO: P95 latency {slo_ms} ms; seed {}",
        model.render_ms,
        model.render_sigma,
        model.slots,
        model.queue,
        model.parallelism,
        humantime::format_duration(args.startup),
        model.cpu_share,
        args.seed
    );
    let duration = config.duration_s;
    // The fused score at the defaults on each profile: the search compares its recommendation
    // with these runs.
    let mut fused_defaults = Vec::with_capacity(profiles.len());
    for profile in &profiles {
        println!(
            "\nload: {profile} over {}",
            humantime::format_duration(args.duration)
        );
        let outcomes: Vec<Outcome> = policies
            .iter()
            .map(|policy| {
                compare::run(
                    policy,
                    &model,
                    &config,
                    &|t| profile.rate_at(t, duration),
                    slo_ms,
                    args.seed,
                )
            })
            .collect();
        print!("{}", table(&outcomes));
        if args.predictive {
            println!("{}", versus(&outcomes[0], &outcomes[outcomes.len() - 1]));
        }
        fused_defaults.extend(outcomes.into_iter().next());
    }
    settling(&args, &model, &config, slo_ms);
    if args.predictive {
        steady_load(&args, &model, &config, slo_ms)?;
    }
    if args.max_settings > 0 {
        search(&args, &model, &config, &profiles, slo_ms, fused_defaults)?;
    }
    Ok(())
}

/// The settings search: the fused score's sample and every other policy's settings, run on
/// every profile; prints each policy's front, how the fused front stands against the others and
/// the recommendation; writes the files.
fn search(
    args: &TuneArgs,
    model: &WorkerModel,
    config: &SimulationConfig,
    profiles: &[Profile],
    slo_ms: f64,
    fused_defaults: Vec<Outcome>,
) -> anyhow::Result<()> {
    let mut settings = sweep::sample(sweep::grid(&config.score), args.max_settings, args.seed);
    let fused_count = settings.len();
    settings.extend(sweep::alternatives(slo_ms, model.cpu_share));
    let loads: Vec<ProfileLoad> = profiles
        .iter()
        .map(|profile| ProfileLoad::new(profile.clone(), config.duration_s))
        .collect();
    let loads: Vec<&(dyn Load + Sync)> = loads.iter().map(|l| l as _).collect();
    let scored = evaluate(args, model, config, &loads, slo_ms, &settings, fused_count);
    let (fronts, chosen) = print_fronts(&scored, Policy::Fused(config.score.clone()).family())?;
    shipped_against_duty(&scored);
    let (defaults, best) = (&scored[0], &scored[chosen]);
    println!(
        "the defaults: {:.2} % bad frames, {:.2} replica-hours; recommended: {:.2} %, {:.2} replica-hours ({})",
        defaults.bad_pct(),
        defaults.replica_hours,
        best.bad_pct(),
        best.replica_hours,
        best.setting.describe()
    );
    compare_recommended(
        args,
        model,
        config,
        profiles,
        slo_ms,
        &best.setting,
        fused_defaults,
    );
    write_recommendation(
        args, model, config, profiles, slo_ms, &scored, &fronts, chosen,
    )
}

/// Runs every setting on every profile, on `--threads` threads, with progress on stderr (on a
/// terminal one line rewritten in place; in a log a line every 10 %); prints what was run and
/// how long it took.
fn evaluate(
    args: &TuneArgs,
    model: &WorkerModel,
    config: &SimulationConfig,
    loads: &[&(dyn Load + Sync)],
    slo_ms: f64,
    settings: &[sweep::Setting],
    fused_count: usize,
) -> Vec<Scored> {
    let bench = Bench {
        model,
        base: config,
        profiles: loads,
        slo_ms,
        seed: args.seed,
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let started = Instant::now();
    let total = settings.len();
    println!(
        "\nsearch: {total} settings ({fused_count} of the {}, {} of the other policies) × {} profiles on {threads} thread(s)",
        settings[0].policy.family(),
        total - fused_count,
        loads.len()
    );
    let terminal = std::io::stderr().is_terminal();
    let scored = bench.evaluate(settings, threads, &|done| {
        let step = (total / 10).max(1);
        if terminal || done == total || done % step == 0 {
            eprint!(
                "{}tune: {done}/{total} settings ({:.0} %), {:.1} s{}",
                if terminal { "\r" } else { "" },
                100.0 * done as f64 / total as f64,
                started.elapsed().as_secs_f64(),
                if terminal { "" } else { "\n" }
            );
            let _ = std::io::stderr().flush();
        }
    });
    if terminal {
        eprintln!();
    }
    println!(
        "{} s; each policy's front of bad frames (late or refused, % of every profile's frames) against replica-hours:",
        (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    );
    scored
}

/// Prints each family's front and how each stands against the `reference` family's; returns
/// the fronts and the recommended setting on the reference front (marked `*`).
fn print_fronts(scored: &[Scored], reference: &str) -> anyhow::Result<(Vec<fronts::Front>, usize)> {
    let fronts = fronts::by_family(scored);
    let ours = fronts
        .iter()
        .find(|f| f.family == reference)
        .with_context(|| format!("the search scored no setting of the {reference}"))?;
    let chosen = sweep::recommend(scored, &ours.points).context("the search scored no setting")?;
    for front in &fronts {
        println!(
            "\n{} ({} of its settings):",
            front.family,
            front.points.len()
        );
        print!("{}", front_table(scored, &front.points, chosen));
    }
    println!();
    for verdict in fronts::verdicts(scored, &fronts, ours) {
        println!("{}", verdict_line(scored, ours, &verdict));
    }
    Ok((fronts, chosen))
}

/// Where a family's front stands against the reference family's, in one line.
fn verdict_line(scored: &[Scored], fused: &fronts::Front, verdict: &fronts::Verdict) -> String {
    let count = verdict.dominated.len() + verdict.losses.len() + verdict.cheaper.len();
    let ours = fused.family;
    let mut line = if verdict.fused_dominates() {
        format!(
            "the {ours} front dominates {}'s: {} of its {count} front points matched or beaten",
            verdict.family,
            verdict.dominated.len()
        )
    } else {
        format!(
            "the {ours} front does NOT dominate {}'s: {} of its {count} front points beat every {ours} setting that costs no more",
            verdict.family,
            verdict.losses.len()
        )
    };
    for &i in &verdict.losses {
        let p = &scored[i];
        let best_fused = fused
            .points
            .iter()
            .filter(|&&q| scored[q].replica_hours <= p.replica_hours)
            .map(|&q| scored[q].bad_pct())
            .fold(f64::INFINITY, f64::min);
        let _ = write!(
            line,
            "; {:.2} % at {:.2} replica-hours ({}) against the {ours}'s {:.2} %",
            p.bad_pct(),
            p.replica_hours,
            p.setting.describe(),
            best_fused
        );
    }
    if !verdict.cheaper.is_empty() {
        let _ = write!(
            line,
            "; {} cheaper than any {ours} setting (at least {:.2} % bad frames)",
            verdict.cheaper.len(),
            verdict
                .cheaper
                .iter()
                .map(|&i| scored[i].bad_pct())
                .fold(f64::INFINITY, f64::min)
        );
    }
    line
}

/// The shipped defaults against duty alone at its default target and behavior: the goal is
/// fewer bad frames at no more than 1.25× its replica-hours.
fn shipped_against_duty(scored: &[Scored]) {
    let Some(duty) = fronts::duty_counterpart(scored, 0).map(|i| &scored[i]) else {
        return;
    };
    let fused = &scored[0];
    println!(
        "shipped defaults against {}: {:.2} % against {:.2} % bad frames, at {:.2}× its replica-hours ({:.2} against {:.2})",
        duty.setting.describe(),
        fused.bad_pct(),
        duty.bad_pct(),
        fused.replica_hours / duty.replica_hours.max(1e-9),
        fused.replica_hours,
        duty.replica_hours
    );
}

/// The recommended setting against the defaults (`fused_defaults`, the comparison's runs),
/// profile by profile, in the comparison's table.
fn compare_recommended(
    args: &TuneArgs,
    model: &WorkerModel,
    config: &SimulationConfig,
    profiles: &[Profile],
    slo_ms: f64,
    setting: &sweep::Setting,
    fused_defaults: Vec<Outcome>,
) {
    let mut tuned = config.clone();
    tuned.spec.behavior = Some(setting.behavior());
    if let Some(score) = setting.score() {
        tuned.score = score.clone();
    }
    let duration = config.duration_s;
    for (profile, mut defaults) in profiles.iter().zip(fused_defaults) {
        defaults.policy = "fused score (defaults)".into();
        let mut recommended = compare::run(
            &setting.policy,
            model,
            &tuned,
            &|t| profile.rate_at(t, duration),
            slo_ms,
            args.seed,
        );
        recommended.policy = "fused score (recommended)".into();
        println!("\nload: {profile}");
        print!("{}", table(&[defaults, recommended]));
    }
}

fn front_table(scored: &[Scored], front: &[usize], chosen: usize) -> String {
    let mut out = format!(
        "  {:>10}  {:>13}  {:>11}  {:>15}  {:>12}  setting\n",
        "bad frames", "replica-hours", "SLO minutes", "rejected frames", "flaps/10 min"
    );
    for &i in front {
        let s = &scored[i];
        let share = 100.0 * s.rejected as f64 / s.frames.max(1) as f64;
        let _ = writeln!(
            out,
            "{} {:>8.2} %  {:>13.2}  {:>11}  {:>13.2} %  {:>12.2}  {}",
            if i == chosen { "*" } else { " " },
            s.bad_pct(),
            s.replica_hours,
            s.slo_minutes,
            share,
            s.flaps_per_10_min,
            s.setting.describe()
        );
    }
    out
}

/// Runs the recommended setting on the first profile for the report, and writes the files
/// (`framescale_sim::recommendation`).
#[allow(
    clippy::too_many_arguments,
    reason = "the search's results, passed on whole"
)]
fn write_recommendation(
    args: &TuneArgs,
    model: &WorkerModel,
    config: &SimulationConfig,
    profiles: &[Profile],
    slo_ms: f64,
    scored: &[Scored],
    fronts: &[fronts::Front],
    chosen: usize,
) -> anyhow::Result<()> {
    let best = &scored[chosen];
    let score = best
        .setting
        .score()
        .context("the recommendation is not fused")?;
    let header = format!(
        "framescale tune's recommendation ({} settings, {} profiles of {}, seed {}, SLO P95 latency {slo_ms} ms):\n{:.2} % bad frames and {:.2} replica-hours, against {:.2} % and {:.2} with the defaults.",
        scored.len(),
        profiles.len(),
        humantime::format_duration(args.duration),
        args.seed,
        best.bad_pct(),
        best.replica_hours,
        scored[0].bad_pct(),
        scored[0].replica_hours
    );
    let mut run_config = config.clone();
    run_config.spec.behavior = Some(best.setting.behavior());
    run_config.score = score.clone();
    let duration = config.duration_s;
    let outcome = compare::run(
        &best.setting.policy,
        model,
        &run_config,
        &|t| profiles[0].rate_at(t, duration),
        slo_ms,
        args.seed,
    );
    let names: Vec<String> = profiles.iter().map(ToString::to_string).collect();
    let search = recommendation::Search {
        scored,
        fronts,
        chosen,
        profiles: &names,
        header,
        replicas: (config.spec.min_replicas, config.spec.max_replicas),
        rows: outcome.rows,
        targets: (score.frame_target_ms, score.gpu_target_pct),
    };
    let written = recommendation::write(&args.report_dir, &search)
        .with_context(|| format!("--report-dir {}", args.report_dir.display()))?;
    println!(
        "written: {}, {}, {} and {}",
        written.metrics.display(),
        written.hpa.display(),
        written.runs.display(),
        written.html.display()
    );
    Ok(())
}

/// Replays a demo's load through the model with the demo's settings and prints the difference.
fn calibrate(args: &TuneArgs, model: &WorkerModel, path: &std::path::Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--calibrate {}", path.display()))?;
    let demo = calibration::parse_demo_report(&text)
        .with_context(|| format!("--calibrate {}", path.display()))?;
    let profile = Profile::parse(&format!("csv:{}", path.display())).context("--calibrate")?;
    let end = demo.last().map_or(0.0, |s| s.t).floor();
    let config = args
        .hpa
        .simulation_config(Duration::from_secs_f64(end), API_SCALE_DOWN_WINDOW)?;
    let outcome = compare::run(
        &Policy::Fused(config.score.clone()),
        model,
        &config,
        &|t| profile.rate_at(t, end),
        args.slo_ms.unwrap_or(5.0 * model.render_ms),
        args.seed,
    );
    let c = calibration::compare(&demo, &outcome.rows);
    println!(
        "calibration against {} ({end} s of the demo's load replayed through the model):",
        path.display()
    );
    println!(
        "  replicas: mean |model - demo| {:.2} per second; replica-seconds demo {:.0}, model {:.0}",
        c.replica_error, c.demo_replica_seconds, c.model_replica_seconds
    );
    println!(
        "  P95 frame time (mean of the pods): demo {:.1} ms, model {:.1} ms, mean |model - demo| {:.1} ms over {} seconds with both",
        c.demo_p95_ms, c.model_p95_ms, c.p95_error_ms, c.p95_seconds
    );
    let show = |t: Option<f64>| t.map_or("never".to_owned(), |t| format!("{t:.0} s"));
    println!(
        "  first scale-up: demo {}, model {}",
        show(c.demo_first_up),
        show(c.model_first_up)
    );
    Ok(())
}

fn forecast(args: &TuneArgs) -> anyhow::Result<Forecast> {
    let unit = |v: f64| (0.0..=1.0).contains(&v);
    if !(unit(args.forecast_alpha) && unit(args.forecast_beta)) {
        bail!("--forecast-alpha and --forecast-beta must be in [0, 1]");
    }
    let non_negative = |v: f64| v.is_finite() && v >= 0.0;
    if !(non_negative(args.forecast_bound) && non_negative(args.forecast_deadband)) {
        bail!("--forecast-bound and --forecast-deadband must be 0 or more");
    }
    Ok(Forecast {
        alpha: args.forecast_alpha,
        beta: args.forecast_beta,
        bound: args.forecast_bound,
        deadband: args.forecast_deadband,
    })
}

/// The predictive term against the reactive score on one profile.
fn versus(reactive: &Outcome, predictive: &Outcome) -> String {
    let change = |from: f64, to: f64| {
        if from == 0.0 {
            if to == 0.0 {
                "±0 %".to_owned()
            } else {
                "from 0".to_owned()
            }
        } else {
            format!("{:+.0} %", 100.0 * (to - from) / from)
        }
    };
    format!(
        "  forecast against reactive: SLO minutes {} → {} ({}), replica-hours {:.2} → {:.2} ({}), flaps/10 min {:.2} → {:.2}",
        reactive.slo_minutes,
        predictive.slo_minutes,
        change(
            f64::from(reactive.slo_minutes),
            f64::from(predictive.slo_minutes)
        ),
        reactive.replica_hours,
        predictive.replica_hours,
        change(reactive.replica_hours, predictive.replica_hours),
        reactive.flaps_per_10_min,
        predictive.flaps_per_10_min
    )
}

/// The fused score and duty alone at a steady load — three pods at 95 % of the duty target,
/// Poisson noise included (with whole pods, a load of exactly three pods at target would sit on
/// the edge between 3 and 4) — from the minimum replicas: where each settles over the second half
/// of the run (the goal: duty within 5 points of its target, at most one change of direction per
/// 10 minutes).
fn settling(args: &TuneArgs, model: &WorkerModel, config: &SimulationConfig, slo_ms: f64) {
    let target = config.score.gpu_target_pct;
    let rate = model.steady_rate(3.0, 0.95 * target);
    println!(
        "\nsteady load: a constant {rate:.1} frames/s (3 pods at {:.1} % duty), settled over the second half:",
        0.95 * target
    );
    for policy in [Policy::Fused(config.score.clone()), Policy::GpuOnly(target)] {
        let outcome = compare::run(&policy, model, config, &|_| rate, slo_ms, args.seed);
        if let Some(s) = outcome.settled() {
            println!(
                "  {:<18} duty {:.1} % ({:+.1} points), {:.2} replicas, {:.2} changes of direction per 10 min, {:.2} % bad frames",
                policy.family(),
                s.duty_pct,
                s.duty_pct - target,
                s.replicas,
                s.flaps_per_10_min,
                outcome.bad_frames_pct()
            );
        }
    }
}

/// The predictive term at a steady load (3 pods at 65 %, with Poisson noise), starting from
/// those 3 pods so no start-up transient counts: it must not flap more, nor cost more, than the
/// reactive score.
fn steady_load(
    args: &TuneArgs,
    model: &WorkerModel,
    config: &SimulationConfig,
    slo_ms: f64,
) -> anyhow::Result<()> {
    let rate = 3.0 * model.parallelism * 1000.0 / model.render_ms * 0.65;
    let mut steady = config.clone();
    steady.spec.min_replicas = steady
        .spec
        .min_replicas
        .max(3)
        .min(steady.spec.max_replicas);
    let config = &steady;
    let reactive = compare::run(
        &Policy::Fused(config.score.clone()),
        model,
        config,
        &|_| rate,
        slo_ms,
        args.seed,
    );
    let predictive = compare::run(
        &Policy::Predictive(config.score.clone(), forecast(args)?),
        model,
        config,
        &|_| rate,
        slo_ms,
        args.seed,
    );
    println!(
        "\nsteady load: a constant {rate:.1} frames/s\n{}",
        versus(&reactive, &predictive)
    );
    Ok(())
}

fn validate(args: &TuneArgs, model: &WorkerModel) -> anyhow::Result<()> {
    if !(model.render_ms > 0.0 && model.parallelism > 0.0 && model.slots > 0) {
        bail!("--render-ms, --parallelism and --slots must be above 0");
    }
    if !(model.render_sigma >= 0.0 && model.cpu_share >= 0.0) {
        bail!("--render-sigma and --cpu-share must be 0 or more");
    }
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if args.slo_ms.is_some_and(|s| !positive(s)) || !positive(args.cpu_target_pct) {
        bail!("--slo-ms and --cpu-target-pct must be above 0");
    }
    if args.duration < Duration::from_mins(1) {
        bail!("--duration must be at least 1m");
    }
    Ok(())
}

/// The profiles asked for, or the standard four sized to one pod's capacity.
fn profiles(args: &TuneArgs, model: &WorkerModel) -> anyhow::Result<Vec<Profile>> {
    if !args.profile.is_empty() {
        return args
            .profile
            .iter()
            .map(|p| Profile::parse(p).with_context(|| format!("--profile {p}")))
            .collect();
    }
    let capacity = model.parallelism * 1000.0 / model.render_ms;
    let seconds = args.duration.as_secs_f64();
    let round = |v: f64| (v * 10.0).round() / 10.0;
    let cycles = (seconds / 240.0).ceil() as u32;
    let bursts = (0..cycles)
        .map(|i| f64::from(i) * 240.0)
        .flat_map(|t| {
            [
                (t, 0.5 * capacity),
                (t + 119.0, 0.5 * capacity),
                (t + 120.0, 4.0 * capacity),
                (t + 179.0, 4.0 * capacity),
                (t + 180.0, 0.5 * capacity),
            ]
        })
        .map(|(t, r)| (t, round(r)))
        .collect();
    Ok(vec![
        Profile::Step {
            low: round(0.5 * capacity),
            high: round(6.0 * capacity),
            at: (0.1 * seconds).round(),
            until: Some((0.5 * seconds).round()),
        },
        Profile::Ramp {
            from: round(0.5 * capacity),
            to: round(8.0 * capacity),
        },
        Profile::Sine {
            mean: round(4.0 * capacity),
            amplitude: round(3.5 * capacity),
            period: (seconds / 2.0).round(),
        },
        Profile::Points(bursts),
        job_bursts(capacity, seconds),
    ])
}

/// A render job of 3,000 frames submitted at once — within 10 s, six times one pod's
/// capacity at the default model — every 400 s, over half a pod's load.
fn job_bursts(capacity: f64, seconds: f64) -> Profile {
    let base = (0.5 * capacity * 10.0).round() / 10.0;
    let job = 3000.0 / 10.0;
    let cycles = (seconds / 400.0).ceil() as u32;
    Profile::Points(
        (0..cycles)
            .map(|i| f64::from(i) * 400.0)
            .flat_map(|t| {
                [
                    (t, base),
                    (t + 199.0, base),
                    (t + 200.0, job),
                    (t + 209.0, job),
                    (t + 210.0, base),
                ]
            })
            .collect(),
    )
}

/// One line per policy.
fn table(outcomes: &[Outcome]) -> String {
    let width = outcomes
        .iter()
        .map(|o| o.policy.chars().count())
        .max()
        .unwrap_or(6);
    let mut out = format!(
        "  {:<width$}  {:>10}  {:>11}  {:>16}  {:>13}  {:>8}  {:>12}  {:>8}\n",
        "policy",
        "bad frames",
        "SLO minutes",
        "rejected frames",
        "replica-hours",
        "rescales",
        "flaps/10 min",
        "recovery"
    );
    for o in outcomes {
        let share = if o.frames == 0 {
            0.0
        } else {
            100.0 * o.rejected as f64 / o.frames as f64
        };
        let _ = writeln!(
            out,
            "  {:<width$}  {:>8.2} %  {:>11}  {:>8} {:>6.2} %  {:>13.2}  {:>8}  {:>12.2}  {:>8}",
            o.policy,
            o.bad_frames_pct(),
            o.slo_minutes,
            o.rejected,
            share,
            o.replica_hours,
            o.scale_events,
            o.flaps_per_10_min,
            o.recovery_s
                .map_or_else(|| "—".to_owned(), |s| format!("{s:.0} s"))
        );
    }
    out
}
