//! Connections: the accept loop and the time a client may take.
//!
//! It owns the bounds that make a slow client cost one connection slot for a
//! bounded time and nothing more: a cap on connections (a semaphore taken
//! before `accept`, so the excess waits in the kernel's backlog), hyper's
//! header read timeout (which also bounds how long a kept-alive connection
//! may sit idle waiting for its next request), and a deadline on the whole
//! request body. It hands each request the peer address as `ConnectInfo`
//! (and, with `[limits] proxy_protocol`, the client its PROXY header named,
//! or the peer itself for a header that names none, as [`ProxiedClient`])
//! for the rate limiter, and never logs either.

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
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite};
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tower::ServiceExt as _;

use super::AppState;
use super::error::BodyDeadlineElapsed;
use super::limits::ProxiedClient;
use super::proxy_header;

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
    // limit, see `http/submit/multipart.rs`); a 1 GiB file cannot arrive in
    // seconds.
    if super::body_kind::is_upload(&req) {
        return next.run(req).await;
    }
    let secs = state.intake().config.limits.body_timeout_secs;
    let deadline = Box::pin(tokio::time::sleep(Duration::from_secs(secs)));
    let req = req.map(|inner| Body::new(DeadlineBody { inner, deadline }));
    next.run(req).await
}

/// Serves `app` on `listener` until `shutdown` resolves, then waits (at
/// most `grace`) for in-flight requests to finish. With `proxy_protocol`,
/// each connection must start with a PROXY header (see
/// [`super::proxy_header`]; it and the first request head share the header
/// timeout) whose client the rate limiter takes; a connection without one
/// is closed.
pub async fn accept_loop(
    state: &AppState,
    app: axum::Router,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
    proxy_protocol: bool,
) {
    let limits = &state.intake().config.limits;
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let header_timeout = Duration::from_secs(limits.header_timeout_secs);
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(64 * 1024)
        // A body is queued and written as it is, never copied into the
        // connection's own buffer: the bodies that carry a secret zeroize
        // themselves when hyper drops them (src/http/secret_body.rs).
        .writev(true);
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
        let accepted = tokio::time::Instant::now();
        let _ = stream.set_nodelay(true);
        let (app, builder, watcher) = (app.clone(), builder.clone(), graceful.watcher());
        tokio::spawn(async move {
            if proxy_protocol {
                let timeout = (header_timeout, accepted);
                serve_proxied(builder, watcher, app, stream, peer, timeout).await;
            } else {
                serve_connection(builder, watcher, app, stream, peer, None).await;
            }
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

/// Reads a connection's PROXY header, then serves it for the client the
/// header names; a connection without one is closed. `timeout`: the
/// header timeout, and when the connection was accepted.
async fn serve_proxied(
    mut builder: hyper::server::conn::http1::Builder,
    watcher: Watcher,
    app: axum::Router,
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
    timeout: (Duration, tokio::time::Instant),
) {
    let (header_timeout, accepted) = timeout;
    match proxy_header::read(&mut stream, header_timeout).await {
        Ok(header) => {
            // The header and the request head share one
            // header_timeout_secs, or a client could hold the
            // slot for each in turn. (A front end sends the
            // header at once, so this costs its connections'
            // keep-alive next to nothing.)
            builder.header_read_timeout(header_timeout.saturating_sub(accepted.elapsed()));
            // What was read past the header is the start of the
            // first request: hyper reads it first.
            let (read, write) = stream.into_split();
            let io = tokio::io::join(std::io::Cursor::new(header.rest).chain(read), write);
            // A header that names no client (v2 LOCAL or a
            // non-IP family, v1 UNKNOWN) is the front end's own
            // connection: keyed as the front end, so that it is
            // one client, and X-Forwarded-For is never read.
            let client = ProxiedClient(header.client.unwrap_or(peer.ip()));
            serve_connection(builder, watcher, app, io, peer, Some(client)).await;
        }
        // The reason only: the header's bytes and addresses
        // stay out of the log.
        Err(e) => {
            tracing::warn!("closed a connection: {e} ([limits] proxy_protocol is on)")
        }
    }
}

/// Serves HTTP/1.1 on one connection until it closes (a client that goes
/// away or times out is not our error), handing each request the socket
/// peer and, behind a PROXY header, the client it named.
async fn serve_connection<I>(
    builder: hyper::server::conn::http1::Builder,
    watcher: Watcher,
    app: axum::Router,
    io: I,
    peer: SocketAddr,
    client: Option<ProxiedClient>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = app.map_request(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
        if let Some(client) = client {
            req.extensions_mut().insert(client);
        }
        req
    });
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(svc));
    let _ = watcher.watch(conn).await;
}
