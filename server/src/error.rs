//! The errors HTTP handlers answer with, and their status codes.
//!
//! Every error becomes `{"error": "<message>", "kind": "<kind>"}` (and the
//! byte `position` of a query syntax error) with a 4xx or 5xx status;
//! the push API wraps the same errors as Connect errors ([`ConnectError`]).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
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
    /// No credentials, or a token the server does not know (401).
    #[error("{0}")]
    Unauthorized(String),
    /// A known token whose scope or tenant does not allow the request (403).
    #[error("{0}")]
    Forbidden(String),
    /// The tenant is over its ingest rate; the client should come back
    /// after `retry_after_secs` (429 with `Retry-After`).
    #[error("{message}")]
    RateLimited {
        /// Names the limit and the wait.
        message: String,
        /// Seconds until the request would be admitted.
        retry_after_secs: u64,
    },
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
            ApiError::TooManySeries(_) | ApiError::RateLimited { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short name of the kind of error, the `reason` of the rejection
    /// metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) | ApiError::Query(_) => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::TooLarge(_) => "too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unprocessable(_) => "over_limit",
            ApiError::TooManySeries(_) => "series_limit",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// Headers the status calls for: the challenge of a 401, the wait of a 429.
    fn headers(&self, response: &mut Response) {
        match self {
            ApiError::Unauthorized(_) => {
                // Bearer for API clients; Basic too, so a browser opening
                // the UI asks for the token (any user name, the token as
                // password) and sends it with every request of the page.
                for challenge in [
                    "Bearer realm=\"firewatch\"",
                    "Basic realm=\"firewatch\", charset=\"UTF-8\"",
                ] {
                    response.headers_mut().append(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static(challenge),
                    );
                }
            }
            ApiError::RateLimited {
                retry_after_secs, ..
            } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            _ => {}
        }
        response.extensions_mut().insert(Rejection(self.kind()));
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
            ApiError::Unauthorized(m) => ApiError::Unauthorized(wrap(m)),
            ApiError::Forbidden(m) => ApiError::Forbidden(wrap(m)),
            ApiError::RateLimited {
                message,
                retry_after_secs,
            } => ApiError::RateLimited {
                message: wrap(message),
                retry_after_secs,
            },
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
            StoreError::Closed | StoreError::Contended => ApiError::Unavailable(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::Internal(format!("worker task failed: {e}"))
    }
}

/// The kind of error a response carries ([`ApiError::kind`]), left in its
/// extensions for the request metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection(pub &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        // The kind and, for a query syntax error, the byte position, as
        // fields: a client needs not parse the message for them.
        let mut body = serde_json::json!({ "error": self.to_string(), "kind": self.kind() });
        if let ApiError::Query(e) = &self {
            body["position"] = serde_json::json!(e.position);
        }
        let mut response = (self.status(), Json(body)).into_response();
        self.headers(&mut response);
        response
    }
}

/// An [`ApiError`] answered the Connect way (the push API):
/// `{"code": "invalid_argument", "message": "..."}` with the HTTP status
/// Connect pairs with that code.
///
/// Every client error is `invalid_argument` (400), oversized bodies
/// included: Pyroscope answers the same, and its clients retry 429 and 5xx
/// answers, which would only resend a profile that can never be accepted.
/// A tenant over its series limit or ingest rate is `resource_exhausted`
/// (429); missing or unknown credentials are `unauthenticated` (401), a
/// token without the right scope or tenant `permission_denied` (403).
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
            ApiError::TooManySeries(_) | ApiError::RateLimited { .. } => {
                ("resource_exhausted", StatusCode::TOO_MANY_REQUESTS)
            }
            ApiError::Unauthorized(_) => ("unauthenticated", StatusCode::UNAUTHORIZED),
            ApiError::Forbidden(_) => ("permission_denied", StatusCode::FORBIDDEN),
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
        let mut response = (status, Json(body)).into_response();
        self.0.headers(&mut response);
        response
    }
}
