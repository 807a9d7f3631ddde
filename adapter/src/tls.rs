//! The adapter's serving certificate: PEM files reloaded when they change, or a self-signed one
//! for local use. Also the client side: which CAs the adapter trusts when it calls out over HTTPS
//! (Prometheus).
//!
//! The kube-apiserver aggregator only talks TLS and checks the certificate against the
//! APIService's `caBundle` for `<service>.<namespace>.svc`. Certificates are rotated by replacing
//! the files (cert-manager, a Secret update); the adapter notices within the check interval and
//! serves the new pair to new connections, with no restart. A pair that does not load is logged
//! and the previous one kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use std::pin::Pin;

use axum_server::accept::{Accept, NoDelayAcceptor};
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use tokio::net::TcpStream;

use crate::auth::PeerCerts;

/// Why TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A certificate or key file cannot be read or holds no PEM item of the right kind.
    #[error("cannot read {what} from {path}: {message}")]
    Unreadable {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The pair does not make a TLS configuration (the key does not match, …).
    #[error("certificate and key do not make a TLS configuration: {0}")]
    Invalid(String),
    /// A self-signed certificate cannot be made.
    #[error("cannot generate a self-signed certificate: {0}")]
    SelfSigned(String),
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// PEM files, reloaded when either file's modification time changes.
    Files {
        /// Certificate chain.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
    /// A certificate made at start-up for these DNS names and IP addresses (local use only).
    SelfSigned(Vec<String>),
}

/// A certificate made for local use: its PEM, to hand to clients as their CA.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM.
    pub key_pem: String,
}

/// Makes a self-signed certificate for `names` (DNS names or IP addresses).
pub fn self_signed(names: &[String]) -> Result<Generated, Error> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| Error::SelfSigned(e.to_string()))?;
    Ok(Generated {
        cert_pem: certified.cert.pem(),
        key_pem: certified.signing_key.serialize_pem(),
    })
}

/// The CAs trusted for outgoing HTTPS: the certificates of `ca_file` (PEM) alone, or the system's
/// (`/etc/ssl/certs` and the like) when `None`.
pub fn trusted_roots(ca_file: Option<&Path>) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    let Some(path) = ca_file else {
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::warn!(%error, "Cannot read a system CA certificate");
        }
        let (added, _ignored) = roots.add_parsable_certificates(native.certs);
        if added == 0 {
            return Err(Error::Unreadable {
                what: "CA certificates",
                path: "the system's certificate store".into(),
                message: "none found; give a CA file".into(),
            });
        }
        return Ok(roots);
    };
    let unreadable = |message: String| Error::Unreadable {
        what: "CA certificates",
        path: path.display().to_string(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| unreadable(e.to_string()))?;
        roots.add(cert).map_err(|e| unreadable(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(unreadable("no CERTIFICATE block".into()));
    }
    Ok(roots)
}

/// A rustls client configuration (ring, TLS 1.2 and 1.3) trusting `roots`, with no client
/// certificate.
pub fn client_config(roots: RootCertStore) -> Result<ClientConfig, Error> {
    client_config_with_identity(roots, None)
}

/// As [`client_config`], presenting the client certificate and key in these PEM files when
/// `identity` is given (a Prometheus that requires client certificates).
pub fn client_config_with_identity(
    roots: RootCertStore,
    identity: Option<(&Path, &Path)>,
) -> Result<ClientConfig, Error> {
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Invalid(e.to_string()))?
            .with_root_certificates(roots);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let (certs, key) = read_pem_pair(cert, key)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| Error::Invalid(e.to_string()))
        }
    }
}

/// A certificate chain and key from PEM files.
fn read_pem_pair(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
    parse_pem_pair(
        &read_file(cert, "certificate")?,
        &read_file(key, "private key")?,
        &cert.display().to_string(),
        &key.display().to_string(),
    )
}

