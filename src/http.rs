//! The HTTP surface: [`router`] builds the whole app from an [`AppState`],
//! so tests drive it without a socket, and [`serve`] runs it with graceful
//! shutdown.
//!
//! Handlers parse and validate, then hand the submission to
//! [`crate::intake`] ([`Intake::submit`], [`Intake::submit_stream`]); they
//! never build packets. Logging
//! is one line per request with method, matched route, status and duration:
//! never a peer address, header, query string, body, value or receipt.

mod api;
mod body_kind;
mod conn;
mod early_limit;
mod error;
pub mod form_tokens;
pub mod limits;
pub mod openapi;
mod pages;
pub mod proxy_header;
mod refusal;
mod replies;
mod secret_body;
mod security_headers;
pub mod slots;
pub mod staff;
mod staff_replies;
mod staff_status;
mod submit;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use axum::routing::{get, post};

pub use error::HttpError;
pub(crate) use error::join_failure;

use crate::api::error::ErrorCode;
use crate::config::StaffPlacement;
use crate::intake::{Intake, IntakeError};
use crate::receipt::Receipt;
use crate::submission::Submission;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

struct StateInner {
    intake: Arc<Intake>,
    upload_slots: slots::UploadSlots,
    limits: limits::Limits,
    tokens: form_tokens::FormTokens,
    /// The daily digest's state per reader, with `[notify]`: written by
    /// the digest task `serve` starts, read by the staff status route.
    digest: Option<Arc<crate::notify::Ledger>>,
}

impl AppState {
    /// Wraps a ready intake pipeline; form tokens are signed with
    /// `token_key` ([`form_tokens::TokenKey::for_config`]).
    pub fn new(intake: Intake, token_key: form_tokens::TokenKey) -> AppState {
        let server = &intake.config.server;
        let upload_slots = slots::UploadSlots::new(
            server.max_concurrent_uploads,
            server.max_uploads_per_client,
            server.upload_min_bytes_per_sec,
        );
        let limits = limits::Limits::new(&intake.config.limits, intake.config.forms.len());
        let mut tokens = form_tokens::FormTokens::new(&intake.config.abuse, token_key);
        // Nodes sharing a database share the set of used tokens too.
        if let Some(pg) = intake.store.postgres() {
            tokens = tokens.sharing(Arc::new(crate::used_tokens::PgUsedTokens::new(pg.pool())));
        }
        let digest = intake
            .config
            .notify
            .as_ref()
            .map(|n| Arc::new(crate::notify::Ledger::new(n)));
        AppState {
            inner: Arc::new(StateInner {
                intake: Arc::new(intake),
                upload_slots,
                limits,
                tokens,
                digest,
            }),
        }
    }

    /// A shared handle on the intake pipeline (for an upload's sealing task
    /// or the staff API).
    pub fn intake_arc(&self) -> Arc<Intake> {
        Arc::clone(&self.inner.intake)
    }

