//! Who is asking, and may they: authentication and authorization delegated to the cluster, as
//! an aggregated API server does it (`docs/reference/custom-metrics-api.md` §7.3–7.4).
//!
//! Authentication, in order:
//! 1. **Front proxy.** A TLS client certificate that verifies against the request-header CA, with
//!    a common name in the allowed names (any, when the list is empty): the user is the first
//!    username header, the groups every group header, the extras the `X-Remote-Extra-*` headers.
//!    These headers are read from the front proxy only, never from another client.
//! 2. **Client certificate** verified against the client CA: the user is the CN, the groups the Os.
//! 3. **Bearer token**, checked with a TokenReview; results kept 10 s.
//!
//! Authorization: a SubjectAccessReview per request shape, allowed and denied answers kept 10 s;
//! the group `system:masters` is allowed without one (the aggregator's health check runs as it).
//! The settings come from the ConfigMap `kube-system/extension-apiserver-authentication`
//! ([`Delegation`]). The HTTP layer that applies all this to each request is [`middleware`].

pub mod middleware;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::core::v1::ConfigMap;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use serde_json::{Value, json};

use crate::wire::GROUP;

/// How long TokenReview and SubjectAccessReview answers are reused.
pub const REVIEW_TTL: Duration = Duration::from_secs(10);

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// User name.
    pub user: String,
    /// UID, when known.
    pub uid: Option<String>,
    /// Groups.
    pub groups: Vec<String>,
    /// Extra attributes.
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Why a request is refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No method authenticated the caller (401).
    #[error("Unauthorized: {0}")]
    Unauthenticated(#[from] Unauthenticated),
    /// The caller may not do this (403).
    #[error("forbidden: User {user:?} cannot get path {path:?} in API group {GROUP:?}")]
    Forbidden {
        /// Who asked.
        user: String,
        /// For what.
        path: String,
    },
    /// A review could not be made (503).
    #[error("cannot check access: {review}: {source}")]
    ReviewFailed {
        /// `TokenReview` or `SubjectAccessReview`.
        review: &'static str,
        /// Why.
        source: ReviewError,
    },
}

