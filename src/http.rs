//! The HTTP surface: [`router`] builds the whole app from an [`AppState`],
//! so tests drive it without a socket, and [`serve`] runs it with graceful
//! shutdown.
//!
//! Handlers parse and validate, then hand the submission to
//! [`crate::intake`] on a blocking thread; they never build packets. Logging
//! is one line per request with method, matched route, status and duration:
//! never a peer address, header, query string, body, value or receipt.

mod api;
mod error;
pub mod openapi;
mod pages;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::Semaphore;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use error::HttpError;

use crate::intake::Intake;
use crate::store::Receipt;
use crate::submission::Submission;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

struct StateInner {
    intake: Arc<Intake>,
    /// Bounds the CPU half of intake (sealing), not the wait for the disk.
    seal_permits: Arc<Semaphore>,
}

impl AppState {
    /// Wraps a ready intake pipeline.
    pub fn new(intake: Intake) -> AppState {
        let permits = intake.config.server.max_concurrent_seals;
        AppState {
            inner: Arc::new(StateInner {
                intake: Arc::new(intake),
                seal_permits: Arc::new(Semaphore::new(permits)),
            }),
        }
    }

    /// The intake pipeline (config, keyring, store).
    pub fn intake(&self) -> &Intake {
        &self.inner.intake
    }

    /// Seals a validated submission on a blocking thread and waits until it
    /// is durable.
    async fn seal(&self, form_index: usize, submission: Submission) -> Result<Receipt, HttpError> {
        let permit = Arc::clone(&self.inner.seal_permits)
            .acquire_owned()
            .await
            .map_err(|_| HttpError::unavailable())?;
        let intake = Arc::clone(&self.inner.intake);
        let sealed = tokio::task::spawn_blocking(move || {
            let form = &intake.config.forms[form_index];
            let now = SystemTime::now();
            let sealed = intake.seal_pending(form, &submission, now)?;
            // Sealing is done: waiting for the fsyncs needs no CPU slot, and
            // commits waiting together share their syncs (see `store`).
            drop(permit);
            intake.commit(sealed, now)
        })
        .await;
        match sealed {
            Ok(Ok((receipt, _))) => Ok(receipt),
            Ok(Err(e)) if e.is_storage_full() => {
                tracing::error!(error = %e, "cannot store a submission: storage is full");
                Err(HttpError::unavailable())
            }
            Ok(Err(e)) => Err(HttpError::internal(&e)),
            Err(join) => Err(HttpError::internal(&join)),
        }
    }
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let server = &state.intake().config.server;
    let body_limit = server.max_body_bytes;
    let timeout = Duration::from_secs(server.request_timeout_secs);
    Router::new()
        .route("/", get(pages::index))
        .route("/forms/{form}", get(pages::form).post(pages::submit))
        .route("/keys", get(pages::keys))
        .route("/keys/{file}", get(pages::key_file))
        .route("/static/style.css", get(pages::stylesheet))
        .route("/healthz", get(healthz))
        .route("/api/v1/forms", get(api::forms))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route(
            "/api/v1/forms/{form}/submissions",
            axum::routing::post(api::submit),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let route = req
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or("(unmatched)", |m| m.as_str());
                    tracing::info_span!("http", method = %req.method(), route = %route)
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::INFO))
                .on_failure(()),
        )
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                 frame-ancestors 'none'; base-uri 'none'",
            ),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn not_found(req: Request) -> Response {
    let e = HttpError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "there is nothing at this address",
    );
    if req.uri().path().starts_with("/api/") {
        error::ApiError(e).into_response()
    } else {
        error::PageError(e).into_response()
    }
}

async fn method_not_allowed(req: Request) -> Response {
    let e = HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this address does not accept that method",
    );
    if req.uri().path().starts_with("/api/") {
        error::ApiError(e).into_response()
    } else {
        error::PageError(e).into_response()
    }
}

/// The media type of a request body, lowercased, without parameters.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(ct.split(';').next()?.trim().to_ascii_lowercase())
}

/// Runs the app on `listener` until `shutdown` resolves, then lets in-flight
/// requests finish (their records are durable when they answer) and flushes
/// the index.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    if let Err(e) = state.intake().store.flush() {
        tracing::error!(error = %e, "flushing the index at shutdown failed");
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
