//! The HTTP surface: [`router`] builds the whole app from an [`AppState`],
//! so tests drive it without a socket, and [`serve`] runs it with graceful
//! shutdown.
//!
//! Handlers parse and validate, then hand the submission to
//! [`crate::intake`] on a sealing thread ([`crate::sealer`]); they never
//! build packets. Logging
//! is one line per request with method, matched route, status and duration:
//! never a peer address, header, query string, body, value or receipt.

mod api;
mod conn;
mod early_limit;
mod error;
pub mod form_tokens;
pub mod limits;
pub mod openapi;
mod pages;
pub mod proxy_header;
mod security_headers;
pub mod slots;
pub mod staff;
mod staff_status;
mod upload;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use tokio::sync::oneshot;

pub use error::HttpError;
pub(crate) use error::join_failure;

use crate::config::StaffPlacement;
use crate::intake::{Committed, Intake};
use crate::receipt::Receipt;
use crate::sealer::Sealer;
use crate::submission::Submission;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

struct StateInner {
    intake: Arc<Intake>,
    /// The threads for the CPU half of intake (sealing), not the wait for
    /// the disk.
    sealer: Sealer,
    upload_slots: slots::UploadSlots,
    limits: limits::Limits,
    tokens: form_tokens::FormTokens,
}

impl AppState {
    /// Wraps a ready intake pipeline and starts its sealing threads.
    pub fn new(intake: Intake) -> std::io::Result<AppState> {
        let sealer = Sealer::start(intake.config.server.max_concurrent_seals)?;
        let server = &intake.config.server;
        let upload_slots = slots::UploadSlots::new(
            server.max_concurrent_uploads,
            server.max_uploads_per_client,
            server.upload_min_bytes_per_sec,
        );
        let limits = limits::Limits::new(&intake.config.limits, intake.config.forms.len());
        let tokens = form_tokens::FormTokens::new(&intake.config.abuse);
        Ok(AppState {
            inner: Arc::new(StateInner {
                intake: Arc::new(intake),
                sealer,
                upload_slots,
                limits,
                tokens,
            }),
        })
    }

    /// A shared handle on the intake pipeline (for an upload's blocking
    /// thread or the staff API).
    pub fn intake_arc(&self) -> Arc<Intake> {
        Arc::clone(&self.inner.intake)
    }

    /// Slots for uploads in progress (separate from the sealing slots, so
    /// long uploads never hold up small submissions).
    pub fn upload_slots(&self) -> &slots::UploadSlots {
        &self.inner.upload_slots
    }

    /// The intake pipeline (config, keyring, store).
    pub fn intake(&self) -> &Intake {
        &self.inner.intake
    }

    /// The rate limiters of the submission routes.
    pub fn limits(&self) -> &limits::Limits {
        &self.inner.limits
    }

    /// The form-token issuer and checker.
    pub fn tokens(&self) -> &form_tokens::FormTokens {
        &self.inner.tokens
    }

    /// Seals a validated submission on a sealing thread and waits until it
    /// is durable: the file's fsync runs on a blocking thread (it needs no
    /// CPU slot), and the rest of the commit on the store's committer, which
    /// batches it with others and answers this task directly.
    async fn seal(&self, form_index: usize, submission: Submission) -> Result<Receipt, HttpError> {
        let (answer, answered) = oneshot::channel();
        let intake = Arc::clone(&self.inner.intake);
        let runtime = tokio::runtime::Handle::current();
        // Until a sealing thread takes it, the committer waits a little for
        // this submission rather than committing small batches (see
        // `store::Expected`); dropped with the job if it never runs.
        let expected = intake.store.expect();
        let job = move || {
            drop(expected);
            // The client went away while this waited its turn: nobody would
            // get the receipt, so the submission is dropped (and zeroized)
            // unsealed, as it would have been before it was queued.
            if answer.is_closed() {
                return;
            }
            let form = &intake.config.forms[form_index];
            let now = SystemTime::now();
            match intake.seal_pending(form, &submission, now) {
                Ok(sealed) => {
                    drop(submission);
                    runtime.spawn_blocking(move || {
                        let done: Committed = Box::new(move |committed| {
                            let _ = answer.send(committed);
                        });
                        intake.enqueue_then(sealed, now, done);
                    });
                }
                Err(e) => {
                    let _ = answer.send(Err(e));
                }
            }
        };
        if self.inner.sealer.submit(job).await.is_err() {
            return Err(HttpError::unavailable());
        }
        let committed = match answered.await {
            Ok(committed) => committed,
            // The sealing job panicked (it logged that), or the committer
            // dropped the record in a panic.
            Err(closed) => return Err(HttpError::internal(&closed)),
        };
        match committed {
            Ok(receipt) => Ok(receipt),
            Err(e) if e.is_storage_full() => {
                tracing::error!(error = %e, "cannot store a submission: storage is full");
                Err(HttpError::unavailable())
            }
            Err(e) => Err(HttpError::internal(&e)),
        }
    }
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let app = Router::new()
        .route("/", get(pages::index))
        .route("/forms/{form}", get(pages::form).post(upload::page_submit))
        .route("/keys", get(pages::keys))
        .route("/keys/{file}", get(pages::key_file))
        .route("/static/style.css", get(pages::stylesheet))
        .route("/healthz", get(healthz))
        .route("/api/v1/forms", get(api::forms))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route(
            "/api/v1/forms/{form}/submissions",
            axum::routing::post(upload::api_submit),
        )
        .merge(staff_routes_here(&state))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    with_common_layers(app, &state)
}

