//! `framescale loadgen`: open-loop load against workers, with progress and a latency report.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use framescale_worker::loadgen::{self, LoadConfig};
use framescale_worker::profile::Profile;

/// Flags of `framescale loadgen`.
#[derive(Debug, Args)]
pub struct LoadgenArgs {
    /// A worker's base URL (http://127.0.0.1:8080); repeat for several, requests go round-robin.
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// Offered rate over time: constant:R, step:LOW,HIGH,AT[,UNTIL], ramp:FROM,TO, sine:MEAN,AMPLITUDE,PERIOD or csv:FILE (requests/s).
    #[arg(long, default_value = "step:2,8,20s,60s")]
    profile: String,
    /// How long arrivals are generated.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Seed of the Poisson arrivals (same seed, same arrival times).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    frame: crate::frame_args::FrameArgs,
    /// Timeout of one request.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Requests in flight at most; arrivals beyond are counted as "client saturated".
    #[arg(long, default_value_t = 512)]
    max_in_flight: usize,
}

/// Runs the load, printing progress to stderr and the report to stdout.
pub fn run(args: LoadgenArgs) -> anyhow::Result<()> {
    for url in &args.urls {
        if !url.starts_with("http://") || url.ends_with('/') {
            bail!("--url {url:?} must be a worker's base URL such as http://127.0.0.1:8080");
        }
    }
    let profile = Profile::parse(&args.profile).context("--profile")?;
    if args.duration.is_zero() {
        bail!("--duration must be positive");
    }
    let config = LoadConfig {
        targets: args.urls,
        profile,
        duration: args.duration,
        seed: args.seed,
        width: args.frame.width,
        height: args.frame.height,
        samples: args.frame.samples,
        timeout: args.timeout,
        max_in_flight: args.max_in_flight.max(1),
    };
    let report = loadgen::run(&config, |p| {
        eprintln!(
            "{:>5.0}s  offered {:>6.1}/s  sent {:>6}  ok {:>6}  errors {:>5}",
            p.elapsed, p.offered_rate, p.sent, p.ok, p.errors
        );
    });
    print!("{}", report.summary());
    Ok(())
}