/// Why no method authenticated a caller.
#[derive(Debug, thiserror::Error)]
pub enum Unauthenticated {
    /// Neither a certificate nor a token was presented.
    #[error("no client certificate and no bearer token")]
    NoCredentials,
    /// The front proxy's certificate has a common name that is not allowed.
    #[error("front-proxy certificate common name {0:?} is not an allowed name")]
    NameNotAllowed(String),
    /// The front proxy named no user.
    #[error("the front proxy sent no user header")]
    NoUserHeader,
    /// The certificate chains to neither CA.
    #[error("the client certificate is signed by neither the client CA nor the request-header CA")]
    UntrustedCertificate,
    /// The certificate verified but cannot be parsed.
    #[error("unreadable client certificate: {0}")]
    UnreadableCertificate(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
    /// The TokenReview did not authenticate the token.
    #[error("the bearer token was not accepted (TokenReview)")]
    TokenRejected,
}

/// Why a review could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The Kubernetes API refused or could not be reached.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// The review request cannot be built from the caller's attributes.
    #[error("cannot build the review: {0}")]
    Build(#[from] serde_json::Error),
}

/// Why the delegation settings cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DelegationError {
    /// The ConfigMap cannot be read.
    #[error("cannot read ConfigMap kube-system/extension-apiserver-authentication: {0}")]
    Unreadable(#[source] kube::Error),
    /// A CA key holds something that is not PEM certificates.
    #[error("{key}: {source}")]
    BadCertificates {
        /// The ConfigMap key.
        key: &'static str,
        /// Why.
        source: rustls::pki_types::pem::Error,
    },
    /// A list key is not a JSON array of strings.
    #[error("{key}: {source}")]
    BadList {
        /// The ConfigMap key.
        key: &'static str,
        /// Why.
        source: serde_json::Error,
    },
}

/// The TLS client certificate chain of a connection, attached to each of its requests.
#[derive(Debug, Clone, Default)]
pub struct PeerCerts(pub Arc<Vec<CertificateDer<'static>>>);

/// What `kube-system/extension-apiserver-authentication` says.
#[derive(Debug, Clone, Default)]
pub struct Delegation {
    /// CA of ordinary client certificates.
    pub client_ca: Vec<CertificateDer<'static>>,
    /// CA of the front proxy's client certificate.
    pub requestheader_ca: Vec<CertificateDer<'static>>,
    /// Common names the front proxy may have; empty: any the CA signed.
    pub allowed_names: Vec<String>,
    /// Headers carrying the user name.
    pub username_headers: Vec<String>,
    /// Headers carrying the user's UID.
    pub uid_headers: Vec<String>,
    /// Headers carrying groups.
    pub group_headers: Vec<String>,
    /// Prefixes of headers carrying extras.
    pub extra_prefixes: Vec<String>,
}

impl Delegation {
    /// Reads the ConfigMap's data.
    pub fn from_config_map(data: &BTreeMap<String, String>) -> Result<Self, DelegationError> {
        let pem = |key: &'static str| -> Result<Vec<CertificateDer<'static>>, DelegationError> {
            data.get(key).map_or(Ok(Vec::new()), |text| {
                CertificateDer::pem_slice_iter(text.as_bytes())
                    .collect::<Result<_, _>>()
                    .map_err(|source| DelegationError::BadCertificates { key, source })
            })
        };
        let list = |key: &'static str, default: &[&str]| -> Result<Vec<String>, DelegationError> {
            match data.get(key) {
                None => Ok(default.iter().map(|s| (*s).to_owned()).collect()),
                Some(text) => serde_json::from_str(text)
                    .map_err(|source| DelegationError::BadList { key, source }),
            }
        };
        Ok(Delegation {
            client_ca: pem("client-ca-file")?,
            requestheader_ca: pem("requestheader-client-ca-file")?,
            allowed_names: list("requestheader-allowed-names", &[])?,
            username_headers: list("requestheader-username-headers", &["X-Remote-User"])?,
            uid_headers: list("requestheader-uid-headers", &[])?,
            group_headers: list("requestheader-group-headers", &["X-Remote-Group"])?,
            extra_prefixes: list("requestheader-extra-headers-prefix", &["X-Remote-Extra-"])?,
        })
    }

    /// Every CA a client certificate may chain to, for the TLS handshake.
    #[must_use]
    pub fn all_cas(&self) -> Vec<CertificateDer<'static>> {
        self.client_ca
            .iter()
            .chain(&self.requestheader_ca)
            .cloned()
            .collect()
    }
}

