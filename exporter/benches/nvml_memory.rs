//! The whole exporter in this process with the NVML source over 8 scripted GPUs time-sliced
//! between 1,000 pods (one process each, pods from a fake kubelet, processes named through
//! /proc cgroups), frames pushed for every pod every second, `/metrics` scraped every second,
//! and 20 pods replaced by new ones every 10 s. Prints the process's resident memory over the
//! run. Goal (issue 9): under 16 MiB with 1,000 pods, no growth over 10 minutes.
//!
//!     cargo bench -p framescale-exporter --features testing --bench nvml_memory
//!     FRAMESCALE_BENCH_SECONDS=60 cargo bench …   # a shorter run

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use framescale_core::window::WindowConfig;
use framescale_exporter::config::{DeviceSourceConfig, ExporterConfig};
use framescale_exporter::discovery::PodFilter;
use framescale_exporter::nvml::driver::{GpuProcess, ProcessSample};
use framescale_exporter::nvml::fake_node::FakeNode;
use framescale_exporter::nvml::scripted::{ScriptedDevice, ScriptedGpu, ScriptedGpus};
use framescale_exporter::nvml::{Kubelet, NvmlSource};
use framescale_exporter::pod_resources::PodResources;
use framescale_exporter::pod_resources::fake::{FakeKubelet, pod};
use framescale_exporter::select::Selected;

const GPUS: u32 = 8;
const PODS: u32 = 1000;

struct Pod {
    n: u32,
    pid: u32,
    name: String,
}

impl Pod {
    fn new(n: u32) -> Pod {
        Pod {
            n,
            pid: 100_000 + n,
            name: format!("render-{n:05}"),
        }
    }

    fn gpu(&self) -> u32 {
        self.n % GPUS
    }

    fn uuid(&self) -> String {
        format!("GPU-{:08x}-0000-0000-0000-000000000000", self.gpu())
    }
}

/// One HTTP/1.1 request on its own connection: (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

fn gauge(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The exporter with the NVML source over `gpus`, on its own thread and runtime.
fn start_exporter(
    node: &FakeNode,
    gpus: &ScriptedGpus,
    kubelet: &FakeKubelet,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = ExporterConfig {
        log_root: node.path("pods"),
        listen: addr,
        from_start: false,
        window: WindowConfig::default(),
        poll_interval: Duration::from_millis(500),
        rescan_interval: Duration::from_secs(5),
        grace_period: Duration::from_mins(2),
        filter: PodFilter::default(),
        max_line_bytes: 64 * 1024,
        push: framescale_exporter::PushConfig {
            enabled: true,
            body_limit: 16 << 20,
            max_series: 100_000,
        },
        device_source: DeviceSourceConfig::None,
        device_poll_interval: Duration::from_secs(1),
        state_dir: None,
        checkpoint_interval: Duration::from_secs(2),
    };
    let init = gpus.clone();
    let source = NvmlSource::new(
        Some(gpus.clone()),
        Box::new(move || Ok(init.clone())),
        Some(Kubelet::new(PodResources::new(&kubelet.socket, Duration::from_secs(2))).unwrap()),
        node.attribution(),
    );
    let selected = Selected {
        source: Some(Box::new(source)),
        name: "nvml",
        why: "benchmark: scripted GPUs".into(),
        passed_over: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let exporter = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(framescale_exporter::run_with(config, selected, async {
                let _ = stopped.await;
            }))
            .unwrap();
    });
    (addr, stop, exporter)
}

/// One push body: a frame for every live pod.
fn frames(live: &VecDeque<Pod>) -> String {
    live.iter().fold(String::new(), |mut body, p| {
        let _ = writeln!(
            body,
            "{{\"namespace\":\"render\",\"pod\":\"{}\",\"container\":\"blender\",\"duration_ms\":{}}}",
            p.name,
            20 + p.n % 30
        );
        body
    })
}

/// 8 GPUs with GPM, time-sliced.
fn scripted_gpus() -> ScriptedGpus {
    ScriptedGpus::new(
        (0..GPUS)
            .map(|g| ScriptedGpu {
                device: ScriptedDevice {
                    uuid: Pod::new(g).uuid(),
                    memory_used: 60 << 30,
                    utilization_gpu: Some(90),
                    sm_percent: 55.0,
                    samples_supported: true,
                    ..ScriptedDevice::default()
                },
                gpm: true,
                ..ScriptedGpu::default()
            })
            .collect(),
    )
}

