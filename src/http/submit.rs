//! The one front door for submissions: `POST /forms/{form}` (an HTML form)
//! and `POST /api/v1/forms/{form}/submissions` (the JSON API) both come in
//! here, in this order:
//!
//! 1. What costs nothing is worked out once, before the body is read
//!    ([`Front`]): the form, the body's kind, the route's surface (API or
//!    page), the cross-site verdict ([`origin`]) and the client. A post to
//!    an unknown form, in a media type the route does not take, or from
//!    another site is refused with `Connection: close` and its body is never
//!    read.
//! 2. The post takes its in-flight slots ([`super::limits`]). The API, which
//!    has no form token, is charged to its rate budgets now; an HTML post
//!    only once its form token and honeypot pass ([`gate`]), and its token
//!    is spent only once the charge went through.
//! 3. The body is handled: JSON and urlencoded in memory, here; multipart
//!    streamed into the sealer ([`multipart`]).
//! 4. The outcome is answered once: JSON on the API, a page on an HTML form
//!    ([`page`]). Every refusal is a typed `Refusal` (`http/refusal.rs`),
//!    every other failure an [`HttpError`] ([`outcome`]); a body left
//!    unread is answered with `Connection: close`.
//!
//! Nothing here logs or echoes a submitted value.

pub mod front;
pub mod gate;
pub mod metered;
pub mod multipart;
pub mod origin;
pub mod outcome;
pub mod pace;
pub mod page;
pub mod parts;

use crate::api::forms::Submitted;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::body_kind::BodyKind;
use super::error::{HttpError, Surface, closing};
use super::limits::{Budget, ClientKey};
use super::pages::form::Echo;
use super::secret_body;
use crate::submission::{Submission, decode_json, decode_urlencoded};
use front::Front;
use outcome::{Accepted, Failure, reply_for};
use page::PageReply;

/// `POST /forms/{form}` and `POST /api/v1/forms/{form}/submissions`: the
/// front door of both, made once by [`Front`].
pub async fn submit(State(state): State<AppState>, front: Front, req: Request) -> Response {
    match front.surface {
        Surface::Page => page_submit(&state, &front, req).await,
        Surface::Api => api_submit(&state, &front, req).await,
    }
}

/// An HTML form's post, urlencoded or multipart.
async fn page_submit(state: &AppState, front: &Front, req: Request) -> Response {
    let client = front.client;
    let reply = PageReply::new(state, front, req.headers(), req.uri().query());
    let (form_index, kind) = match front.check() {
        Ok(checked) => checked,
        Err(refusal) => return closing(reply.refused(refusal, None)),
    };
    let _in_flight = match state.limits().enter(client) {
        Ok(f) => f,
        Err(refusal) => return reply.refused(refusal, None),
    };
    if kind == BodyKind::Multipart {
        let mut kept = Vec::new();
        let gate = multipart::Gate::FormPage;
        let outcome = multipart::receive(state, form_index, req, gate, client, &mut kept).await;
        let failed = outcome.is_err();
        let echo = reply.echo_of(&kept);
        drop(kept);
        let res = reply.answer(outcome, echo);
        // A failed upload may have stopped with its body half read.
        return if failed { closing(res) } else { res };
    }
    let body = Bytes::from_request(req, state).await;
    // A body refused while it was read (over max_body_bytes, or broken):
    // the rest of it is not read.
    let unread = body.is_err();
    let mut echo = None;
    let outcome = urlencoded(state, form_index, client, body, &mut echo).await;
    let res = reply.answer(outcome, echo);
    if unread { closing(res) } else { res }
}

