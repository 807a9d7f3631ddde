//! A fake kube-apiserver for the adapter's delegated auth and pod watches, and client
//! certificates for its callers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::routing::{get, post};
use framescale_adapter::testing::{Ca, FakeCluster};
use serde_json::{Value, json};

/// Writes a client certificate for `cn` signed by `ca` into `dir`; returns its and its key's paths.
pub fn client_cert(
    ca: &Ca,
    dir: &Path,
    file: &str,
    cn: &str,
    org: Option<&str>,
) -> (PathBuf, PathBuf) {
    let (_, cert, key) = ca.client(cn, org.as_slice());
    let (cert_path, key_path) = (
        dir.join(format!("{file}.crt")),
        dir.join(format!("{file}.key")),
    );
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    (cert_path, key_path)
}

/// What the fake kube-apiserver was asked.
#[derive(Default)]
pub struct Seen {
    /// TokenReviews made.
    pub token_reviews: AtomicU64,
    /// The spec of every SubjectAccessReview.
    pub access_reviews: Mutex<Vec<Value>>,
}

/// Serves the Kubernetes API calls the adapter makes (the ConfigMap, reviews, and the list and
/// watch of `cluster`'s pods and Deployments); returns its address.
pub fn fake_apiserver(
    runtime: &tokio::runtime::Runtime,
    config_map: Value,
    seen: Arc<Seen>,
    cluster: &FakeCluster,
) -> SocketAddr {
    let tokens = seen.clone();
    let app = cluster
        .router()
        .route(
            "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication",
            get(move || {
                let config_map = config_map.clone();
                async move { Json(config_map) }
            }),
        )
        .route(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            post(move |Json(review): Json<Value>| {
                tokens.token_reviews.fetch_add(1, Ordering::Relaxed);
                async move {
                    let user = match review["spec"]["token"].as_str() {
                        Some("jane-token") => Some(("jane", "sre")),
                        Some("mallory-token") => Some(("mallory", "visitors")),
                        _ => None,
                    };
                    let status = match user {
                        Some((name, group)) => json!({"authenticated": true, "user": {"username": name, "uid": format!("uid-{name}"), "groups": [group, "system:authenticated"]}}),
                        None => json!({"authenticated": false, "error": "invalid token"}),
                    };
                    Json(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "metadata": {}, "spec": review["spec"], "status": status}))
                }
            }),
        )
        .route(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            post(move |Json(review): Json<Value>| {
                seen.access_reviews.lock().unwrap().push(review["spec"].clone());
                async move {
                    let user = review["spec"]["user"].as_str().unwrap_or_default();
                    let namespace = review["spec"]["resourceAttributes"]["namespace"].as_str();
                    let allowed = user != "mallory" && namespace.is_none_or(|ns| ns == "render");
                    Json(json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "metadata": {}, "spec": review["spec"], "status": {"allowed": allowed}}))
                }
            }),
        );
    serve(runtime, app)
}

/// Serves `app` on a free port of 127.0.0.1 from `runtime`; returns its address.
pub fn serve(runtime: &tokio::runtime::Runtime, app: axum::Router) -> SocketAddr {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move { axum::serve(listener, app).await });
    addr
}

/// The `extension-apiserver-authentication` ConfigMap a kube-apiserver publishes: client
/// certificates signed by `client`, front-proxy certificates by `front` (named
/// `front-proxy-client`), users and groups in `X-Remote-*` headers.
pub fn authentication_config_map(front: &Ca, client: &Ca) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
        "data": {
            "client-ca-file": client.pem,
            "requestheader-client-ca-file": front.pem,
            "requestheader-allowed-names": "[\"front-proxy-client\"]",
            "requestheader-username-headers": "[\"X-Remote-User\"]",
            "requestheader-group-headers": "[\"X-Remote-Group\"]",
            "requestheader-extra-headers-prefix": "[\"X-Remote-Extra-\"]",
        }
    })
}

/// Writes a kubeconfig for the API server at `apiserver` (plain HTTP, a bearer token) as
/// `dir/kubeconfig`; returns its path.
pub fn kubeconfig(dir: &Path, apiserver: SocketAddr) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: 'http://{apiserver}'}}\nusers:\n- name: adapter\n  user: {{token: adapter-sa-token}}\n\
             contexts:\n- name: c\n  context: {{cluster: c, user: adapter}}\ncurrent-context: c\n"
        ),
    )
    .unwrap();
    path
}
