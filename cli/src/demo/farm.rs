//! The demo as a render farm (`framescale demo --shared-queue`): a `redis-server` of its own
//! holds the frame queue the workers pull from, render jobs are submitted to it at set times,
//! and each job is watched from the queue: when its first frame was done, when all were, and how
//! many were done later than the latency users accept (submit to done, to the poll's 200 ms).

use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use framescale_queue::{JobSpec, Priority, Queue};
use framescale_sim::report::Row;

use super::process::{Process, free_port, wait_until};

/// The demo's stream.
pub const STREAM: &str = "framescale-demo:frames";

/// How often the jobs' progress is read.
const POLL: Duration = Duration::from_millis(200);

/// A render job to submit: `frames` frames, `at` into the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobPlan {
    /// When it is submitted.
    pub at: Duration,
    /// Its frames (numbered from 1).
    pub frames: u64,
    /// Its priority.
    pub priority: Priority,
}

impl JobPlan {
    /// `300 frames at 30s`, `300 urgent frames at 30s`.
    #[must_use]
    pub fn describe(&self) -> String {
        format!(
            "{} {}frames at {}",
            self.frames,
            urgent_or_not(self.priority),
            humantime::format_duration(self.at)
        )
    }
}

/// `"urgent "` for an urgent job, nothing for a normal one.
fn urgent_or_not(priority: Priority) -> &'static str {
    match priority {
        Priority::Urgent => "urgent ",
        Priority::Normal => "",
    }
}

/// `AT:FRAMES[:PRIORITY]` (`30s:1200`, `60s:200:urgent`), as `--job` takes it.
pub fn parse_job(text: &str) -> Result<JobPlan, String> {
    let syntax = || format!("{text:?}: use AT:FRAMES[:urgent], as 30s:1200");
    let mut parts = text.splitn(3, ':');
    let (Some(at), Some(frames)) = (parts.next(), parts.next()) else {
        return Err(syntax());
    };
    let priority = match parts.next() {
        Some(priority) => priority.parse().map_err(|e| format!("{text:?}: {e}"))?,
        None => Priority::Normal,
    };
    let at = humantime::parse_duration(at).map_err(|e| format!("{text:?}: {at:?}: {e}"))?;
    let frames: u64 = frames
        .parse()
        .map_err(|_| format!("{text:?}: {frames:?} is not a number of frames"))?;
    if !(1..=framescale_queue::job::MAX_FRAMES).contains(&frames) {
        return Err(format!(
            "{text:?}: a job has 1 to {} frames",
            framescale_queue::job::MAX_FRAMES
        ));
    }
    Ok(JobPlan {
        at,
        frames,
        priority,
    })
}

/// A `redis-server` on a free port of 127.0.0.1, its append-only file in the demo's directory;
/// stopped when dropped.
pub struct Redis {
    /// `redis://127.0.0.1:PORT/0`.
    pub url: String,
    _process: Process,
}

/// Starts one and waits until it accepts connections.
pub fn start_redis(dir: &Path) -> anyhow::Result<Redis> {
    let port = free_port()?;
    let data = dir.join("redis");
    std::fs::create_dir_all(&data)?;
    let log = dir.join("redis.log");
    let args = [
        "--bind",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--appendonly",
        "yes",
        "--save",
        "",
        "--dir",
        &data.display().to_string(),
    ]
    .map(String::from);
    let process = Process::start_program(
        Path::new("redis-server"),
        "redis-server",
        &args,
        &log,
        Stdio::null(),
    )
    .context("--shared-queue runs a redis-server of its own: install it (Debian: apt-get install redis-server)")?;
    wait_until("redis-server", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .with_context(|| format!("see {}", log.display()))?;
    Ok(Redis {
        url: format!("redis://127.0.0.1:{port}/0"),
        _process: process,
    })
}

/// How one job went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobRun {
    /// Its frames.
    pub frames: u64,
    /// Its priority.
    pub priority: Priority,
    /// The queue's id for it, once submitted.
    pub id: Option<String>,
    /// Seconds into the run it was submitted.
    pub submitted_s: Option<f64>,
    /// Seconds into the run its first frame was seen done.
    pub first_done_s: Option<f64>,
    /// Seconds into the run every frame was seen done or failed.
    pub finished_s: Option<f64>,
    /// Frames done.
    pub done: u64,
    /// Frames failed.
    pub failed: u64,
    /// Renders of a frame already done.
    pub duplicates: u64,
    /// Frames done later than the latency users accept.
    pub late: u64,
    /// Why it could not be submitted or read.
    pub error: Option<String>,
}

