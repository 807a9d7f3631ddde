//! `framescale tune --shared-queue`: the worker's queue mode (frames wait in one durable queue
//! that pods pull from) on render-farm loads, where the farm is idle part of the time and an
//! HPA may scale the render Deployment to zero. Compared, with the same HPA behavior:
//!
//! - backlog only (how KEDA's Redis-streams scaler scales), at `minReplicas: 0` and at 1 (a fixed
//!   minimum of one pod);
//! - the fused score + the backlog, at `minReplicas: 0` and 1 (unless a metrics file says
//!   otherwise, the score's latency target is the SLO: a queued frame's latency is its wait).
//!
//! Then, unless `--max-settings 0`, the search at `minReplicas: 0`: backlog only at every target
//! and behavior against the fused score + backlog over queue-mode scores, front against front.

use framescale_sim::compare::{self, Load, Outcome, Policy};
use framescale_sim::frames::WorkerModel;
use framescale_sim::simulation::SimulationConfig;
use framescale_sim::sweep;
use framescale_worker::profile::Profile;

use super::{ProfileLoad, TuneArgs, evaluate, print_fronts, table};

/// Runs both policies at both minimums on each farm load and prints their tables; then the
/// search.
pub fn compare_farm(
    args: &TuneArgs,
    model: &WorkerModel,
    config: &SimulationConfig,
    slo_ms: f64,
) -> anyhow::Result<()> {
    let model = WorkerModel {
        shared_queue: true,
        ..*model
    };
    let seconds = config.duration_s;
    let capacity = model.parallelism * 1000.0 / model.render_ms;
    let per_replica_in_slo = capacity * slo_ms / 1000.0;
    let per_replica = args
        .backlog_per_replica
        .unwrap_or((per_replica_in_slo / 2.0).round().max(1.0));
    if !(per_replica.is_finite() && per_replica > 0.0) {
        anyhow::bail!("--backlog-per-replica must be above 0");
    }
    let loads = if args.profile.is_empty() {
        farm_loads(capacity, seconds)
    } else {
        super::profiles(args, &model)?
            .into_iter()
            .map(|rate| ProfileLoad::new(rate, seconds))
            .collect()
    };
    let at_min = |min_replicas: i32| {
        let mut config = config.clone();
        config.spec.min_replicas = min_replicas;
        config
    };
    let fused = Policy::FusedAndBacklog(config.score.clone(), per_replica);
    let runs = [
        (Policy::Backlog(per_replica), at_min(0), "min 0"),
        (Policy::Backlog(per_replica), at_min(1), "min 1"),
        (fused.clone(), at_min(0), "min 0"),
        (fused, at_min(1), "min 1"),
    ];
    println!(
        "shared queue: pods pull frames as their {} slot(s) free; none is rejected; a pod scaled away hands its frames back; frames left at the end count with what they waited; SLO: {slo_ms} ms from submit to done; seed {}",
        model.slots, args.seed
    );
    for load in &loads {
        println!(
            "\nload: {} over {}",
            load.name,
            humantime::format_duration(args.duration)
        );
        let outcomes: Vec<Outcome> = runs
            .iter()
            .map(|(policy, config, min)| {
                let mut outcome = compare::run(policy, &model, config, load, slo_ms, args.seed);
                outcome.policy = format!("{}, {min}", outcome.policy);
                outcome
            })
            .collect();
        print!("{}", table(&outcomes));
    }
    if args.max_settings > 0 {
        let loads: Vec<&(dyn Load + Sync)> = loads.iter().map(|l| l as _).collect();
        let search = Search {
            per_replica,
            per_replica_in_slo,
            slo_ms,
        };
        search.run(args, &model, &at_min(0), &loads)?;
    }
    Ok(())
}

/// The search's targets: the backlog's given (or default) target, what one replica renders in
/// the SLO, the SLO.
struct Search {
    per_replica: f64,
    per_replica_in_slo: f64,
    slo_ms: f64,
}

