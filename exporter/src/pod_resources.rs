//! Which pod and container hold each device, as the kubelet says: the pod-resources API
//! (`v1.PodResourcesLister/List`, gRPC over the unix socket
//! `/var/lib/kubelet/pod-resources/kubelet.sock`).
//!
//! The kubelet lists the pods of its node with the devices each container was given by a
//! device plugin: for NVIDIA's, GPU UUIDs under `nvidia.com/gpu` and MIG device UUIDs under
//! `nvidia.com/mig-*` (or `nvidia.com/gpu` with the `single` MIG strategy); a time-sliced GPU
//! is handed out as replicas `<uuid>::<n>`, so several containers hold the same UUID.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// The client and server generated from `proto/podresources/v1/api.proto`.
#[allow(missing_docs, clippy::pedantic, reason = "generated code")]
pub mod v1 {
    tonic::include_proto!("v1");
}

/// The kubelet's default socket.
pub const DEFAULT_SOCKET: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";

/// One device a container holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldDevice {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod.
    pub pod: String,
    /// The container.
    pub container: String,
    /// The extended resource (`nvidia.com/gpu`).
    pub resource: String,
    /// The device's UUID, without a time-slicing replica suffix.
    pub uuid: String,
    /// Whether the device was handed out as a replica of a shared (time-sliced) GPU.
    pub replica: bool,
}

/// Why the kubelet could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket cannot be reached.
    #[error("cannot reach the kubelet's pod-resources socket {}: {source}", path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: tonic::transport::Error,
    },
    /// The call failed.
    #[error("pod-resources List failed: {0}")]
    Call(#[from] tonic::Status),
}

/// A client of one kubelet's pod-resources socket. The connection is kept between calls and
/// made again after a call fails.
#[derive(Debug)]
pub struct PodResources {
    path: PathBuf,
    timeout: Duration,
    channel: Mutex<Option<Channel>>,
}

impl PodResources {
    /// A client of the socket at `path`; each call gives up after `timeout`.
    #[must_use]
    pub fn new(path: &Path, timeout: Duration) -> Self {
        PodResources {
            path: path.to_owned(),
            timeout,
            channel: Mutex::new(None),
        }
    }

    /// The socket.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every device of `resource_prefix` (`nvidia.com/`) that a container of this node holds.
    pub async fn held_devices(&self, resource_prefix: &str) -> Result<Vec<HeldDevice>, Error> {
        let kept = self.lock().clone();
        let channel = if let Some(channel) = kept {
            channel
        } else {
            let channel = self.connect().await?;
            *self.lock() = Some(channel.clone());
            channel
        };
        let mut client = v1::pod_resources_lister_client::PodResourcesListerClient::new(channel);
        let mut request = tonic::Request::new(v1::ListPodResourcesRequest {});
        request.set_timeout(self.timeout);
        match client.list(request).await {
            Ok(response) => Ok(held(&response.into_inner(), resource_prefix)),
            Err(status) => {
                self.lock().take();
                Err(Error::Call(status))
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Channel>> {
        self.channel.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn connect(&self) -> Result<Channel, Error> {
        let path = self.path.clone();
        // The URI is not used to connect: every connection is the unix socket.
        Endpoint::from_static("http://kubelet.pod-resources")
            .connect_timeout(self.timeout)
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }))
            .await
            .map_err(|source| Error::Connect {
                path: self.path.clone(),
                source,
            })
    }
}

/// The devices of `resource_prefix` in a List answer, one per container and device.
#[must_use]
pub fn held(response: &v1::ListPodResourcesResponse, resource_prefix: &str) -> Vec<HeldDevice> {
    let mut found = Vec::new();
    for pod in &response.pod_resources {
        for container in &pod.containers {
            for devices in &container.devices {
                if !devices.resource_name.starts_with(resource_prefix) {
                    continue;
                }
                for id in &devices.device_ids {
                    let (uuid, replica) = match id.split_once("::") {
                        Some((uuid, _)) => (uuid, true),
                        None => (id.as_str(), false),
                    };
                    found.push(HeldDevice {
                        namespace: pod.namespace.clone(),
                        pod: pod.name.clone(),
                        container: container.name.clone(),
                        resource: devices.resource_name.clone(),
                        uuid: uuid.to_owned(),
                        replica,
                    });
                }
            }
        }
    }
    found
}

#[cfg(any(test, feature = "testing"))]
pub mod fake;
#[cfg(test)]
mod tests;
