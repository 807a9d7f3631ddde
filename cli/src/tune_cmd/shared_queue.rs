//! `framescale tune --shared-queue`: the worker's queue mode (frames wait in one durable queue
//! that pods pull from) on render-farm loads, where the farm is idle part of the time and an
//! HPA may scale the render Deployment to zero. Compared, with the same HPA behavior:
//!
//! - backlog only, `minReplicas: 0` (how KEDA's Redis-streams scaler scales);
//! - the fused score + the backlog, `minReplicas: 0` (framescale with its queue);
//! - the fused score + the backlog, `minReplicas: 1` (a fixed minimum of one pod).

use framescale_sim::compare::{self, Outcome, Policy};
use framescale_sim::frames::WorkerModel;
use framescale_sim::simulation::SimulationConfig;
use framescale_worker::profile::Profile;

use super::{TuneArgs, table};

/// Runs the three policies on each farm load and prints their tables.
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
    let per_replica = args.backlog_per_replica;
    if !(per_replica.is_finite() && per_replica > 0.0) {
        anyhow::bail!("--backlog-per-replica must be above 0");
    }
    let seconds = config.duration_s;
    let capacity = model.parallelism * 1000.0 / model.render_ms;
    let profiles = if args.profile.is_empty() {
        farm_loads(capacity, seconds)
    } else {
        super::profiles(args, &model)?
    };
    let at_min = |min_replicas: i32| {
        let mut config = config.clone();
        config.spec.min_replicas = min_replicas;
        config
    };
    let runs = [
        (Policy::Backlog(per_replica), at_min(0), "min 0"),
        (
            Policy::FusedAndBacklog(config.score.clone(), per_replica),
            at_min(0),
            "min 0",
        ),
        (
            Policy::FusedAndBacklog(config.score.clone(), per_replica),
            at_min(1),
            "min 1",
        ),
    ];
    println!(
        "shared queue: pods pull frames as their {} slot(s) free; none is rejected; a pod scaled away hands its frames back; frames left at the end count with what they waited; SLO: {slo_ms} ms from submit to done; seed {}",
        model.slots, args.seed
    );
    for profile in &profiles {
        println!(
            "\nload: {profile} over {}",
            humantime::format_duration(args.duration)
        );
        let outcomes: Vec<Outcome> = runs
            .iter()
            .map(|(policy, config, min)| {
                let mut outcome = compare::run(
                    policy,
                    &model,
                    config,
                    &|t| profile.rate_at(t, seconds),
                    slo_ms,
                    args.seed,
                );
                outcome.policy = format!("{}, {min}", outcome.policy);
                outcome
            })
            .collect();
        print!("{}", table(&outcomes));
    }
    Ok(())
}

/// Two farm loads sized to one pod's `capacity` (frames/s):
///
/// - **job bursts**: a job of 3,000 frames submitted within 10 s every 400 s, nothing between
///   (the farm idle more than half the time);
/// - **farm hour**: each 600 s, 300 s idle, then a job of 2,000 frames within 10 s, then 2.5
///   pods' worth of frames for the rest (artists rendering previews).
fn farm_loads(capacity: f64, seconds: f64) -> Vec<Profile> {
    let round = |v: f64| (v * 10.0).round() / 10.0;
    let cycles =
        |period: f64| (0..(seconds / period).ceil() as u32).map(move |i| f64::from(i) * period);
    let bursts = cycles(400.0)
        .flat_map(|t| {
            [
                (t, 0.0),
                (t + 199.0, 0.0),
                (t + 200.0, 300.0),
                (t + 209.0, 300.0),
                (t + 210.0, 0.0),
            ]
        })
        .collect();
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
    vec![Profile::Points(bursts), Profile::Points(hour)]
}
