//! Refuses a request whose `Content-Length` already announces a body over
//! `server.max_body_bytes`, before any of the body is read.
//!
//! The body extractors enforce the limit only while reading, so without this
//! a client that announces a huge body and sends nothing (or sends it
//! slowly) holds the request open until the request timeout instead of
//! getting its 413 at once. The 413 says `Connection: close`, so none of the
//! body is read after it. Bodies without a length (chunked) are still
//! counted by the extractors. Uploads (multipart posts to the two upload
//! routes) have their own, per-form caps, checked the same way before
//! reading (`http/submit/multipart.rs`), so they pass, as does an answer
//! pushed by staff (capped by `[replies] max_answer_bytes` in
//! `http/staff_replies.rs`); a multipart body anywhere else does not.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::response::Response;

use super::body_kind::{is_answer_push, is_upload};
use super::error::{HttpError, Surface, closing};
use crate::api::error::ErrorCode;

/// Middleware: 413 when `Content-Length` exceeds `limit` (JSON on the API,
/// a page elsewhere); otherwise passes the request on.
pub async fn refuse_announced_oversize(
    State(limit): State<usize>,
    req: Request,
    next: Next,
) -> Response {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok());
    if !is_upload(&req) && !is_answer_push(&req) && announced.is_some_and(|n| n > limit as u64) {
        let e = HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            "the request body is larger than this server accepts",
        );
        // Connection: close, so the body is not read after the answer.
        let surface = Surface::of_unrouted(req.uri().path());
        return closing(e.on(surface).into_response());
    }
    next.run(req).await
}
