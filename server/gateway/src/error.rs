//! `ApiError`: every way a request can fail, and the one place that turns a failure into an
//! HTTP status and an OpenAI-shaped error body.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::headers::names;

/// A request failure, as the client will see it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The body is not valid JSON.
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    /// The JSON is well formed but not a valid request.
    #[error("{message}")]
    InvalidRequest {
        /// What is wrong.
        message: String,
        /// The offending field.
        param: Option<String>,
    },
    /// The requested model is neither an auto name nor a logical model of the recipe.
    #[error("model \"{model}\" does not exist; use one of: {known}")]
    ModelNotFound {
        /// As requested.
        model: String,
        /// The names that would work.
        known: String,
    },
    /// No such endpoint.
    #[error("unknown endpoint {method} {path}")]
    NotFound {
        /// HTTP method.
        method: String,
        /// Path.
        path: String,
    },
    /// Body over the configured limit.
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The concurrency limit is reached.
    #[error("too many concurrent requests (limit {limit}); retry later")]
    Overloaded {
        /// The limit.
        limit: usize,
    },
    /// The model has no backend that can take the request.
    #[error("model \"{model}\" has no available backend: {reason}")]
    NoBackend {
        /// Logical model.
        model: String,
        /// Why.
        reason: String,
    },
    /// The backend failed (connection, reset, 5xx after retries).
    #[error("backend {backend} failed: {cause}")]
    Backend {
        /// `<model>_<ref>`.
        backend: String,
        /// What happened.
        cause: String,
    },
    /// The backend did not answer in time.
    #[error("backend {backend} did not answer within {after:?}")]
    UpstreamTimeout {
        /// `<model>_<ref>`.
        backend: String,
        /// The listener timeout.
        after: Duration,
    },
    /// The router is shutting down or not ready.
    #[error("{0}")]
    Unavailable(String),
    /// A management route was called without the right bearer token.
    #[error("a valid bearer token is required (Authorization: Bearer <token>)")]
    Unauthorized,
    /// The request is not valid HTTP/1.1 (head or framing); the connection is closed.
    #[error("{0}")]
    BadHttp(String),
    /// The request head is over the server's limits.
    #[error("{0}")]
    HeadTooLarge(String),
    /// The client paused too long while sending its request.
    #[error("the request was not received within {0:?} of its last bytes")]
    RequestTimeout(Duration),
    /// The request body has a transfer coding other than `chunked`.
    #[error("{0}")]
    UnsupportedTransferCoding(String),
    /// No replay record has this id.
    #[error("replay record {id} not found")]
    RecordNotFound {
        /// The id asked for.
        id: String,
    },
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidJson(_) | Self::InvalidRequest { .. } | Self::BadHttp(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::HeadTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedTransferCoding(_) => StatusCode::NOT_IMPLEMENTED,
            Self::ModelNotFound { .. } | Self::NotFound { .. } | Self::RecordNotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NoBackend { .. } | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Backend { .. } => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The OpenAI error `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidJson(_)
            | Self::InvalidRequest { .. }
            | Self::ModelNotFound { .. }
            | Self::NotFound { .. }
            | Self::RecordNotFound { .. }
            | Self::BodyTooLarge { .. }
            | Self::BadHttp(_)
            | Self::HeadTooLarge(_)
            | Self::UnsupportedTransferCoding(_)
            | Self::RequestTimeout(_) => "invalid_request_error",
            Self::Unauthorized => "authentication_error",
            Self::Overloaded { .. } => "rate_limit_error",
            Self::NoBackend { .. }
            | Self::Backend { .. }
            | Self::UpstreamTimeout { .. }
            | Self::Unavailable(_) => "server_error",
        }
    }

    /// The OpenAI error `code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::ModelNotFound { .. } => "model_not_found",
            Self::NotFound { .. } => "unknown_url",
            Self::BodyTooLarge { .. } => "request_too_large",
            Self::Overloaded { .. } => "rate_limit_exceeded",
            Self::NoBackend { .. } => "no_backend_available",
            Self::Backend { .. } => "backend_error",
            Self::UpstreamTimeout { .. } => "backend_timeout",
            Self::Unavailable(_) => "unavailable",
            Self::Unauthorized => "unauthorized",
            Self::RecordNotFound { .. } => "replay_record_not_found",
            Self::BadHttp(_) => "invalid_http",
            Self::HeadTooLarge(_) => "request_header_too_large",
            Self::UnsupportedTransferCoding(_) => "unsupported_transfer_encoding",
            Self::RequestTimeout(_) => "request_timeout",
        }
    }

    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        self.code()
    }

    fn param(&self) -> Option<&str> {
        match self {
            Self::InvalidRequest { param, .. } => param.as_deref(),
            Self::ModelNotFound { .. } => Some("model"),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), "{self}");
        } else {
            tracing::debug!(status = status.as_u16(), "{self}");
        }
        let body = json!({"error": {
            "message": self.to_string(),
            "type": self.kind(),
            "code": self.code(),
            "param": self.param(),
        }});
        let mut resp = (status, axum::Json(body)).into_response();
        let h = resp.headers_mut();
        h.insert(names::SCHEMA_VERSION, HeaderValue::from_static("2"));
        h.insert(names::RESPONSE_PATH, HeaderValue::from_static("error"));
        if matches!(self, Self::Overloaded { .. }) {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if matches!(
            self,
            Self::BodyTooLarge { .. }
                | Self::BadHttp(_)
                | Self::HeadTooLarge(_)
                | Self::UnsupportedTransferCoding(_)
                | Self::RequestTimeout(_)
        ) {
            // The body was left unread, so the server closes the connection after this
            // response: saying so keeps the client from sending its next request on it (and
            // losing that request to the close).
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}
