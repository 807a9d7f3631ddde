//! The exporter's validated configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use framescale_core::window::WindowConfig;

use crate::attribution::AttributionConfig;
use crate::cpu::CpuSourceConfig;
use crate::discovery::PodFilter;

/// Everything the exporter needs to run, already validated.
#[derive(Debug, Clone)]
pub struct ExporterConfig {
    /// The pods log root, laid out as the kubelet writes it (`/var/log/pods`).
    pub log_root: PathBuf,
    /// Address of the HTTP server (`/metrics`, `/livez`, `/readyz`, `/v1/frames`).
    pub listen: SocketAddr,
    /// Read files that exist at start-up from their beginning instead of their end.
    pub from_start: bool,
    /// Window of the frame-time quantiles.
    pub window: WindowConfig,
    /// How often log files are read.
    pub poll_interval: Duration,
    /// How often the log root is listed for new and removed pods.
    pub rescan_interval: Duration,
    /// How long the series of a pod that disappeared are kept.
    pub grace_period: Duration,
    /// Which pods and containers are watched.
    pub filter: PodFilter,
    /// Longest log line kept (after joining partial CRI records), in bytes.
    pub max_line_bytes: usize,
    /// Who may push frames, and how much.
    pub push: PushConfig,
    /// Where device duty comes from.
    pub device_source: DeviceSourceConfig,
    /// How often the device source is polled (the window duty is averaged over).
    pub device_poll_interval: Duration,
    /// Where read positions and counters are checkpointed across restarts; `None`: nowhere
    /// (a restart starts at the end of every file, with counters at 0).
    pub state_dir: Option<PathBuf>,
    /// How often the checkpoint is written (and always on shutdown).
    pub checkpoint_interval: Duration,
}

/// `POST /v1/frames`: off unless asked for, since any pod that reaches the port could steer
/// the scaling of every workload the exporter watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushConfig {
    /// Whether pushes are taken at all (`--push`); off, the endpoint answers 404.
    pub enabled: bool,
    /// Largest body, in bytes.
    pub body_limit: usize,
    /// Most series the exporter holds: a push that would add series beyond it is refused
    /// (log series, which are the node's own pods, are never refused).
    pub max_series: usize,
}

impl Default for PushConfig {
    /// Off; 1 MiB bodies; 10,000 series.
    fn default() -> Self {
        PushConfig {
            enabled: false,
            body_limit: 1 << 20,
            max_series: 10_000,
        }
    }
}

/// Which device source the exporter polls.
#[derive(Debug, Clone)]
pub enum DeviceSourceConfig {
    /// None: no duty series are served.
    None,
    /// The CPU source ([`crate::cpu`]).
    Cpu(CpuSourceConfig),
    /// The NVML source ([`crate::nvml`]), even when NVML does not load (it is retried).
    Nvml(NvmlSourceConfig),
    /// NVML when it loads and sees a GPU, else the CPU source, else none ([`crate::select`]).
    Auto {
        /// The CPU source's settings.
        cpu: CpuSourceConfig,
        /// The NVML source's settings.
        nvml: NvmlSourceConfig,
    },
}

/// Where the NVML source learns who holds each GPU.
#[derive(Debug, Clone)]
pub struct NvmlSourceConfig {
    /// The kubelet's pod-resources socket; `None` to attribute through processes only.
    pub pod_resources_socket: Option<PathBuf>,
    /// Timeout of one pod-resources call.
    pub pod_resources_timeout: Duration,
    /// Where processes are attributed to pods.
    pub attribution: AttributionConfig,
}