/// The staff API alone, for its own listen address (`staff.listen`), with
/// the same body limits, deadlines, logging rules and headers as the rest.
pub fn staff_router(state: AppState) -> Router {
    let app = staff::routes(staff::StaffState::new(state.intake_arc()))
        .fallback(|| async { staff::StaffError::NotFound })
        .method_not_allowed_fallback(method_not_allowed);
    with_common_layers(app, &state)
}

/// What every listener's routes get: body limits and deadlines, the access
/// log (unless turned off) and the security headers.
fn with_common_layers(app: Router<AppState>, state: &AppState) -> Router {
    let config = &state.intake().config;
    let body_limit = config.server.max_body_bytes;
    let headers = security_headers::SecurityHeaders::new(&config.abuse);
    let app = app
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            body_limit,
            early_limit::refuse_announced_oversize,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            conn::body_deadline,
        ));
    let app = if config.abuse.access_log {
        app.layer(axum::middleware::from_fn(access_log))
    } else {
        app
    };
    // No deadline on the handler as a whole: a submission's body has its
    // deadline (`conn::body_deadline`, or the upload's own), and a handler
    // cut off while sealing would answer 408 for a record that is stored.
    app.layer(axum::middleware::from_fn_with_state(
        headers,
        security_headers::add,
    ))
    .with_state(state.clone())
}

/// The staff API, when the operator chose to serve it next to the forms
/// (`staff.on_public_listener`).
fn staff_routes_here(state: &AppState) -> Router<AppState> {
    if state.intake().config.staff.placement() == StaffPlacement::PublicListener {
        staff::routes(staff::StaffState::new(state.intake_arc()))
    } else {
        Router::new()
    }
}

/// The access log: one line per request, when its response starts: the
/// method, the route's pattern (never the path, which may carry a form's or
/// a record's name, nor the query), the status and the latency. Nothing about
/// the client. One event and no span: a span per request cost about as much
/// CPU as the rest of the logging.
async fn access_log(req: Request, next: axum::middleware::Next) -> Response {
    let start = Instant::now();
    let method = method_name(req.method());
    let route = req.extensions().get::<MatchedPath>().cloned();
    let res = next.run(req).await;
    let route = route.as_ref().map_or("(unmatched)", MatchedPath::as_str);
    tracing::info!(
        method = %method,
        route = %route,
        status = res.status().as_u16(),
        latency_ms = start.elapsed().as_millis() as u64,
        "request"
    );
    res
}

/// A request's method as the access log names it: a standard method by its
/// name, anything else as `other`. hyper accepts any token as a method, up
/// to the size of the request head, and the log must not carry what a
/// client chose to write there.
fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// The one parameter of a route (`{form}`, `{file}`, `{receipt}`) as text.
/// A segment whose bytes are not UTF-8 (`%FF`) names nothing here: 404 in
/// the format of the path (JSON under `/api/`), where axum's own `Path`
/// would answer a plain-text 400.
pub(crate) struct Segment(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Segment {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Segment, Response> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(s)) => Ok(Segment(s)),
            Err(_) => Err(closing_if_body(
                &parts.headers,
                error::for_path(parts.uri.path(), nothing_here()),
            )),
        }
    }
}

fn nothing_here() -> HttpError {
    HttpError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "there is nothing at this address",
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn not_found(req: Request) -> Response {
    closing_if_body(
        req.headers(),
        error::for_path(req.uri().path(), nothing_here()),
    )
}

async fn method_not_allowed(req: Request) -> Response {
    let e = HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this address does not accept that method",
    );
    closing_if_body(req.headers(), error::for_path(req.uri().path(), e))
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
pub(crate) fn closing(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

/// The media type of a request body, lowercased, without parameters.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(ct.split(';').next()?.trim().to_ascii_lowercase())
}

/// Runs the app on `listener` (and the staff API on `staff_listener`, when
/// it has its own) until `shutdown` resolves, then lets in-flight requests
/// finish (their records are durable when they answer) and flushes the
/// index. Each connection is bounded in number and in time (see
/// `[limits]`); idle clients are forgotten by the rate limiters every minute.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    staff_listener: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let housekeeping = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                state.limits().retain_recent();
                state.tokens().forget_expired();
            }
        })
    };
    let server = &state.intake().config.server;
    let limits = &state.intake().config.limits;
    let grace = Duration::from_secs(
        server.upload_stall_secs + limits.header_timeout_secs + limits.body_timeout_secs,
    );
    // One stop signal for both listeners.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let relay = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    // Only the public listener has a front end that writes PROXY headers
    // (the staff API's own address is reached directly).
    let public = conn::accept_loop(
        &state,
        router(state.clone()),
        listener,
        stopped(stop_rx.clone()),
        grace,
        limits.proxy_protocol,
    );
    let staff = async {
        if let Some(l) = staff_listener {
            let app = staff_router(state.clone());
            conn::accept_loop(&state, app, l, stopped(stop_rx.clone()), grace, false).await;
        }
    };
    tokio::join!(public, staff);
    relay.abort();
    housekeeping.abort();
    if let Err(e) = state.intake().store.flush() {
        tracing::error!(error = %e, "flushing the index at shutdown failed");
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
///
/// The handlers are installed when this is called, not when the future is
/// first polled: call it before announcing that the server listens, or a
/// SIGTERM sent right after that announcement kills the process the default
/// way (no graceful stop, non-zero exit). Must be called inside a runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
            match s {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for a stop signal");
                    std::future::pending::<()>().await
                }
            }
        };
        tokio::select! {
            _ = wait(term) => {},
            _ = wait(int) => {},
        }
        tracing::info!("shutting down: finishing in-flight requests");
    }
}
