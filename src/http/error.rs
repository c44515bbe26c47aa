//! The one HTTP error type, rendered as JSON on the API and as a plain page
//! elsewhere.
//!
//! Messages are fixed text or name a schema field; they never echo a
//! submitted value. A 5xx body is fixed text and its cause is logged once,
//! here, where it is turned into a response.

use std::borrow::Cow;
use std::fmt::Display;

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::api::{ErrorBody, ErrorDetail};
use crate::submission::Rejection;

/// A failed request: status, stable code, safe message, maybe a field.
#[derive(Debug)]
pub struct HttpError {
    /// The status to answer with.
    pub status: StatusCode,
    /// A stable machine-readable code.
    pub code: &'static str,
    /// A message safe to show (no submitted value in it).
    pub message: Cow<'static, str>,
    /// The schema field concerned, if any.
    pub field: Option<String>,
}

impl HttpError {
    /// An error with a fixed message.
    pub fn new(status: StatusCode, code: &'static str, message: &'static str) -> HttpError {
        HttpError {
            status,
            code,
            message: Cow::Borrowed(message),
            field: None,
        }
    }

    /// 404 for a form that does not exist.
    pub fn unknown_form() -> HttpError {
        HttpError::new(
            StatusCode::NOT_FOUND,
            "unknown_form",
            "there is no such form",
        )
    }

    /// 415 with the expected media type(s).
    pub fn unsupported_media_type(expected: &'static str) -> HttpError {
        HttpError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            message: Cow::Owned(format!("the request body must be {expected}")),
            field: None,
        }
    }

    /// 503: the server cannot take submissions right now.
    pub fn unavailable() -> HttpError {
        HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the server cannot accept submissions right now; nothing was stored, please try again later",
        )
    }

    /// 500 for a fault of ours; logs `cause` (which must hold no submitted
    /// data) and answers fixed text.
    pub fn internal(cause: &dyn Display) -> HttpError {
        tracing::error!(error = %cause, "request failed");
        HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server could not confirm that the submission was stored; please try again later",
        )
    }
}

impl From<Rejection> for HttpError {
    fn from(r: Rejection) -> HttpError {
        let status = if r.is_malformed() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        HttpError {
            status,
            code: r.code(),
            message: Cow::Owned(r.to_string()),
            field: r.field().map(str::to_owned),
        }
    }
}

impl From<BytesRejection> for HttpError {
    fn from(r: BytesRejection) -> HttpError {
        if super::conn::is_body_deadline(&r) {
            HttpError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body was not received in time; nothing was stored",
            )
        } else if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            HttpError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than this server accepts",
            )
        } else {
            HttpError::new(
                StatusCode::BAD_REQUEST,
                "malformed",
                "the request body could not be read",
            )
        }
    }
}

/// An [`HttpError`] answered as `{"error": {"code", "message", "field"?}}`.
#[derive(Debug)]
pub struct ApiError(pub HttpError);

impl<E: Into<HttpError>> From<E> for ApiError {
    fn from(e: E) -> ApiError {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let body = ErrorBody {
            error: ErrorDetail {
                code: Cow::Borrowed(e.code),
                message: e.message,
                field: e.field,
            },
        };
        (e.status, Json(body)).into_response()
    }
}

/// An [`HttpError`] answered as a plain HTML page.
#[derive(Debug)]
pub struct PageError(pub HttpError);

impl<E: Into<HttpError>> From<E> for PageError {
    fn from(e: E) -> PageError {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let e = self.0;
        let title = e.status.canonical_reason().unwrap_or("Error");
        let page = super::pages::error_page(title, &e.message);
        (e.status, Html(page)).into_response()
    }
}

/// What to log of a blocking task that did not finish: whether it panicked
/// or was cancelled, never the panic's message. tokio's `JoinError` displays
/// the message, and a panic in a task that handles a submission could quote
/// a submitted value (the panic hook keeps it out of stderr for the same
/// reason).
pub(crate) fn join_failure(e: &tokio::task::JoinError) -> &'static str {
    if e.is_panic() {
        "a blocking task panicked"
    } else {
        "a blocking task was cancelled"
    }
}

/// `e` as JSON on an `/api/` path and as a page elsewhere, for answers given
/// before any route's own error type applies (fallbacks, early limits).
pub fn for_path(path: &str, e: HttpError) -> Response {
    if path.starts_with("/api/") {
        ApiError(e).into_response()
    } else {
        PageError(e).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::join_failure;

    #[tokio::test]
    async fn a_panicked_task_is_described_without_its_message() {
        let join = tokio::task::spawn_blocking(|| panic!("field value 4711"))
            .await
            .expect_err("the task panicked");
        // What tokio would have put in the log line.
        assert!(join.to_string().contains("field value 4711"));
        assert_eq!(join_failure(&join), "a blocking task panicked");
    }
}
