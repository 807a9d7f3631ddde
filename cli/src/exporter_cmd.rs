//! `framescale exporter`: flags, their validation, and the run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use framescale_core::window::WindowConfig;
use framescale_exporter::attribution::AttributionConfig;
use framescale_exporter::config::NvmlSourceConfig;
use framescale_exporter::cpu::CpuSourceConfig;
use framescale_exporter::discovery::PodFilter;
use framescale_exporter::{DeviceSourceConfig, ExporterConfig, PushConfig};

/// Flags of `framescale exporter`; each has a `FRAMESCALE_` environment variable.
#[derive(Debug, Args)]
pub struct ExporterArgs {
    /// Pods log root, laid out as the kubelet writes it: <root>/<namespace>_<pod>_<uid>/<container>/<N>.log.
    #[arg(long, env = "FRAMESCALE_LOG_ROOT", default_value = "/var/log/pods")]
    log_root: PathBuf,
    /// Address for /metrics, /livez, /readyz and POST /v1/frames.
    #[arg(long, env = "FRAMESCALE_LISTEN", default_value = "0.0.0.0:9477")]
    listen: SocketAddr,
    /// Read log files that exist at start-up from their beginning (default: from their end).
    #[arg(long, env = "FRAMESCALE_FROM_START")]
    from_start: bool,
    /// Window of the frame-time quantiles.
    #[arg(long, env = "FRAMESCALE_WINDOW", default_value = "60s", value_parser = humantime::parse_duration)]
    window: Duration,
    /// Sub-windows the window slides by (the window moves in steps of window / sub-windows); default: the count nearest to 6 that splits --window into whole milliseconds (20s: 5 of 4 s).
    #[arg(long, env = "FRAMESCALE_SUB_WINDOWS")]
    sub_windows: Option<usize>,
    /// How often log files are read.
    #[arg(long, env = "FRAMESCALE_POLL_INTERVAL", default_value = "500ms", value_parser = humantime::parse_duration)]
    poll_interval: Duration,
    /// How often the log root is listed for pods that came or went, and open files are checked for rotation.
    #[arg(long, env = "FRAMESCALE_RESCAN_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    rescan_interval: Duration,
    /// How long the series of a pod that is gone are still served.
    #[arg(long, env = "FRAMESCALE_GRACE_PERIOD", default_value = "2m", value_parser = humantime::parse_duration)]
    grace_period: Duration,
    /// Namespaces to watch, comma-separated (default: all).
    #[arg(long, env = "FRAMESCALE_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Namespaces never watched, comma-separated.
    #[arg(
        long,
        env = "FRAMESCALE_EXCLUDE_NAMESPACES",
        value_delimiter = ',',
        default_value = "kube-system,kube-public,kube-node-lease"
    )]
    exclude_namespaces: Vec<String>,
    /// Regular expression that container names must match to be watched.
    #[arg(long, env = "FRAMESCALE_CONTAINER_REGEX", default_value = ".*")]
    container_regex: String,
    /// Longest log line kept, in bytes, after joining partial CRI records; longer lines are counted and dropped.
    #[arg(long, env = "FRAMESCALE_MAX_LINE_BYTES", default_value_t = 64 * 1024)]
    max_line_bytes: usize,
    /// Take frames pushed to POST /v1/frames. Off by default: the endpoint authenticates no one, so whoever reaches the port could steer the scaling of the watched namespaces; allow only trusted pods to it (the chart's NetworkPolicy). Pushes obey --namespaces, --exclude-namespaces and --container-regex.
    #[arg(long, env = "FRAMESCALE_PUSH")]
    push: bool,
    /// Largest POST /v1/frames body, in bytes.
    #[arg(long, env = "FRAMESCALE_PUSH_BODY_LIMIT", default_value_t = 1024 * 1024)]
    push_body_limit: usize,
    /// Most series the exporter holds: a push that would add series beyond it is refused (429); the node's own pods' logs always count.
    #[arg(long, env = "FRAMESCALE_MAX_SERIES", default_value_t = 10_000)]
    max_series: usize,
    /// Where device duty comes from: `auto` (NVML when libnvidia-ml.so.1 loads and sees a GPU, else CPU duty when there is a cgroup hierarchy or --local-processes, else none; the log says which and why), `nvml`, `cpu` or `none`.
    #[arg(long, env = "FRAMESCALE_DEVICE_SOURCE", value_enum, default_value_t = DeviceSourceArg::Auto)]
    device_source: DeviceSourceArg,
    /// How often the device source is polled; duty is the busy share of the time between polls.
    #[arg(long, env = "FRAMESCALE_DEVICE_POLL_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    device_poll_interval: Duration,
    /// Cgroup root whose pod cgroups the CPU source measures (v1 or v2); `none` to measure none.
    #[arg(long, env = "FRAMESCALE_CGROUP_ROOT", default_value = "/sys/fs/cgroup")]
    cgroup_root: PathBuf,
    /// File of local processes registered as pods, one per line: `<pid> <namespace>/<pod> <container> [<cpus>]`; re-read every poll. The CPU source measures them; the NVML source attributes their GPU use to those pods.
    #[arg(long, alias = "cpu-processes", env = "FRAMESCALE_LOCAL_PROCESSES")]
    local_processes: Option<PathBuf>,
    /// The node's /proc, whose PIDs NVML reports (mount the host's and run with hostPID, or point this at it).
    #[arg(long, env = "FRAMESCALE_PROC_ROOT", default_value = "/proc")]
    proc_root: PathBuf,
    /// The kubelet's pod-resources socket, which says which container holds each GPU; `none` to attribute GPUs through their processes only.
    #[arg(
        long,
        env = "FRAMESCALE_POD_RESOURCES_SOCKET",
        default_value = "/var/lib/kubelet/pod-resources/kubelet.sock"
    )]
    pod_resources_socket: PathBuf,
    /// The kubelet's container log links (<pod>_<namespace>_<container>-<id>.log), which name a GPU process's container.
    #[arg(
        long,
        env = "FRAMESCALE_CONTAINERS_LOG_DIR",
        default_value = "/var/log/containers"
    )]
    containers_log_dir: PathBuf,
    /// Directory for the checkpoint of read positions and counters (created if missing): a restarted exporter goes on from it, so no frame is lost or counted twice. Unset: a restart starts at the end of every file with counters at 0.
    #[arg(long, env = "FRAMESCALE_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// How often the checkpoint is written (also on shutdown); after a SIGKILL, frames pushed since the last one are lost.
    #[arg(long, env = "FRAMESCALE_CHECKPOINT_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    checkpoint_interval: Duration,
}