impl Search {
    /// The search at `config`'s bounds (minReplicas 0): the fused score + backlog's sample
    /// against backlog only's every target; prints the fronts, the verdict and the
    /// recommendation.
    fn run(
        &self,
        args: &TuneArgs,
        model: &WorkerModel,
        config: &SimulationConfig,
        loads: &[&(dyn Load + Sync)],
    ) -> anyhow::Result<()> {
        let grid = sweep::queue_grid(
            &config.score,
            self.per_replica,
            self.slo_ms,
            self.per_replica_in_slo,
        );
        let mut settings = sweep::sample(grid, args.max_settings, args.seed);
        let ours = settings.len();
        settings.extend(sweep::backlog_alternatives(
            self.per_replica_in_slo,
            self.slo_ms,
        ));
        println!(
            "\nbacklog targets: fractions of the {:.0} frames one replica renders in the SLO",
            self.per_replica_in_slo
        );
        let scored = evaluate(args, model, config, loads, self.slo_ms, &settings, ours);
        let (fronts, chosen) = print_fronts(&scored, settings[0].policy.family())?;
        let backlog_only = fronts
            .iter()
            .find(|f| f.family == Policy::Backlog(1.0).family())
            .and_then(|f| sweep::recommend(&scored, &f.points));
        // Each family's pick by the same rule: the cheapest within 10 % of its fewest bad frames.
        for pick in std::iter::once(chosen).chain(backlog_only) {
            let best = &scored[pick];
            println!(
                "recommended (min 0): {:.2} % bad frames, {:.2} replica-hours ({})",
                best.bad_pct(),
                best.replica_hours,
                best.setting.describe()
            );
        }
        Ok(())
    }
}

/// Three farm loads sized to one pod's `capacity` (frames/s at the model's render time):
///
/// - **job bursts**: a job of 3,000 frames submitted within 10 s every 400 s, nothing between
///   (the farm idle more than half the time);
/// - **farm hour**: each 600 s, 300 s idle, then a job of 2,000 frames within 10 s, then 2.5
///   pods' worth of frames for the rest (artists rendering previews);
/// - **previews and finals**: every 400 s, alternately a preview job of 3,000 frames and a final
///   job of 300 frames that cost 10× as much each (the same work in a tenth of the frames),
///   within 10 s, nothing between.
fn farm_loads(capacity: f64, seconds: f64) -> Vec<ProfileLoad> {
    let round = |v: f64| (v * 10.0).round() / 10.0;
    let cycles =
        |period: f64| (0..(seconds / period).ceil() as u32).map(move |i| f64::from(i) * period);
    let job = |t: f64, rate: f64| {
        [
            (t, 0.0),
            (t + 199.0, 0.0),
            (t + 200.0, rate),
            (t + 209.0, rate),
            (t + 210.0, 0.0),
        ]
    };
    let bursts = cycles(400.0).flat_map(|t| job(t, 300.0)).collect();
    let hour = cycles(600.0)
        .flat_map(|t| {
            [
                (t, 0.0),
                (t + 299.0, 0.0),
                (t + 300.0, 200.0),
                (t + 309.0, 200.0),
                (t + 310.0, round(2.5 * capacity)),
                (t + 599.0, round(2.5 * capacity)),
            ]
        })
        .collect();
    let finals = |i: u32| i % 2 == 1;
    let mixed = cycles(400.0)
        .enumerate()
        .flat_map(|(i, t)| job(t, if finals(i as u32) { 30.0 } else { 300.0 }))
        .collect();
    let dearer = cycles(400.0)
        .enumerate()
        .filter(|&(i, _)| finals(i as u32))
        .map(|(_, t)| (t + 200.0, t + 210.0, 10.0))
        .collect();
    let load = |name: &str, points, dearer| ProfileLoad {
        name: name.to_owned(),
        rate: Profile::Points(points),
        seconds,
        dearer,
    };
    vec![
        load("job bursts (3,000 frames every 400 s)", bursts, Vec::new()),
        load(
            "farm hour (a 2,000-frame job, then previews at 2.5 pods' worth)",
            hour,
            Vec::new(),
        ),
        load(
            "previews and finals (3,000 frames, or 300 at 10× the cost, every 400 s)",
            mixed,
            dearer,
        ),
    ]
}
