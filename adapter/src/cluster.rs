//! Pods and Deployments from the Kubernetes API, kept in memory by watches (kube's reflector), so
//! that no request lists pods: a selector is matched against the watched pods' labels, a
//! Deployment is resolved through its watched `spec.selector`.
//!
//! Pods are watched as metadata only (`PartialObjectMetadata`: labels are all the adapter needs)
//! and keep only name, namespace and labels; Deployments keep only those and their selector. Until both
//! watches have listed once, requests that need pods answer 503 and `/readyz` says why. When the
//! API cannot be reached the watches retry with kube's default backoff and requests are answered
//! from the last state seen, as every informer-based component does.
//!
//! Needs `list` and `watch` on `pods` and `deployments.apps` in every namespace.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};

use crate::pods::{ListError, PodLister};
use crate::selector::Selector;

/// Watched pods and Deployments of every namespace.
pub struct ClusterPods {
    pods: Store<PartialObjectMeta<Pod>>,
    deployments: Store<Deployment>,
    synced: Arc<AtomicBool>,
}

impl ClusterPods {
    /// Starts the watches on the current Tokio runtime; they run as long as it does.
    #[must_use]
    pub fn watch(client: &kube::Client) -> Self {
        let (pods, writer) = reflector::store();
        let pod_events = watcher(
            Api::<PartialObjectMeta<Pod>>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .modify(|pod| pod.metadata = identity_and_labels(&mut pod.metadata))
        .reflect(writer);
        tokio::spawn(drive("pods", pod_events));

        let (deployments, writer) = reflector::store();
        let deployment_events = watcher(
            Api::<Deployment>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .modify(|deployment: &mut Deployment| {
            deployment.metadata = identity_and_labels(&mut deployment.metadata);
            deployment.status = None;
            if let Some(spec) = &mut deployment.spec {
                spec.template = PodTemplateSpec::default();
            }
        })
        .reflect(writer);
        tokio::spawn(drive("deployments", deployment_events));

        let synced = Arc::new(AtomicBool::new(false));
        let (pod_store, deployment_store, flag) =
            (pods.clone(), deployments.clone(), synced.clone());
        tokio::spawn(async move {
            if pod_store.wait_until_ready().await.is_ok()
                && deployment_store.wait_until_ready().await.is_ok()
            {
                flag.store(true, Ordering::Release);
                tracing::info!(
                    pods = pod_store.len(),
                    deployments = deployment_store.len(),
                    "Kubernetes watches synced"
                );
            }
        });
        ClusterPods {
            pods,
            deployments,
            synced,
        }
    }

    /// Whether both watches have listed once.
    #[must_use]
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// How many pods are known.
    #[must_use]
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    fn ensure_synced(&self) -> Result<(), ListError> {
        if self.is_synced() {
            Ok(())
        } else {
            Err(ListError::NotSynced)
        }
    }
}

/// The part of an object's metadata the adapter keeps: name, namespace and labels (owner
/// references, annotations, managed fields and the rest would be most of the memory).
fn identity_and_labels(metadata: &mut ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: metadata.name.take(),
        namespace: metadata.namespace.take(),
        labels: metadata.labels.take(),
        ..ObjectMeta::default()
    }
}

/// Polls a reflector's event stream for ever, logging failures (the stream retries with backoff).
async fn drive<K>(what: &'static str, events: impl Stream<Item = Result<K, watcher::Error>>) {
    let mut events = std::pin::pin!(events);
    let mut failing = false;
    while let Some(event) = events.next().await {
        match event {
            Ok(_) if failing => {
                failing = false;
                tracing::info!(what, "Kubernetes watch recovered");
            }
            Ok(_) => {}
            Err(error) => {
                failing = true;
                tracing::warn!(what, %error, "Kubernetes watch failed; retrying with backoff, answering from the last state seen");
            }
        }
    }
}

impl PodLister for ClusterPods {
    fn pods(&self, namespace: &str, selector: &Selector) -> Result<Vec<String>, ListError> {
        self.ensure_synced()?;
        let no_labels = BTreeMap::new();
        Ok(self
            .pods
            .state_filter(|pod| {
                pod.metadata.namespace.as_deref() == Some(namespace)
                    && selector.matches(pod.metadata.labels.as_ref().unwrap_or(&no_labels))
            })
            .iter()
            .filter_map(|pod| pod.metadata.name.clone())
            .collect())
    }

    fn deployment_selector(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Selector>, ListError> {
        self.ensure_synced()?;
        let Some(deployment) = self
            .deployments
            .get(&ObjectRef::new(name).within(namespace))
        else {
            return Ok(None);
        };
        let Some(spec) = &deployment.spec else {
            return Ok(None);
        };
        Selector::from_label_selector(&spec.selector)
            .map(Some)
            .map_err(|source| ListError::BadDeploymentSelector {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::testing::{FakeCluster, Kind};

    async fn serve(cluster: &FakeCluster) -> kube::Client {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(axum::serve(listener, cluster.router()).into_future());
        kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap()
    }

    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        for _ in 0..200 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    fn names(lister: &ClusterPods, namespace: &str, selector: &str) -> Vec<String> {
        let mut names = lister
            .pods(namespace, &Selector::parse(selector).unwrap())
            .unwrap();
        names.sort();
        names
    }

    #[tokio::test]
    async fn selectors_and_deployments_follow_the_watched_cluster() {
        let cluster = FakeCluster::new();
        cluster.apply_pod("render", "w-0", &[("app", "w")]);
        cluster.apply_pod("render", "w-1", &[("app", "w"), ("tier", "gpu")]);
        cluster.apply_pod("render", "x-0", &[("app", "x")]);
        cluster.apply_pod("shop", "w-9", &[("app", "w")]);
        cluster.apply_deployment("render", "w", &json!({"matchLabels": {"app": "w"}}));
        let lister = ClusterPods::watch(&serve(&cluster).await);
        let error = lister.pods("render", &Selector::default());
        assert!(
            error.is_err() || lister.is_synced(),
            "answers before the first list must be errors"
        );
        eventually("the first list", || lister.is_synced()).await;

        assert_eq!(names(&lister, "render", "app=w"), ["w-0", "w-1"]);
        assert_eq!(names(&lister, "render", "tier"), ["w-1"]);
        assert_eq!(names(&lister, "render", ""), ["w-0", "w-1", "x-0"]);
        assert_eq!(names(&lister, "shop", "app=w"), ["w-9"]);
        assert_eq!(
            lister.deployment_selector("render", "w").unwrap(),
            Some(Selector::parse("app=w").unwrap())
        );
        assert_eq!(lister.deployment_selector("shop", "w").unwrap(), None);

        // Changes arrive through the watch: a new pod, a relabelled one, a deleted one, a
        // Deployment whose selector changed.
        cluster.apply_pod("render", "w-2", &[("app", "w")]);
        cluster.apply_pod("render", "x-0", &[("app", "w")]);
        cluster.delete_pod("render", "w-0");
        cluster.apply_deployment(
            "render",
            "w",
            &json!({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}),
        );
        eventually("the watched changes", || {
            names(&lister, "render", "app=w") == ["w-1", "w-2", "x-0"]
                && lister.deployment_selector("render", "w").unwrap()
                    == Some(Selector::parse("tier").unwrap())
        })
        .await;

        // One list and one watch per kind, however many questions were asked.
        assert_eq!(cluster.requests(Kind::Pod), (1, 1));
        assert_eq!(cluster.requests(Kind::Deployment), (1, 1));
        assert_eq!(lister.pod_count(), 4);
    }
}
