//! The staff API: token-authenticated listing, download and
//! acknowledgement of sealed records.
//!
//! | route | what |
//! |---|---|
//! | `GET /api/v1/staff/submissions?state=new\|exported\|all` | [`StaffList`]: `{"submissions": [{receipt, size, day, state, form, recipients}]}` |
//! | `GET /api/v1/staff/submissions/{receipt}` | the record, `application/pgp-encrypted`, with its SHA-256 in `x-sealform-sha256` |
//! | `POST /api/v1/staff/submissions/{receipt}/exported` | marks it copied into a bundle; answers its [`StaffRecord`] |
//! | `POST /api/v1/staff/submissions/{receipt}/ack` | marks it acknowledged and deletes its spool file; answers its [`StaffRecord`] |
//! | `GET /api/v1/staff/status` | [`StaffStatus`]: the daily digest per reader (`staff_status.rs`) |
//! | `PUT /api/v1/staff/mailboxes/{mailbox}/replies/{id}` | stores an answer to a tipster (`staff_replies.rs`, any valid token) |
//!
//! Every request carries `Authorization: Bearer <token>`; the token's hash
//! is compared in constant time with the configured ones. A wrong or missing
//! token is the same 401, with no hint which. Failed attempts are rate
//! limited globally (peers behind an onion service or a proxy all share one
//! address, so a per-address limit would mean nothing): once the failure
//! budget is spent, a request without a valid token is answered 429 until
//! it refills. A valid token is checked first and always passes, so nobody
//! can lock staff out by failing on purpose; the limit therefore does not
//! slow a guesser, who learns from a 200 either way. What makes guessing
//! hopeless is the token itself: 256 random bits from `sealform token`. The
//! limit is about noise in the logs, not entropy.
//!
//! Each token has a scope (`staff.tokens`): the actions it may take (list;
//! download, which includes marking exported; ack) and the forms whose
//! records it reaches. An action outside it is answered 403 (`forbidden`),
//! whatever the receipt. A token limited to some forms also gets 403 for
//! any receipt that is not a record of those forms, another form's or one
//! that names nothing alike, and a listing leaves other forms out, so a
//! token learns nothing about other forms' records.
//!
//! Errors are JSON (`{"error": {"code", "message"}}`), and nothing here logs
//! a receipt or a token. The API only ever hands out ciphertext.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::Segment;
use super::error::{HttpError, Surface, join_failure};
use crate::api::error::ErrorCode;
use crate::api::staff::{ListState, StaffList, StaffRecord, StaffStatus};
use crate::intake::Intake;
use crate::receipt::Receipt;
use crate::staff_token::{Action, Scope, TokenSet};
use crate::store::{IndexEntry, RecordState, StoreError};

/// One more failed attempt is allowed every this long.
const FAILURE_REFILL: Duration = Duration::from_secs(6);

/// What the staff handlers share.
#[derive(Clone)]
pub struct StaffState {
    intake: Arc<Intake>,
    tokens: Arc<TokenSet>,
    failures: Arc<DefaultDirectRateLimiter>,
    blocked_until: Arc<Mutex<Option<Instant>>>,
    digest: Option<Arc<crate::notify::Ledger>>,
}

impl StaffState {
    /// State over `intake`, with the tokens its config lists, and the
    /// daily digest's `digest` ledger (with `[notify]`) for the status route.
    pub fn new(intake: Arc<Intake>, digest: Option<Arc<crate::notify::Ledger>>) -> StaffState {
        let tokens = TokenSet::from_config(&intake.config.staff.tokens);
        let quota = Quota::with_period(FAILURE_REFILL)
            .unwrap_or_else(|| Quota::per_minute(NonZeroU32::MIN))
            .allow_burst(
                NonZeroU32::new(intake.config.staff.failed_token_burst).unwrap_or(NonZeroU32::MIN),
            );
        StaffState {
            intake,
            tokens: Arc::new(tokens),
            failures: Arc::new(RateLimiter::direct(quota)),
            blocked_until: Arc::new(Mutex::new(None)),
            digest,
        }
    }

    /// The intake pipeline these routes serve.
    pub(super) fn intake(&self) -> &Arc<Intake> {
        &self.intake
    }

