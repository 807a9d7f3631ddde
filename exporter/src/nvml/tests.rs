//! The NVML source through its trait with a scripted device set, pods from a fake kubelet on a
//! unix socket and processes under a fake `/proc`: GPM and `utilization.gpu`, shared GPUs, MIG,
//! a GPU lost mid-run, NVML absent.

use std::sync::Arc;

use super::fake_node::FakeNode as Node;
use super::scripted::{ScriptedDevice, ScriptedGpu, ScriptedGpus};
use super::*;
use crate::pod_resources::fake::{FakeKubelet, pod};

fn device(uuid: &str) -> ScriptedDevice {
    ScriptedDevice {
        uuid: uuid.into(),
        memory_used: 1 << 30,
        utilization_gpu: Some(100),
        samples_supported: true,
        ..ScriptedDevice::default()
    }
}

fn process(pid: u32, memory_mib: u64) -> GpuProcess {
    GpuProcess {
        pid,
        memory_bytes: Some(memory_mib << 20),
        gpu_instance: None,
    }
}

fn source(
    gpus: &ScriptedGpus,
    kubelet: Option<&FakeKubelet>,
    node: &Node,
) -> NvmlSource<ScriptedGpus> {
    let kubelet = kubelet
        .map(|k| Kubelet::new(PodResources::new(&k.socket, Duration::from_secs(2))).unwrap());
    let init = gpus.clone();
    NvmlSource::new(
        Some(gpus.clone()),
        Box::new(move || Ok(init.clone())),
        kubelet,
        node.attribution(),
    )
}

fn duty(poll: &DevicePoll, pod: &str) -> Option<Duty> {
    reading(poll, pod).duty
}

fn reading<'a>(poll: &'a DevicePoll, pod: &str) -> &'a DeviceReading {
    poll.readings
        .iter()
        .find(|r| r.key.pod == pod)
        .unwrap_or_else(|| panic!("no reading of {pod} in {poll:?}"))
}

fn reasons(poll: &DevicePoll) -> Vec<FailureReason> {
    poll.failures.iter().map(|f| f.reason).collect()
}

fn close(duty: Option<Duty>, ratio: f64, measure: Measure) -> bool {
    duty.is_some_and(|d| (d.ratio - ratio).abs() < 1e-9 && d.measure == measure)
}

#[test]
fn gpm_tells_a_few_busy_sms_from_a_full_gpu_where_utilization_gpu_cannot() {
    let node = Node::new();
    let kubelet = FakeKubelet::start(vec![
        pod(
            "render",
            "hopper-0",
            "blender",
            "nvidia.com/gpu",
            &["GPU-h200"],
        ),
        pod(
            "render",
            "ampere-0",
            "blender",
            "nvidia.com/gpu",
            &["GPU-a100"],
        ),
    ]);
    let gpus = ScriptedGpus::new(vec![
        ScriptedGpu {
            device: ScriptedDevice {
                sm_percent: 12.5,
                ..device("GPU-h200")
            },
            gpm: true,
            ..ScriptedGpu::default()
        },
        ScriptedGpu {
            device: device("GPU-a100"),
            ..ScriptedGpu::default()
        },
    ]);
    let mut source = source(&gpus, Some(&kubelet), &node);
    let t0 = Instant::now();
    let first = source.poll_at(t0);
    assert!(first.failures.is_empty(), "{first:?}");
    assert_eq!(
        duty(&first, "hopper-0"),
        None,
        "GPM needs a window: no figure, not 0"
    );
    assert_eq!(reading(&first, "hopper-0").memory_bytes, Some(1 << 30));
    assert!(close(duty(&first, "ampere-0"), 1.0, Measure::BusyTime));

    // One SM in eight busy all the time: utilization.gpu says 100 %, GPM 12.5 %.
    let second = source.poll_at(t0 + Duration::from_secs(1));
    assert!(
        close(duty(&second, "hopper-0"), 0.125, Measure::SmActive),
        "{second:?}"
    );
    let key = &reading(&second, "hopper-0").key;
    assert_eq!(
        (key.namespace.as_str(), key.container.as_str()),
        ("render", "blender")
    );
    assert_eq!(reading(&second, "hopper-0").uuid, "GPU-h200");

    // Samples closer than 100 ms make no window.
    let soon = source.poll_at(t0 + Duration::from_millis(1050));
    assert_eq!(duty(&soon, "hopper-0"), None);
    gpus.update(|g| g[0].device.sm_percent = 100.0);
    let full = source.poll_at(t0 + Duration::from_secs(2));
    assert!(close(duty(&full, "hopper-0"), 1.0, Measure::SmActive));
}

