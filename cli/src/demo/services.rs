//! The exporter and the adapter the demo runs: the exporter over the demo pods root with the CPU
//! duty source, the adapter with the direct backend over HTTPS with a certificate made here.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;

use super::DemoArgs;
use super::fleet::{DEPLOYMENT, NAMESPACE, plain_agent};
use super::process::{Process, free_port, wait_until};

/// The exporter and the adapter, stopped when dropped.
pub struct Services {
    /// The adapter's HTTPS base URL.
    pub adapter_url: String,
    _exporter: Process,
    _adapter: Process,
}

/// Starts both and waits until they are ready; returns the adapter's certificate (PEM).
pub fn start_services(
    args: &DemoArgs,
    dir: &Path,
    frame_target_ms: f64,
    queue_url: Option<&str>,
) -> anyhow::Result<(String, Services)> {
    let exporter_port = free_port()?;
    let exporter = start_exporter(args, dir, exporter_port)?;
    let generated =
        framescale_adapter::tls::self_signed(&["localhost".into(), "127.0.0.1".into()])?;
    let (cert, key) = (dir.join("adapter.crt"), dir.join("adapter.key"));
    std::fs::write(&cert, &generated.cert_pem)?;
    std::fs::write(&key, &generated.key_pem)?;
    std::fs::write(
        dir.join("metrics.yaml"),
        metrics_config(args, frame_target_ms),
    )?;
    let (adapter_port, admin_port) = (free_port()?, free_port()?);
    let owned = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let backlog = queue_url.map(|url| {
        owned(&[
            "--queue-url",
            url,
            "--queue-stream",
            super::farm::STREAM,
            "--backlog-deployment",
            &format!("{NAMESPACE}/{DEPLOYMENT}"),
        ])
    });
    let adapter = Process::start(
        "adapter",
        &[
            owned(&[
                "adapter",
                "--listen",
                &format!("127.0.0.1:{adapter_port}"),
                "--admin-listen",
                &format!("127.0.0.1:{admin_port}"),
                "--tls-cert-file",
                &cert.display().to_string(),
                "--tls-key-file",
                &key.display().to_string(),
                "--exporter",
                &format!("http://127.0.0.1:{exporter_port}/metrics"),
                "--scrape-interval",
                "1s",
                "--cache-ttl",
                "500ms",
                "--pods-file",
                &dir.join("pods.yaml").display().to_string(),
                "--metrics-config",
                &dir.join("metrics.yaml").display().to_string(),
                "--insecure-disable-auth",
            ]),
            backlog.unwrap_or_default(),
        ]
        .concat(),
        &dir.join("adapter.log"),
        Stdio::null(),
    )?;
    let agent = plain_agent();
    for (what, url, log) in [
        (
            "the exporter",
            format!("http://127.0.0.1:{exporter_port}/readyz"),
            "exporter.log",
        ),
        (
            "the adapter",
            format!("http://127.0.0.1:{admin_port}/readyz"),
            "adapter.log",
        ),
    ] {
        wait_until(what, Duration::from_secs(20), || {
            agent.get(&url).call().is_ok_and(|r| r.status() == 200)
        })
        .with_context(|| format!("see {}", dir.join(log).display()))?;
    }
    Ok((
        generated.cert_pem,
        Services {
            adapter_url: format!("https://127.0.0.1:{adapter_port}"),
            _exporter: exporter,
            _adapter: adapter,
        },
    ))
}

/// The exporter over the demo's pods root and its CPU processes file, on `port`.
fn start_exporter(args: &DemoArgs, dir: &Path, port: u16) -> anyhow::Result<Process> {
    let args = [
        "exporter",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--log-root",
        &dir.join("pods").display().to_string(),
        "--from-start",
        "--window",
        &humantime::format_duration(args.window).to_string(),
        "--sub-windows",
        "4",
        "--poll-interval",
        "200ms",
        "--rescan-interval",
        "1s",
        "--grace-period",
        "30s",
        "--device-source",
        "cpu",
        "--cgroup-root",
        "none",
        "--local-processes",
        &dir.join("processes").display().to_string(),
    ]
    .map(String::from);
    Process::start("exporter", &args, &dir.join("exporter.log"), Stdio::null())
}

fn metrics_config(args: &DemoArgs, frame_target_ms: f64) -> String {
    let mut text = format!(
        "score:\n  frame_target_ms: {frame_target_ms}\n  gpu_target_pct: {}\n",
        args.gpu_target_pct
    );
    let hold = humantime::format_duration(args.hold);
    let _ = writeln!(
        text,
        "  holds: {{ frame_bound: {hold}, gpu_bound: {hold}, both: {hold} }}"
    );
    text.push_str("max_age: 5s\n");
    text
}
