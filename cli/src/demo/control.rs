//! The demo's loop: a sample every second (the progress line and a report row), an HPA sync
//! every sync period, and the run's summary.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use framescale_core::frame::REFUSED_LATENCY;
use framescale_core::metrics::custom;
use framescale_sim::report::Row;

use super::fleet::Fleet;
use super::local_hpa::{
    BACKLOG_METRIC, LocalHpa, MetricsClient, SCORE_METRIC, backlog_observation, score_observation,
};
use super::{DemoArgs, Plan};

/// Samples the loop every second and syncs the HPA every sync period, until the duration is
/// over or a signal came. Returns the rows of the report.
pub fn control_loop(
    args: &DemoArgs,
    plan: &Plan,
    fleet: &mut Fleet,
    client: &MetricsClient,
    stop: &AtomicBool,
    started: Instant,
) -> anyhow::Result<Vec<Row>> {
    let mut hpa = LocalHpa::new(plan.spec.clone(), plan.controller);
    let seconds = args.duration.as_secs_f64();
    let sync_period = args.sync_period.as_secs_f64();
    let (mut rows, mut next_sync, mut tick) = (Vec::new(), sync_period, 1.0);
    let mut last_decision = String::from("none yet");
    while !stop.load(Ordering::Relaxed) {
        let t = started.elapsed().as_secs_f64();
        if t >= seconds {
            break;
        }
        if t < tick {
            std::thread::sleep(Duration::from_secs_f64((tick - t).min(0.2)));
            continue;
        }
        tick += 1.0;
        fleet.reap();
        let replicas = fleet.replicas() as u32;
        let scores = client.pods_metric(SCORE_METRIC);
        // Queue mode: the backlog, read as the HPA reads an Object metric.
        let backlog = plan
            .backlog_per_replica
            .map(|per_replica| (client.deployment_metric(BACKLOG_METRIC), per_replica));
        let mean = |values: Result<BTreeMap<String, i64>, String>| -> Option<f64> {
            let values = values.ok()?;
            (!values.is_empty())
                .then(|| values.values().sum::<i64>() as f64 / 1000.0 / values.len() as f64)
        };
        let mut row = Row {
            t,
            offered_rate: backlog.is_none().then(|| plan.profile.rate_at(t, seconds)),
            replicas,
            p95_ms: mean(client.pods_metric(custom::FRAME_DURATION_MS)),
            // A pod refusing frames serves an hour: left out of the chart's mean (the users'
            // panels show its refusals).
            latency_ms: mean(
                client
                    .pods_metric(custom::FRAME_LATENCY_MS)
                    .map(|mut values| {
                        let refused_milli = REFUSED_LATENCY.as_millis() as i64 * 1000;
                        values.retain(|_, milli| *milli < refused_milli);
                        values
                    }),
            ),
            duty_pct: mean(client.pods_metric(custom::GPU_DUTY_CYCLE)),
            score: mean(scores.clone()),
            ..Row::default()
        };
        if t >= next_sync {
            next_sync += sync_period;
            let observation = match &backlog {
                Some((value, per_replica)) => backlog_observation(value.clone(), *per_replica),
                None => score_observation(fleet.pods(), scores),
            };
            let decision = hpa.sync(
                t,
                replicas.cast_signed(),
                std::slice::from_ref(&observation),
            );
            row.desired = Some(decision.desired as u32);
            last_decision = if decision.rescale {
                format!("{replicas} → {}: {}", decision.desired, decision.message)
            } else {
                format!("keep {replicas}: {}", decision.message)
            };
            row.decision = Some(last_decision.clone());
            if decision.rescale {
                fleet.scale_to(decision.desired as usize)?;
            }
        }
        let read = backlog.as_ref().map(|(value, _)| value);
        eprintln!("{}", progress_line(&row, read, &last_decision));
        rows.push(row);
    }
    Ok(rows)
}

/// The second's line: the load (or, in queue mode, the backlog), the replicas, what the pods'
/// exporters serve, the HPA's last decision.
fn progress_line(row: &Row, backlog: Option<&Result<i64, String>>, last_decision: &str) -> String {
    let value =
        |v: Option<f64>, unit: &str| v.map_or_else(|| "—".to_owned(), |v| format!("{v:.1}{unit}"));
    let load = match backlog {
        Some(Ok(milli)) => format!("backlog {:>5}", milli / 1000),
        Some(Err(_)) => format!("backlog {:>5}", "—"),
        None => format!("load {:>6}", value(row.offered_rate, "/s")),
    };
    format!(
        "[{:>5.0}s] {load}  replicas {}  latency P95 {:>9}  render P95 {:>9}  duty {:>6}  score {:>5}  | {last_decision}",
        row.t,
        row.replicas,
        value(row.latency_ms, " ms"),
        value(row.p95_ms, " ms"),
        value(row.duty_pct, "%"),
        row.score
            .map_or_else(|| "—".to_owned(), |s| format!("{s:.2}")),
    )
}

/// What the run showed: replica range, scale events, and how soon after the score left the
/// tolerance band upwards the controller added replicas.
pub fn summary(rows: &[Row], args: &DemoArgs, plan: &Plan) -> Vec<String> {
    let mut lines = Vec::new();
    let max = rows.iter().map(|r| r.replicas).max().unwrap_or(0);
    let last = rows.last().map_or(0, |r| r.replicas);
    lines.push(format!("replicas: up to {max}, {last} at the end"));
    let events: Vec<String> = rows
        .windows(2)
        .filter(|w| w[0].replicas != w[1].replicas)
        .map(|w| format!("{:.0}s: {} → {}", w[1].t, w[0].replicas, w[1].replicas))
        .collect();
    lines.push(format!(
        "scale events: {}",
        if events.is_empty() {
            "none".into()
        } else {
            events.join(", ")
        }
    ));
    if plan.backlog_per_replica.is_some() {
        return lines; // the backlog alone: the score's reaction does not apply
    }
    let upper = 1.0 + args.tolerance;
    let mut crossed: Option<f64> = None;
    let mut reactions = Vec::new();
    for row in rows {
        let above = row.score.is_some_and(|s| s > upper)
            && i32::try_from(row.replicas).is_ok_and(|r| r < plan.spec.max_replicas);
        if above {
            crossed.get_or_insert(row.t);
        }
        if row.desired.is_some_and(|d| d > row.replicas) {
            if let Some(at) = crossed.take() {
                reactions.push(row.t - at);
            }
        } else if !above {
            crossed = None;
        }
    }
    let sync = args.sync_period.as_secs_f64();
    lines.push(if reactions.is_empty() {
        "reaction: the score did not leave the band upwards with room to scale up".into()
    } else {
        let worst = reactions.iter().copied().fold(0.0, f64::max);
        format!(
            "reaction: replicas added {} s after the mean score first sampled above {upper:.2} (worst {worst:.1} s; sync period {sync} s, samples every 1 s)",
            reactions.iter().map(|r| format!("{r:.1}")).collect::<Vec<_>>().join(", ")
        )
    });
    lines
}