#[test]
fn a_shared_gpu_is_split_by_the_pods_process_samples() {
    let node = Node::new();
    node.process(100, "render", "shared-0", "worker", 1);
    node.process(101, "render", "shared-1", "worker", 2);
    node.host_process(102);
    let kubelet = FakeKubelet::start(vec![
        pod(
            "render",
            "shared-0",
            "worker",
            "nvidia.com/gpu",
            &["GPU-s::0"],
        ),
        pod(
            "render",
            "shared-1",
            "worker",
            "nvidia.com/gpu",
            &["GPU-s::1"],
        ),
        pod(
            "render",
            "shared-2",
            "worker",
            "nvidia.com/gpu",
            &["GPU-s::2"],
        ),
    ]);
    let sample = |pid, timestamp_micros, sm_percent| ProcessSample {
        pid,
        timestamp_micros,
        sm_percent,
    };
    let gpus = ScriptedGpus::new(vec![ScriptedGpu {
        device: ScriptedDevice {
            processes: vec![process(100, 512), process(101, 256), process(102, 64)],
            samples: vec![sample(100, 1_000, 90)],
            ..device("GPU-s")
        },
        gpm: true,
        ..ScriptedGpu::default()
    }]);
    let mut source = source(&gpus, Some(&kubelet), &node);
    let t0 = Instant::now();
    let first = source.poll_at(t0);
    // What NVML had buffered before the first poll covers no window of ours.
    assert_eq!(duty(&first, "shared-0"), None, "{first:?}");
    assert_eq!(
        reasons(&first),
        [FailureReason::NotAPod],
        "the host's process is counted"
    );
    assert_eq!(reading(&first, "shared-0").memory_bytes, Some(512 << 20));
    assert_eq!(
        reading(&first, "shared-2").memory_bytes,
        Some(0),
        "no process, no memory"
    );

    gpus.update(|g| {
        g[0].device.samples.extend([
            sample(100, 2_000, 30),
            sample(100, 2_500, 50),
            sample(102, 2_600, 99),
        ]);
    });
    let second = source.poll_at(t0 + Duration::from_secs(1));
    assert!(
        close(duty(&second, "shared-0"), 0.4, Measure::ProcessSm),
        "{second:?}"
    );
    // NVML keeps samples only of processes that ran: shared-1's process was idle, shared-2 has
    // none. Both measured at 0, not left out.
    assert!(close(duty(&second, "shared-1"), 0.0, Measure::ProcessSm));
    assert!(close(duty(&second, "shared-2"), 0.0, Measure::ProcessSm));
    assert_eq!(second.readings.len(), 3);

    // A device that cannot sample processes gives shared pods no duty, and says why.
    gpus.update(|g| g[0].device.samples_supported = false);
    let third = source.poll_at(t0 + Duration::from_secs(2));
    assert_eq!(duty(&third, "shared-0"), None);
    assert!(reasons(&third).contains(&FailureReason::NotSupported));
}

