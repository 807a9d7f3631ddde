//! `framescale record`: recorded load and signals from a real Prometheus, in the forms the
//! offline tools read — `load.csv` (`seconds,frames_per_second`: a `--profile csv:FILE` for
//! `tune` and `simulate`) and `trace.csv` (`t_s,pod,p95_ms,duty_pct`: a `--trace` for
//! `simulate`) — from the exporter's series, with Prometheus' range queries.
//!
//! A missing value stays missing: a second without a sample is an empty cell (trace) or no
//! line (load), never 0.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;

/// Prometheus' limit of points per series in one range query.
const MAX_POINTS: f64 = 11_000.0;

/// Flags of `framescale record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Prometheus base URL (http://prometheus:9090).
    #[arg(long)]
    prometheus_url: String,
    /// Namespace of the render pods.
    #[arg(long, short = 'n')]
    namespace: String,
    /// More PromQL label matchers for the pods' series, e.g. pod=~"render-.*".
    #[arg(long)]
    selector: Option<String>,
    /// Start: an RFC 3339 time (2026-12-03T10:00:00Z) or a duration before --end (1h).
    #[arg(long, default_value = "1h")]
    start: String,
    /// End: an RFC 3339 time, or `now`.
    #[arg(long, default_value = "now")]
    end: String,
    /// Resolution of the recording.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    step: Duration,
    /// Window of the frame rate (`rate(framescale_frames_total[W])`).
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    rate_window: Duration,
    /// Directory for load.csv and trace.csv.
    #[arg(long, default_value = "framescale-recording")]
    out: PathBuf,
}

/// Queries, writes both files, says what it wrote.
#[allow(clippy::needless_pass_by_value)] // every subcommand's run takes its flags by value
pub fn run(args: RecordArgs) -> anyhow::Result<()> {
    let url = args.prometheus_url.trim_end_matches('/');
    if !url.starts_with("http://") {
        bail!(
            "--prometheus-url must be http://… (put `kubectl port-forward` in front of an https Prometheus)"
        );
    }
    let (start, end) = times(&args.start, &args.end)?;
    let step = args.step.as_secs_f64();
    if step < 1.0 {
        bail!("--step must be at least 1s");
    }
    if (end - start) / step > MAX_POINTS {
        bail!(
            "{} s at a {step} s step is more than Prometheus' {MAX_POINTS} points per series: raise --step or narrow --start/--end",
            end - start
        );
    }
    let matchers = match &args.selector {
        Some(extra) => format!("namespace=\"{}\", {extra}", args.namespace),
        None => format!("namespace=\"{}\"", args.namespace),
    };
    let client = Client {
        agent: ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_mins(1)))
            .build()
            .into(),
        url: url.to_owned(),
        start,
        end,
        step,
    };
    let window = humantime::format_duration(args.rate_window);
    let load = client.range(&format!(
        "sum(rate(framescale_frames_total{{{matchers}}}[{window}]))"
    ))?;
    let p95 = client.range(&format!(
        "1000 * max by (pod) (framescale_frame_duration_seconds{{{matchers}, quantile=\"0.95\"}})"
    ))?;
    let duty = client.range(&format!(
        "100 * max by (pod) (framescale_gpu_duty_cycle_ratio{{{matchers}}})"
    ))?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let load_rows = load.values().next().map_or(0, BTreeMap::len);
    let mut text = String::from("seconds,frames_per_second\n");
    for (t, rate) in load.values().next().into_iter().flatten() {
        let _ = writeln!(text, "{:.0},{rate}", *t as f64 - start);
    }
    let load_path = args.out.join("load.csv");
    std::fs::write(&load_path, text)
        .with_context(|| format!("cannot write {}", load_path.display()))?;
    let (trace, pods, samples) = trace(&p95, &duty, start);
    let trace_path = args.out.join("trace.csv");
    std::fs::write(&trace_path, trace)
        .with_context(|| format!("cannot write {}", trace_path.display()))?;
    println!(
        "{}: {load_rows} seconds of frame rate; {}: {samples} samples of {pods} pods, {} s from {}",
        load_path.display(),
        trace_path.display(),
        end - start,
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs_f64(start))
    );
    if load_rows == 0 && samples == 0 {
        bail!(
            "Prometheus has no framescale series for {matchers} in that time: check --namespace, --selector and that it scrapes the exporters"
        );
    }
    Ok(())
}

