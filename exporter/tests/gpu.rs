//! The real NVML driver on a real GPU, checked against `nvidia-smi` read at the same moment.
//! Ignored where there is no GPU; `scripts/test-gpu` runs them (and the load checks) from a
//! prebuilt bundle on any NVIDIA machine.

use std::process::Command;
use std::time::Duration;

use framescale_exporter::nvml::driver::{DeviceId, GpuDriver, NvmlDriver};

/// `nvidia-smi --query-gpu=<fields>` as rows of trimmed cells.
fn smi(fields: &str) -> Vec<Vec<String>> {
    let output = Command::new("nvidia-smi")
        .args([
            &format!("--query-gpu={fields}"),
            "--format=csv,noheader,nounits",
        ])
        .output()
        .expect("nvidia-smi runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.split(',').map(|c| c.trim().to_owned()).collect())
        .collect()
}

#[test]
#[ignore = "needs an NVIDIA GPU"]
fn nvml_sees_the_gpus_nvidia_smi_lists_with_their_memory() {
    let mut driver = NvmlDriver::init().expect("NVML loads");
    let gpus: Vec<_> = driver
        .gpus()
        .unwrap()
        .into_iter()
        .map(|gpu| gpu.expect("every GPU answers"))
        .collect();
    let rows = smi("uuid,memory.used");
    assert_eq!(gpus.len(), rows.len(), "{rows:?}");
    for (gpu, row) in gpus.iter().zip(&rows) {
        assert_eq!(gpu.uuid, row[0]);
        let ours = driver
            .memory_used(DeviceId {
                gpu: gpu.index,
                mig: None,
            })
            .unwrap() as f64
            / f64::from(1 << 20);
        let theirs: f64 = row[1].parse().unwrap();
        println!(
            "{}: memory used {ours:.0} MiB (nvidia-smi {theirs} MiB), GPM {}",
            gpu.uuid, gpu.gpm
        );
        assert!(
            (ours - theirs).abs() <= 64.0 + theirs * 0.02,
            "{ours} vs {theirs}"
        );
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU"]
fn every_figure_the_source_asks_for_can_be_read() {
    let mut driver = NvmlDriver::init().expect("NVML loads");
    let gpu = driver.gpus().unwrap().remove(0).expect("GPU 0 answers");
    let device = DeviceId {
        gpu: gpu.index,
        mig: None,
    };
    let busy = driver.utilization_gpu(device).unwrap();
    assert!(busy <= 100);
    let processes = driver.processes(device).unwrap();
    let samples = driver.process_samples(device, None).unwrap();
    println!(
        "{}: utilization.gpu {busy} %, {} processes, {} process samples buffered",
        gpu.uuid,
        processes.len(),
        samples.len()
    );
    if gpu.gpm {
        let earlier = driver.gpm_sample(gpu.index, None).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let later = driver.gpm_sample(gpu.index, None).unwrap();
        let sm = driver.gpm_sm_percent(&earlier, &later).unwrap();
        println!("{}: GPM SM utilization over 200 ms {sm:.2} %", gpu.uuid);
        assert!((0.0..=100.0).contains(&sm), "{sm}");
    } else {
        println!(
            "{}: no GPM (older than Hopper): utilization.gpu is the device figure",
            gpu.uuid
        );
    }
}
