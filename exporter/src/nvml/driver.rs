//! What the NVML source asks of the driver, one NVML call per method with plain data in and
//! out, so the source's logic runs the same on a real GPU ([`NvmlDriver`], through
//! `nvml-wrapper` and `libnvidia-ml.so.1` loaded at run time) and on a scripted device set in
//! tests ([`super::scripted`]). Errors are NVML's own ([`NvmlError`]).

use nvml_wrapper::Nvml;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::enums::gpm::GpmMetricId;
pub use nvml_wrapper::error::NvmlError;
use nvml_wrapper::gpm::GpmSample;

/// A device NVML enumerates: a whole GPU (`mig: None`) or one of its MIG devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId {
    /// The GPU's NVML index.
    pub gpu: u32,
    /// The MIG device's index on that GPU.
    pub mig: Option<u32>,
}

/// A whole GPU as enumerated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    /// NVML index.
    pub index: u32,
    /// `GPU-…`.
    pub uuid: String,
    /// Whether the GPU has GPM (Hopper and newer): SM utilization per window.
    pub gpm: bool,
    /// Its MIG devices, when MIG mode is on: (index, `MIG-…` UUID).
    pub mig: Vec<(u32, String)>,
}

/// A process using a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuProcess {
    /// Its PID, on the node.
    pub pid: u32,
    /// Device memory it holds; `None` when NVML cannot say.
    pub memory_bytes: Option<u64>,
    /// The GPU instance it runs on (MIG only).
    pub gpu_instance: Option<u32>,
}

/// One per-process utilization sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessSample {
    /// The process.
    pub pid: u32,
    /// When it was taken, µs (NVML's CPU timestamp).
    pub timestamp_micros: u64,
    /// SM utilization of the process, percent.
    pub sm_percent: u32,
}

/// A GPU as enumerated, or the index of one that failed to be, and why.
pub type Enumerated = Result<Gpu, (u32, NvmlError)>;

/// The NVML calls the source makes.
pub trait GpuDriver: Send {
    /// A GPM sample; two of them make a window.
    type Sample: Send;

    /// Every GPU, each enumerated on its own: one that fails (fallen off the bus) is an `Err`
    /// with its index, the others are still there.
    fn gpus(&mut self) -> Result<Vec<Enumerated>, NvmlError>;
    /// Device memory in use, bytes.
    fn memory_used(&mut self, device: DeviceId) -> Result<u64, NvmlError>;
    /// `utilization.gpu`: percent of the last sample period any kernel ran.
    fn utilization_gpu(&mut self, device: DeviceId) -> Result<u32, NvmlError>;
    /// A GPM sample of GPU `gpu`, or of its GPU instance `gpu_instance` (MIG).
    fn gpm_sample(
        &mut self,
        gpu: u32,
        gpu_instance: Option<u32>,
    ) -> Result<Self::Sample, NvmlError>;
    /// GPM's SM utilization (percent of SMs busy) between two samples.
    fn gpm_sm_percent(
        &mut self,
        earlier: &Self::Sample,
        later: &Self::Sample,
    ) -> Result<f64, NvmlError>;
    /// The compute and graphics processes on a device, once each.
    fn processes(&mut self, device: DeviceId) -> Result<Vec<GpuProcess>, NvmlError>;
    /// Per-process utilization samples taken after `since_micros` (all buffered when `None`);
    /// a process that did not run in that time has none.
    fn process_samples(
        &mut self,
        device: DeviceId,
        since_micros: Option<u64>,
    ) -> Result<Vec<ProcessSample>, NvmlError>;
}

/// The real driver: NVML through `nvml-wrapper`.
pub struct NvmlDriver {
    nvml: &'static Nvml,
}

impl std::fmt::Debug for NvmlDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlDriver").finish_non_exhaustive()
    }
}

impl NvmlDriver {
    /// Loads `libnvidia-ml.so.1` and initializes NVML. NVML stays loaded for the life of the
    /// process (GPM samples borrow it), so this is called once, or again only after a failure.
    pub fn init() -> Result<Self, NvmlError> {
        let nvml = Nvml::init()?;
        Ok(NvmlDriver {
            nvml: Box::leak(Box::new(nvml)),
        })
    }

