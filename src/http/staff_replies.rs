//! The staff route that stores an answer to a tipster:
//! `PUT /api/v1/staff/mailboxes/{mailbox}/replies/{id}`, body the OpenPGP
//! message (`sealform push` sends it; see `src/replies.rs`).
//!
//! Any valid staff token may push. The body is capped by `[replies]
//! max_answer_bytes` (checked on `Content-Length` before reading, then
//! while reading) and must be an encrypted OpenPGP message: the reply
//! store never holds plaintext. Answers: 201 stored (durably), 200 the same
//! bytes were stored already, 409 other bytes under this id, 413 too large,
//! 422 mailbox full, 400 a malformed mailbox, id or body, 503 when free
//! space is under `server.min_free_bytes` (kept for submissions). Nothing here logs
//! a mailbox or an id.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::put;

use super::body_kind::ANSWER_ROUTE;
use super::error::closing;
use super::staff::{StaffError, StaffState, blocking, internal};
use crate::api::staff::{PushOutcome, PushedAnswer};
use crate::intake::available_space;
use crate::replies::{AnswerId, MailboxId, Mailboxes, Put, ReplyError, check_encrypted};
use crate::store::is_storage_full;

/// The answer route over `state`, for merging beside the other staff routes.
pub fn routes<S: Clone + Send + Sync + 'static>(state: StaffState) -> Router<S> {
    Router::new()
        .route(ANSWER_ROUTE, put(push_answer))
        .with_state(state)
}

async fn push_answer(
    State(st): State<StaffState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // A segment that is not UTF-8 names no mailbox: 400 once the token
    // passed, where axum's own rejection would be plain text.
    let path = path.ok().map(|Path(p)| p);
    match store_answer(&st, path, &headers, body).await {
        Ok((status, body)) => (status, Json(body)).into_response(),
        // The body was not (all) read: close rather than read the rest.
        Err(e @ StaffError::AnswerTooLarge) => closing(e.into_response()),
        Err(e) => e.into_response(),
    }
}

async fn store_answer(
    st: &StaffState,
    path: Option<(String, String)>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(StatusCode, PushedAnswer), StaffError> {
    st.authenticate(headers)?;
    let (mailbox, id) = path.ok_or(StaffError::BadAnswer("the path is not valid UTF-8"))?;
    let mailbox: MailboxId = mailbox
        .parse()
        .map_err(|_| StaffError::BadAnswer("the mailbox is not a mailbox address"))?;
    let answer: AnswerId = id
        .parse()
        .map_err(|_| StaffError::BadAnswer("the id is not an answer id (26 base32 characters)"))?;
    let intake = std::sync::Arc::clone(st.intake());
    let limit = usize::try_from(intake.config.replies.max_answer_bytes).unwrap_or(usize::MAX);
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(StaffError::AnswerTooLarge);
    }
    let bytes = read_capped(body, limit, announced).await?;
    check_encrypted(&bytes)
        .map_err(|_| StaffError::BadAnswer("the body is not an encrypted OpenPGP message"))?;
    let put = blocking(move || {
        // The room under `min_free_bytes` of data_dir is kept for
        // submissions (answers kept in PostgreSQL take none of it; a full
        // database refuses the insert by itself).
        if let Mailboxes::Fs(_) = *intake.mailboxes {
            let server = &intake.config.server;
            let free = available_space(&server.data_dir).map_err(internal)?;
            if free < server.min_free_bytes.saturating_add(bytes.len() as u64) {
                return Err(StaffError::NoRoom);
            }
        }
        let now = std::time::SystemTime::now();
        match intake.mailboxes.put(&mailbox, &answer, &bytes, now) {
            Ok(p) => Ok(p),
            Err(ReplyError::Conflict) => Err(StaffError::Conflict),
            Err(ReplyError::Full) => Err(StaffError::MailboxFull),
            Err(ReplyError::Io(e)) if is_storage_full(&e) => Err(StaffError::NoRoom),
            Err(ReplyError::Unavailable(e)) => Err(StaffError::Unavailable(e)),
            Err(e) => Err(internal(e)),
        }
    })
    .await?;
    let (status, outcome) = match put {
        Put::Stored => (StatusCode::CREATED, PushOutcome::Stored),
        Put::AlreadyThere => (StatusCode::OK, PushOutcome::AlreadyStored),
    };
    Ok((
        status,
        PushedAnswer {
            id: answer.to_string(),
            outcome,
        },
    ))
}

/// Reads the body, at most `limit` bytes: more is [`StaffError::AnswerTooLarge`].
async fn read_capped(
    body: Body,
    limit: usize,
    announced: Option<u64>,
) -> Result<Vec<u8>, StaffError> {
    use futures_util::StreamExt;
    let start = announced.map_or(0, |n| usize::try_from(n).unwrap_or(limit).min(limit));
    let mut out = Vec::with_capacity(start);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| StaffError::BadAnswer("the body could not be read"))?;
        if out.len().saturating_add(chunk.len()) > limit {
            return Err(StaffError::AnswerTooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