/// The caller's identity from the connection's certificate and the request's headers, without
/// the token step (which needs the Kubernetes API); `Ok(None)` when neither certificate
/// method applies.
pub fn identity_from_certificate(
    delegation: &Delegation,
    certs: Option<&PeerCerts>,
    headers: &HeaderMap,
) -> Result<Option<Identity>, AuthError> {
    let Some(chain) = certs.map(|c| c.0.as_slice()).filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    if verifies(&delegation.requestheader_ca, chain) {
        let (cn, _) = subject(&chain[0])?;
        if !delegation.allowed_names.is_empty() && !delegation.allowed_names.contains(&cn) {
            return Err(Unauthenticated::NameNotAllowed(cn).into());
        }
        let first = |names: &[String]| {
            names.iter().find_map(|h| {
                headers
                    .get(h)
                    .and_then(|v| v.to_str().ok())
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
            })
        };
        let Some(user) = first(&delegation.username_headers) else {
            return Err(Unauthenticated::NoUserHeader.into());
        };
        let groups = delegation
            .group_headers
            .iter()
            .flat_map(|h| {
                headers
                    .get_all(h)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .collect();
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in headers {
            for prefix in &delegation.extra_prefixes {
                if let Some(key) = name.as_str().strip_prefix(&prefix.to_ascii_lowercase())
                    && let Ok(value) = value.to_str()
                {
                    extra
                        .entry(percent_decode(key).to_ascii_lowercase())
                        .or_default()
                        .push(value.to_owned());
                }
            }
        }
        return Ok(Some(with_authenticated_group(Identity {
            user,
            uid: first(&delegation.uid_headers),
            groups,
            extra,
        })));
    }
    if verifies(&delegation.client_ca, chain) {
        let (user, groups) = subject(&chain[0])?;
        return Ok(Some(with_authenticated_group(Identity {
            user,
            uid: None,
            groups,
            extra: BTreeMap::new(),
        })));
    }
    Err(Unauthenticated::UntrustedCertificate.into())
}

/// Whether `chain` (leaf first) verifies against `cas` as a client certificate.
/// `identity` with `system:authenticated` among its groups, as k8s.io/apiserver's
/// `AuthenticatedGroupAdder` gives every authenticated user but the anonymous one (unless it
/// already has it or `system:unauthenticated`): a front proxy sending no group header still
/// names an authenticated user, and RBAC's discovery bindings are to that group.
fn with_authenticated_group(mut identity: Identity) -> Identity {
    const AUTHENTICATED: &str = "system:authenticated";
    let said = identity
        .groups
        .iter()
        .any(|g| g == AUTHENTICATED || g == "system:unauthenticated");
    if identity.user != "system:anonymous" && !said {
        identity.groups.push(AUTHENTICATED.to_owned());
    }
    identity
}

fn verifies(cas: &[CertificateDer<'static>], chain: &[CertificateDer<'static>]) -> bool {
    if cas.is_empty() {
        return false;
    }
    let mut roots = RootCertStore::empty();
    for ca in cas {
        if roots.add(ca.clone()).is_err() {
            return false;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let Ok(verifier) =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()
    else {
        return false;
    };
    verifier
        .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
        .is_ok()
}

/// The subject's common name and organizations.
fn subject(cert: &CertificateDer<'_>) -> Result<(String, Vec<String>), Unauthenticated> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(Unauthenticated::UnreadableCertificate)?;
    let subject = parsed.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    let orgs = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .map(str::to_owned)
        .collect();
    Ok((cn, orgs))
}

/// Percent-decodes a header-name or path fragment; a bad escape leaves the text as it is.
fn percent_decode(text: &str) -> String {
    crate::request::percent_decode(text, false).unwrap_or_else(|| text.to_owned())
}

/// The SubjectAccessReview attributes of a request path (apiserver RequestInfo semantics).
#[must_use]
pub fn attributes(path: &str) -> Value {
    let prefix = format!("/apis/{GROUP}/");
    let Some(rest) = path.strip_prefix(&prefix) else {
        return json!({ "nonResourceAttributes": { "path": path, "verb": "get" } });
    };
    let mut segments = rest.trim_end_matches('/').split('/');
    let version = segments.next().unwrap_or_default();
    let segments: Vec<String> = segments.map(percent_decode).collect();
    let resource = |namespace: Option<&str>,
                    resource: &str,
                    name: &str,
                    subresource: Option<&str>| {
        let mut attributes = json!({ "verb": "get", "group": GROUP, "version": version, "resource": resource, "name": name });
        if let Some(namespace) = namespace {
            attributes["namespace"] = json!(namespace);
        }
        if let Some(subresource) = subresource {
            attributes["subresource"] = json!(subresource);
        }
        json!({ "resourceAttributes": attributes })
    };
    match segments
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["namespaces", ns, "metrics", metric] => resource(Some(ns), "metrics", metric, None),
        ["namespaces", ns, kind, name, metric] => resource(Some(ns), kind, name, Some(metric)),
        [kind, name, metric] => resource(None, kind, name, Some(metric)),
        _ => json!({ "nonResourceAttributes": { "path": path, "verb": "get" } }),
    }
}

/// Answers kept for [`REVIEW_TTL`], keyed by what was asked.
#[derive(Debug, Default)]
pub struct ReviewCache<V> {
    entries: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V: Clone> ReviewCache<V> {
    /// A kept answer to `key`, if still fresh.
    pub fn get(&self, key: &str) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < REVIEW_TTL)
            .map(|(_, v)| v.clone())
    }

    /// Keeps an answer, forgetting expired ones.
    pub fn put(&self, key: String, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|_, (at, _)| at.elapsed() < REVIEW_TTL);
        entries.insert(key, (Instant::now(), value));
    }
}

/// Decides who is asking and whether they may, with the cluster's help.
pub struct Authenticator {
    client: kube::Client,
    delegation: std::sync::RwLock<Delegation>,
    tokens: ReviewCache<Option<Identity>>,
    access: ReviewCache<bool>,
}

impl Authenticator {
    /// Reads the delegation ConfigMap through `client`; fails when it cannot be read, since no
    /// caller could be authenticated without it.
    pub async fn new(client: kube::Client) -> Result<Self, DelegationError> {
        let delegation = read_delegation(&client).await?;
        Ok(Authenticator {
            client,
            delegation: std::sync::RwLock::new(delegation),
            tokens: ReviewCache::default(),
            access: ReviewCache::default(),
        })
    }

    /// Re-reads the delegation ConfigMap every `every`, keeping the last good one on failure.
    pub async fn refresh_loop(self: Arc<Self>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            match read_delegation(&self.client).await {
                Ok(delegation) => {
                    *self
                        .delegation
                        .write()
                        .unwrap_or_else(PoisonError::into_inner) = delegation;
                }
                Err(error) => {
                    tracing::warn!(%error, "Cannot re-read extension-apiserver-authentication; keeping the previous one");
                }
            }
        }
    }

    /// Authenticates and authorizes a request for `path`.
    pub async fn check(
        &self,
        certs: Option<&PeerCerts>,
        headers: &HeaderMap,
        path: &str,
    ) -> Result<Identity, AuthError> {
        let by_certificate = {
            let delegation = self
                .delegation
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            identity_from_certificate(&delegation, certs, headers)
        };
        let bearer = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let identity = match (by_certificate, bearer) {
            (Ok(Some(identity)), _) => identity,
            (Ok(None) | Err(_), Some(token)) => self
                .review_token(token)
                .await?
                .ok_or(Unauthenticated::TokenRejected)?,
            (Err(error), None) => return Err(error),
            (Ok(None), None) => return Err(Unauthenticated::NoCredentials.into()),
        };
        if identity.groups.iter().any(|g| g == "system:masters") {
            return Ok(identity);
        }
        if self.review_access(&identity, path).await? {
            Ok(identity)
        } else {
            Err(AuthError::Forbidden {
                user: identity.user,
                path: path.to_owned(),
            })
        }
    }

    async fn review_token(&self, token: &str) -> Result<Option<Identity>, AuthError> {
        if let Some(answer) = self.tokens.get(token) {
            return Ok(answer);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                ..TokenReviewSpec::default()
            },
            ..TokenReview::default()
        };
        let api: kube::Api<TokenReview> = kube::Api::all(self.client.clone());
        let answer = api
            .create(&kube::api::PostParams::default(), &review)
            .await
            .map_err(|e| AuthError::ReviewFailed {
                review: "TokenReview",
                source: e.into(),
            })?;
        let status = answer.status.unwrap_or_default();
        let identity = status.authenticated.unwrap_or(false).then(|| {
            let user = status.user.unwrap_or_default();
            with_authenticated_group(Identity {
                user: user.username.unwrap_or_default(),
                uid: user.uid,
                groups: user.groups.unwrap_or_default(),
                extra: user.extra.unwrap_or_default().into_iter().collect(),
            })
        });
        self.tokens.put(token.to_owned(), identity.clone());
        Ok(identity)
    }

    async fn review_access(&self, identity: &Identity, path: &str) -> Result<bool, AuthError> {
        let mut spec = attributes(path);
        spec["user"] = json!(identity.user);
        spec["groups"] = json!(identity.groups);
        spec["extra"] = json!(identity.extra);
        if let Some(uid) = &identity.uid {
            spec["uid"] = json!(uid);
        }
        let key = spec.to_string();
        if let Some(allowed) = self.access.get(&key) {
            return Ok(allowed);
        }
        let review: SubjectAccessReview =
            serde_json::from_value(json!({ "spec": spec })).map_err(|e| {
                AuthError::ReviewFailed {
                    review: "SubjectAccessReview",
                    source: e.into(),
                }
            })?;
        let api: kube::Api<SubjectAccessReview> = kube::Api::all(self.client.clone());
        let answer = api
            .create(&kube::api::PostParams::default(), &review)
            .await
            .map_err(|e| AuthError::ReviewFailed {
                review: "SubjectAccessReview",
                source: e.into(),
            })?;
        let allowed = answer.status.is_some_and(|s| s.allowed);
        self.access.put(key, allowed);
        Ok(allowed)
    }
}