    /// How many GPUs NVML sees.
    pub fn gpu_count(&self) -> Result<u32, NvmlError> {
        self.nvml.device_count()
    }

    fn device(&self, id: DeviceId) -> Result<nvml_wrapper::Device<'static>, NvmlError> {
        let gpu = self.nvml.device_by_index(id.gpu)?;
        match id.mig {
            Some(mig) => gpu.mig_device_by_index(mig),
            None => Ok(gpu),
        }
    }

    fn gpu(&self, index: u32) -> Result<Gpu, NvmlError> {
        let device = self.nvml.device_by_index(index)?;
        let uuid = device.uuid()?;
        let gpm = device.gpm_support().unwrap_or(false);
        let mut mig = Vec::new();
        if device.mig_mode().is_ok_and(|mode| mode.current == 1) {
            for slot in 0..device.mig_device_count()? {
                match device.mig_device_by_index(slot) {
                    Ok(instance) => mig.push((slot, instance.uuid()?)),
                    // MIG slots that hold no device.
                    Err(NvmlError::NotFound | NvmlError::InvalidArg) => {}
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(Gpu {
            index,
            uuid,
            gpm,
            mig,
        })
    }
}

impl GpuDriver for NvmlDriver {
    type Sample = GpmSample<'static>;

    fn gpus(&mut self) -> Result<Vec<Enumerated>, NvmlError> {
        let count = self.nvml.device_count()?;
        Ok((0..count)
            .map(|index| self.gpu(index).map_err(|error| (index, error)))
            .collect())
    }

    fn memory_used(&mut self, device: DeviceId) -> Result<u64, NvmlError> {
        Ok(self.device(device)?.memory_info()?.used)
    }

    fn utilization_gpu(&mut self, device: DeviceId) -> Result<u32, NvmlError> {
        Ok(self.device(device)?.utilization_rates()?.gpu)
    }

    fn gpm_sample(
        &mut self,
        gpu: u32,
        gpu_instance: Option<u32>,
    ) -> Result<Self::Sample, NvmlError> {
        let device = self.nvml.device_by_index(gpu)?;
        match gpu_instance {
            Some(instance) => device.gpm_mig_sample(instance),
            None => device.gpm_sample(),
        }
    }

    fn gpm_sm_percent(
        &mut self,
        earlier: &Self::Sample,
        later: &Self::Sample,
    ) -> Result<f64, NvmlError> {
        let results =
            nvml_wrapper::gpm::gpm_metrics_get(self.nvml, earlier, later, &[GpmMetricId::SmUtil])?;
        let result = results.into_iter().next().ok_or(NvmlError::Unknown)??;
        Ok(result.value)
    }

    fn processes(&mut self, device: DeviceId) -> Result<Vec<GpuProcess>, NvmlError> {
        let device = self.device(device)?;
        let mut processes: Vec<GpuProcess> = Vec::new();
        for list in [
            device.running_compute_processes()?,
            device.running_graphics_processes()?,
        ] {
            for info in list {
                if processes.iter().any(|p| p.pid == info.pid) {
                    continue;
                }
                processes.push(GpuProcess {
                    pid: info.pid,
                    memory_bytes: match info.used_gpu_memory {
                        UsedGpuMemory::Used(bytes) => Some(bytes),
                        UsedGpuMemory::Unavailable => None,
                    },
                    gpu_instance: info.gpu_instance_id,
                });
            }
        }
        Ok(processes)
    }

    fn process_samples(
        &mut self,
        device: DeviceId,
        since_micros: Option<u64>,
    ) -> Result<Vec<ProcessSample>, NvmlError> {
        match self.device(device)?.process_utilization_stats(since_micros) {
            Ok(samples) => Ok(samples
                .into_iter()
                .map(|s| ProcessSample {
                    pid: s.pid,
                    timestamp_micros: s.timestamp,
                    sm_percent: s.sm_util,
                })
                .collect()),
            // NVML answers NOT_FOUND when no process ran since `since_micros`.
            Err(NvmlError::NotFound) => Ok(Vec::new()),
            Err(error) => Err(error),
        }
    }
}