/// An API submission: JSON `{"fields": {...}}` or multipart; 201
/// `{"receipt"}` once the record is durable.
async fn api_submit(state: &AppState, front: &Front, req: Request) -> Response {
    let client = front.client;
    let (form_index, kind) = match front.check() {
        Ok(checked) => checked,
        Err(refusal) => return closing(refusal.respond(Surface::Api)),
    };
    // In flight first: a post turned away for the in-flight caps is not
    // charged, as on the HTML route.
    let _in_flight = match state.limits().enter(client) {
        Ok(f) => f,
        Err(refusal) => return refusal.respond(Surface::Api),
    };
    if let Err(refusal) = state.limits().charge(client, Budget::Api) {
        return refusal.respond(Surface::Api);
    }
    if kind == BodyKind::Multipart {
        let gate = multipart::Gate::Api;
        let outcome =
            multipart::receive(state, form_index, req, gate, client, &mut Vec::new()).await;
        let failed = outcome.is_err();
        let res = api_answer(outcome);
        // A failed upload may have stopped with its body half read.
        return if failed { closing(res) } else { res };
    }
    let body = Bytes::from_request(req, state).await;
    // A body refused while it was read (over max_body_bytes, or broken):
    // the rest of it is not read.
    let unread = body.is_err();
    let res = api_answer(json(state, form_index, body).await);
    if unread { closing(res) } else { res }
}

/// The API's answer to an outcome: 201 `{"receipt"}`, or the error.
fn api_answer(outcome: Result<Accepted, Failure>) -> Response {
    let e = match outcome {
        Ok(accepted) => {
            let body = Submitted::new(&accepted.receipt, accepted.reply_code.as_ref());
            return secret_body::json(StatusCode::CREATED, &body);
        }
        Err(Failure::Refused(refusal)) => return refusal.respond(Surface::Api),
        Err(Failure::Error(e)) => e,
        Err(Failure::Invalid(problems)) => match problems.into_iter().next() {
            Some(first) => first.into(),
            None => HttpError::internal(&"a submission was refused with no problem named"),
        },
    };
    e.on(Surface::Api).into_response()
}

/// A JSON body: decode → validate → seal.
async fn json(
    state: &AppState,
    form_index: usize,
    body: Result<Bytes, BytesRejection>,
) -> Result<Accepted, Failure> {
    let config = &state.intake().config;
    let body = body?;
    let fields = decode_json(&body).map_err(HttpError::from)?;
    let submission =
        Submission::validate(&config.forms[form_index], fields).map_err(HttpError::from)?;
    drop(body);
    seal_with_reply(state, form_index, submission).await
}

/// Seals a validated submission; for a form with replies, with a fresh
/// reply code's mailbox and certificate, and the code for the answer.
async fn seal_with_reply(
    state: &AppState,
    form_index: usize,
    submission: Submission,
) -> Result<Accepted, Failure> {
    let (reply_code, derived) = reply_for(&state.intake().config.forms[form_index])?.unzip();
    let receipt = state.seal(form_index, submission, derived).await?;
    Ok(Accepted {
        receipt,
        reply_code,
    })
}

/// An urlencoded HTML form post: decode → form token and honeypot → rate
/// budgets → validate → seal. What was typed is kept in `echo`, for the
/// form to show it again if the post is not stored.
async fn urlencoded(
    state: &AppState,
    form_index: usize,
    client: Option<ClientKey>,
    body: Result<Bytes, BytesRejection>,
    echo: &mut Option<Echo>,
) -> Result<Accepted, Failure> {
    let form = &state.intake().config.forms[form_index];
    let body = body?;
    // A body that cannot be decoded at all gets the page that says nothing
    // was stored, not the form.
    let mut raw = decode_urlencoded(&body).map_err(HttpError::from)?;
    drop(body);
    // Abuse checks (none of them looks at what was written). Only a post
    // that passes them is charged to the rate budgets, and its token is
    // used up only once the charge went through (a 429 leaves it good:
    // dropping the pass gives the token back).
    let checked = gate::check(state, form, &mut raw);
    *echo = Some(Echo::of(form, &raw));
    let pass = checked?;
    state.limits().charge(client, Budget::Form(form_index))?;
    pass.spend().await?;
    let submission = match Submission::validate_all(form, raw) {
        Ok(s) => s,
        Err(problems) => {
            if let Some(malformed) = problems.iter().find(|p| p.is_malformed()) {
                return Err(HttpError::from(malformed.clone()).into());
            }
            return Err(Failure::Invalid(problems));
        }
    };
    seal_with_reply(state, form_index, submission).await
}
