//! `framescale simulate`: runs the HPA model offline. Today it checks files of HPA test vectors
//! (`--check-vectors`); trace simulation with a report is tracked in the open issue.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use framescale_core::hpa::vectors::{self, Outcome};

/// Flags of `framescale simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// A JSON file of HPA test vectors (the shape of docs/reference/hpa-vectors.json): prints one
    /// line per vector id with PASS, FAIL and the values that differ, or INVALID and why; exits
    /// non-zero unless every vector passes.
    #[arg(long, value_name = "FILE")]
    check_vectors: Option<PathBuf>,
}

/// Runs the simulation asked for.
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let Some(path) = args.check_vectors else {
        bail!("give --check-vectors FILE (trace simulation is not built yet)");
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("--check-vectors {}", path.display()))?;
    let vectors = vectors::parse(&text)
        .map_err(|e| anyhow::anyhow!("--check-vectors {}: {e}", path.display()))?;
    let (mut failed, mut invalid) = (0, 0);
    let mut out = std::io::stdout().lock();
    for vector in &vectors {
        let unsure = if vector.unsure { " (unsure)" } else { "" };
        let line = match vectors::check(vector) {
            Outcome::Pass => format!("PASS {}{unsure}", vector.id),
            Outcome::Fail(mismatches) => {
                failed += 1;
                let mut line = format!("FAIL {}{unsure}:", vector.id);
                for m in mismatches {
                    let _ = write!(line, " {} expected {}, got {};", m.field, m.expected, m.got);
                }
                line.pop();
                line
            }
            Outcome::Invalid(why) => {
                invalid += 1;
                format!("INVALID {}: {why}", vector.id)
            }
        };
        writeln!(out, "{line}")?;
    }
    writeln!(
        out,
        "{} vectors: {} passed, {failed} failed, {invalid} invalid",
        vectors.len(),
        vectors.len() - failed - invalid
    )?;
    if failed + invalid > 0 {
        bail!(
            "{} of {} vectors did not pass",
            failed + invalid,
            vectors.len()
        );
    }
    Ok(())
}
