//! `framescale doctor --namespace NS --hpa NAME`: why an HPA on framescale's metrics does (not)
//! scale, in one command. Reads the HPA, the custom metrics APIServices, the metrics the HPA
//! asks for through the aggregated API, the pods its target selects and the exporters
//! ([`facts`]), judges them ([`diagnosis`]) and prints a short table: what works, and for what
//! does not, why and what to do. Exits non-zero when the HPA cannot scale. The kubeconfig is
//! found as kubectl finds it (`KUBECONFIG`, `~/.kube/config`, or the pod's service account).

mod diagnosis;
mod facts;

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use diagnosis::{Row, Verdict, can_scale, diagnose};
use facts::Reader;

/// Flags of `framescale doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Namespace of the HPA.
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
    /// Name of the HorizontalPodAutoscaler.
    #[arg(long)]
    hpa: String,
    /// The kubeconfig context to use (default: the current one).
    #[arg(long)]
    context: Option<String>,
}

/// Reads, judges and prints; fails when the HPA cannot scale.
#[allow(clippy::needless_pass_by_value)] // every subcommand's run takes its flags by value
pub fn run(args: DoctorArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let facts = runtime.block_on(async {
        let options = kube::config::KubeConfigOptions {
            context: args.context.clone(),
            ..Default::default()
        };
        let mut config = match kube::Config::from_kubeconfig(&options).await {
            Ok(config) => config,
            Err(kubeconfig) if args.context.is_none() => kube::Config::incluster()
                .with_context(|| format!("no kubeconfig ({kubeconfig}) and not in a pod"))?,
            Err(error) => return Err(error).context("cannot read the kubeconfig"),
        };
        // One try each, answered or not within seconds: a 503 is a finding, not a reason to wait.
        config.default_retry = false;
        config.connect_timeout = Some(Duration::from_secs(5));
        config.read_timeout = Some(Duration::from_secs(15));
        let client = kube::Client::try_from(config).context("cannot make a Kubernetes client")?;
        anyhow::Ok(Reader::new(client).facts(&args.namespace, &args.hpa).await)
    })?;
    let rows = diagnose(&facts);
    let mut out = std::io::stdout().lock();
    out.write_all(table(&rows).as_bytes())?;
    let failed = rows.iter().filter(|r| r.verdict == Verdict::Fail).count();
    if !can_scale(&rows) {
        writeln!(out)?;
        out.flush()?;
        bail!(
            "HPA {}/{} cannot scale: {failed} check(s) failed (docs/troubleshooting.md has each message and its fix)",
            args.namespace,
            args.hpa
        );
    }
    writeln!(out, "\nHPA {}/{} can scale.", args.namespace, args.hpa)?;
    Ok(())
}

/// The rows as a table: `RESULT  CHECK  DETAIL`, a `fix:` line under each that has one.
fn table(rows: &[Row]) -> String {
    let width = rows
        .iter()
        .map(|r| r.check.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!("{:<6}  {:<width$}  {}\n", "RESULT", "CHECK", "DETAIL");
    for row in rows {
        let _ = writeln!(
            out,
            "{:<6}  {:<width$}  {}",
            row.verdict.label(),
            row.check,
            row.detail
        );
        if let Some(fix) = &row.fix {
            let _ = writeln!(out, "{:<6}  {:<width$}  fix: {fix}", "", "");
        }
    }
    out
}
