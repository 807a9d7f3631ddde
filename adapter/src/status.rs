//! Errors answered as a Kubernetes `metav1.Status` with the HTTP code that goes with them: what
//! every failure of the API turns into, from a bad path to a backend that is down.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::request;
use crate::values::ValuesError;
use crate::wire;

/// An error answered as a `metav1.Status` document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    code: StatusCode,
    message: String,
}

impl ApiError {
    /// An answer of `code` saying `message`.
    #[must_use]
    pub fn new(code: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status code.
    #[must_use]
    pub fn code(&self) -> StatusCode {
        self.code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = wire::status(self.code, &self.message);
        (
            self.code,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}

impl From<request::Error> for ApiError {
    fn from(error: request::Error) -> Self {
        let code = match error {
            request::Error::UnknownVersion(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(code, error.to_string())
    }
}

impl From<ValuesError> for ApiError {
    fn from(error: ValuesError) -> Self {
        let code = match error {
            ValuesError::NotFound(_) => StatusCode::NOT_FOUND,
            ValuesError::Backend(_) | ValuesError::Pods(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(code, error.to_string())
    }
}
