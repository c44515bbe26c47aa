//! The one HTTP error type, [`HttpError`]: a status, a stable
//! [`ErrorCode`], a safe message, maybe a field. It answers as JSON on an
//! API route and as a plain page elsewhere ([`Surface`], set by the route
//! that answers, never guessed from the path once a route is matched).
//!
//! Messages are fixed text or name a schema field; they never echo a
//! submitted value. A 5xx body is fixed text. Its cause (or, for a refusal
//! the operator should hear of, a warning) travels in the response's
//! extensions ([`LogEntry`]) and [`log_failures`], a middleware, logs it
//! once; nothing logs where an error is made.

use std::borrow::Cow;
use std::fmt::Display;

use axum::Json;
use axum::extract::Request;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use super::pages::layout::error_page;
use crate::api::error::{ErrorBody, ErrorCode, ErrorDetail};
use crate::submission::Rejection;

/// Which kind of route answers, and so how an error is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// Under `/api/`: `{"error": {"code", "message", "field"?}}`.
    Api,
    /// Anything else: an HTML page.
    Page,
}

impl Surface {
    /// The surface of a request no route took (fallbacks, the early size
    /// check): its path decides, as the routes are laid out.
    pub fn of_unrouted(path: &str) -> Surface {
        if path.starts_with("/api/") {
            Surface::Api
        } else {
            Surface::Page
        }
    }
}

/// A failed request: status, stable code, safe message, maybe a field.
#[derive(Debug)]
pub struct HttpError {
    /// The status to answer with.
    pub status: StatusCode,
    /// A stable machine-readable code.
    pub code: ErrorCode,
    /// A message safe to show (no submitted value in it).
    pub message: Cow<'static, str>,
    /// The schema field concerned, if any.
    pub field: Option<String>,
    surface: Surface,
    log: Option<LogEntry>,
}

/// What the log says of a failed request, for the log alone: the cause of
/// a fault of ours, or a warning for the operator. A response extension
/// that [`log_failures`] takes out and logs once; it holds no submitted
/// value, address, header or receipt. (Not to be confused with
/// `http/submit/outcome.rs`'s `Failure`: why a submission was not stored.)
#[derive(Debug, Clone)]
pub struct LogEntry {
    what: &'static str,
    cause: String,
    /// Logged as a warning without a cause: a refusal the operator should
    /// hear of (the server is out of room), not a fault.
    warning: bool,
}

impl HttpError {
    /// An error with a fixed message.
    pub fn new(status: StatusCode, code: ErrorCode, message: &'static str) -> HttpError {
        HttpError {
            status,
            code,
            message: Cow::Borrowed(message),
            field: None,
            surface: Surface::Page,
            log: None,
        }
    }

    /// 404 for a form that does not exist.
    pub fn unknown_form() -> HttpError {
        HttpError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownForm,
            "there is no such form",
        )
    }

    /// 415 with the expected media type(s).
    pub fn unsupported_media_type(expected: &'static str) -> HttpError {
        HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "",
        )
        .saying(format!("the request body must be {expected}"))
    }

    /// 503: the server cannot take submissions right now.
    pub fn unavailable() -> HttpError {
        HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "the server cannot accept submissions right now; nothing was stored, please try again later",
        )
    }

    /// 500 for a fault of ours whose cause was already logged where it
    /// happened (a sealing job that panicked: `intake/workers.rs` logs
    /// that; the committer failing on a batch: `store/committer.rs`).
    pub fn failed() -> HttpError {
        HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "the server could not confirm that the submission was stored; please try again later",
        )
    }

    /// 500 for a fault of ours, answered with fixed text; `cause` (which
    /// must hold no submitted data) is logged once, when answered.
    pub fn internal(cause: &dyn Display) -> HttpError {
        HttpError::failed().logging("request failed", cause)
    }

    /// This error, with `cause` to be logged as `what` once it is answered.
    pub fn logging(mut self, what: &'static str, cause: &dyn Display) -> HttpError {
        self.log = Some(LogEntry {
            what,
            cause: cause.to_string(),
            warning: false,
        });
        self
    }

    /// This error, with the warning `what` to be logged once it is
    /// answered: a refusal the operator should hear of (no upload slot, no
    /// free space), which has no cause to log.
    pub fn warning(mut self, what: &'static str) -> HttpError {
        self.log = Some(LogEntry {
            what,
            cause: String::new(),
            warning: true,
        });
        self
    }

    /// This error with another message (safe to show: no submitted value).
    pub fn saying(mut self, message: String) -> HttpError {
        self.message = Cow::Owned(message);
        self
    }

    /// This error, answered as `surface` asks.
    pub fn on(mut self, surface: Surface) -> HttpError {
        self.surface = surface;
        self
    }

    /// Moves the cause to log (if any) into `res`, for a response that was
    /// rendered from this error some other way (a page in the reader's
    /// language).
    pub fn hand_log_to(&mut self, res: &mut Response) {
        if let Some(entry) = self.log.take() {
            res.extensions_mut().insert(entry);
        }
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
            code: rejection_code(&r),
            message: Cow::Owned(r.to_string()),
            field: r.field().map(str::to_owned),
            surface: Surface::Page,
            log: None,
        }
    }
}

