//! Device duty behind one trait, so the rest of the exporter does not know where the numbers
//! come from: NVML ([`crate::nvml`]) on GPU nodes, the CPU source ([`crate::cpu`]) on machines
//! without a GPU. Which one runs is chosen at start ([`crate::select`]).
//!
//! A source is polled on an interval; each poll returns, per (pod, container, device), the
//! share of the time since the previous poll that the device was busy for it, and the memory
//! it held. A source that cannot attribute or read something says so in
//! [`DevicePoll::failures`] — it never reports a 0 it did not measure. The readings of the
//! last poll replace the previous ones whole: a pod that stopped being measured drops out of
//! `/metrics` at the next poll instead of keeping a stale value.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::lock;
use crate::store::SeriesKey;
use crate::throttle::Throttle;

/// Which kind of device a reading is about: the `device` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeviceKind {
    /// An NVIDIA GPU, read through NVML.
    Gpu,
    /// The CPUs the pod may use.
    Cpu,
}

impl DeviceKind {
    /// The `device` label's value.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            DeviceKind::Gpu => "gpu",
            DeviceKind::Cpu => "cpu",
        }
    }
}

/// What a duty figure measures: the `measure` label of `framescale_gpu_duty_cycle_ratio`. The
/// figures mean different things, so they are never served under one name without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Measure {
    /// GPM's SM utilization: the share of the GPU's SMs that were busy (Hopper and newer).
    SmActive,
    /// NVML's `utilization.gpu`: the share of time any kernel ran, however few SMs it used.
    BusyTime,
    /// The pod's processes' SM utilization from NVML's per-process samples (a shared GPU).
    ProcessSm,
    /// CPU time over the CPUs the pod may use (the CPU source).
    CpuTime,
}

impl Measure {
    /// The `measure` label's value.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Measure::SmActive => "sm_active",
            Measure::BusyTime => "busy_time",
            Measure::ProcessSm => "process_sm",
            Measure::CpuTime => "cpu_time",
        }
    }
}

/// A busy share and what it measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Duty {
    /// Busy share of the poll window, 0..=1.
    pub ratio: f64,
    /// What it is a share of.
    pub measure: Measure,
}

/// One measured value of one (pod, container, device).
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceReading {
    /// Whose reading it is; `container` is empty when the source measures the pod as a whole.
    pub key: SeriesKey,
    /// The device kind.
    pub device: DeviceKind,
    /// The device's identity: a GPU or MIG UUID, or `cpu` for the CPU source.
    pub uuid: String,
    /// Busy share of the poll window; `None` when it could not be measured (memory may still
    /// be).
    pub duty: Option<Duty>,
    /// Device memory held, in bytes; `None` when the source could not read it.
    pub memory_bytes: Option<u64>,
}

/// Why a reading is missing: the `reason` label of `framescale_exporter_device_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum FailureReason {
    /// A registered process is gone (or was never there).
    ProcessGone,
    /// A pod's cgroup names a pod UID with no pod under the log root: it cannot be attributed.
    UnknownPod,
    /// A counter file or a device could not be read or parsed.
    Unreadable,
    /// A process using a GPU is in no pod's cgroup (a process of the node).
    NotAPod,
    /// The device cannot give this figure (NVML's NOT_SUPPORTED): e.g. utilization of a MIG
    /// device without GPM. The figure is left out, never taken from the parent GPU.
    NotSupported,
    /// A GPU fell off the bus or stopped answering (NVML's GPU_IS_LOST): it is skipped.
    GpuLost,
    /// NVML cannot be loaded or initialized (no `libnvidia-ml.so.1`, no driver).
    NvmlUnavailable,
    /// NVML loads but sees no GPU.
    NoGpu,
    /// The kubelet's pod-resources socket cannot be asked: devices are attributed through
    /// their processes only.
    PodResourcesUnavailable,
}

impl FailureReason {
    /// Every reason, in declaration order (each one's index is `reason as usize`).
    pub const ALL: [FailureReason; 9] = [
        FailureReason::ProcessGone,
        FailureReason::UnknownPod,
        FailureReason::Unreadable,
        FailureReason::NotAPod,
        FailureReason::NotSupported,
        FailureReason::GpuLost,
        FailureReason::NvmlUnavailable,
        FailureReason::NoGpu,
        FailureReason::PodResourcesUnavailable,
    ];

    /// The label value.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            FailureReason::ProcessGone => "process_gone",
            FailureReason::UnknownPod => "unknown_pod",
            FailureReason::Unreadable => "unreadable",
            FailureReason::NotAPod => "not_a_pod",
            FailureReason::NotSupported => "not_supported",
            FailureReason::GpuLost => "gpu_lost",
            FailureReason::NvmlUnavailable => "nvml_unavailable",
            FailureReason::NoGpu => "no_gpu",
            FailureReason::PodResourcesUnavailable => "pod_resources_unavailable",
        }
    }
}

/// What the exporter knows of its device source: its readings (of the last poll, sorted by
/// key, replaced whole at each poll), its poll interval and how it fared.
#[derive(Debug, Default)]
pub struct DeviceState {
    /// The last poll's readings.
    pub readings: Mutex<Vec<DeviceReading>>,
    /// Counters of the source.
    pub stats: DeviceStats,
}

/// The device source's own figures, for `/metrics`.
#[derive(Debug, Default)]
pub struct DeviceStats {
    /// The source's name (`nvml`, `cpu`, `none`); empty when not said.
    pub source: &'static str,
    /// The poll interval: the window duty is averaged over; `None` when no source runs.
    pub interval: Option<Duration>,
    failures: [AtomicU64; FailureReason::ALL.len()],
    last_poll_micros: AtomicU64,
    /// When the last poll was published, ms since the epoch; 0 before the first.
    polled_at_millis: AtomicU64,
    /// Why the source could not run at its last poll (NVML not loading); `None` when it ran.
    down: Mutex<Option<String>>,
}

