//! The client against a fake kubelet on a unix socket, speaking the `v1` proto.

use super::fake::{FakeKubelet, pod};
use super::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn held(device: (&str, &str, &str, &str, &str, bool)) -> HeldDevice {
    let (namespace, pod, container, resource, uuid, replica) = device;
    HeldDevice {
        namespace: namespace.into(),
        pod: pod.into(),
        container: container.into(),
        resource: resource.into(),
        uuid: uuid.into(),
        replica,
    }
}

#[test]
fn whole_gpus_mig_devices_and_replicas_as_a_kubelet_lists_them() {
    let kubelet = FakeKubelet::start(vec![
        pod(
            "render",
            "blender-0",
            "blender",
            "nvidia.com/gpu",
            &["GPU-aaaa", "GPU-bbbb"],
        ),
        pod(
            "render",
            "small-0",
            "worker",
            "nvidia.com/mig-1g.18gb",
            &["MIG-cccc"],
        ),
        pod(
            "render",
            "shared-0",
            "worker",
            "nvidia.com/gpu",
            &["GPU-dddd::0"],
        ),
        pod(
            "render",
            "shared-1",
            "worker",
            "nvidia.com/gpu",
            &["GPU-dddd::3"],
        ),
        pod("other", "nic-0", "app", "example.com/nic", &["nic-1"]),
    ]);
    let client = PodResources::new(&kubelet.socket, Duration::from_secs(2));
    // One runtime for the client's life, as the NVML source keeps one: the kept connection
    // runs on it.
    let runtime = runtime();
    let devices = runtime
        .block_on(client.held_devices("nvidia.com/"))
        .unwrap();
    assert_eq!(
        devices,
        [
            held((
                "render",
                "blender-0",
                "blender",
                "nvidia.com/gpu",
                "GPU-aaaa",
                false
            )),
            held((
                "render",
                "blender-0",
                "blender",
                "nvidia.com/gpu",
                "GPU-bbbb",
                false
            )),
            held((
                "render",
                "small-0",
                "worker",
                "nvidia.com/mig-1g.18gb",
                "MIG-cccc",
                false
            )),
            held((
                "render",
                "shared-0",
                "worker",
                "nvidia.com/gpu",
                "GPU-dddd",
                true
            )),
            held((
                "render",
                "shared-1",
                "worker",
                "nvidia.com/gpu",
                "GPU-dddd",
                true
            )),
        ]
    );

    // A pod that goes away is gone from the next answer.
    kubelet.set(vec![pod(
        "render",
        "small-0",
        "worker",
        "nvidia.com/mig-1g.18gb",
        &["MIG-cccc"],
    )]);
    let devices = runtime
        .block_on(client.held_devices("nvidia.com/"))
        .unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].pod, "small-0");
}

#[test]
fn a_missing_socket_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubelet.sock");
    let client = PodResources::new(&path, Duration::from_secs(1));
    let error = runtime()
        .block_on(client.held_devices("nvidia.com/"))
        .unwrap_err();
    assert!(matches!(error, Error::Connect { .. }), "{error}");
    assert!(error.to_string().contains("kubelet.sock"), "{error}");
}