/// The API's code for a rejection (the same text as [`Rejection::code`]).
fn rejection_code(r: &Rejection) -> ErrorCode {
    match r {
        Rejection::Malformed(_) => ErrorCode::Malformed,
        Rejection::InvalidUtf8 => ErrorCode::InvalidUtf8,
        Rejection::TooManyFields => ErrorCode::TooManyFields,
        Rejection::UnknownField => ErrorCode::UnknownField,
        Rejection::DuplicateField(_) => ErrorCode::DuplicateField,
        Rejection::Missing(_) => ErrorCode::MissingField,
        Rejection::TooLong(..) => ErrorCode::TooLong,
        Rejection::WrongType(_) => ErrorCode::WrongType,
        Rejection::InvalidOption(_) => ErrorCode::InvalidOption,
        Rejection::InvalidEmail(_) => ErrorCode::InvalidEmail,
        Rejection::InvalidCharacters(_) => ErrorCode::InvalidCharacters,
        Rejection::ExpectedFile(_) => ErrorCode::ExpectedFile,
    }
}

/// The request body took longer than `limits.body_timeout_secs`.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received in time")]
pub struct BodyDeadlineElapsed;

/// Whether `err` (a body read failure) is the body deadline.
fn is_body_deadline(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<BodyDeadlineElapsed>() {
            return true;
        }
        cur = e.source();
    }
    false
}

impl From<BytesRejection> for HttpError {
    fn from(r: BytesRejection) -> HttpError {
        if is_body_deadline(&r) {
            HttpError::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::RequestTimeout,
                "the request body was not received in time; nothing was stored",
            )
        } else if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            HttpError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                "the request body is larger than this server accepts",
            )
        } else {
            HttpError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::Malformed,
                "the request body could not be read",
            )
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(mut self) -> Response {
        let mut res = match self.surface {
            Surface::Api => {
                let body = ErrorBody {
                    error: ErrorDetail {
                        code: self.code,
                        message: std::mem::take(&mut self.message),
                        field: self.field.take(),
                    },
                };
                (self.status, Json(body)).into_response()
            }
            Surface::Page => {
                let title = self.status.canonical_reason().unwrap_or("Error");
                (self.status, Html(error_page(title, &self.message))).into_response()
            }
        };
        self.hand_log_to(&mut res);
        res
    }
}

/// Middleware: logs the cause of a failed request once, from the
/// [`LogEntry`] its response carries, and keeps it out of the response.
pub async fn log_failures(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    match res.extensions_mut().remove::<LogEntry>() {
        Some(LogEntry {
            what,
            warning: true,
            ..
        }) => tracing::warn!("{what}"),
        Some(LogEntry { what, cause, .. }) => tracing::error!(error = %cause, "{what}"),
        None => {}
    }
    res
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

/// `e` as a request no route took is answered: JSON under `/api/`, a page
/// elsewhere, with `Connection: close` if the request announced a body
/// (which is never read).
pub fn unrouted(path: &str, headers: &HeaderMap, e: HttpError) -> Response {
    closing_if_body(headers, e.on(Surface::of_unrouted(path)).into_response())
}

/// 404 for an address that names nothing.
pub fn nothing_here() -> HttpError {
    HttpError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "there is nothing at this address",
    )
}

