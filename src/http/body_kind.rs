//! What a request body is, from its headers and route alone: its media
//! type ([`BodyKind`]), the two routes that take submissions, and whether a
//! request is an upload ([`is_upload`]), which the early size check and the
//! body deadline leave to the upload's own limits.

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, Method, header};

/// The kinds of body the submission routes read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/json` (the API).
    Json,
    /// `application/x-www-form-urlencoded` (an HTML form without files).
    Urlencoded,
    /// `multipart/form-data`, streamed part by part.
    Multipart,
    /// Anything else, or no `Content-Type`.
    Other,
}

impl BodyKind {
    /// The kind `headers` announce.
    pub fn of(headers: &HeaderMap) -> BodyKind {
        match media_type(headers).as_deref() {
            Some("application/json") => BodyKind::Json,
            Some("application/x-www-form-urlencoded") => BodyKind::Urlencoded,
            Some("multipart/form-data") => BodyKind::Multipart,
            _ => BodyKind::Other,
        }
    }
}

/// The media type of a request body, lowercased, without parameters.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(ct.split(';').next()?.trim().to_ascii_lowercase())
}

/// The route of an HTML form's page and its posts.
pub const FORM_ROUTE: &str = "/forms/{form}";

/// The route of the API's submissions.
pub const API_SUBMISSIONS_ROUTE: &str = "/api/v1/forms/{form}/submissions";

/// The staff route that takes an answer to a tipster, capped by
/// `[replies] max_answer_bytes` rather than `server.max_body_bytes`
/// (`http/staff_replies.rs`).
pub const ANSWER_ROUTE: &str = "/api/v1/staff/mailboxes/{mailbox}/replies/{id}";

/// Whether `req` pushes an answer: a PUT to [`ANSWER_ROUTE`], whose
/// handler enforces its own size cap (the common body deadline applies).
pub fn is_answer_push(req: &Request) -> bool {
    req.method() == Method::PUT
        && req
            .extensions()
            .get::<MatchedPath>()
            .is_some_and(|m| m.as_str() == ANSWER_ROUTE)
}

/// The routes that take uploads.
const UPLOAD_ROUTES: [&str; 2] = [FORM_ROUTE, API_SUBMISSIONS_ROUTE];

/// Whether `req` is an upload: a multipart POST to an upload route.
pub fn is_upload(req: &Request) -> bool {
    req.method() == Method::POST
        && BodyKind::of(req.headers()) == BodyKind::Multipart
        && req
            .extensions()
            .get::<MatchedPath>()
            .is_some_and(|m| UPLOAD_ROUTES.contains(&m.as_str()))
}