#[test]
fn mig_devices_are_devices_of_their_own() {
    let node = Node::new();
    node.process(200, "render", "mig-a", "worker", 3);
    let kubelet = FakeKubelet::start(vec![
        pod(
            "render",
            "mig-a",
            "worker",
            "nvidia.com/mig-1g.18gb",
            &["MIG-a"],
        ),
        pod(
            "render",
            "mig-b",
            "worker",
            "nvidia.com/mig-1g.18gb",
            &["MIG-b"],
        ),
        pod(
            "render",
            "mig-c",
            "worker",
            "nvidia.com/mig-2g.20gb",
            &["MIG-c"],
        ),
    ]);
    let mig = |uuid: &str, sm_percent, memory_used| ScriptedDevice {
        sm_percent,
        memory_used,
        utilization_gpu: None,
        ..device(uuid)
    };
    let gpus = ScriptedGpus::new(vec![
        ScriptedGpu {
            device: device("GPU-hopper"),
            gpm: true,
            mig: vec![
                (
                    5,
                    ScriptedDevice {
                        processes: vec![GpuProcess {
                            gpu_instance: Some(5),
                            ..process(200, 100)
                        }],
                        ..mig("MIG-a", 60.0, 7 << 30)
                    },
                ),
                (6, mig("MIG-b", 0.0, 1 << 20)),
            ],
            lost: false,
        },
        ScriptedGpu {
            device: device("GPU-ampere"),
            gpm: false,
            mig: vec![(1, mig("MIG-c", 0.0, 2 << 30))],
            lost: false,
        },
    ]);
    let mut source = source(&gpus, Some(&kubelet), &node);
    let t0 = Instant::now();
    source.poll_at(t0);
    let poll = source.poll_at(t0 + Duration::from_secs(1));
    assert!(
        close(duty(&poll, "mig-a"), 0.6, Measure::SmActive),
        "{poll:?}"
    );
    assert_eq!(reading(&poll, "mig-a").uuid, "MIG-a");
    assert_eq!(
        reading(&poll, "mig-a").memory_bytes,
        Some(7 << 30),
        "the MIG device's memory"
    );
    // No process yet on MIG-b: its GPU instance, and so its GPM figure, is unknown. On the
    // Ampere GPU there is no GPM, and MIG devices have no utilization.gpu. Neither takes the
    // parent's figure; memory is still there.
    for pod in ["mig-b", "mig-c"] {
        assert_eq!(duty(&poll, pod), None, "{pod}");
        assert!(reading(&poll, pod).memory_bytes.is_some());
    }
    assert_eq!(
        reasons(&poll),
        [FailureReason::NotSupported, FailureReason::NotSupported]
    );
    assert!(
        poll.readings.iter().all(|r| !r.uuid.starts_with("GPU-")),
        "a GPU in MIG mode stands for its MIG devices"
    );
}

#[test]
fn a_gpu_lost_mid_run_is_skipped_and_the_others_still_read() {
    let node = Node::new();
    let kubelet = FakeKubelet::start(vec![
        pod("render", "a-0", "w", "nvidia.com/gpu", &["GPU-0"]),
        pod("render", "b-0", "w", "nvidia.com/gpu", &["GPU-1"]),
    ]);
    let gpus = ScriptedGpus::new(vec![
        ScriptedGpu {
            device: ScriptedDevice {
                sm_percent: 50.0,
                ..device("GPU-0")
            },
            gpm: true,
            ..ScriptedGpu::default()
        },
        ScriptedGpu {
            device: device("GPU-1"),
            ..ScriptedGpu::default()
        },
    ]);
    let mut source = source(&gpus, Some(&kubelet), &node);
    let t0 = Instant::now();
    source.poll_at(t0);
    gpus.update(|g| g[0].lost = true);
    let lost = source.poll_at(t0 + Duration::from_secs(1));
    assert_eq!(reasons(&lost), [FailureReason::GpuLost]);
    assert_eq!(lost.readings.len(), 1, "only the other GPU: {lost:?}");
    assert_eq!(lost.readings[0].key.pod, "b-0");
    // Back on the bus, its window starts again: no figure made of the time it was gone.
    gpus.update(|g| g[0].lost = false);
    let back = source.poll_at(t0 + Duration::from_secs(2));
    assert_eq!(duty(&back, "a-0"), None);
    let after = source.poll_at(t0 + Duration::from_secs(3));
    assert!(close(duty(&after, "a-0"), 0.5, Measure::SmActive));
}