/// `res`, with `Connection: close` if the request it answers announced a
/// body (which was not read): a post to no form at all is refused like one
/// to an unknown form.
fn closing_if_body(headers: &HeaderMap, res: Response) -> Response {
    let announced = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|n| n.as_bytes() != b"0");
    if announced { closing(res) } else { res }
}

/// `res` with `Connection: close`: for an answer given before the request
/// body was read, hyper then closes the connection instead of reading the
/// body to its end (which would take a client's time and our memory for a
/// post refused anyway).
pub fn closing(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicked_task_is_described_without_its_message() {
        let join = tokio::task::spawn_blocking(|| panic!("field value 4711"))
            .await
            .expect_err("the task panicked");
        // What tokio would have put in the log line.
        assert!(join.to_string().contains("field value 4711"));
        assert_eq!(join_failure(&join), "a blocking task panicked");
    }

    #[test]
    fn every_rejection_has_the_code_it_names_itself() {
        let rejections = [
            Rejection::Malformed("x"),
            Rejection::InvalidUtf8,
            Rejection::TooManyFields,
            Rejection::UnknownField,
            Rejection::DuplicateField("f".into()),
            Rejection::Missing("f".into()),
            Rejection::TooLong("f".into(), 3),
            Rejection::WrongType("f".into()),
            Rejection::InvalidOption("f".into()),
            Rejection::InvalidEmail("f".into()),
            Rejection::InvalidCharacters("f".into()),
            Rejection::ExpectedFile("f".into()),
        ];
        for r in rejections {
            let code = serde_json::to_value(rejection_code(&r)).expect("serializes");
            assert_eq!(code, serde_json::Value::from(r.code()), "{r:?}");
        }
    }

    #[test]
    fn an_internal_error_keeps_its_cause_out_of_the_body_and_in_an_extension() {
        let res = HttpError::internal(&"disk on fire")
            .on(Surface::Api)
            .into_response();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let failure = res
            .extensions()
            .get::<LogEntry>()
            .expect("the cause travels");
        assert_eq!(failure.cause, "disk on fire");
    }

    /// What a test's subscriber wrote.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// `app` behind [`log_failures`], asked `GET /`: its answer and what
    /// it logged.
    async fn answer_and_log(app: axum::Router) -> (Response, String) {
        use tower::ServiceExt as _;
        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let app = app.layer(axum::middleware::from_fn(log_failures));
        let res = app
            .oneshot(Request::new(axum::body::Body::empty()))
            .await
            .expect("answered");
        let text = String::from_utf8(log.0.lock().expect("lock").clone()).expect("utf-8");
        (res, text)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failure_is_logged_once_by_the_middleware_and_never_answered() {
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(|| async { HttpError::internal(&"disk on fire") }),
        );
        let (res, text) = answer_and_log(app).await;
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(res.extensions().get::<LogEntry>().is_none());
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .expect("body");
        assert!(!String::from_utf8_lossy(&body).contains("disk on fire"));
        assert_eq!(text.matches("disk on fire").count(), 1, "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    /// Every upload slot taken is a warning for the operator: logged once,
    /// by the middleware, on either surface (not where the refusal is made,
    /// and not again where it is answered).
    #[tokio::test(flavor = "current_thread")]
    async fn no_upload_slot_is_one_warning_logged_by_the_middleware() {
        use crate::http::refusal::Refusal;
        for surface in [Surface::Api, Surface::Page] {
            let app = axum::Router::new().route(
                "/",
                axum::routing::get(move || async move { Refusal::NoUploadSlot.respond(surface) }),
            );
            let (res, text) = answer_and_log(app).await;
            assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "{surface:?}");
            assert!(res.extensions().get::<LogEntry>().is_none(), "{surface:?}");
            assert_eq!(text.lines().count(), 1, "{surface:?}: {text}");
            assert!(text.contains("WARN"), "{surface:?}: {text}");
            assert!(
                text.contains("max_concurrent_uploads"),
                "{surface:?}: {text}"
            );
        }
    }
}
