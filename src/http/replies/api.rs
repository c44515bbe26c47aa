//! The JSON twin of the reply pages: `POST /api/v1/replies` (read),
//! `/api/v1/replies/follow-up` and `/api/v1/replies/delete`, each charged
//! to the API's rate budgets like a submission. A code that opens nothing
//! and an empty mailbox get the same `200` body; words that are not a code
//! (`invalid_code`) and a typo caught by the checksum (`code_checksum`) get
//! a 400 each.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::FollowUpError;
use crate::api::error::ErrorCode;
use crate::api::forms::Submitted;
use crate::api::replies::{AnswerRead, CodeRequest, FollowUpRequest, RepliesRead};
use crate::http::AppState;
use crate::http::body_kind::BodyKind;
use crate::http::error::{HttpError, Surface, closing};
use crate::http::limits::{Budget, Client, InFlight};
use crate::http::refusal::Refusal;
use crate::http::secret_body;
use crate::replies::{CodeError, ReplyCode};

/// `POST /api/v1/replies`: `{status, answers}`.
pub async fn read(State(state): State<AppState>, Client(client): Client, req: Request) -> Response {
    let (body, code, _in_flight) = match receive::<CodeRequest>(&state, client, req).await {
        Ok(received) => received,
        Err(res) => return res,
    };
    drop(body);
    let opened = match super::open(&state, code).await {
        Ok(opened) => opened,
        Err(e) => return e.on(Surface::Api).into_response(),
    };
    let read = RepliesRead {
        status: opened.status(),
        answers: opened
            .answers()
            .iter()
            .map(|a| AnswerRead {
                day: a.day.clone(),
                status: a.answer.status,
                message: a.answer.message.to_string(),
            })
            .collect(),
    };
    drop(opened);
    // `read` is zeroized when it drops here, and the body once sent.
    secret_body::json(StatusCode::OK, &read)
}

/// `POST /api/v1/replies/follow-up`: 201 `{receipt}`.
pub async fn follow_up(
    State(state): State<AppState>,
    Client(client): Client,
    req: Request,
) -> Response {
    let (body, code, _in_flight) = match receive::<FollowUpRequest>(&state, client, req).await {
        Ok(received) => received,
        Err(res) => return res,
    };
    let message = zeroize::Zeroizing::new(body.message.clone());
    drop(body);
    match super::follow_up(&state, code, message).await {
        Ok(receipt) => secret_body::json(StatusCode::CREATED, &Submitted::new(&receipt, None)),
        Err(FollowUpError::Limited(refusal)) => refusal.respond(Surface::Api),
        Err(e) => e.into_http().on(Surface::Api).into_response(),
    }
}

/// `POST /api/v1/replies/delete`: 204.
pub async fn delete(
    State(state): State<AppState>,
    Client(client): Client,
    req: Request,
) -> Response {
    let (body, code, _in_flight) = match receive::<CodeRequest>(&state, client, req).await {
        Ok(received) => received,
        Err(res) => return res,
    };
    drop(body);
    match super::delete(&state, code).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.on(Surface::Api).into_response(),
    }
}

/// A request body that carries a reply code.
trait CarriesCode {
    fn code(&self) -> &str;
}

impl CarriesCode for CodeRequest {
    fn code(&self) -> &str {
        &self.code
    }
}

impl CarriesCode for FollowUpRequest {
    fn code(&self) -> &str {
        &self.code
    }
}

/// The checks and the body of an API post: JSON, in-flight caps, the
/// API's rate budgets, then the body as `T` and its code parsed.
async fn receive<T: DeserializeOwned + CarriesCode>(
    state: &AppState,
    client: Option<crate::http::limits::ClientKey>,
    req: Request,
) -> Result<(T, ReplyCode, InFlight), Response> {
    if BodyKind::of(req.headers()) != BodyKind::Json {
        let refusal = Refusal::UnsupportedMediaType {
            expected: API_MEDIA_TYPES_JSON,
        };
        return Err(closing(refusal.respond(Surface::Api)));
    }
    let limits = state.limits();
    let in_flight = limits.enter(client).map_err(|r| r.respond(Surface::Api))?;
    limits
        .charge(client, Budget::Api)
        .map_err(|r| r.respond(Surface::Api))?;
    let body = Bytes::from_request(req, state)
        .await
        .map_err(|e| closing(HttpError::from(e).on(Surface::Api).into_response()))?;
    let parsed = serde_json::from_slice::<T>(&body).map_err(|_| {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::Malformed,
            "the body is not the JSON object this route takes",
        )
        .on(Surface::Api)
        .into_response()
    })?;
    let code = parse(parsed.code()).map_err(IntoResponse::into_response)?;
    Ok((parsed, code, in_flight))
}

/// What a reply route's JSON body must be.
const API_MEDIA_TYPES_JSON: &str = "application/json";

/// `typed` as a reply code, or the 400 that says what is wrong with it.
fn parse(typed: &str) -> Result<ReplyCode, HttpError> {
    let (code, message) = match super::parse_code(typed) {
        Ok(code) => return Ok(code),
        Err(CodeError::Words) => (
            ErrorCode::InvalidCode,
            "this is not a reply code: it must be 12 words of the BIP39 English list",
        ),
        Err(CodeError::Checksum) => (
            ErrorCode::CodeChecksum,
            "a word of this reply code is mistyped: its checksum does not match",
        ),
    };
    Err(HttpError::new(StatusCode::BAD_REQUEST, code, message).on(Surface::Api))
}
