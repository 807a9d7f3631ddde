//! `framescale`: one binary for every role. Each subcommand's flags live in its own module.

mod adapter_cmd;
mod demo;
mod doctor;
mod exporter_cmd;
mod failure;
mod frame_args;
mod loadgen_cmd;
mod logging;
mod record_cmd;
mod shutdown;
mod simulate_cmd;
mod submit_cmd;
mod tune_cmd;
mod worker_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Autoscale GPU render services on what their users feel.
#[derive(Debug, Parser)]
#[command(name = "framescale", version, about)]
struct Cli {
    #[command(flatten)]
    log: logging::LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Tail render pods' logs and serve per-pod frame-time quantiles on /metrics.
    Exporter(exporter_cmd::ExporterArgs),
    /// Serve frame time, GPU duty and the fused score through custom.metrics.k8s.io.
    Adapter(adapter_cmd::AdapterArgs),
    /// Serve the bundled render API, or pull frames from the durable queue (--queue-url).
    Worker(worker_cmd::WorkerArgs),
    /// Put a render job (a scene and a range of frames) on the durable queue; --wait follows it.
    Submit(submit_cmd::SubmitArgs),
    /// Send open-loop render load to workers and report latencies and errors.
    Loadgen(loadgen_cmd::LoadgenArgs),
    /// Run the whole loop on this machine: workers, exporter, adapter, a local HPA and load; writes a report.
    Demo(demo::DemoArgs),
    /// Run the HPA model offline: check HPA test vectors, simulate a load profile or replay a trace.
    Simulate(simulate_cmd::SimulateArgs),
    /// Compare scaling policies (fused score, P95 only, duty only, both, CPU) on the same load through a per-frame worker model.
    Tune(tune_cmd::TuneArgs),
    /// Record load and per-pod signals from a real Prometheus as a load profile and a trace for tune and simulate.
    Record(record_cmd::RecordArgs),
    /// Say why an HPA on framescale's metrics does or does not scale: reads it, the APIServices, its metrics and pods.
    Doctor(doctor::DoctorArgs),
}

fn main() -> ExitCode {
    if let Some(error) = adapter_alone() {
        eprintln!("framescale: {error}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    logging::init(&cli.log);
    failure::exit_code(match cli.command {
        Command::Exporter(args) => exporter_cmd::run(args),
        Command::Adapter(args) => adapter_cmd::run(args),
        Command::Worker(args) => worker_cmd::run(args),
        Command::Submit(args) => submit_cmd::run(&args),
        Command::Loadgen(args) => loadgen_cmd::run(args),
        Command::Simulate(args) => simulate_cmd::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Tune(args) => tune_cmd::run(args),
        Command::Record(args) => record_cmd::run(args),
    })
}

/// `framescale adapter …` becomes `framescale-adapter …` when that binary lies beside this one
/// (as `git foo` runs `git-foo`): the same flags and code, in a binary of the adapter's code
/// only, whose pages of code resident are fewer (the kernel maps an executable's code in large
/// folios, so what is resident follows its size), and with one glibc malloc arena
/// (`MALLOC_ARENA_MAX=1` unless set: the adapter's two runtime threads otherwise each keep an
/// arena of freed answers). Both measured in docs/benchmarks.md. Returns only when the exec
/// failed; without the binary beside it, the adapter runs here.
fn adapter_alone() -> Option<std::io::Error> {
    use std::os::unix::process::CommandExt as _;
    let mut args = std::env::args_os().skip(1);
    if args.next().is_none_or(|first| first != "adapter") {
        return None;
    }
    let alone = std::env::current_exe()
        .ok()?
        .with_file_name("framescale-adapter");
    if !alone.is_file() {
        return None;
    }
    let mut command = std::process::Command::new(alone);
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        command.env("MALLOC_ARENA_MAX", "1");
    }
    Some(command.args(args).exec())
}