/// `(start, end)` in seconds since the epoch.
fn times(start: &str, end: &str) -> anyhow::Result<(f64, f64)> {
    let epoch = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let end = if end == "now" {
        epoch(SystemTime::now())
    } else {
        epoch(humantime::parse_rfc3339_weak(end).with_context(|| format!("--end {end}"))?)
    };
    let start = match humantime::parse_duration(start) {
        Ok(ago) => end - ago.as_secs_f64(),
        Err(_) => epoch(
            humantime::parse_rfc3339_weak(start)
                .with_context(|| format!("--start {start}: an RFC 3339 time or a duration"))?,
        ),
    };
    if start >= end {
        bail!("--start must be before --end");
    }
    Ok((start.floor(), end.floor()))
}

struct Client {
    agent: ureq::Agent,
    url: String,
    start: f64,
    end: f64,
    step: f64,
}

/// Series of a range query: `pod` (or "" without one) → time → value.
type Series = BTreeMap<String, BTreeMap<u64, f64>>;

impl Client {
    fn range(&self, query: &str) -> anyhow::Result<Series> {
        let mut response = self
            .agent
            .get(&format!("{}/api/v1/query_range", self.url))
            .query("query", query)
            .query("start", self.start.to_string())
            .query("end", self.end.to_string())
            .query("step", self.step.to_string())
            .call()
            .with_context(|| format!("cannot reach Prometheus at {}", self.url))?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string()?;
        let json: Value = serde_json::from_str(&body)
            .with_context(|| format!("Prometheus answered {status} and not JSON: {body}"))?;
        if json["status"] != "success" {
            bail!(
                "Prometheus refused {query}: {} {}",
                json["errorType"].as_str().unwrap_or(""),
                json["error"].as_str().unwrap_or(&body)
            );
        }
        let mut series = Series::new();
        for result in json["data"]["result"].as_array().into_iter().flatten() {
            let pod = result["metric"]["pod"].as_str().unwrap_or("").to_owned();
            let values = series.entry(pod).or_default();
            for point in result["values"].as_array().into_iter().flatten() {
                let (Some(t), Some(v)) = (
                    point[0].as_f64(),
                    point[1].as_str().and_then(|v| v.parse::<f64>().ok()),
                ) else {
                    continue;
                };
                if v.is_finite() {
                    values.insert(t as u64, v);
                }
            }
        }
        Ok(series)
    }
}

/// One trace line's P95 and duty.
type Cells = (Option<f64>, Option<f64>);

/// The trace CSV of `p95` and `duty`: a line per pod and second that has either; returns it,
/// the pods and the lines.
fn trace(p95: &Series, duty: &Series, start: f64) -> (String, usize, usize) {
    let mut rows: BTreeMap<(u64, &str), Cells> = BTreeMap::new();
    for (pod, values) in p95 {
        for (t, v) in values {
            rows.entry((*t, pod)).or_default().0 = Some(*v);
        }
    }
    for (pod, values) in duty {
        for (t, v) in values {
            rows.entry((*t, pod)).or_default().1 = Some(*v);
        }
    }
    let pods: std::collections::BTreeSet<&str> = rows.keys().map(|(_, pod)| *pod).collect();
    let mut text = String::from("t_s,pod,p95_ms,duty_pct\n");
    let cell = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
    for ((t, pod), (p95, duty)) in &rows {
        let _ = writeln!(
            text,
            "{:.0},{pod},{},{}",
            *t as f64 - start,
            cell(*p95),
            cell(*duty)
        );
    }
    (text, pods.len(), rows.len())
}