    /// The daily digest's ledger (with `[notify]`), for the task that
    /// writes it and the staff status route that reads it.
    pub fn digest_ledger(&self) -> Option<Arc<crate::notify::Ledger>> {
        self.inner.digest.clone()
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

    /// The reply store (staff answers to tipsters); blocking I/O: use it
    /// from a blocking thread.
    pub fn mailboxes(&self) -> &Arc<crate::replies::Mailboxes> {
        &self.inner.intake.mailboxes
    }

    /// The rate limiters of the submission routes.
    pub fn limits(&self) -> &limits::Limits {
        &self.inner.limits
    }

    /// The form-token issuer and checker.
    pub fn tokens(&self) -> &form_tokens::FormTokens {
        &self.inner.tokens
    }

    /// Seals a validated submission ([`Intake::submit`]) and waits until it
    /// is durable; the failures answer 503 (workers stopped, storage full,
    /// database unavailable) or 500, each logged once (see `http/error.rs`).
    async fn seal(
        &self,
        form_index: usize,
        submission: Submission,
        reply: Option<crate::replies::Derived>,
    ) -> Result<Receipt, HttpError> {
        match self
            .inner
            .intake
            .submit(form_index, submission, reply)
            .await
        {
            Ok(receipt) => Ok(receipt),
            Err(IntakeError::Unavailable) => Err(HttpError::unavailable()),
            // The sealing job panicked, or the committer dropped the record
            // in a panic: either logged that, so nothing is logged again.
            Err(IntakeError::Unanswered(_)) => Err(HttpError::failed()),
            Err(e) if e.is_storage_full() => {
                Err(HttpError::unavailable()
                    .logging("cannot store a submission: storage is full", &e))
            }
            Err(e) if e.is_store_unavailable() => Err(HttpError::unavailable()
                .logging("cannot store a submission: the database is unavailable", &e)),
            Err(e) => Err(HttpError::internal(&e)),
        }
    }
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let app = Router::new()
        .route("/", get(pages::index))
        .route(
            body_kind::FORM_ROUTE,
            get(pages::form::form).post(submit::submit),
        )
        .route("/keys", get(pages::keys::keys))
        .route("/keys/{file}", get(pages::keys::key_file))
        .route("/static/style.css", get(pages::stylesheet))
        .route("/healthz", get(healthz))
        .route("/api/v1/forms", get(api::forms))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route(
            body_kind::API_SUBMISSIONS_ROUTE,
            axum::routing::post(submit::submit),
        )
        .merge(replies_routes())
        .merge(staff_routes_here(&state))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    with_common_layers(app, &state)
}

/// The tipster's reply routes (`http/replies.rs`): the pages and their
/// JSON twin, each body capped at [`replies::MAX_BODY_BYTES`].
fn replies_routes() -> Router<AppState> {
    use pages::replies::{DELETE_PATH, FOLLOW_UP_PATH, REPLIES_PATH};
    Router::new()
        .route(
            REPLIES_PATH,
            get(replies::page::ask).post(replies::page::read),
        )
        .route(FOLLOW_UP_PATH, post(replies::page::follow_up))
        .route(DELETE_PATH, post(replies::page::delete))
        .route(replies::API_READ_ROUTE, post(replies::api::read))
        .route(replies::API_FOLLOW_UP_ROUTE, post(replies::api::follow_up))
        .route(replies::API_DELETE_ROUTE, post(replies::api::delete))
        .layer(DefaultBodyLimit::max(replies::MAX_BODY_BYTES))
}

/// The staff API alone, for its own listen address (`staff.listen`), with
/// the same body limits, deadlines, logging rules and headers as the rest.
pub fn staff_router(state: AppState) -> Router {
    let app = staff_routes(&state)
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
    // Inside the access log: a failure's cause is logged (and taken out of
    // the response) once, whether or not requests are logged.
    let app = app.layer(axum::middleware::from_fn(error::log_failures));
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
        staff_routes(state)
    } else {
        Router::new()
    }
}

/// Every staff route: records and status (`staff.rs`), answers to
/// tipsters (`staff_replies.rs`).
fn staff_routes<S: Clone + Send + Sync + 'static>(state: &AppState) -> Router<S> {
    let st = staff::StaffState::new(state.intake_arc(), state.digest_ledger());
    staff::routes(st.clone()).merge(staff_replies::routes(st))
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
            Err(_) => Err(error::unrouted(
                parts.uri.path(),
                &parts.headers,
                error::nothing_here(),
            )),
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn not_found(req: Request) -> Response {
    error::unrouted(req.uri().path(), req.headers(), error::nothing_here())
}

async fn method_not_allowed(req: Request) -> Response {
    let e = HttpError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "this address does not accept that method",
    );
    error::unrouted(req.uri().path(), req.headers(), e)
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
                state.tokens().forget_expired_everywhere().await;
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