    /// A valid token always passes: it is a 256-bit secret compared in
    /// constant time, so there is nothing to guess, and checking it first
    /// means nobody can lock staff out by failing on purpose. Failures are
    /// what is limited: past the burst, a wrong or missing token is answered
    /// 429 until the limiter refills.
    ///
    /// A token whose scope leaves out `action` is answered 403; whether it
    /// reaches a given record's form is for the handler to check.
    fn authorize(&self, headers: &HeaderMap, action: Action) -> Result<Arc<Scope>, StaffError> {
        let scope = self.authenticate(headers)?;
        if scope.can(action) {
            Ok(scope)
        } else {
            Err(StaffError::Forbidden(action.describe()))
        }
    }

    /// Any valid token, whatever its scope (see [`StaffState::authorize`]
    /// for how failures are limited).
    pub(super) fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Scope>, StaffError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map_or("", |(_, token)| token.trim());
        if let Some(scope) = Some(presented)
            .filter(|p| !p.is_empty())
            .and_then(|p| self.tokens.scope_of(p))
        {
            return Ok(scope);
        }
        let mut blocked = self.blocked_until.lock().unwrap_or_else(|p| p.into_inner());
        if blocked.is_some_and(|until| Instant::now() < until) {
            return Err(StaffError::TooManyAttempts);
        }
        match self.failures.check() {
            Ok(()) => Err(StaffError::Unauthorized),
            Err(not_until) => {
                let clock = governor::clock::DefaultClock::default();
                let wait = not_until.wait_time_from(governor::clock::Clock::now(&clock));
                *blocked = Some(Instant::now() + wait);
                tracing::warn!("staff API: too many failed token attempts, refusing for a while");
                Err(StaffError::TooManyAttempts)
            }
        }
    }
}

/// The staff routes over `state`, for merging into a router of any state.
pub fn routes<S: Clone + Send + Sync + 'static>(state: StaffState) -> Router<S> {
    Router::new()
        .route("/api/v1/staff/submissions", get(list))
        .route("/api/v1/staff/submissions/{receipt}", get(download))
        .route(
            "/api/v1/staff/submissions/{receipt}/exported",
            post(mark_exported),
        )
        .route("/api/v1/staff/submissions/{receipt}/ack", post(ack))
        .route("/api/v1/staff/status", get(status))
        .with_state(state)
}

/// Why a staff request failed. Rendered as a JSON error.
#[derive(Debug, thiserror::Error)]
pub enum StaffError {
    /// Missing, malformed or unknown token (one answer for all three).
    #[error("a valid staff token is required")]
    Unauthorized,
    /// Too many failed token attempts recently.
    #[error("too many failed attempts; try again later")]
    TooManyAttempts,
    /// The token's scope leaves out this action.
    #[error("this token may not {0}")]
    Forbidden(&'static str),
    /// A token limited to some forms named a receipt that is not a record
    /// of those forms: of another form, or of none (one answer for both).
    #[error("this token reaches only the records of its forms")]
    OutOfScope,
    /// Unknown receipt, or a record that is no longer stored.
    #[error("there is no such record")]
    NotFound,
    /// A query parameter is not one of the accepted values.
    #[error("state must be new, exported or all")]
    BadState,
    /// A pushed answer is malformed: the mailbox or id in the path, or a
    /// body that is not an encrypted OpenPGP message.
    #[error("{0}")]
    BadAnswer(&'static str),
    /// Other bytes are stored under this answer id.
    #[error("another answer is stored under this id")]
    Conflict,
    /// The pushed answer is over `[replies] max_answer_bytes`.
    #[error("the answer is larger than this server accepts ([replies] max_answer_bytes)")]
    AnswerTooLarge,
    /// The mailbox holds `[replies] max_per_mailbox` answers.
    #[error("the mailbox holds as many answers as it may; wait for older ones to expire")]
    MailboxFull,
    /// Free space in `data_dir` is under `server.min_free_bytes`: the room
    /// left is for submissions.
    #[error("the server cannot store answers right now; please try again later")]
    NoRoom,
    /// The store cannot be reached now (a database that went away); the
    /// cause is logged once when answered.
    #[error("the store is unavailable; please try again later")]
    Unavailable(String),
    /// Our own failure; the cause is logged once when answered.
    #[error("the server failed; please try again later")]
    Internal(String),
}

impl IntoResponse for StaffError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            StaffError::Unauthorized => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
            StaffError::TooManyAttempts => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited),
            StaffError::Forbidden(_) | StaffError::OutOfScope => {
                (StatusCode::FORBIDDEN, ErrorCode::Forbidden)
            }
            StaffError::NotFound => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            StaffError::BadState | StaffError::BadAnswer(_) => {
                (StatusCode::BAD_REQUEST, ErrorCode::Malformed)
            }
            StaffError::Conflict => (StatusCode::CONFLICT, ErrorCode::Conflict),
            StaffError::AnswerTooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge)
            }
            StaffError::MailboxFull => (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::MailboxFull),
            StaffError::NoRoom => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
            StaffError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
            StaffError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        };
        let mut error = HttpError::new(status, code, "")
            .saying(self.to_string())
            .on(Surface::Api);
        if let StaffError::Internal(cause) | StaffError::Unavailable(cause) = &self {
            // Logged once, by `log_failures`, when answered.
            error = error.logging("staff request failed", cause);
        }
        let mut res = error.into_response();
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sealform-staff\""),
            );
        }
        res
    }
}

