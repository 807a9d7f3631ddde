//! The NVML source: how busy each pod's GPU is, and the memory it holds, attributed to pods the
//! way the kubelet sees them.
//!
//! Every poll enumerates the GPUs; a GPU in MIG mode stands for its MIG devices, each its own
//! device with its own UUID. For each device:
//!
//! - **Who holds it**: the containers the kubelet's pod-resources API says were given its UUID
//!   ([`crate::pod_resources`]), and the pods of the processes NVML sees on it
//!   ([`crate::attribution`]). No holder, no reading.
//! - **One pod holds it**: the pod gets the device's figure — GPM's SM utilization over the
//!   poll window (two samples, ≥ 100 ms apart; `measure="sm_active"`) where the GPU has GPM, else
//!   `utilization.gpu` (`measure="busy_time"`, the share of time any kernel ran) — and the
//!   device's memory in use. A MIG device without GPM, or whose GPU instance is not known yet
//!   (it is learned from the processes that run on it), gets no duty: its parent's figure would
//!   be another device's, so the reading says `not_supported` instead.
//! - **Several pods share it** (time-slicing: the device plugin hands out `<uuid>::<n>`
//!   replicas): each pod gets the sum over its processes of their mean SM utilization in NVML's
//!   per-process samples since the previous poll (`measure="process_sm"`) and the memory its
//!   processes hold. NVML keeps samples only of processes that ran, so a holding pod without
//!   samples in the window was idle: its 0 is measured.
//!
//! A window starts again whenever the set of pods holding a device changes, so a figure never
//! mixes two holders' time. A GPU that errors or fell off the bus is skipped with its reason
//! (`gpu_lost`, `unreadable`); without NVML (`--device-source nvml` on a node without the
//! library or driver) the source reports `nvml_unavailable` and tries to load it again every
//! minute. Frame metrics are served all along.

pub mod driver;
#[cfg(any(test, feature = "testing"))]
pub mod fake_node;
pub mod scripted;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use self::driver::{DeviceId, Gpu, GpuDriver, GpuProcess, NvmlError, ProcessSample};
use crate::attribution::{Attribution, Unattributed};
use crate::device::{
    DeviceKind, DevicePoll, DeviceReading, DeviceSource, Duty, FailureReason, Measure,
};
use crate::pod_resources::{HeldDevice, PodResources};
use crate::store::SeriesKey;

/// Shortest GPM window NVML measures reliably.
const MIN_GPM_WINDOW: Duration = Duration::from_millis(100);
/// How often loading NVML is tried again after it failed.
const RETRY_INIT: Duration = Duration::from_mins(1);
/// The device plugins' resource prefix whose devices are GPUs.
const RESOURCE_PREFIX: &str = "nvidia.com/";

/// Asks the kubelet which containers hold which devices.
#[derive(Debug)]
pub struct Kubelet {
    client: PodResources,
    runtime: tokio::runtime::Runtime,
}

impl Kubelet {
    /// A kubelet client answering on its own single-threaded runtime (the source polls from a
    /// plain thread).
    pub fn new(client: PodResources) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Kubelet { client, runtime })
    }

    fn held(&self) -> Result<Vec<HeldDevice>, crate::pod_resources::Error> {
        self.runtime
            .block_on(self.client.held_devices(RESOURCE_PREFIX))
    }
}

/// Loads the driver (again, after a failure).
pub type Init<D> = Box<dyn FnMut() -> Result<D, NvmlError> + Send>;

/// The NVML device source.
pub struct NvmlSource<D: GpuDriver> {
    driver: Option<D>,
    init: Init<D>,
    next_init: Option<Instant>,
    kubelet: Option<Kubelet>,
    attribution: Attribution,
    devices: HashMap<String, DeviceState<D::Sample>>,
    /// PIDs on any device this poll.
    pids_seen: HashSet<u32>,
}

/// What the source remembers of one device between polls.
struct DeviceState<S> {
    /// The pods holding it when its window started.
    pods: Vec<(String, String)>,
    /// The GPM sample that opens the window, and when it was taken.
    gpm: Option<(S, Instant)>,
    /// The newest per-process sample seen, µs.
    newest_sample: Option<u64>,
    /// Whether per-process samples have been asked for since the window started.
    sampled: bool,
    /// The GPU instance of a MIG device, learned from its processes.
    gpu_instance: Option<u32>,
}

impl<S> Default for DeviceState<S> {
    fn default() -> Self {
        DeviceState {
            pods: Vec::new(),
            gpm: None,
            newest_sample: None,
            sampled: false,
            gpu_instance: None,
        }
    }
}

/// One device to read: a whole GPU or a MIG device.
struct Target<'a> {
    id: DeviceId,
    uuid: &'a str,
    gpm: bool,
}

