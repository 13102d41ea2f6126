//! One error type for every handler, one JSON shape for every 4xx and 5xx:
//! `{"error": {"status": 404, "code": "not_found", "message": "…"}}`. 4xx messages are written
//! for the tenant; 5xx bodies stay generic and the cause goes to the log.

use crate::app_store::AdmitError;
use crate::daas::BodyError;
use crate::platform::StoreError;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answered to the client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    class: Option<&'static str>,
    // Boxed: it is rare, and keeps every `Result<_, ApiError>` small.
    written: Option<Box<Written>>,
}

/// The body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// The HTTP status, repeated for clients that lose it.
    pub status: u16,
    /// A stable machine-readable code, e.g. `invalid_component`.
    pub code: &'static str,
    /// What happened and, where possible, what to do about it.
    pub message: String,
    /// The offending field of a refused document (e.g. `stream.max_consumers_per_stream`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The failure class of a refused app (e.g. `out-of-fuel`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<&'static str>,
    /// For a refused or failed data write: exactly what it had written before it stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written: Option<Written>,
}

/// How far a data write got before it was refused or failed. Every document up to and
/// including position `through` is settled (written, already there, or refused and counted);
/// nothing after it was written, except, after a 503, possibly part of the batch that was in
/// flight. Retrying with `idempotency_key` writes nothing twice.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Written {
    /// Documents written by this request.
    pub inserted: u64,
    /// Documents whose `_id` was already there.
    pub duplicates: u64,
    /// Documents refused (bad JSON, not storable); the others were written.
    pub rejected: u64,
    /// The last settled position (array index, or NDJSON line from 1); absent when none is.
    pub through: Option<u64>,
    /// The key the documents' ids derive from: send it as `Idempotency-Key` when retrying.
    pub idempotency_key: String,
}

impl ApiError {
    /// An error with a status, a code and a message for the client.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            class: None,
            written: None,
        }
    }

    /// The same error, saying what the refused or failed write had written.
    #[must_use]
    pub fn with_written(mut self, written: Written) -> Self {
        self.written = Some(Box::new(written));
        self
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401: no credentials, or unknown ones.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: known credentials, not allowed here.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409: conflicts with the current state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 413.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// 422 with the offending field.
    pub fn invalid_field(code: &'static str, field: String, message: impl Into<String>) -> Self {
        let mut error = Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message);
        error.field = (!field.is_empty()).then_some(field);
        error
    }

    /// 500: logs the cause, tells the client nothing about it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the cause is in the host's log",
        )
    }

    /// 503: a dependency is down; worth retrying.
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "dependency unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "a platform service (database or queue) is unavailable; retry later",
        )
    }

    /// A request body that could not be read: too slow (the body idle timeout: 408) or cut
    /// off by the client (400).
    pub fn body(error: &axum::Error) -> Self {
        crate::daas::DaasError::Body(body_error(error)).into()
    }

    /// The message for the client.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                status: self.status.as_u16(),
                code: self.code,
                message: self.message,
                field: self.field,
                class: self.class,
                written: self.written.map(|w| *w),
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(message) => Self::not_found(message),
            StoreError::Conflict(message) => Self::conflict(message),
            StoreError::Database(e) => Self::unavailable(e),
            StoreError::Other(e) => Self::internal(format!("{e:#}")),
        }
    }
}

impl From<AdmitError> for ApiError {
    fn from(error: AdmitError) -> Self {
        match error {
            AdmitError::Refused(failure) => {
                let code = match failure.class {
                    crate::runtime::FailureClass::InvalidComponent => "invalid_component",
                    crate::runtime::FailureClass::HostError => {
                        return Self::internal(failure.message);
                    }
                    _ => "app_refused",
                };
                let mut error = Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    code,
                    failure.message.clone(),
                );
                error.class = Some(failure.class.as_str());
                error
            }
            AdmitError::Store(e) => e.into(),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
            _ => "bad_request",
        };
        Self::new(status, code, rejection.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Self::too_large(rejection.body_text()),
            _ => Self::bad_request(rejection.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

/// What a body that could not be read amounts to: the idle timeout ran out, or the body
/// was cut off.
pub fn body_error(error: &axum::Error) -> BodyError {
    let timed_out = std::iter::successors(
        std::error::Error::source(error),
        |e: &&(dyn std::error::Error + 'static)| e.source(),
    )
    .any(|e| e.is::<tower_http::timeout::TimeoutError>());
    if timed_out {
        BodyError::TimedOut
    } else {
        BodyError::Incomplete(error.to_string())
    }
}

/// `Json` whose rejections come back in our error shape.
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `Path` whose rejections come back in our error shape.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `Query` whose rejections come back in our error shape.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);
