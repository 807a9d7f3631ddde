//! Names, labels and units of the exporter's exposition (ARCHITECTURE.md, contract 1).
//!
//! Every component that writes or reads these series takes the names from here, so a rename is
//! one change and a typo is a compile error.

/// Summary of the time to render one frame, in seconds; quantiles over the sliding window.
pub const FRAME_DURATION_SECONDS: &str = "framescale_frame_duration_seconds";
/// Summary of a frame's latency — queue plus render, a refused frame at an hour — in seconds;
/// quantiles over the sliding window; [`MEASURE_LABEL`] says `queue_and_render`, or `render`
/// where the pod reports no queue time.
pub const FRAME_LATENCY_SECONDS: &str = "framescale_frame_latency_seconds";
/// Counter of frames finished, labelled with [`OUTCOME_LABEL`].
pub const FRAMES_TOTAL: &str = "framescale_frames_total";
/// Counter of errors a renderer reported outside any frame (a scene that does not load, a
/// script that fails): the job failed before it produced a frame.
pub const RENDER_ERRORS_TOTAL: &str = "framescale_render_errors_total";

/// Gauge 0..1: share of the last poll window a device was busy for the pod.
pub const GPU_DUTY_CYCLE_RATIO: &str = "framescale_gpu_duty_cycle_ratio";
/// Gauge: device memory the pod holds, in bytes.
pub const GPU_MEMORY_USED_BYTES: &str = "framescale_gpu_memory_used_bytes";

/// The quantiles the frame-duration summary exposes, with their label values.
pub const SUMMARY_QUANTILES: [(f64, &str); 4] =
    [(0.5, "0.5"), (0.9, "0.9"), (0.95, "0.95"), (0.99, "0.99")];

/// Label: the pod's namespace.
pub const NAMESPACE_LABEL: &str = "namespace";
/// Label: the pod's name.
pub const POD_LABEL: &str = "pod";
/// Label: the container's name within the pod.
pub const CONTAINER_LABEL: &str = "container";
/// Label on the device gauges: `gpu` or `cpu`.
pub const DEVICE_LABEL: &str = "device";
/// Label on the device gauges: the device's UUID (`cpu` for the CPU source).
pub const UUID_LABEL: &str = "uuid";
/// Label on [`GPU_DUTY_CYCLE_RATIO`] and [`FRAME_LATENCY_SECONDS`]: what the value measures.
/// Duty: `sm_active` (GPM SM utilization), `busy_time` (NVML's `utilization.gpu`),
/// `process_sm` (a pod's processes on a shared GPU), `cpu_time` (the CPU source). Latency:
/// `queue_and_render`, or `render` where the pod reports no queue time.
pub const MEASURE_LABEL: &str = "measure";
/// Label on [`FRAMES_TOTAL`]: `ok`, `failed` or `refused`.
pub const OUTCOME_LABEL: &str = "outcome";

/// Gauge of each exporter: the window its frame-time quantiles cover, in seconds (`--window`).
pub const EXPORTER_WINDOW_SECONDS: &str = "framescale_exporter_window_seconds";
/// Gauge of each exporter: the window device duty is averaged over, in seconds
/// (`--device-poll-interval`); served only while a device source is on.
pub const EXPORTER_DEVICE_POLL_INTERVAL_SECONDS: &str =
    "framescale_exporter_device_poll_interval_seconds";

/// Names of the custom metrics API (ARCHITECTURE.md, contract 2): what an HPA asks for.
pub mod custom {
    /// P95 render time per pod, in milliseconds.
    pub const FRAME_DURATION_MS: &str = "render_frame_duration_ms";
    /// P95 frame latency (queue + render, refusals as an hour) per pod, in milliseconds.
    pub const FRAME_LATENCY_MS: &str = "render_frame_latency_ms";
    /// Device duty per pod, in percent (0..100).
    pub const GPU_DUTY_CYCLE: &str = "nvidia_gpu_duty_cycle";
    /// The fused score: dimensionless, 1.0 = at target.
    pub const SCALING_SCORE: &str = "render_scaling_score";
}