/// Values of `--device-source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DeviceSourceArg {
    /// NVML if it loads and sees a GPU, else CPU, else none.
    Auto,
    /// GPUs through NVML.
    Nvml,
    /// CPU time of pod cgroups and registered processes.
    Cpu,
    /// No device duty.
    None,
}

impl ExporterArgs {
    /// Validates the flags into a configuration; each error names the flag to change.
    pub fn into_config(self) -> anyhow::Result<ExporterConfig> {
        let window = match self.sub_windows {
            Some(sub_windows) => WindowConfig::new(self.window, sub_windows),
            None => WindowConfig::fitting(self.window, 6),
        }
        .context("--window / --sub-windows")?;
        if self.sub_windows.is_none() && window.sub_windows() != 6 {
            tracing::info!(
                window = %humantime::format_duration(self.window),
                sub_windows = window.sub_windows(),
                "The window does not split into 6 sub-windows of whole milliseconds: it slides in {} steps instead",
                window.sub_windows()
            );
        }
        let containers = regex_lite::Regex::new(&self.container_regex).with_context(|| {
            format!(
                "--container-regex {:?} is not a valid regular expression",
                self.container_regex
            )
        })?;
        for (flag, value) in [
            ("--poll-interval", self.poll_interval),
            ("--rescan-interval", self.rescan_interval),
            ("--device-poll-interval", self.device_poll_interval),
            ("--checkpoint-interval", self.checkpoint_interval),
        ] {
            if value < Duration::from_millis(10) || value > Duration::from_hours(1) {
                bail!(
                    "{flag} must be between 10ms and 1h, got {}",
                    humantime::format_duration(value)
                );
            }
        }
        if self.max_line_bytes < 1024 {
            bail!(
                "--max-line-bytes must be at least 1024, got {}",
                self.max_line_bytes
            );
        }
        if self.push_body_limit < 1024 {
            bail!(
                "--push-body-limit must be at least 1024, got {}",
                self.push_body_limit
            );
        }
        if self.max_series == 0 {
            bail!("--max-series must be at least 1");
        }
        let trimmed = |list: Vec<String>| -> Vec<String> {
            list.into_iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let cpu = CpuSourceConfig {
            proc_root: self.proc_root.clone(),
            cgroup_root: Some(self.cgroup_root).filter(|root| root.as_os_str() != "none"),
            log_root: self.log_root.clone(),
            processes_file: self.local_processes.clone(),
        };
        let nvml = NvmlSourceConfig {
            pod_resources_socket: Some(self.pod_resources_socket)
                .filter(|path| path.as_os_str() != "none"),
            pod_resources_timeout: Duration::from_secs(2),
            attribution: AttributionConfig {
                proc_root: self.proc_root,
                log_root: self.log_root.clone(),
                containers_dir: self.containers_log_dir,
                processes_file: self.local_processes,
            },
        };
        let device_source = match self.device_source {
            DeviceSourceArg::Auto => DeviceSourceConfig::Auto { cpu, nvml },
            DeviceSourceArg::Nvml => DeviceSourceConfig::Nvml(nvml),
            DeviceSourceArg::Cpu => DeviceSourceConfig::Cpu(cpu),
            DeviceSourceArg::None => DeviceSourceConfig::None,
        };
        Ok(ExporterConfig {
            log_root: self.log_root,
            listen: self.listen,
            from_start: self.from_start,
            window,
            poll_interval: self.poll_interval,
            rescan_interval: self.rescan_interval,
            grace_period: self.grace_period,
            filter: PodFilter {
                namespaces: trimmed(self.namespaces),
                exclude_namespaces: trimmed(self.exclude_namespaces),
                containers,
            },
            max_line_bytes: self.max_line_bytes,
            push: PushConfig {
                enabled: self.push,
                body_limit: self.push_body_limit,
                max_series: self.max_series,
            },
            device_source,
            device_poll_interval: self.device_poll_interval,
            state_dir: self.state_dir,
            checkpoint_interval: self.checkpoint_interval,
        })
    }
}

/// Runs the exporter until SIGTERM or Ctrl-C.
pub fn run(args: ExporterArgs) -> anyhow::Result<()> {
    let config = args.into_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(framescale_exporter::run(config, crate::shutdown::signal()))?;
    Ok(())
}