impl JobRun {
    /// Frames users got late or never: late, failed, or not done by the end.
    #[must_use]
    pub fn bad(&self) -> u64 {
        self.late + self.frames.saturating_sub(self.done)
    }

    /// The job in one line, for the summary.
    #[must_use]
    pub fn describe(&self, slo_ms: f64) -> String {
        let id = self.id.as_deref().unwrap_or("(not submitted)");
        let urgent = urgent_or_not(self.priority);
        let Some(submitted) = self.submitted_s else {
            return format!(
                "job {id}: {} {urgent}frames: {}",
                self.frames,
                self.error.as_deref().unwrap_or("not due before the end")
            );
        };
        let after = |t: Option<f64>| {
            t.map_or_else(
                || "never".into(),
                |t| format!("{:.1} s after", t - submitted),
            )
        };
        format!(
            "job {id}: {} {urgent}frames submitted at {submitted:.1} s; first frame done {}, all done {} ({} done, {} failed, {} duplicates); {} later than {slo_ms} ms from submit to done or never done",
            self.frames,
            after(self.first_done_s),
            after(self.finished_s),
            self.done,
            self.failed,
            self.duplicates,
            self.bad()
        )
    }
}

/// What the jobs are made of and judged against.
#[derive(Debug, Clone)]
pub struct Feed {
    /// The queue's URL.
    pub url: String,
    /// The jobs, in any order.
    pub jobs: Vec<JobPlan>,
    /// Width, height and samples of every frame.
    pub frame: (u32, u32, u32),
    /// The latency users accept, submit to done, ms.
    pub slo_ms: f64,
}

/// Submits each job when due and follows it until `stop`, on a thread of its own; `started`
/// is the run's start.
pub fn feed(feed: Feed, started: Instant, stop: Arc<AtomicBool>) -> JoinHandle<Vec<JobRun>> {
    std::thread::spawn(move || {
        let mut runs: Vec<JobRun> = feed
            .jobs
            .iter()
            .map(|job| JobRun {
                frames: job.frames,
                priority: job.priority,
                ..JobRun::default()
            })
            .collect();
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                for run in &mut runs {
                    run.error = Some(format!("cannot start the async runtime: {error}"));
                }
                return runs;
            }
        };
        let queue = match Queue::new(&feed.url, STREAM, Duration::from_secs(5)) {
            Ok(queue) => queue,
            Err(error) => {
                for run in &mut runs {
                    run.error = Some(error.to_string());
                }
                return runs;
            }
        };
        while !stop.load(Ordering::Relaxed) {
            let t = started.elapsed().as_secs_f64();
            for (plan, run) in feed.jobs.iter().zip(&mut runs) {
                if run.submitted_s.is_none() && run.error.is_none() && t >= plan.at.as_secs_f64() {
                    runtime.block_on(submit(&queue, &feed, plan, run, t));
                }
                if run.id.is_some() && run.finished_s.is_none() {
                    runtime.block_on(follow(&queue, &feed, run, t));
                }
            }
            std::thread::sleep(POLL);
        }
        runs
    })
}