async fn read_delegation(client: &kube::Client) -> Result<Delegation, DelegationError> {
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), "kube-system");
    let config_map = api
        .get("extension-apiserver-authentication")
        .await
        .map_err(DelegationError::Unreadable)?;
    Delegation::from_config_map(&config_map.data.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;
    use crate::testing::Ca;

    fn delegation(front: &Ca, client: &Ca, allowed: &[&str]) -> Delegation {
        let data: BTreeMap<String, String> = [
            ("client-ca-file", client.pem.clone()),
            ("requestheader-client-ca-file", front.pem.clone()),
            (
                "requestheader-allowed-names",
                serde_json::to_string(allowed).unwrap(),
            ),
            (
                "requestheader-username-headers",
                r#"["X-Remote-User"]"#.to_owned(),
            ),
            (
                "requestheader-group-headers",
                r#"["X-Remote-Group"]"#.to_owned(),
            ),
            (
                "requestheader-extra-headers-prefix",
                r#"["X-Remote-Extra-"]"#.to_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Delegation::from_config_map(&data).unwrap()
    }

    fn peer(cert: CertificateDer<'static>) -> PeerCerts {
        PeerCerts(Arc::new(vec![cert]))
    }

    fn hpa_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-remote-user",
            HeaderValue::from_static("system:serviceaccount:kube-system:horizontal-pod-autoscaler"),
        );
        headers.append(
            "x-remote-group",
            HeaderValue::from_static("system:serviceaccounts"),
        );
        headers.append(
            "x-remote-group",
            HeaderValue::from_static("system:authenticated"),
        );
        headers.insert("x-remote-extra-scopes%2Fa", HeaderValue::from_static("x"));
        headers
    }

    #[test]
    fn front_proxy_certificates_carry_the_user_in_headers() {
        let (front, client) = (Ca::new("front-proxy-ca"), Ca::new("client-ca"));
        let config = delegation(&front, &client, &["front-proxy-client"]);
        let (cert, _, _) = front.client("front-proxy-client", &[]);
        let identity = identity_from_certificate(&config, Some(&peer(cert)), &hpa_headers())
            .unwrap()
            .unwrap();
        assert_eq!(
            identity.user,
            "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
        );
        assert_eq!(
            identity.groups,
            ["system:serviceaccounts", "system:authenticated"]
        );
        assert_eq!(identity.extra["scopes/a"], ["x"]);
    }

    /// The review's finding: `X-Remote-User` and no group header was authorized with no groups
    /// at all, where the API server's delegating authenticator adds `system:authenticated`.
    #[test]
    fn a_front_proxy_user_without_groups_is_authenticated() {
        let (front, client) = (Ca::new("front-proxy-ca"), Ca::new("client-ca"));
        let config = delegation(&front, &client, &["front-proxy-client"]);
        let (cert, _, _) = front.client("front-proxy-client", &[]);
        let mut headers = HeaderMap::new();
        headers.insert("x-remote-user", HeaderValue::from_static("jane"));
        let identity = identity_from_certificate(&config, Some(&peer(cert)), &headers)
            .unwrap()
            .unwrap();
        assert_eq!(identity.groups, ["system:authenticated"]);
        let anonymous = with_authenticated_group(Identity {
            user: "system:anonymous".into(),
            uid: None,
            groups: vec!["system:unauthenticated".into()],
            extra: BTreeMap::new(),
        });
        assert_eq!(anonymous.groups, ["system:unauthenticated"]);
    }

    #[test]
    fn front_proxy_refusals() {
        let (front, client, other) = (
            Ca::new("front-proxy-ca"),
            Ca::new("client-ca"),
            Ca::new("stranger"),
        );
        let config = delegation(&front, &client, &["front-proxy-client"]);
        // A name not allowed.
        let (cert, _, _) = front.client("someone-else", &[]);
        let err =
            identity_from_certificate(&config, Some(&peer(cert)), &hpa_headers()).unwrap_err();
        assert!(
            matches!(&err, AuthError::Unauthenticated(Unauthenticated::NameNotAllowed(cn)) if cn == "someone-else"),
            "{err}"
        );
        assert!(err.to_string().contains("not an allowed name"), "{err}");
        // No user header.
        let (cert, _, _) = front.client("front-proxy-client", &[]);
        let err =
            identity_from_certificate(&config, Some(&peer(cert)), &HeaderMap::new()).unwrap_err();
        assert!(matches!(
            err,
            AuthError::Unauthenticated(Unauthenticated::NoUserHeader)
        ));
        // A CA nobody trusts.
        let (cert, _, _) = other.client("front-proxy-client", &[]);
        let err =
            identity_from_certificate(&config, Some(&peer(cert)), &hpa_headers()).unwrap_err();
        assert!(matches!(
            err,
            AuthError::Unauthenticated(Unauthenticated::UntrustedCertificate)
        ));
        // With an empty allowed list, any name the CA signed is accepted.
        let open = delegation(&front, &client, &[]);
        let (cert, _, _) = front.client("anything", &[]);
        assert!(
            identity_from_certificate(&open, Some(&peer(cert)), &hpa_headers())
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn client_certificates_name_the_user_and_ignore_headers() {
        let (front, client) = (Ca::new("front-proxy-ca"), Ca::new("client-ca"));
        let config = delegation(&front, &client, &["front-proxy-client"]);
        // rcgen writes one value per attribute type, so one organization here.
        let (cert, _, _) = client.client("jane", &["sre"]);
        let identity = identity_from_certificate(&config, Some(&peer(cert)), &hpa_headers())
            .unwrap()
            .unwrap();
        assert_eq!(
            identity,
            Identity {
                user: "jane".into(),
                uid: None,
                groups: vec!["sre".into(), "system:authenticated".into()],
                extra: BTreeMap::new()
            }
        );
        assert!(matches!(
            identity_from_certificate(&config, None, &hpa_headers()),
            Ok(None)
        ));
    }

    #[test]
    fn request_attributes() {
        let base = "/apis/custom.metrics.k8s.io/v1beta2";
        assert_eq!(
            attributes(&format!(
                "{base}/namespaces/shop/pods/%2A/render_scaling_score"
            ))["resourceAttributes"],
            json!({"namespace": "shop", "verb": "get", "group": "custom.metrics.k8s.io", "version": "v1beta2", "resource": "pods", "subresource": "render_scaling_score", "name": "*"})
        );
        assert_eq!(
            attributes(&format!("{base}/namespaces/shop/metrics/m"))["resourceAttributes"],
            json!({"namespace": "shop", "verb": "get", "group": "custom.metrics.k8s.io", "version": "v1beta2", "resource": "metrics", "name": "m"})
        );
        assert_eq!(
            attributes(&format!("{base}/nodes/n-1/m"))["resourceAttributes"]["name"],
            "n-1"
        );
        assert_eq!(
            attributes(base),
            json!({"nonResourceAttributes": {"path": base, "verb": "get"}})
        );
        assert_eq!(
            attributes("/apis")["nonResourceAttributes"]["path"],
            "/apis"
        );
    }

    #[test]
    fn config_map_errors() {
        let bad = [
            (
                "client-ca-file",
                "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
            ),
            ("requestheader-allowed-names", "front-proxy-client"),
        ];
        for (key, value) in bad {
            let data = BTreeMap::from([(key.to_owned(), value.to_owned())]);
            let err = Delegation::from_config_map(&data).unwrap_err();
            assert!(err.to_string().starts_with(key), "{err}");
        }
        let defaults = Delegation::from_config_map(&BTreeMap::new()).unwrap();
        assert_eq!(defaults.username_headers, ["X-Remote-User"]);
    }
}
