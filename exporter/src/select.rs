//! Which device source runs: the one `--device-source` names, or for `auto` the best this node
//! has — NVML when `libnvidia-ml.so.1` loads and sees a GPU, else the CPU source when there is a
//! cgroup hierarchy or local processes to measure, else none — said once in the start-up log
//! with why.

use crate::attribution::{Attribution, AttributionConfig};
use crate::cgroup::Layout;
use crate::config::{DeviceSourceConfig, NvmlSourceConfig};
use crate::cpu::{CpuSource, CpuSourceConfig};
use crate::device::{DeviceSource, FailureReason};
use crate::nvml::driver::{NvmlDriver, NvmlError};
use crate::nvml::{Kubelet, NvmlSource};
use crate::pod_resources::PodResources;

/// The source chosen, and why.
pub struct Selected {
    /// The source; `None`: no duty series.
    pub source: Option<Box<dyn DeviceSource>>,
    /// Its name (`nvml`, `cpu`, `none`), for the log and `framescale_exporter_device_source_info`.
    pub name: &'static str,
    /// Why it was chosen.
    pub why: String,
    /// What `auto` found missing on the way, counted once in the device errors.
    pub passed_over: Option<FailureReason>,
}

/// Chooses and builds the device source.
#[must_use]
pub fn select(config: &DeviceSourceConfig) -> Selected {
    match config {
        DeviceSourceConfig::None => Selected {
            source: None,
            name: "none",
            why: "--device-source none".into(),
            passed_over: None,
        },
        DeviceSourceConfig::Cpu(cpu) => cpu_source(cpu, "--device-source cpu".into(), None),
        DeviceSourceConfig::Nvml(nvml) => {
            let (driver, why) = match NvmlDriver::init() {
                Ok(driver) => {
                    let gpus = driver.gpu_count().unwrap_or(0);
                    (Some(driver), format!("--device-source nvml: {gpus} GPUs"))
                }
                Err(error) => (
                    None,
                    format!(
                        "--device-source nvml, but NVML does not load ({error}): GPU metrics are off and loading is retried every minute"
                    ),
                ),
            };
            Selected {
                source: Some(nvml_source(driver, nvml)),
                name: "nvml",
                why,
                passed_over: None,
            }
        }
        DeviceSourceConfig::Auto { cpu, nvml } => {
            let (missing, reason) = match NvmlDriver::init() {
                Ok(driver) => match driver.gpu_count() {
                    Ok(gpus) if gpus > 0 => {
                        return Selected {
                            source: Some(nvml_source(Some(driver), nvml)),
                            name: "nvml",
                            why: format!("auto: NVML loaded and sees {gpus} GPUs"),
                            passed_over: None,
                        };
                    }
                    Ok(_) => (
                        "NVML loads but sees no GPU".to_owned(),
                        FailureReason::NoGpu,
                    ),
                    Err(error) => (
                        format!("NVML cannot count the GPUs ({error})"),
                        FailureReason::NvmlUnavailable,
                    ),
                },
                Err(error) => (no_nvml(&error), FailureReason::NvmlUnavailable),
            };
            let measurable = cpu.processes_file.is_some()
                || cpu
                    .cgroup_root
                    .as_deref()
                    .and_then(Layout::detect)
                    .is_some();
            if measurable {
                cpu_source(cpu, format!("auto: {missing}, so CPU duty"), Some(reason))
            } else {
                Selected {
                    source: None,
                    name: "none",
                    why: format!(
                        "auto: {missing}, and no cgroup hierarchy or --local-processes to measure CPUs: no duty series"
                    ),
                    passed_over: Some(reason),
                }
            }
        }
    }
}

fn no_nvml(error: &NvmlError) -> String {
    format!("no NVML (libnvidia-ml.so.1: {error})")
}

fn cpu_source(cpu: &CpuSourceConfig, why: String, passed_over: Option<FailureReason>) -> Selected {
    Selected {
        source: Some(Box::new(CpuSource::new(cpu.clone()))),
        name: "cpu",
        why,
        passed_over,
    }
}

fn nvml_source(driver: Option<NvmlDriver>, config: &NvmlSourceConfig) -> Box<dyn DeviceSource> {
    let kubelet = config.pod_resources_socket.as_ref().and_then(|path| {
        Kubelet::new(PodResources::new(path, config.pod_resources_timeout))
            .inspect_err(|error| {
                tracing::warn!(%error, "Cannot start the pod-resources client; attributing GPUs through their processes only");
            })
            .ok()
    });
    let attribution = Attribution::new(AttributionConfig::clone(&config.attribution));
    Box::new(NvmlSource::new(
        driver,
        Box::new(NvmlDriver::init),
        kubelet,
        attribution,
    ))
}
