//! The load generator: open-loop arrivals from a [`Profile`] against one or more workers — a
//! request is sent at its arrival time whatever the earlier ones are doing, as real clients do —
//! and the latency distribution and errors of what came back.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::profile::Profile;

/// What to send, where, and for how long.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Worker base URLs (`http://127.0.0.1:8080`); requests go round-robin.
    pub targets: Vec<String>,
    /// The offered rate over time.
    pub profile: Profile,
    /// How long arrivals are generated.
    pub duration: Duration,
    /// Seed of the arrival process.
    pub seed: u64,
    /// Frame size and samples of every request.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Samples per pixel.
    pub samples: u32,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Requests in flight at most; an arrival beyond is counted as `client saturated`, not sent.
    pub max_in_flight: usize,
}

/// What happened to one request, with the second it arrived in.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Ok(usize, f64),
    Error(usize, String),
}

/// What the frames that arrived in one second got.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Second {
    /// Latencies of the ones that came back, milliseconds, in the order they came.
    pub latencies_ms: Vec<f64>,
    /// The ones that did not (refused, failed, timed out, not sent).
    pub failed: usize,
}

impl Second {
    /// Frames of this second.
    #[must_use]
    pub fn frames(&self) -> usize {
        self.latencies_ms.len() + self.failed
    }

    /// The `q` quantile of its latencies (nearest rank), if any came back.
    #[must_use]
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        nearest_rank(&sorted, q)
    }

    /// Frames later than `target_ms`, or that never came back.
    #[must_use]
    pub fn bad(&self, target_ms: f64) -> usize {
        self.failed
            + self
                .latencies_ms
                .iter()
                .filter(|&&ms| ms > target_ms)
                .count()
    }
}

fn nearest_rank(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Progress once a second.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Seconds since the start.
    pub elapsed: f64,
    /// The profile's rate now.
    pub offered_rate: f64,
    /// Requests sent so far.
    pub sent: usize,
    /// Answers received so far: successes, errors.
    pub ok: usize,
    /// Errors so far.
    pub errors: usize,
}

/// The outcome of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Arrivals the profile generated.
    pub offered: usize,
    /// Requests sent.
    pub sent: usize,
    /// Latencies of the successful ones, milliseconds, sorted.
    pub latencies_ms: Vec<f64>,
    /// Failures by kind (`HTTP 429`, `timeout`, `connect: …`, `client saturated`).
    pub errors: BTreeMap<String, usize>,
    /// Wall time of the run, including waiting for the last answers.
    pub elapsed: Duration,
    /// Per second of arrival since the start, what its frames got.
    pub seconds: Vec<Second>,
}

impl Report {
    /// The `q` quantile of successful latencies (nearest rank), if any succeeded.
    #[must_use]
    pub fn quantile(&self, q: f64) -> Option<f64> {
        nearest_rank(&self.latencies_ms, q)
    }

    /// Frames later than `target_ms` or that never came back, and all the frames that arrived.
    #[must_use]
    pub fn bad_frames(&self, target_ms: f64) -> (usize, usize) {
        self.seconds.iter().fold((0, 0), |(bad, all), s| {
            (bad + s.bad(target_ms), all + s.frames())
        })
    }

    fn second(&mut self, index: usize) -> &mut Second {
        if self.seconds.len() <= index {
            self.seconds.resize(index + 1, Second::default());
        }
        &mut self.seconds[index]
    }

    fn fail(&mut self, second: usize, kind: String) {
        self.second(second).failed += 1;
        *self.errors.entry(kind).or_default() += 1;
    }

    /// A human summary, one item per line.
    #[must_use]
    pub fn summary(&self) -> String {
        let mut text = format!(
            "offered {} requests, sent {}, ok {}, errors {}, in {:.1} s\n",
            self.offered,
            self.sent,
            self.latencies_ms.len(),
            self.errors.values().sum::<usize>(),
            self.elapsed.as_secs_f64()
        );
        match [0.5, 0.9, 0.95, 0.99, 1.0].map(|q| self.quantile(q)) {
            [Some(p50), Some(p90), Some(p95), Some(p99), Some(max)] => {
                let _ = writeln!(
                    text,
                    "latency ms: p50 {p50:.1}, p90 {p90:.1}, p95 {p95:.1}, p99 {p99:.1}, max {max:.1}"
                );
            }
            _ => text.push_str("latency: no successful request\n"),
        }
        for (kind, count) in &self.errors {
            let _ = writeln!(text, "error {kind}: {count}");
        }
        text
    }
}