/// The pods that hold a device, each with the containers named as holding it.
type Holders = BTreeMap<(String, String), BTreeSet<String>>;

impl<D: GpuDriver> NvmlSource<D> {
    /// A source over the driver `init` loads; `driver` when it is loaded already. Without one,
    /// `init` is tried at the first poll and then once a minute.
    pub fn new(
        driver: Option<D>,
        init: Init<D>,
        kubelet: Option<Kubelet>,
        attribution: Attribution,
    ) -> Self {
        NvmlSource {
            driver,
            init,
            next_init: None,
            kubelet,
            attribution,
            devices: HashMap::new(),
            pids_seen: HashSet::new(),
        }
    }

    /// One poll, as if taken at `now` (tests pass their own clock).
    pub fn poll_at(&mut self, now: Instant) -> DevicePoll {
        let mut poll = DevicePoll::default();
        let Some(mut driver) = self.take_driver(now, &mut poll) else {
            return poll;
        };
        for error in self.attribution.refresh() {
            poll.fail(FailureReason::Unreadable, error);
        }
        match driver.gpus() {
            Ok(gpus) => {
                let held = self.held_devices(&mut poll);
                let mut seen = HashSet::new();
                self.pids_seen.clear();
                for gpu in gpus {
                    match gpu {
                        Ok(gpu) => {
                            self.poll_gpu(&mut driver, &gpu, &held, now, &mut poll, &mut seen);
                        }
                        Err((index, error)) => poll.fail(
                            reason(&error),
                            format!("GPU {index}: {error}; skipped this poll"),
                        ),
                    }
                }
                self.devices.retain(|uuid, _| seen.contains(uuid));
                let pids = &self.pids_seen;
                self.attribution.keep_only(|pid| pids.contains(&pid));
            }
            Err(error) => poll.fail(reason(&error), format!("cannot list the GPUs: {error}")),
        }
        self.driver = Some(driver);
        poll
    }

    /// The driver, loading it when it is not (at most once a minute).
    fn take_driver(&mut self, now: Instant, poll: &mut DevicePoll) -> Option<D> {
        if let Some(driver) = self.driver.take() {
            return Some(driver);
        }
        if self.next_init.is_some_and(|at| now < at) {
            poll.fail(
                FailureReason::NvmlUnavailable,
                "NVML is not loaded; GPU metrics are off until it can be",
            );
            return None;
        }
        match (self.init)() {
            Ok(driver) => {
                tracing::info!("NVML loaded");
                Some(driver)
            }
            Err(error) => {
                self.next_init = Some(now + RETRY_INIT);
                poll.fail(
                    FailureReason::NvmlUnavailable,
                    format!(
                        "cannot load NVML (libnvidia-ml.so.1): {error}; trying again in a minute"
                    ),
                );
                None
            }
        }
    }

    fn held_devices(&mut self, poll: &mut DevicePoll) -> Vec<HeldDevice> {
        let Some(kubelet) = &self.kubelet else {
            return Vec::new();
        };
        kubelet.held().unwrap_or_else(|error| {
            poll.fail(
                FailureReason::PodResourcesUnavailable,
                format!("{error}; attributing GPUs through their processes only"),
            );
            Vec::new()
        })
    }

    fn poll_gpu(
        &mut self,
        driver: &mut D,
        gpu: &Gpu,
        held: &[HeldDevice],
        now: Instant,
        poll: &mut DevicePoll,
        seen: &mut HashSet<String>,
    ) {
        if gpu.mig.is_empty() {
            let target = Target {
                id: DeviceId {
                    gpu: gpu.index,
                    mig: None,
                },
                uuid: &gpu.uuid,
                gpm: gpu.gpm,
            };
            self.poll_device(driver, &target, held, now, poll);
            seen.insert(gpu.uuid.clone());
        }
        for (slot, uuid) in &gpu.mig {
            let target = Target {
                id: DeviceId {
                    gpu: gpu.index,
                    mig: Some(*slot),
                },
                uuid,
                gpm: gpu.gpm,
            };
            self.poll_device(driver, &target, held, now, poll);
            seen.insert(uuid.clone());
        }
    }

