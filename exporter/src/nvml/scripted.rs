//! A device set in memory that answers like NVML, for tests and benchmarks of the NVML source
//! on machines without a GPU: whole GPUs and MIG devices, memory, `utilization.gpu`, GPM
//! windows, processes and per-process samples, all set by the caller between polls, and any
//! call made to fail with NVML's own error.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::driver::{DeviceId, Enumerated, Gpu, GpuDriver, GpuProcess, NvmlError, ProcessSample};

/// What one scripted device (a GPU or a MIG device) answers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScriptedDevice {
    /// Its UUID.
    pub uuid: String,
    /// Memory in use, bytes.
    pub memory_used: u64,
    /// `utilization.gpu`, percent; `None`: NOT_SUPPORTED (as on MIG devices).
    pub utilization_gpu: Option<u32>,
    /// GPM's SM utilization of the window ending at the next sample, percent.
    pub sm_percent: f64,
    /// Processes on it.
    pub processes: Vec<GpuProcess>,
    /// Per-process samples NVML has buffered.
    pub samples: Vec<ProcessSample>,
    /// Whether per-process samples are supported.
    pub samples_supported: bool,
}

/// A scripted GPU and its MIG devices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScriptedGpu {
    /// The GPU itself.
    pub device: ScriptedDevice,
    /// Whether it has GPM.
    pub gpm: bool,
    /// Its MIG devices (MIG mode on when not empty), by GPU instance ID.
    pub mig: Vec<(u32, ScriptedDevice)>,
    /// Fallen off the bus: every call about it fails with `GpuLost`.
    pub lost: bool,
}

/// The device set; clones share it, so a test keeps one to change what the source sees.
#[derive(Debug, Clone, Default)]
pub struct ScriptedGpus {
    gpus: Arc<Mutex<Vec<ScriptedGpu>>>,
    calls: Arc<Mutex<BTreeMap<&'static str, u64>>>,
}

/// A scripted GPM sample: whose it is, and the window's figure it closes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScriptedSample {
    gpu: u32,
    gpu_instance: Option<u32>,
    sm_percent: f64,
}

impl ScriptedGpus {
    /// A device set of `gpus`.
    #[must_use]
    pub fn new(gpus: Vec<ScriptedGpu>) -> Self {
        ScriptedGpus {
            gpus: Arc::new(Mutex::new(gpus)),
            calls: Arc::default(),
        }
    }

    /// Changes the devices.
    pub fn update(&self, change: impl FnOnce(&mut Vec<ScriptedGpu>)) {
        change(&mut self.gpus.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// How many times `call` (a [`GpuDriver`] method name) was made.
    #[must_use]
    pub fn calls(&self, call: &str) -> u64 {
        let calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        calls.get(call).copied().unwrap_or(0)
    }

    fn with<T>(
        &self,
        call: &'static str,
        device: DeviceId,
        answer: impl FnOnce(&ScriptedDevice) -> Result<T, NvmlError>,
    ) -> Result<T, NvmlError> {
        *self
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(call)
            .or_default() += 1;
        let gpus = self.gpus.lock().unwrap_or_else(PoisonError::into_inner);
        let gpu = gpus.get(device.gpu as usize).ok_or(NvmlError::InvalidArg)?;
        if gpu.lost {
            return Err(NvmlError::GpuLost);
        }
        match device.mig {
            None => answer(&gpu.device),
            Some(index) => answer(
                gpu.mig
                    .get(index as usize)
                    .map(|(_, d)| d)
                    .ok_or(NvmlError::NotFound)?,
            ),
        }
    }
}

impl GpuDriver for ScriptedGpus {
    type Sample = ScriptedSample;

    fn gpus(&mut self) -> Result<Vec<Enumerated>, NvmlError> {
        let gpus = self.gpus.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(gpus
            .iter()
            .zip(0..)
            .map(|(gpu, index)| {
                if gpu.lost {
                    return Err((index, NvmlError::GpuLost));
                }
                Ok(Gpu {
                    index,
                    uuid: gpu.device.uuid.clone(),
                    gpm: gpu.gpm,
                    mig: gpu
                        .mig
                        .iter()
                        .zip(0..)
                        .map(|((_, d), slot)| (slot, d.uuid.clone()))
                        .collect(),
                })
            })
            .collect())
    }

    fn memory_used(&mut self, device: DeviceId) -> Result<u64, NvmlError> {
        self.with("memory_used", device, |d| Ok(d.memory_used))
    }

    fn utilization_gpu(&mut self, device: DeviceId) -> Result<u32, NvmlError> {
        self.with("utilization_gpu", device, |d| {
            d.utilization_gpu.ok_or(NvmlError::NotSupported)
        })
    }

    fn gpm_sample(
        &mut self,
        gpu: u32,
        gpu_instance: Option<u32>,
    ) -> Result<Self::Sample, NvmlError> {
        let gpus = self.gpus.lock().unwrap_or_else(PoisonError::into_inner);
        let scripted = gpus.get(gpu as usize).ok_or(NvmlError::InvalidArg)?;
        if scripted.lost {
            return Err(NvmlError::GpuLost);
        }
        if !scripted.gpm {
            return Err(NvmlError::NotSupported);
        }
        let sm_percent = match gpu_instance {
            None => scripted.device.sm_percent,
            Some(instance) => {
                scripted
                    .mig
                    .iter()
                    .find(|(id, _)| *id == instance)
                    .ok_or(NvmlError::InvalidArg)?
                    .1
                    .sm_percent
            }
        };
        Ok(ScriptedSample {
            gpu,
            gpu_instance,
            sm_percent,
        })
    }

    fn gpm_sm_percent(
        &mut self,
        earlier: &Self::Sample,
        later: &Self::Sample,
    ) -> Result<f64, NvmlError> {
        if (earlier.gpu, earlier.gpu_instance) != (later.gpu, later.gpu_instance) {
            return Err(NvmlError::InvalidArg);
        }
        Ok(later.sm_percent)
    }

    fn processes(&mut self, device: DeviceId) -> Result<Vec<GpuProcess>, NvmlError> {
        self.with("processes", device, |d| Ok(d.processes.clone()))
    }

    fn process_samples(
        &mut self,
        device: DeviceId,
        since_micros: Option<u64>,
    ) -> Result<Vec<ProcessSample>, NvmlError> {
        self.with("process_samples", device, |d| {
            if !d.samples_supported {
                return Err(NvmlError::NotSupported);
            }
            Ok(d.samples
                .iter()
                .filter(|s| since_micros.is_none_or(|since| s.timestamp_micros > since))
                .copied()
                .collect())
        })
    }
}