/// Runs the load against `config.targets`, round robin; calls `progress` about once a second.
pub fn run(config: &LoadConfig, progress: impl FnMut(&Progress)) -> Report {
    let targets = |i: usize| Some(config.targets[i % config.targets.len()].clone());
    run_with(config, targets, &AtomicBool::new(false), progress)
}

/// Runs the load, sending request `i` to `target(i)` — `None` when there is no target to send
/// it to (counted as the error `no target`) — until the profile ends or `stop` is set; calls
/// `progress` about once a second. `config.targets` is not read.
pub fn run_with(
    config: &LoadConfig,
    target: impl Fn(usize) -> Option<String>,
    stop: &AtomicBool,
    mut progress: impl FnMut(&Progress),
) -> Report {
    let arrivals = config.profile.arrivals(config.duration, config.seed);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(config.timeout))
        .build()
        .into();
    let (tx, rx) = mpsc::channel::<Answer>();
    let started = Instant::now();
    let mut report = Report {
        offered: arrivals.len(),
        ..Report::default()
    };
    let (mut in_flight, mut next_progress) = (0_usize, 1.0);
    let receive = |report: &mut Report, in_flight: &mut usize, answer: Answer| {
        *in_flight -= 1;
        match answer {
            Answer::Ok(second, ms) => {
                report.latencies_ms.push(ms);
                report.second(second).latencies_ms.push(ms);
            }
            Answer::Error(second, kind) => report.fail(second, kind),
        }
    };
    for (i, arrival) in arrivals.iter().enumerate() {
        // Collect answers while waiting for the arrival time.
        loop {
            let now = started.elapsed();
            if now.as_secs_f64() >= next_progress {
                progress(&Progress {
                    elapsed: now.as_secs_f64(),
                    offered_rate: config
                        .profile
                        .rate_at(now.as_secs_f64(), config.duration.as_secs_f64()),
                    sent: report.sent,
                    ok: report.latencies_ms.len(),
                    errors: report.errors.values().sum(),
                });
                next_progress += 1.0;
            }
            let Some(wait) = arrival.checked_sub(now) else {
                break;
            };
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if let Ok(answer) = rx.recv_timeout(wait.min(Duration::from_millis(200))) {
                receive(&mut report, &mut in_flight, answer);
            }
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let second = arrival.as_secs() as usize;
        if in_flight >= config.max_in_flight {
            report.fail(second, "client saturated".into());
            continue;
        }
        let Some(base) = target(i) else {
            report.fail(second, "no target".into());
            continue;
        };
        let url = format!("{base}/v1/render");
        let body = format!(
            r#"{{"frame": {i}, "width": {}, "height": {}, "samples": {}}}"#,
            config.width, config.height, config.samples
        );
        let (agent, tx) = (agent.clone(), tx.clone());
        in_flight += 1;
        report.sent += 1;
        std::thread::spawn(move || {
            let sent = Instant::now();
            let answer = match agent
                .post(&url)
                .header("content-type", "application/json")
                .header("accept", "application/json")
                .send(body.as_str())
            {
                Ok(response) if response.status().is_success() => {
                    Answer::Ok(second, sent.elapsed().as_secs_f64() * 1000.0)
                }
                Ok(response) => {
                    Answer::Error(second, format!("HTTP {}", response.status().as_u16()))
                }
                Err(ureq::Error::Timeout(_)) => Answer::Error(second, "timeout".into()),
                Err(error) => Answer::Error(second, format!("request: {error}")),
            };
            let _ = tx.send(answer);
        });
    }
    drop(tx);
    while in_flight > 0 {
        match rx.recv() {
            Ok(answer) => receive(&mut report, &mut in_flight, answer),
            Err(_) => break,
        }
    }
    report.latencies_ms.sort_by(f64::total_cmp);
    report.elapsed = started.elapsed();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_second_says_what_its_frames_got() {
        let mut report = Report::default();
        for ms in [10.0, 30.0, 20.0, 400.0] {
            report.latencies_ms.push(ms);
            report.second(1).latencies_ms.push(ms);
        }
        report.fail(1, "HTTP 429".into());
        report.fail(3, "no target".into());
        let one = &report.seconds[1];
        assert_eq!(one.frames(), 5);
        assert_eq!(one.quantile(0.5), Some(20.0));
        assert_eq!(one.quantile(0.95), Some(400.0));
        assert_eq!(one.bad(100.0), 2, "one late, one refused");
        assert_eq!(
            report.seconds[0],
            Second::default(),
            "a second without frames"
        );
        assert_eq!(report.seconds[0].quantile(0.95), None, "no latency, not 0");
        assert_eq!(report.bad_frames(100.0), (3, 6));
        assert_eq!(report.errors["HTTP 429"], 1);
    }
}
