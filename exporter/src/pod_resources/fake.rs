//! A kubelet's pod-resources socket for tests: the generated `v1` server on a unix socket in a
//! temporary directory, on its own thread and runtime, answering `List` and `Get` from pods the
//! test sets (and changes) as a kubelet would.

#![allow(
    clippy::missing_panics_doc,
    clippy::must_use_candidate,
    reason = "test helpers: they panic when the test machine cannot make a temporary directory or socket"
)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::v1;
use super::v1::pod_resources_lister_server::{PodResourcesLister, PodResourcesListerServer};

/// A fake kubelet; stops when dropped.
pub struct FakeKubelet {
    /// Its socket.
    pub socket: PathBuf,
    pods: Arc<Mutex<Vec<v1::PodResources>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

struct Lister(Arc<Mutex<Vec<v1::PodResources>>>);

#[tonic::async_trait]
impl PodResourcesLister for Lister {
    async fn list(
        &self,
        _: tonic::Request<v1::ListPodResourcesRequest>,
    ) -> Result<tonic::Response<v1::ListPodResourcesResponse>, tonic::Status> {
        let pod_resources = self.0.lock().unwrap().clone();
        Ok(tonic::Response::new(v1::ListPodResourcesResponse {
            pod_resources,
        }))
    }

    async fn get(
        &self,
        request: tonic::Request<v1::GetPodResourcesRequest>,
    ) -> Result<tonic::Response<v1::GetPodResourcesResponse>, tonic::Status> {
        let request = request.into_inner();
        let pods = self.0.lock().unwrap();
        let pod = pods
            .iter()
            .find(|p| p.name == request.pod_name && p.namespace == request.pod_namespace)
            .cloned()
            .ok_or_else(|| {
                // The kubelet's own wording.
                tonic::Status::not_found(format!(
                    "pod {} in namespace {} not found",
                    request.pod_name, request.pod_namespace
                ))
            })?;
        Ok(tonic::Response::new(v1::GetPodResourcesResponse {
            pod_resources: Some(pod),
        }))
    }
}

impl FakeKubelet {
    /// Serves `pods` on a new socket.
    pub fn start(pods: Vec<v1::PodResources>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("kubelet.sock");
        let shared = Arc::new(Mutex::new(pods));
        let (stop, stopped) = oneshot::channel::<()>();
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        let service = PodResourcesListerServer::new(Lister(shared.clone()));
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::UnixListener::from_std(listener).unwrap();
                let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
                tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        FakeKubelet {
            socket,
            pods: shared,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// Replaces the pods it lists.
    pub fn set(&self, pods: Vec<v1::PodResources>) {
        *self.pods.lock().unwrap() = pods;
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A pod whose one container holds `ids` of `resource`, with the NUMA and CPU detail a kubelet
/// adds.
pub fn pod(
    namespace: &str,
    name: &str,
    container: &str,
    resource: &str,
    ids: &[&str],
) -> v1::PodResources {
    v1::PodResources {
        name: name.into(),
        namespace: namespace.into(),
        containers: vec![v1::ContainerResources {
            name: container.into(),
            devices: vec![v1::ContainerDevices {
                resource_name: resource.into(),
                device_ids: ids.iter().map(|id| (*id).to_owned()).collect(),
                topology: Some(v1::TopologyInfo {
                    nodes: vec![v1::NumaNode { id: 0 }],
                }),
            }],
            cpu_ids: vec![2, 3],
        }],
    }
}