    fn poll_device(
        &mut self,
        driver: &mut D,
        target: &Target<'_>,
        held: &[HeldDevice],
        now: Instant,
        poll: &mut DevicePoll,
    ) {
        let uuid = target.uuid;
        let memory = match driver.memory_used(target.id) {
            Ok(memory) => memory,
            Err(error) => {
                poll.fail(
                    reason(&error),
                    format!("{uuid}: {error}; skipped this poll"),
                );
                self.devices.remove(uuid);
                return;
            }
        };
        let processes = match driver.processes(target.id) {
            Ok(processes) => processes,
            Err(error) => {
                poll.fail(
                    reason(&error),
                    format!("{uuid}: cannot list its processes: {error}"),
                );
                Vec::new()
            }
        };
        let owned = self.attribute(uuid, &processes, poll);
        let holders = holders(uuid, held, &owned);
        if holders.is_empty() {
            self.devices.remove(uuid);
            return;
        }
        let shared = holders.len() > 1 || held.iter().any(|h| h.uuid == uuid && h.replica);
        let state = self.devices.entry(uuid.to_owned()).or_default();
        let pods: Vec<(String, String)> = holders.keys().cloned().collect();
        if state.pods != pods {
            *state = DeviceState {
                pods,
                gpu_instance: state.gpu_instance,
                ..DeviceState::default()
            };
        }
        if let Some(instance) = processes.iter().find_map(|p| p.gpu_instance) {
            state.gpu_instance = Some(instance);
        }
        let key = |(namespace, pod): &(String, String), containers: &BTreeSet<String>| {
            let container = match containers.iter().collect::<Vec<_>>().as_slice() {
                [one] => one.as_str(),
                _ => "",
            };
            SeriesKey::new(namespace, pod, container)
        };
        let reading = |key: SeriesKey, duty, memory_bytes| DeviceReading {
            key,
            device: DeviceKind::Gpu,
            uuid: uuid.to_owned(),
            duty,
            memory_bytes,
        };
        if shared {
            let duties = process_duties(driver, target, state, &holders, &owned, poll);
            for (pod, containers) in &holders {
                let memory = pod_memory(pod, &owned);
                let duty = duties.as_ref().map(|d| Duty {
                    ratio: d.get(pod).copied().unwrap_or(0.0),
                    measure: Measure::ProcessSm,
                });
                poll.readings
                    .push(reading(key(pod, containers), duty, memory));
            }
        } else {
            let duty = device_duty(driver, target, state, now, poll);
            let (pod, containers) = holders.iter().next().expect("one holder");
            poll.readings
                .push(reading(key(pod, containers), duty, Some(memory)));
        }
    }

    /// The processes on a device with their (namespace, pod, container); the others counted.
    fn attribute(
        &mut self,
        uuid: &str,
        processes: &[GpuProcess],
        poll: &mut DevicePoll,
    ) -> Vec<(GpuProcess, SeriesKey)> {
        let mut owned = Vec::with_capacity(processes.len());
        for process in processes {
            self.pids_seen.insert(process.pid);
            match self.attribution.owner(process.pid) {
                Ok(key) => owned.push((*process, key)),
                Err(why) => {
                    let reason = match why {
                        Unattributed::Gone(_) => FailureReason::ProcessGone,
                        Unattributed::NotAPod(_) => FailureReason::NotAPod,
                        Unattributed::UnknownPod { .. } => FailureReason::UnknownPod,
                    };
                    poll.fail(reason, format!("{uuid}: {why}"));
                }
            }
        }
        owned
    }
}

impl<D: GpuDriver> DeviceSource for NvmlSource<D> {
    fn name(&self) -> &'static str {
        "nvml"
    }

    fn poll(&mut self) -> DevicePoll {
        self.poll_at(Instant::now())
    }
}

/// The pods holding device `uuid`: those the kubelet gave it to, and those of its processes.
fn holders(uuid: &str, held: &[HeldDevice], owned: &[(GpuProcess, SeriesKey)]) -> Holders {
    let mut holders: Holders = BTreeMap::new();
    for h in held.iter().filter(|h| h.uuid == uuid) {
        holders
            .entry((h.namespace.clone(), h.pod.clone()))
            .or_default()
            .insert(h.container.clone());
    }
    for (_, key) in owned {
        let containers = holders
            .entry((key.namespace.clone(), key.pod.clone()))
            .or_default();
        if !key.container.is_empty() {
            containers.insert(key.container.clone());
        }
    }
    holders
}