/// A certificate chain and key from PEM text; the paths name them in errors.
fn parse_pem_pair(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &str,
    key_path: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Unreadable {
            what: "certificate",
            path: cert_path.into(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(Error::Unreadable {
            what: "certificate",
            path: cert_path.into(),
            message: "no CERTIFICATE block".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| Error::Unreadable {
        what: "private key",
        path: key_path.into(),
        message: e.to_string(),
    })?;
    Ok((certs, key))
}

/// A rustls server configuration from PEM text.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &str,
    key_path: &str,
) -> Result<ServerConfig, Error> {
    let (certs, key) = parse_pem_pair(cert_pem, key_pem, cert_path, key_path)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client_certs = Arc::new(AnyClientCert {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Invalid(e.to_string()))?
        .with_client_cert_verifier(client_certs)
        .with_single_cert(certs, key)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Offers client authentication and checks possession of the key; trust in the chain is
/// decided per request.
#[derive(Debug)]
struct AnyClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Accepts TLS connections (with `TCP_NODELAY`) and attaches the client's certificate chain to
/// every request of the connection as a [`PeerCerts`] extension.
#[derive(Clone)]
pub struct PeerCertAcceptor {
    inner: RustlsAcceptor<NoDelayAcceptor>,
    slots: Arc<tokio::sync::Semaphore>,
    telemetry: Arc<crate::telemetry::Telemetry>,
}

impl PeerCertAcceptor {
    /// An acceptor serving `config` within `limits`: the TLS handshake must end within the
    /// header read timeout, and past `max_connections` open ones a new connection is closed
    /// at once (counted in `telemetry`).
    #[must_use]
    pub fn new(
        config: RustlsConfig,
        limits: &crate::ConnectionLimits,
        telemetry: Arc<crate::telemetry::Telemetry>,
    ) -> Self {
        PeerCertAcceptor {
            inner: RustlsAcceptor::new(config)
                .handshake_timeout(limits.header_read_timeout)
                .acceptor(NoDelayAcceptor::new()),
            slots: Arc::new(tokio::sync::Semaphore::new(limits.max_connections)),
            telemetry,
        }
    }
}

/// Holds one of the connection slots while its connection lives.
struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    telemetry: Arc<crate::telemetry::Telemetry>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.telemetry.connection(-1);
    }
}

impl<S: Send + 'static> Accept<TcpStream, S> for PeerCertAcceptor {
    type Stream = tokio_rustls::server::TlsStream<TcpStream>;
    type Service = WithPeerCerts<S>;
    type Future =
        Pin<Box<dyn Future<Output = std::io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            self.telemetry.connection_refused();
            drop(stream);
            return Box::pin(async {
                Err(std::io::Error::other(
                    "too many connections (--max-connections)",
                ))
            });
        };
        self.telemetry.connection(1);
        let slot = Arc::new(Slot {
            _permit: permit,
            telemetry: self.telemetry.clone(),
        });
        let handshake = self.inner.accept(stream, service);
        Box::pin(async move {
            let (stream, inner) = handshake.await?;
            let chain = stream
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default();
            Ok((
                stream,
                WithPeerCerts {
                    inner,
                    certs: PeerCerts(Arc::new(chain)),
                    _slot: slot,
                },
            ))
        })
    }
}

/// A connection's service that adds its [`PeerCerts`] to each request.
#[derive(Clone)]
pub struct WithPeerCerts<S> {
    inner: S,
    certs: PeerCerts,
    /// The connection's slot, released when hyper drops the connection's service.
    _slot: Arc<Slot>,
}

impl<S, B> tower::Service<axum::http::Request<B>> for WithPeerCerts<S>
where
    S: tower::Service<axum::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: axum::http::Request<B>) -> Self::Future {
        request.extensions_mut().insert(self.certs.clone());
        self.inner.call(request)
    }
}

/// Loads the serving configuration; for files, also starts the task that reloads them (call
/// it inside a Tokio runtime).
pub fn load(source: &CertSource, check_every: Duration) -> Result<RustlsConfig, Error> {
    match source {
        CertSource::SelfSigned(names) => {
            let generated = self_signed(names)?;
            let config = server_config(
                generated.cert_pem.as_bytes(),
                generated.key_pem.as_bytes(),
                "(self-signed)",
                "(self-signed)",
            )?;
            Ok(RustlsConfig::from_config(Arc::new(config)))
        }
        CertSource::Files { cert, key } => {
            let config = RustlsConfig::from_config(Arc::new(read_pair(cert, key)?));
            tokio::spawn(reload_loop(
                config.clone(),
                cert.clone(),
                key.clone(),
                check_every,
            ));
            Ok(config)
        }
    }
}

fn read_pair(cert: &Path, key: &Path) -> Result<ServerConfig, Error> {
    server_config(
        &read_file(cert, "certificate")?,
        &read_file(key, "private key")?,
        &cert.display().to_string(),
        &key.display().to_string(),
    )
}

fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Unreadable {
        what,
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

async fn reload_loop(config: RustlsConfig, cert: PathBuf, key: PathBuf, every: Duration) {
    let stamp = |cert: &Path, key: &Path| -> Option<(SystemTime, SystemTime)> {
        Some((
            std::fs::metadata(cert).ok()?.modified().ok()?,
            std::fs::metadata(key).ok()?.modified().ok()?,
        ))
    };
    let mut last = stamp(&cert, &key);
    loop {
        tokio::time::sleep(every).await;
        let now = stamp(&cert, &key);
        if now.is_none() || now == last {
            continue;
        }
        last = now;
        match read_pair(&cert, &key) {
            Ok(new) => {
                config.reload_from_config(Arc::new(new));
                tracing::info!(cert = %cert.display(), "Reloaded the serving certificate");
            }
            Err(error) => {
                tracing::error!(%error, "New serving certificate does not load; keeping the previous one");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_pairs_load() {
        let generated = self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        assert!(
            generated
                .cert_pem
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert!(
            server_config(
                generated.cert_pem.as_bytes(),
                generated.key_pem.as_bytes(),
                "c",
                "k"
            )
            .is_ok()
        );
    }

    #[test]
    fn bad_pairs_say_which_file() {
        let a = self_signed(&["a".into()]).unwrap();
        let b = self_signed(&["b".into()]).unwrap();
        let err = server_config(b"nothing", a.key_pem.as_bytes(), "cert.pem", "key.pem")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cert.pem"), "{err}");
        let err = server_config(a.cert_pem.as_bytes(), b"nothing", "cert.pem", "key.pem")
            .unwrap_err()
            .to_string();
        assert!(err.contains("key.pem"), "{err}");
        let err = server_config(
            a.cert_pem.as_bytes(),
            b.key_pem.as_bytes(),
            "cert.pem",
            "key.pem",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("do not make"), "{err}");
    }
}