impl DeviceStats {
    /// Figures of the source `source` polled every `interval` (`None`: no source runs).
    #[must_use]
    pub fn new(source: &'static str, interval: Option<Duration>) -> Self {
        DeviceStats {
            source,
            interval,
            ..DeviceStats::default()
        }
    }

    /// Counts one missing reading.
    pub fn count(&self, reason: FailureReason) {
        self.failures[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Missing readings so far, by reason, every reason listed.
    pub fn failures(&self) -> impl Iterator<Item = (FailureReason, u64)> + '_ {
        FailureReason::ALL.iter().map(|&reason| {
            (
                reason,
                self.failures[reason as usize].load(Ordering::Relaxed),
            )
        })
    }

    /// Records that a poll was published at `at_millis` (ms since the epoch).
    pub fn polled_at(&self, at_millis: u64) {
        self.polled_at_millis.store(at_millis, Ordering::Relaxed);
    }

    /// How long ago, at `now_millis`, the last poll was published; `None` before the first.
    #[must_use]
    pub fn poll_age(&self, now_millis: u64) -> Option<Duration> {
        match self.polled_at_millis.load(Ordering::Relaxed) {
            0 => None,
            at => Some(Duration::from_millis(now_millis.saturating_sub(at))),
        }
    }

    /// Whether the last poll's readings still stand at `now_millis`: published within three
    /// poll intervals. A source that hangs (a GPU fallen off the bus can block NVML calls)
    /// leaves readings nobody renews; they are then missing, not the last ones measured.
    #[must_use]
    pub fn readings_current(&self, now_millis: u64) -> bool {
        match (self.interval, self.poll_age(now_millis)) {
            (Some(interval), Some(age)) => age <= (interval * 3).max(Duration::from_secs(1)),
            _ => false,
        }
    }

    /// Why the source could not run at all at its last poll (NVML does not load): the node's
    /// devices are unmeasured, not idle. `None` when it ran, or before its first poll.
    #[must_use]
    pub fn down(&self) -> Option<String> {
        lock(&self.down).clone()
    }

    /// Whether the source ran at its last poll; `None` before the first poll or when no
    /// source runs.
    #[must_use]
    pub fn up(&self) -> Option<bool> {
        let polled = self.polled_at_millis.load(Ordering::Relaxed) != 0;
        (self.interval.is_some() && polled).then(|| self.down().is_none())
    }

    /// How long the last poll took.
    #[must_use]
    pub fn last_poll(&self) -> Duration {
        Duration::from_micros(self.last_poll_micros.load(Ordering::Relaxed))
    }
}

/// A reading that is missing, and why. Each is counted by reason and logged (rate-limited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFailure {
    /// Why.
    pub reason: FailureReason,
    /// What failed, for the log.
    pub detail: String,
}

/// What one poll found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DevicePoll {
    /// Readings over the window since the previous poll.
    pub readings: Vec<DeviceReading>,
    /// What could not be measured or attributed.
    pub failures: Vec<DeviceFailure>,
}

impl DevicePoll {
    /// Notes a reading that is missing.
    pub fn fail(&mut self, reason: FailureReason, detail: impl Into<String>) {
        self.failures.push(DeviceFailure {
            reason,
            detail: detail.into(),
        });
    }
}

/// A place duty readings come from.
///
/// `poll` is called every poll interval from one thread. A reading is a rate over the window
/// since the previous call, so a source keeps its own previous counters; the first call for
/// anything new returns no reading for it (there is no window yet), never a 0.
pub trait DeviceSource: Send {
    /// A name for logs (`cpu`, `nvml`).
    fn name(&self) -> &'static str;
    /// Reads every device and attributes the time since the previous poll.
    fn poll(&mut self) -> DevicePoll;
}

/// Polls `source` every `interval` until `stop` is set, publishing into `state`. Blocking: run
/// it on its own thread.
pub fn run(
    mut source: Box<dyn DeviceSource>,
    interval: Duration,
    state: &DeviceState,
    throttle: &Throttle,
    stop: &AtomicBool,
) {
    tracing::info!(source = source.name(), interval = ?interval, "Device source polling");
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        poll_once(source.as_mut(), state, throttle);
        next += interval;
        let now = Instant::now();
        if next < now {
            next = now;
        }
        // In slices, so a stop (SIGTERM) is not kept waiting for a whole interval.
        while !stop.load(Ordering::Relaxed) && Instant::now() < next {
            std::thread::sleep((next - Instant::now()).min(Duration::from_millis(50)));
        }
    }
}

/// One poll of `source`, published.
pub fn poll_once(source: &mut dyn DeviceSource, state: &DeviceState, throttle: &Throttle) {
    let started = Instant::now();
    let mut poll = source.poll();
    state
        .stats
        .last_poll_micros
        .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    for failure in &poll.failures {
        state.stats.count(failure.reason);
        if let Some(suppressed) = throttle.allow(failure.reason.label()) {
            tracing::warn!(source = source.name(), reason = failure.reason.label(), detail = %failure.detail, suppressed, "Device reading missing");
        }
    }
    *lock(&state.stats.down) = poll
        .failures
        .iter()
        .find(|f| f.reason == FailureReason::NvmlUnavailable)
        .map(|f| f.detail.clone());
    poll.readings
        .sort_by(|a, b| (&a.key, a.device, &a.uuid).cmp(&(&b.key, b.device, &b.uuid)));
    *lock(&state.readings) = poll.readings;
    state.stats.polled_at(crate::log_file::now_millis());
}
