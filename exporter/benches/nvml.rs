//! One poll of the NVML source over 8 GPUs (a scripted device set answering like NVML) with 100
//! processes to attribute: 4 whole GPUs held by one pod each (GPM windows) and 4 time-sliced
//! GPUs shared by 24 pods each (per-process samples), the pods listed by a fake kubelet over its
//! unix socket, the processes named through /proc cgroups, the pods log root and the container
//! links. Goal (issue 9): under 1 ms of CPU. Measured as wall time with and without the kubelet
//! (the fake kubelet answers from this process, so its work and the thread switches are in the
//! wall time), and as the CPU time of the polling thread itself with the kubelet.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use framescale_exporter::nvml::driver::{GpuProcess, ProcessSample};
use framescale_exporter::nvml::fake_node::FakeNode;
use framescale_exporter::nvml::scripted::{ScriptedDevice, ScriptedGpu, ScriptedGpus};
use framescale_exporter::nvml::{Kubelet, NvmlSource};
use framescale_exporter::pod_resources::PodResources;
use framescale_exporter::pod_resources::fake::{FakeKubelet, pod};

fn bench(c: &mut Criterion) {
    for with_kubelet in [true, false] {
        bench_one(c, with_kubelet);
    }
}

fn bench_one(c: &mut Criterion, with_kubelet: bool) {
    let node = FakeNode::new();
    let mut pods = Vec::new();
    let mut gpus = Vec::new();
    let mut pid = 1000;
    for g in 0..8u32 {
        let uuid = format!("GPU-{g:08x}-0000-0000-0000-000000000000");
        let shared = g >= 4;
        let holders = if shared { 24 } else { 1 };
        let mut processes = Vec::new();
        let mut samples = Vec::new();
        for h in 0..holders {
            let name = format!("render-{g}-{h:02}");
            let id = if shared {
                format!("{uuid}::{h}")
            } else {
                uuid.clone()
            };
            pods.push(pod("render", &name, "blender", "nvidia.com/gpu", &[&id]));
            node.process(pid, "render", &name, "blender", pid);
            processes.push(GpuProcess {
                pid,
                memory_bytes: Some(512 << 20),
                gpu_instance: None,
            });
            samples.push(ProcessSample {
                pid,
                timestamp_micros: 0,
                sm_percent: 3,
            });
            pid += 1;
        }
        gpus.push(ScriptedGpu {
            device: ScriptedDevice {
                uuid,
                memory_used: 40 << 30,
                utilization_gpu: Some(80),
                sm_percent: 42.0,
                processes,
                samples,
                samples_supported: true,
            },
            gpm: true,
            ..ScriptedGpu::default()
        });
    }
    assert_eq!(pid - 1000, 100, "100 processes");
    let kubelet = FakeKubelet::start(pods);
    let scripted = ScriptedGpus::new(gpus);
    let init = scripted.clone();
    let mut source = NvmlSource::new(
        Some(scripted.clone()),
        Box::new(move || Ok(init.clone())),
        with_kubelet.then(|| {
            Kubelet::new(PodResources::new(&kubelet.socket, Duration::from_secs(2))).unwrap()
        }),
        node.attribution(),
    );
    let mut now = Instant::now();
    let mut stamp = 0;
    let mut poll = || {
        // Each poll, NVML has taken a new sample of every process.
        stamp += 1_000_000;
        scripted.update(|gpus| {
            for gpu in gpus {
                for sample in &mut gpu.device.samples {
                    sample.timestamp_micros = stamp;
                }
            }
        });
        now += Duration::from_secs(1);
        source.poll_at(now)
    };
    let first = poll();
    let second = poll();
    assert!(
        first.failures.is_empty() && second.failures.is_empty(),
        "{second:?}"
    );
    assert_eq!(second.readings.len(), 100, "one reading per pod");
    assert!(second.readings.iter().all(|r| r.duty.is_some()));
    let name = if with_kubelet {
        "nvml_poll_8_gpus_100_processes_with_kubelet"
    } else {
        "nvml_poll_8_gpus_100_processes_without_kubelet"
    };
    c.bench_function(name, |b| b.iter(&mut poll));
    if with_kubelet {
        c.bench_function(
            "nvml_poll_8_gpus_100_processes_with_kubelet_thread_cpu",
            |b| {
                b.iter_custom(|polls| {
                    let start = thread_cpu();
                    for _ in 0..polls {
                        std::hint::black_box(poll());
                    }
                    thread_cpu().saturating_sub(start)
                });
            },
        );
    }
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

criterion_group!(benches, bench);
criterion_main!(benches);