#[test]
fn without_nvml_the_source_says_so_and_tries_again_each_minute() {
    let node = Node::new();
    let gpus = ScriptedGpus::new(vec![ScriptedGpu {
        device: device("GPU-0"),
        ..ScriptedGpu::default()
    }]);
    node.process(300, "render", "late-0", "w", 4);
    gpus.update(|g| g[0].device.processes = vec![process(300, 10)]);
    let attempts = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let (counter, driver) = (attempts.clone(), gpus.clone());
    let mut source = NvmlSource::new(
        None,
        Box::new(move || {
            if counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                Err(NvmlError::LibraryNotFound)
            } else {
                Ok(driver.clone())
            }
        }),
        None,
        node.attribution(),
    );
    let t0 = Instant::now();
    for seconds in [0, 1, 59] {
        let poll = source.poll_at(t0 + Duration::from_secs(seconds));
        assert!(poll.readings.is_empty());
        assert_eq!(reasons(&poll), [FailureReason::NvmlUnavailable]);
    }
    assert_eq!(
        attempts.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "not tried at every poll"
    );
    let loaded = source.poll_at(t0 + Duration::from_secs(61));
    assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 2);
    // No kubelet here: the GPU is attributed through its one process.
    assert!(
        close(duty(&loaded, "late-0"), 1.0, Measure::BusyTime),
        "{loaded:?}"
    );
}

#[test]
fn a_new_holder_starts_a_new_window() {
    let node = Node::new();
    let kubelet = FakeKubelet::start(vec![pod(
        "render",
        "first-0",
        "w",
        "nvidia.com/gpu",
        &["GPU-0"],
    )]);
    let gpus = ScriptedGpus::new(vec![ScriptedGpu {
        device: ScriptedDevice {
            sm_percent: 70.0,
            ..device("GPU-0")
        },
        gpm: true,
        ..ScriptedGpu::default()
    }]);
    let mut source = source(&gpus, Some(&kubelet), &node);
    let t0 = Instant::now();
    source.poll_at(t0);
    assert!(duty(&source.poll_at(t0 + Duration::from_secs(1)), "first-0").is_some());
    kubelet.set(vec![pod(
        "render",
        "second-0",
        "w",
        "nvidia.com/gpu",
        &["GPU-0"],
    )]);
    let handed_over = source.poll_at(t0 + Duration::from_secs(2));
    assert_eq!(
        duty(&handed_over, "second-0"),
        None,
        "the window held the first pod's time"
    );
    assert!(handed_over.readings.iter().all(|r| r.key.pod != "first-0"));
    kubelet.set(Vec::new());
    assert!(
        source
            .poll_at(t0 + Duration::from_secs(3))
            .readings
            .is_empty(),
        "no holder, no reading"
    );
}

#[test]
fn a_kubelet_that_cannot_be_asked_is_counted_and_processes_still_attribute() {
    let node = Node::new();
    node.process(400, "render", "proc-0", "w", 5);
    let gpus = ScriptedGpus::new(vec![ScriptedGpu {
        device: ScriptedDevice {
            processes: vec![process(400, 1)],
            ..device("GPU-0")
        },
        ..ScriptedGpu::default()
    }]);
    let dir = tempfile::tempdir().unwrap();
    let kubelet = Kubelet::new(PodResources::new(
        &dir.path().join("absent.sock"),
        Duration::from_secs(1),
    ))
    .unwrap();
    let mut source = NvmlSource::new(
        Some(gpus.clone()),
        Box::new(move || Err(NvmlError::Unknown)),
        Some(kubelet),
        node.attribution(),
    );
    let poll = source.poll_at(Instant::now());
    assert_eq!(reasons(&poll), [FailureReason::PodResourcesUnavailable]);
    assert!(close(duty(&poll, "proc-0"), 1.0, Measure::BusyTime));
    assert_eq!(reading(&poll, "proc-0").key.container, "w");
}