pub(super) fn internal(e: impl std::fmt::Display) -> StaffError {
    StaffError::Internal(e.to_string())
}

/// A store failure: 503 when the store cannot be reached now, 500 else.
fn store_err(e: StoreError) -> StaffError {
    if e.is_unavailable() {
        StaffError::Unavailable(e.to_string())
    } else {
        internal(e)
    }
}

/// Runs blocking store work off the async runtime.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StaffError> + Send + 'static,
) -> Result<T, StaffError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| internal(join_failure(&e)))?
}

fn parse_receipt(s: &str) -> Result<Receipt, StaffError> {
    Receipt::parse(s).ok_or(StaffError::NotFound)
}

/// Whether `scope` reaches the record `entry` (`None`: no such record). A
/// token limited to some forms gets 403 for every receipt that is not a
/// record of its forms, whether it is another form's or nobody's, so the
/// answer tells it nothing about other forms' records; any other token gets
/// 404 for a receipt that names nothing.
fn reaches(scope: &Scope, entry: Option<&IndexEntry>) -> Result<(), StaffError> {
    match entry {
        Some(e) if scope.covers(e.form.as_deref()) => Ok(()),
        Some(_) => Err(StaffError::OutOfScope),
        None if scope.limited_to_forms() => Err(StaffError::OutOfScope),
        None => Err(StaffError::NotFound),
    }
}

/// The daily digest's state (`staff_status.rs`), for any token that may list.
async fn status(
    State(st): State<StaffState>,
    headers: HeaderMap,
) -> Result<Json<StaffStatus>, StaffError> {
    st.authorize(&headers, Action::List)?;
    Ok(Json(super::staff_status::body(
        &st.intake.config,
        st.digest.as_deref(),
    )))
}

/// The query of the listing.
#[derive(Deserialize)]
struct ListQuery {
    state: Option<ListState>,
}

