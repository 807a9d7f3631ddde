//! The layer that lets a request through only if its caller is authenticated and authorized
//! ([`Authenticator::check`]); the health endpoints are open, as in Kubernetes' own servers.
//! A refusal is a `Status` (401, 403, or 503 when a review cannot be made), logged at most
//! once every 10 s with the count of those not logged.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{AuthError, Authenticator, PeerCerts};
use crate::status::ApiError;
use crate::telemetry::Telemetry;

/// What the layer needs.
#[derive(Clone)]
pub struct AuthLayer {
    /// Who may ask.
    pub auth: Arc<Authenticator>,
    /// Where refusals are counted for the log's rate limit.
    pub telemetry: Arc<Telemetry>,
}

/// The middleware function (`axum::middleware::from_fn_with_state`).
pub async fn authenticate(
    State(layer): State<AuthLayer>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    if path == "/livez" || path == "/readyz" {
        return next.run(request).await;
    }
    let certs = request.extensions().get::<PeerCerts>();
    if let Err(error) = layer.auth.check(certs, request.headers(), path).await {
        let code = match error {
            AuthError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            AuthError::Forbidden { .. } => StatusCode::FORBIDDEN,
            AuthError::ReviewFailed { .. } => StatusCode::SERVICE_UNAVAILABLE,
        };
        if let Some(suppressed) = layer.telemetry.throttle_auth_log() {
            tracing::info!(%error, %path, suppressed, "Refused a request");
        }
        return ApiError::new(code, error.to_string()).into_response();
    }
    next.run(request).await
}
