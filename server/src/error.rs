//! The errors HTTP handlers answer with, and their status codes.
//!
//! Every error becomes `{"error": "<message>"}` with a 4xx or 5xx status;
//! the push API wraps the same errors as Connect errors ([`ConnectError`]).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use thiserror::Error;

use crate::selector::SelectorError;
use crate::store::StoreError;

/// Why a request failed. The message always names the problem (the
/// parameter, the limit, the line) so a client can act on it unchanged.
#[derive(Debug, Error)]
pub enum ApiError {
    /// Malformed input: a missing or invalid parameter, undecodable bytes.
    #[error("{0}")]
    BadRequest(String),
    /// No such route.
    #[error("{0}")]
    NotFound(String),
    /// A query that does not parse; carries the position.
    #[error(transparent)]
    Query(#[from] SelectorError),
    /// The body, or a profile after decompression, is over a size limit.
    #[error("{0}")]
    TooLarge(String),
    /// A content type, encoding or format this server does not read.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Well-formed input over a count limit (samples, depth, labels, ...).
    #[error("{0}")]
    Unprocessable(String),
    /// The tenant reached its series limit.
    #[error("{0}")]
    TooManySeries(String),
    /// Storage is unreachable or shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or a storage failure.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::BadRequest(message.into())
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Query(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManySeries(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn log(&self) {
        if self.status().is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, status = self.status().as_u16(), "request refused");
        }
    }

    /// Prefixes the message with where the error happened (`series 2: ...`),
    /// keeping the status.
    pub fn context(self, prefix: &str) -> ApiError {
        let wrap = |m: String| format!("{prefix}: {m}");
        match self {
            ApiError::BadRequest(m) => ApiError::BadRequest(wrap(m)),
            ApiError::NotFound(m) => ApiError::NotFound(wrap(m)),
            ApiError::Query(e) => ApiError::BadRequest(wrap(e.to_string())),
            ApiError::TooLarge(m) => ApiError::TooLarge(wrap(m)),
            ApiError::UnsupportedMediaType(m) => ApiError::UnsupportedMediaType(wrap(m)),
            ApiError::Unprocessable(m) => ApiError::Unprocessable(wrap(m)),
            ApiError::TooManySeries(m) => ApiError::TooManySeries(wrap(m)),
            ApiError::Unavailable(m) => ApiError::Unavailable(wrap(m)),
            ApiError::Internal(m) => ApiError::Internal(wrap(m)),
        }
    }
}

impl From<firewatch_profile::Error> for ApiError {
    fn from(e: firewatch_profile::Error) -> Self {
        use firewatch_profile::Error as E;
        match &e {
            E::LimitExceeded { what, .. } if what.starts_with("decompressed size") => {
                ApiError::TooLarge(e.to_string())
            }
            E::LimitExceeded { .. } => ApiError::Unprocessable(e.to_string()),
            E::Io(_) => ApiError::Internal(e.to_string()),
            _ => ApiError::BadRequest(e.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::LimitExceeded { .. } => ApiError::TooManySeries(e.to_string()),
            StoreError::Closed => ApiError::Unavailable(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::Internal(format!("worker task failed: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let body = serde_json::json!({ "error": self.to_string() });
        (self.status(), Json(body)).into_response()
    }
}

/// An [`ApiError`] answered the Connect way (the push API):
/// `{"code": "invalid_argument", "message": "..."}` with the HTTP status
/// Connect pairs with that code.
///
/// Every client error is `invalid_argument` (400), oversized bodies
/// included: Pyroscope answers the same, and its clients retry 429 and 5xx
/// answers, which would only resend a profile that can never be accepted.
/// A tenant over its series limit is `resource_exhausted` (429).
#[derive(Debug)]
pub struct ConnectError(pub ApiError);

impl From<ApiError> for ConnectError {
    fn from(e: ApiError) -> Self {
        ConnectError(e)
    }
}

impl ConnectError {
    /// The Connect code and its HTTP status.
    pub fn code(&self) -> (&'static str, StatusCode) {
        match &self.0 {
            ApiError::TooManySeries(_) => ("resource_exhausted", StatusCode::TOO_MANY_REQUESTS),
            ApiError::Unavailable(_) => ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
            ApiError::Internal(_) => ("internal", StatusCode::INTERNAL_SERVER_ERROR),
            _ => ("invalid_argument", StatusCode::BAD_REQUEST),
        }
    }
}

impl IntoResponse for ConnectError {
    fn into_response(self) -> Response {
        self.0.log();
        let (code, status) = self.code();
        let body = serde_json::json!({ "code": code, "message": self.0.to_string() });
        (status, Json(body)).into_response()
    }
}