async fn list(
    State(st): State<StaffState>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<StaffList>, StaffError> {
    let scope = st.authorize(&headers, Action::List)?;
    let query = query.map_err(|_| StaffError::BadState)?;
    let wanted = query.state.unwrap_or(ListState::New).keeps();
    let intake = Arc::clone(&st.intake);
    let entries = blocking(move || intake.store.list().map_err(store_err)).await?;
    let mut items: Vec<_> = entries
        .into_iter()
        .filter(|(_, e)| wanted.is_none_or(|w| e.state == w))
        .filter(|(_, e)| scope.covers(e.form.as_deref()))
        .collect();
    // Receipts are random, so this order says nothing about arrival.
    items.sort_by_key(|(r, _)| *r);
    let submissions = items
        .into_iter()
        .map(|(r, e)| StaffRecord::of(&r, e))
        .collect();
    Ok(Json(StaffList { submissions }))
}

async fn download(
    State(st): State<StaffState>,
    headers: HeaderMap,
    Segment(receipt): Segment,
) -> Result<Response, StaffError> {
    let scope = st.authorize(&headers, Action::Download)?;
    let receipt = parse_receipt(&receipt)?;
    let intake = Arc::clone(&st.intake);
    // Records can be gigabytes: hash the open record in one pass, then
    // stream the same reader again (an ack in between cannot pull a spool
    // file away) in chunks, read on a blocking thread.
    let (mut reader, len, sha) = blocking(move || {
        use std::io::{Read, Seek};
        let entry = intake.store.get(&receipt).map_err(store_err)?;
        reaches(&scope, entry.as_ref())?;
        if entry.is_none_or(|e| e.state == RecordState::Acked) {
            return Err(StaffError::NotFound);
        }
        let mut reader = intake
            .store
            .open_record(&receipt)
            .map_err(store_err)?
            .ok_or(StaffError::NotFound)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; DOWNLOAD_CHUNK];
        let mut len = 0u64;
        loop {
            let n = reader.read(&mut buf).map_err(read_err)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            len += n as u64;
        }
        reader.rewind().map_err(read_err)?;
        Ok((
            reader,
            len,
            data_encoding::HEXLOWER.encode(&hasher.finalize()),
        ))
    })
    .await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<axum::body::Bytes>>(2);
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut left = len;
        while left > 0 {
            let want = usize::try_from(left).map_or(DOWNLOAD_CHUNK, |l| l.min(DOWNLOAD_CHUNK));
            let mut buf = vec![0u8; want];
            let item = match reader.read(&mut buf) {
                Ok(0) => Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
                Ok(n) => {
                    buf.truncate(n);
                    left -= n as u64;
                    Ok(axum::body::Bytes::from(buf))
                }
                Err(e) => Err(e),
            };
            let failed = item.is_err();
            // A closed channel: the client went away.
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut res = axum::body::Body::from_stream(chunks).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pgp-encrypted"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&sha) {
        h.insert("x-sealform-sha256", v);
    }
    Ok(res)
}

/// A record that could not be read: 503 when its store went away.
fn read_err(e: std::io::Error) -> StaffError {
    match e.get_ref().and_then(|i| i.downcast_ref::<StoreError>()) {
        Some(store) if store.is_unavailable() => StaffError::Unavailable(e.to_string()),
        _ => internal(e),
    }
}

/// Bytes read at a time when a record is hashed and sent.
const DOWNLOAD_CHUNK: usize = 64 * 1024;

async fn mark_exported(
    State(st): State<StaffState>,
    headers: HeaderMap,
    Segment(receipt): Segment,
) -> Result<Json<StaffRecord>, StaffError> {
    // Marking exported is part of downloading (what `pull` does next).
    change_state(st, &headers, &receipt, Action::Download, |store, r| {
        store.mark_exported(r)
    })
    .await
}

async fn ack(
    State(st): State<StaffState>,
    headers: HeaderMap,
    Segment(receipt): Segment,
) -> Result<Json<StaffRecord>, StaffError> {
    change_state(st, &headers, &receipt, Action::Ack, |store, r| {
        store.ack(r, SystemTime::now())
    })
    .await
}

/// Authorizes `action`, then applies a state change to one record of a
/// form the token reaches, on a blocking thread; answers its new index
/// entry, or 404 when the store has no such record.
async fn change_state<F>(
    st: StaffState,
    headers: &HeaderMap,
    receipt: &str,
    action: Action,
    change: F,
) -> Result<Json<StaffRecord>, StaffError>
where
    F: FnOnce(&crate::store::RecordStore, &Receipt) -> Result<Option<IndexEntry>, StoreError>
        + Send
        + 'static,
{
    let scope = st.authorize(headers, action)?;
    let receipt = parse_receipt(receipt)?;
    let intake = Arc::clone(&st.intake);
    let entry = blocking(move || {
        // A record's form never changes, so checking it before the change
        // leaves no gap to slip through.
        reaches(
            &scope,
            intake.store.get(&receipt).map_err(store_err)?.as_ref(),
        )?;
        change(&intake.store, &receipt)
            .map_err(store_err)?
            .ok_or(StaffError::NotFound)
    })
    .await?;
    Ok(Json(StaffRecord::of(&receipt, entry)))
}