async fn submit(queue: &Queue, feed: &Feed, plan: &JobPlan, run: &mut JobRun, t: f64) {
    let (width, height, samples) = feed.frame;
    let spec = JobSpec {
        scene: framescale_worker::tracer::SCENES[0].to_owned(),
        frames: 1..=plan.frames,
        width,
        height,
        samples,
        priority: plan.priority,
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    match queue.submit(&spec, now_ms, |_| {}).await {
        Ok(id) => {
            tracing::info!(job = %id, frames = plan.frames, priority = %plan.priority, "Submitted a render job");
            run.id = Some(id);
            run.submitted_s = Some(t);
        }
        Err(error) => run.error = Some(format!("cannot submit: {error}")),
    }
}

/// Reads the job's progress: frames newly done count as done now (late when now is past the
/// SLO since the submit).
async fn follow(queue: &Queue, feed: &Feed, run: &mut JobRun, t: f64) {
    let (Some(id), Some(submitted)) = (run.id.as_deref(), run.submitted_s) else {
        return;
    };
    let Ok(progress) = queue.progress(id).await else {
        return; // read again at the next poll
    };
    let newly = progress.done.saturating_sub(run.done);
    if newly > 0 {
        run.first_done_s.get_or_insert(t);
        if (t - submitted) * 1000.0 > feed.slo_ms {
            run.late += newly;
        }
    }
    run.done = progress.done;
    run.failed = progress.failed;
    run.duplicates = progress.duplicates;
    if progress.finished() {
        run.finished_s = Some(t);
    }
}

/// The summary's lines: each job, when the farm was back to zero workers after the last, and
/// the users' bad frames.
#[must_use]
pub fn summary(runs: &[JobRun], rows: &[Row], slo_ms: f64) -> Vec<String> {
    let mut lines: Vec<String> = runs.iter().map(|r| r.describe(slo_ms)).collect();
    let last_finished = runs
        .iter()
        .filter_map(|r| r.finished_s)
        .fold(None, |a: Option<f64>, t| Some(a.map_or(t, |a| a.max(t))));
    if let Some(finished) = last_finished {
        let idle = rows.iter().find(|r| r.t >= finished && r.replicas == 0);
        lines.push(match idle {
            Some(row) => format!(
                "back to 0 workers at {:.0} s, {:.0} s after the last job's last frame",
                row.t,
                row.t - finished
            ),
            None => "not back to 0 workers before the end".into(),
        });
    }
    let (bad, all) = runs
        .iter()
        .filter(|r| r.submitted_s.is_some())
        .fold((0, 0), |(bad, all), r| (bad + r.bad(), all + r.frames));
    lines.push(format!(
        "users: {:.1} % bad frames ({bad} of {all} later than {slo_ms} ms from submit to done, or never done)",
        100.0 * bad as f64 / all.max(1) as f64
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_read_as_at_and_frames() {
        assert_eq!(
            parse_job("30s:1200"),
            Ok(JobPlan {
                at: Duration::from_secs(30),
                frames: 1200,
                priority: Priority::Normal
            })
        );
        assert_eq!(parse_job("1m30s:1").unwrap().at, Duration::from_secs(90));
        assert_eq!(
            parse_job("60s:200:urgent").unwrap().priority,
            Priority::Urgent
        );
        for bad in [
            "30s",
            "30:1200",
            "30s:many",
            "30s:0",
            "30s:99999999",
            "30s:10:high",
            "30s:10:urgent:1",
        ] {
            assert!(parse_job(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_job_counts_late_and_missing_frames_as_bad() {
        let run = JobRun {
            frames: 100,
            id: Some("j1".into()),
            submitted_s: Some(10.0),
            first_done_s: Some(14.5),
            finished_s: None,
            done: 90,
            late: 5,
            ..JobRun::default()
        };
        assert_eq!(run.bad(), 15);
        let line = run.describe(30_000.0);
        assert!(
            line.contains("first frame done 4.5 s after, all done never"),
            "{line}"
        );
        let rows: Vec<Row> = (0..40)
            .map(|t| Row {
                t: f64::from(t),
                replicas: u32::from(t < 35),
                ..Row::default()
            })
            .collect();
        let finished = JobRun {
            finished_s: Some(20.0),
            done: 100,
            late: 0,
            ..run
        };
        let lines = summary(&[finished], &rows, 30_000.0);
        assert_eq!(
            lines[1],
            "back to 0 workers at 35 s, 15 s after the last job's last frame"
        );
        assert!(
            lines[2].starts_with("users: 0.0 % bad frames (0 of 100"),
            "{}",
            lines[2]
        );
    }
}
