//! Helpers for tests, built for this crate's own tests and with the `testing` feature (the CLI's
//! integration tests turn it on): certificate authorities, and a fake Kubernetes API that serves
//! pods and Deployments the way kube-apiserver does — list, then watch from the list's
//! `resourceVersion` as newline-delimited events, with the metadata-only form
//! (`PartialObjectMetadata`) when the `Accept` header asks for it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};
use tokio::sync::watch;

/// A certificate authority.
pub struct Ca {
    /// Its certificate, PEM.
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// A new CA named `name`.
    ///
    /// # Panics
    /// If rcgen cannot make it.
    #[must_use]
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A client certificate with common name `cn` and organization(s) `orgs` (rcgen keeps the
    /// last): (DER, cert PEM, key PEM).
    ///
    /// # Panics
    /// If rcgen cannot make it.
    #[must_use]
    pub fn client(&self, cn: &str, orgs: &[&str]) -> (CertificateDer<'static>, String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        for org in orgs {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *org);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.der().clone(), cert.pem(), key.serialize_pem())
    }

    /// A serving certificate for `names` (DNS names or IP addresses): (cert PEM, key PEM).
    ///
    /// # Panics
    /// If rcgen cannot make it.
    #[must_use]
    pub fn server(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A kind of object the fake cluster keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `v1` Pod, served at `/api/v1/pods`.
    Pod,
    /// `apps/v1` Deployment, served at `/apis/apps/v1/deployments`.
    Deployment,
    /// `discovery.k8s.io/v1` EndpointSlice, served at
    /// `/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices`.
    EndpointSlice,
}

impl Kind {
    fn api_version(self) -> &'static str {
        match self {
            Kind::Pod => "v1",
            Kind::Deployment => "apps/v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
        }
    }

    fn list_kind(self) -> &'static str {
        match self {
            Kind::Pod => "PodList",
            Kind::Deployment => "DeploymentList",
            Kind::EndpointSlice => "EndpointSliceList",
        }
    }
}

/// Pods and Deployments in memory, served as kube-apiserver's list and watch.
#[derive(Clone)]
pub struct FakeCluster {
    objects: Arc<Mutex<Objects>>,
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct Objects {
    resource_version: u64,
    current: BTreeMap<(Kind, String, String), Value>,
    history: Vec<Change>,
    lists: BTreeMap<Kind, usize>,
    watches: BTreeMap<Kind, usize>,
}

struct Change {
    resource_version: u64,
    kind: Kind,
    event: &'static str,
    object: Value,
}

impl Default for FakeCluster {
    fn default() -> Self {
        FakeCluster {
            objects: Arc::default(),
            changed: watch::channel(0).0,
        }
    }
}

impl FakeCluster {
    /// An empty cluster.
    #[must_use]
    pub fn new() -> Self {
        FakeCluster::default()
    }

    /// Creates or replaces pod `namespace/name` with `labels` (and the annotations and status a
    /// real pod carries, which a metadata-only watch must not need).
    pub fn apply_pod(&self, namespace: &str, name: &str, labels: &[(&str, &str)]) {
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        let object = json!({
            "metadata": {
                "name": name, "namespace": namespace, "uid": format!("uid-{namespace}-{name}"),
                "labels": labels,
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
            },
            "spec": {"containers": [{"name": "worker", "image": "framescale:test"}]},
            "status": {"phase": "Running"},
        });
        self.apply(Kind::Pod, namespace, name, object);
    }

