//! Connections: the accept loop and the time a client may take.
//!
//! It owns the bounds that make a slow client cost one connection slot for a
//! bounded time and nothing more: a cap on connections (a semaphore taken
//! before `accept`, so the excess waits in the kernel's backlog), hyper's
//! header read timeout (which also bounds how long a kept-alive connection
//! may sit idle waiting for its next request), and a deadline on the whole
//! request body. It hands each request the peer address as `ConnectInfo`
//! for the rate limiter, and never logs it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tower::ServiceExt as _;

use super::AppState;

/// The request body took longer than `limits.body_timeout_secs`.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received in time")]
pub struct BodyDeadlineElapsed;

/// A body that fails once its deadline has passed.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyDeadlineElapsed)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: the body must arrive within `limits.body_timeout_secs` of
/// the request head (uploads excepted).
pub async fn body_deadline(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    // Uploads have their own deadlines (a long total one and a stall
    // limit, see `upload.rs`); a 1 GiB file cannot arrive in seconds.
    if super::upload::is_upload(&req) {
        return next.run(req).await;
    }
    let secs = state.intake().config.limits.body_timeout_secs;
    let deadline = Box::pin(tokio::time::sleep(Duration::from_secs(secs)));
    let req = req.map(|inner| Body::new(DeadlineBody { inner, deadline }));
    next.run(req).await
}

/// Whether `err` (a body read failure) is the body deadline.
pub fn is_body_deadline(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<BodyDeadlineElapsed>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Serves `app` on `listener` until `shutdown` resolves, then waits (at
/// most `grace`) for in-flight requests to finish.
pub async fn accept_loop(
    state: &AppState,
    app: axum::Router,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) {
    let limits = &state.intake().config.limits;
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let header_timeout = Duration::from_secs(limits.header_timeout_secs);
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(64 * 1024);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let svc = app
            .clone()
            .map_request(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                req
            });
        let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A client that goes away or times out is not our error.
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after the grace period");
    }
}