/// Each live pod's process on its GPU, with a new NVML sample at `stamp`.
fn set_processes(live: &VecDeque<Pod>, gpus: &ScriptedGpus, stamp: u64) {
    gpus.update(|all| {
        for (g, gpu) in all.iter_mut().enumerate() {
            let mine = live.iter().filter(|p| p.gpu() as usize == g);
            gpu.device.processes = mine
                .clone()
                .map(|p| GpuProcess {
                    pid: p.pid,
                    memory_bytes: Some(256 << 20),
                    gpu_instance: None,
                })
                .collect();
            gpu.device.samples = mine
                .map(|p| ProcessSample {
                    pid: p.pid,
                    timestamp_micros: stamp,
                    sm_percent: p.n % 7,
                })
                .collect();
        }
    });
}

fn main() {
    let seconds: u64 = std::env::var("FRAMESCALE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let node = FakeNode::new();
    let mut live: VecDeque<Pod> = (0..PODS).map(Pod::new).collect();
    let mut next = PODS;
    for p in &live {
        node.process(p.pid, "render", &p.name, "blender", p.n);
    }
    let kubelet_pods = |live: &VecDeque<Pod>| {
        live.iter()
            .map(|p| {
                let id = format!("{}::{}", p.uuid(), p.n / GPUS);
                pod("render", &p.name, "blender", "nvidia.com/gpu", &[&id])
            })
            .collect::<Vec<_>>()
    };
    let kubelet = FakeKubelet::start(kubelet_pods(&live));
    let gpus = scripted_gpus();
    set_processes(&live, &gpus, 1);

    // What this process holds before the exporter starts: the fake kubelet (its own runtime
    // and gRPC server) and the bench's fixtures.
    let before = rss_kib();
    let (addr, stop, exporter) = start_exporter(&node, &gpus, &kubelet);
    while TcpStream::connect(addr).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }

    println!("second  RSS MiB  pods tracked  GPU duty series  device poll ms");
    let started = Instant::now();
    let mut rss = Vec::new();
    for second in 1..=seconds {
        if second % 10 == 0 {
            for _ in 0..20 {
                let gone = live.pop_front().unwrap();
                node.remove_process(gone.pid, "render", &gone.name, "blender", gone.n);
                let new = Pod::new(next);
                next += 1;
                node.process(new.pid, "render", &new.name, "blender", new.n);
                live.push_back(new);
            }
            kubelet.set(kubelet_pods(&live));
        }
        set_processes(&live, &gpus, second * 1_000_000 + 1);
        let body = frames(&live);
        assert_eq!(http(addr, "POST", "/v1/frames", body.as_bytes()).0, 200);
        let (status, metrics) = http(addr, "GET", "/metrics", b"");
        assert_eq!(status, 200);
        if second == 30 || second % 60 == 0 || second == seconds {
            let duty = metrics
                .lines()
                .filter(|l| l.starts_with("framescale_gpu_duty_cycle_ratio{"))
                .count();
            let kib = rss_kib();
            rss.push((second, kib));
            println!(
                "{second:>6}  {:>7.1}  {:>12}  {duty:>15}  {:>14.2}",
                kib as f64 / 1024.0,
                gauge(&metrics, "framescale_exporter_pods_tracked"),
                gauge(&metrics, "framescale_exporter_device_poll_duration_seconds") * 1000.0
            );
        }
        let target = started + Duration::from_secs(second);
        if let Some(wait) = target.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let _ = stop.send(());
    exporter.join().unwrap();
    let (first, last) = (rss[0], rss[rss.len() - 1]);
    println!(
        "RSS before the exporter started {:.1} MiB; at {} s: {:.1} MiB; at {} s: {:.1} MiB ({} pods replaced)",
        before as f64 / 1024.0,
        first.0,
        first.1 as f64 / 1024.0,
        last.0,
        last.1 as f64 / 1024.0,
        next - PODS
    );
}