    /// Creates or replaces Deployment `namespace/name` with `selector` (a `metav1.LabelSelector`).
    pub fn apply_deployment(&self, namespace: &str, name: &str, selector: &Value) {
        let object = json!({
            "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{namespace}-{name}")},
            "spec": {
                "replicas": 1,
                "selector": selector,
                "template": {"spec": {"containers": [{"name": "worker", "image": "framescale:test"}]}},
            },
            "status": {"replicas": 1},
        });
        self.apply(Kind::Deployment, namespace, name, object);
    }

    /// Creates or replaces EndpointSlice `namespace/name` of Service `service`: one endpoint
    /// per `(address, ready)`, all on port `port` named `metrics`, as the EndpointSlice
    /// controller writes them for a headless Service of a DaemonSet.
    pub fn apply_endpoint_slice(
        &self,
        namespace: &str,
        name: &str,
        service: &str,
        endpoints: &[(&str, bool)],
        port: u16,
    ) {
        let endpoints: Vec<Value> = endpoints
            .iter()
            .map(|(address, ready)| {
                json!({
                    "addresses": [address],
                    "conditions": {"ready": ready, "serving": ready, "terminating": false},
                    "nodeName": format!("node-{address}"),
                    "targetRef": {"kind": "Pod", "namespace": namespace, "name": format!("exporter-{address}")},
                })
            })
            .collect();
        let object = json!({
            "metadata": {
                "name": name, "namespace": namespace, "uid": format!("uid-{namespace}-{name}"),
                "labels": {"kubernetes.io/service-name": service, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": "metrics", "port": port, "protocol": "TCP"}],
        });
        self.apply(Kind::EndpointSlice, namespace, name, object);
    }

    /// Deletes an EndpointSlice; a no-op if there is none.
    pub fn delete_endpoint_slice(&self, namespace: &str, name: &str) {
        self.delete(Kind::EndpointSlice, namespace, name);
    }

    /// Deletes a pod; a no-op if there is none.
    pub fn delete_pod(&self, namespace: &str, name: &str) {
        self.delete(Kind::Pod, namespace, name);
    }

    fn delete(&self, kind: Kind, namespace: &str, name: &str) {
        let mut objects = self.lock();
        let Some(mut object) =
            objects
                .current
                .remove(&(kind, namespace.to_owned(), name.to_owned()))
        else {
            return;
        };
        objects.resource_version += 1;
        let version = objects.resource_version;
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        objects.history.push(Change {
            resource_version: version,
            kind,
            event: "DELETED",
            object,
        });
        drop(objects);
        self.changed.send_replace(version);
    }

    /// How many list and watch requests were made for `kind`.
    #[must_use]
    pub fn requests(&self, kind: Kind) -> (usize, usize) {
        let objects = self.lock();
        (
            objects.lists.get(&kind).copied().unwrap_or(0),
            objects.watches.get(&kind).copied().unwrap_or(0),
        )
    }

    /// The routes of the cluster-wide list and watch of pods and Deployments, of the namespaced
    /// EndpointSlices and of the `discovery.k8s.io/v1` discovery document, to serve alone or
    /// merged with other fake API routes.
    pub fn router(&self) -> axum::Router {
        let (pods, deployments, slices) = (self.clone(), self.clone(), self.clone());
        axum::Router::new()
            .route(
                "/apis/discovery.k8s.io/v1",
                get(|| async {
                    axum::Json(json!({
                        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "discovery.k8s.io/v1",
                        "resources": [{"name": "endpointslices", "singularName": "endpointslice", "namespaced": true,
                                       "kind": "EndpointSlice", "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}],
                    }))
                }),
            )
            .route(
                "/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
                get(move |uri: Uri, headers: HeaderMap| {
                    std::future::ready(serve(slices.clone(), Kind::EndpointSlice, &uri, &headers))
                }),
            )
            .route(
                "/api/v1/pods",
                get(move |uri: Uri, headers: HeaderMap| {
                    std::future::ready(serve(pods.clone(), Kind::Pod, &uri, &headers))
                }),
            )
            .route(
                "/apis/apps/v1/deployments",
                get(move |uri: Uri, headers: HeaderMap| {
                    std::future::ready(serve(deployments.clone(), Kind::Deployment, &uri, &headers))
                }),
            )
    }

    fn apply(&self, kind: Kind, namespace: &str, name: &str, mut object: Value) {
        let mut objects = self.lock();
        objects.resource_version += 1;
        let version = objects.resource_version;
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        let key = (kind, namespace.to_owned(), name.to_owned());
        let event = if objects.current.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        objects.current.insert(key, object.clone());
        objects.history.push(Change {
            resource_version: version,
            kind,
            event,
            object,
        });
        drop(objects);
        self.changed.send_replace(version);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Objects> {
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The first change of `kind` after `after` that `wanted` keeps, as a watch event line;
    /// the version of the last change looked at, so changes not kept are passed over.
    fn next_event(
        &self,
        kind: Kind,
        after: u64,
        metadata_only: bool,
        wanted: &Wanted,
    ) -> Option<(u64, Option<Bytes>)> {
        let objects = self.lock();
        let change = objects
            .history
            .iter()
            .find(|c| c.kind == kind && c.resource_version > after)?;
        if !wanted.keeps(&change.object) {
            return Some((change.resource_version, None));
        }
        let object = shape(kind, &change.object, metadata_only);
        let mut line = json!({"type": change.event, "object": object}).to_string();
        line.push('\n');
        Some((change.resource_version, Some(Bytes::from(line))))
    }
}

/// What a list or watch asked for: a namespace (from the path) and `key=value` label
/// requirements (the `labelSelector` the watchers send).
#[derive(Clone, Default)]
struct Wanted {
    namespace: Option<String>,
    labels: Vec<(String, String)>,
}

impl Wanted {
    fn of(uri: &Uri, query: &BTreeMap<&str, &str>) -> Self {
        let namespace = uri
            .path()
            .split_once("/namespaces/")
            .and_then(|(_, rest)| rest.split('/').next())
            .map(str::to_owned);
        let selector = query
            .get("labelSelector")
            .map(|s| percent_decode(s))
            .unwrap_or_default();
        let labels = selector
            .split(',')
            .filter_map(|r| r.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Wanted { namespace, labels }
    }

    fn keeps(&self, object: &Value) -> bool {
        let metadata = &object["metadata"];
        self.namespace
            .as_ref()
            .is_none_or(|ns| metadata["namespace"].as_str() == Some(ns))
            && self
                .labels
                .iter()
                .all(|(k, v)| metadata["labels"][k].as_str() == Some(v.as_str()))
    }
}

fn percent_decode(text: &str) -> String {
    crate::request::percent_decode(text, true).unwrap_or_else(|| text.to_owned())
}

/// An object as the client asked for it: whole, or only its metadata.
fn shape(kind: Kind, object: &Value, metadata_only: bool) -> Value {
    if metadata_only {
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": object["metadata"]})
    } else {
        let mut object = object.clone();
        object["apiVersion"] = json!(kind.api_version());
        object["kind"] = json!(format!("{kind:?}"));
        object
    }
}

fn serve(cluster: FakeCluster, kind: Kind, uri: &Uri, headers: &HeaderMap) -> Response {
    let query: BTreeMap<&str, &str> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .collect();
    let metadata_only = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("as=PartialObjectMetadata"));
    let wanted = Wanted::of(uri, &query);
    if query
        .get("watch")
        .is_some_and(|w| *w == "true" || *w == "1")
    {
        *cluster.lock().watches.entry(kind).or_default() += 1;
        let after: u64 = query
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let changes = cluster.changed.subscribe();
        let events = futures_util::stream::unfold(
            (cluster, after, changes, wanted),
            move |(cluster, mut after, mut changes, wanted)| async move {
                loop {
                    changes.borrow_and_update();
                    match cluster.next_event(kind, after, metadata_only, &wanted) {
                        Some((version, Some(line))) => {
                            return Some((
                                Ok::<_, Infallible>(line),
                                (cluster, version, changes, wanted),
                            ));
                        }
                        Some((version, None)) => after = version,
                        None => changes.changed().await.ok()?,
                    }
                }
            },
        );
        return (
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(events),
        )
            .into_response();
    }
    let mut objects = cluster.lock();
    *objects.lists.entry(kind).or_default() += 1;
    let items: Vec<Value> = objects
        .current
        .iter()
        .filter(|((k, _, _), object)| *k == kind && wanted.keeps(object))
        .map(|(_, object)| {
            let mut item = shape(kind, object, metadata_only);
            // Items of a list carry no type fields, as kube-apiserver writes them.
            if let Some(fields) = item.as_object_mut() {
                fields.remove("apiVersion");
                fields.remove("kind");
            }
            item
        })
        .collect();
    let (api_version, list_kind) = if metadata_only {
        ("meta.k8s.io/v1", "PartialObjectMetadataList")
    } else {
        (kind.api_version(), kind.list_kind())
    };
    axum::Json(json!({
        "apiVersion": api_version,
        "kind": list_kind,
        "metadata": {"resourceVersion": objects.resource_version.to_string()},
        "items": items,
    }))
    .into_response()
}