/// The device's own figure for the one pod that holds it.
fn device_duty<D: GpuDriver>(
    driver: &mut D,
    target: &Target<'_>,
    state: &mut DeviceState<D::Sample>,
    now: Instant,
    poll: &mut DevicePoll,
) -> Option<Duty> {
    let uuid = target.uuid;
    if !target.gpm {
        if target.id.mig.is_some() {
            poll.fail(
                FailureReason::NotSupported,
                format!("{uuid}: the busy share of a MIG device needs GPM (Hopper or newer); the parent GPU's is not served for it"),
            );
            return None;
        }
        return match driver.utilization_gpu(target.id) {
            Ok(percent) => Some(Duty {
                ratio: (f64::from(percent) / 100.0).clamp(0.0, 1.0),
                measure: Measure::BusyTime,
            }),
            Err(error) => {
                poll.fail(reason(&error), format!("{uuid}: utilization.gpu: {error}"));
                None
            }
        };
    }
    let instance = if target.id.mig.is_some() {
        let Some(instance) = state.gpu_instance else {
            poll.fail(
                FailureReason::NotSupported,
                format!("{uuid}: its GPU instance is not known until a process runs on it; no SM figure yet"),
            );
            return None;
        };
        Some(instance)
    } else {
        None
    };
    if state
        .gpm
        .as_ref()
        .is_some_and(|(_, at)| now.duration_since(*at) < MIN_GPM_WINDOW)
    {
        return None;
    }
    let sample = match driver.gpm_sample(target.id.gpu, instance) {
        Ok(sample) => sample,
        Err(error) => {
            poll.fail(reason(&error), format!("{uuid}: GPM sample: {error}"));
            state.gpm = None;
            return None;
        }
    };
    let earlier = state.gpm.replace((sample, now));
    let (earlier, _) = earlier?;
    let (later, _) = state.gpm.as_ref().expect("just set");
    match driver.gpm_sm_percent(&earlier, later) {
        Ok(percent) => Some(Duty {
            ratio: (percent / 100.0).clamp(0.0, 1.0),
            measure: Measure::SmActive,
        }),
        Err(error) => {
            poll.fail(
                reason(&error),
                format!("{uuid}: GPM SM utilization: {error}"),
            );
            None
        }
    }
}

/// Each holding pod's busy share of a shared device, from per-process samples since the last
/// poll; `None` when there is no window yet or the device cannot say.
fn process_duties<D: GpuDriver>(
    driver: &mut D,
    target: &Target<'_>,
    state: &mut DeviceState<D::Sample>,
    holders: &Holders,
    owned: &[(GpuProcess, SeriesKey)],
    poll: &mut DevicePoll,
) -> Option<BTreeMap<(String, String), f64>> {
    let samples = match driver.process_samples(target.id, state.newest_sample) {
        Ok(samples) => samples,
        Err(error) => {
            poll.fail(
                reason(&error),
                format!(
                    "{}: per-process utilization of a shared GPU: {error}",
                    target.uuid
                ),
            );
            return None;
        }
    };
    let first = !std::mem::replace(&mut state.sampled, true);
    let newest = samples.iter().map(|s| s.timestamp_micros).max();
    state.newest_sample = newest.max(state.newest_sample);
    // The first answer holds whatever NVML had buffered, over a window nobody chose: it only
    // sets where the next one starts. (With nothing buffered, nothing ran: a measured idle.)
    if first && newest.is_some() {
        return None;
    }
    Some(pod_shares(&samples, holders, owned))
}

/// Sum over each pod's processes of their mean SM share in `samples`.
fn pod_shares(
    samples: &[ProcessSample],
    holders: &Holders,
    owned: &[(GpuProcess, SeriesKey)],
) -> BTreeMap<(String, String), f64> {
    let mut per_pid: HashMap<u32, (u64, u64)> = HashMap::new();
    for sample in samples {
        let entry = per_pid.entry(sample.pid).or_default();
        entry.0 += u64::from(sample.sm_percent);
        entry.1 += 1;
    }
    let mut shares: BTreeMap<(String, String), f64> =
        holders.keys().map(|pod| (pod.clone(), 0.0)).collect();
    for (process, key) in owned {
        if let Some((sum, count)) = per_pid.get(&process.pid)
            && let Some(share) = shares.get_mut(&(key.namespace.clone(), key.pod.clone()))
        {
            *share += *sum as f64 / *count as f64 / 100.0;
        }
    }
    for share in shares.values_mut() {
        *share = share.clamp(0.0, 1.0);
    }
    shares
}

/// The memory a pod's processes hold on a shared device; `None` when NVML cannot say for one.
fn pod_memory(pod: &(String, String), owned: &[(GpuProcess, SeriesKey)]) -> Option<u64> {
    owned
        .iter()
        .filter(|(_, key)| key.namespace == pod.0 && key.pod == pod.1)
        .map(|(process, _)| process.memory_bytes)
        .sum()
}

/// The `reason` label of an NVML error.
#[must_use]
pub fn reason(error: &NvmlError) -> FailureReason {
    match error {
        NvmlError::GpuLost => FailureReason::GpuLost,
        NvmlError::NotSupported => FailureReason::NotSupported,
        NvmlError::LibloadingError(_)
        | NvmlError::FailedToLoadSymbol(_)
        | NvmlError::DriverNotLoaded
        | NvmlError::LibraryNotFound
        | NvmlError::Uninitialized => FailureReason::NvmlUnavailable,
        _ => FailureReason::Unreadable,
    }
}

#[cfg(test)]
mod tests;
