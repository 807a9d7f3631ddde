//! `framescale-adapter`: the adapter alone, with the flags of `framescale adapter`, which runs
//! it when it lies beside `framescale` (the images ship both). Its own binary keeps fewer pages
//! of code resident than the binary of every role (docs/benchmarks.md).

mod adapter_cmd;
mod failure;
mod logging;
mod shutdown;

use std::process::ExitCode;

use clap::Parser;

/// Serve frame time, GPU duty and the fused score through custom.metrics.k8s.io (`framescale adapter`).
#[derive(Debug, Parser)]
#[command(name = "framescale-adapter", version, about)]
struct Cli {
    #[command(flatten)]
    log: logging::LogArgs,
    #[command(flatten)]
    adapter: adapter_cmd::AdapterArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(&cli.log);
    failure::exit_code(adapter_cmd::run(cli.adapter))
}
