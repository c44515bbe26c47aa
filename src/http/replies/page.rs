//! `GET /replies` and the posts of its forms (`POST /replies`,
//! `/replies/follow-up`, `/replies/delete`): HTML, no JavaScript, each form
//! with a single-use form token, each post rate limited like a form post.
//!
//! Every post goes through [`Post::receive`] first: the cross-site check,
//! the media type, the in-flight caps, the body, the form token (checked
//! and held), the rate budget, and only then is the token used up, as on
//! the forms (`http/submit.rs`). The code is then parsed: a typo caught by
//! its checksum, or words not of its list, are told apart, which needs
//! nothing stored.

use axum::body::Bytes;
use axum::extract::{FromRequest, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::{FollowUpError, Opened, TOKEN_ID};
use crate::http::AppState;
use crate::http::body_kind::BodyKind;
use crate::http::error::{HttpError, Surface, closing};
use crate::http::form_tokens::TOKEN_FIELD;
use crate::http::limits::{Budget, Client, ClientKey, InFlight};
use crate::http::pages::form::problem_text;
use crate::http::pages::layout::Page;
use crate::http::pages::replies::{
    self as render, CODE_FIELD, CONFIRM_FIELD, FollowUpAgain, MESSAGE_FIELD, REPLIES_PATH,
    ShownAnswer,
};
use crate::http::refusal::{PAGE_MEDIA_TYPES, Refusal};
use crate::http::secret_body;
use crate::http::submit::gate::take_text;
use crate::http::submit::origin;
use crate::i18n::{Lang, Msg};
use crate::replies::{CodeError, ReplyCode, ReplyStatus};
use crate::submission::{RawValue, decode_urlencoded};

/// `GET /replies`: the form asking for the code.
pub async fn ask(
    State(state): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let post = Post::new(&state, client, &headers, query.as_deref());
    post.ask(None, StatusCode::OK)
}

/// `POST /replies`: the answers the code opens, or the same "nothing here"
/// page for a code that opens nothing and an empty mailbox.
pub async fn read(State(state): State<AppState>, Client(client): Client, req: Request) -> Response {
    let p = match posted(&state, client, req).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    match super::open(&state, p.code).await {
        Ok(opened) if opened.answers().is_empty() => {
            p.post.ask(Some(Msg::RepliesNothing), StatusCode::OK)
        }
        Ok(opened) => p.post.answers(&opened, None, StatusCode::OK),
        Err(e) => p.post.failed(e),
    }
}

/// `POST /replies/follow-up`: seals the follow-up; its receipt.
pub async fn follow_up(
    State(state): State<AppState>,
    Client(client): Client,
    req: Request,
) -> Response {
    let mut p = match posted(&state, client, req).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    let message = take_text(&mut p.fields, MESSAGE_FIELD).unwrap_or_default();
    let page = p.post.page();
    let (status, why) = match super::follow_up(&state, p.code, message).await {
        Ok(receipt) => {
            return secret_body::html(
                StatusCode::OK,
                render::follow_up_sent(page, &receipt.to_string()),
            );
        }
        Err(FollowUpError::NotAnsweredYet) => {
            (StatusCode::CONFLICT, page.t(Msg::FollowUpNotYet).to_owned())
        }
        Err(FollowUpError::Closed) => {
            (StatusCode::CONFLICT, page.t(Msg::FollowUpClosed).to_owned())
        }
        // A mistake in the text: the answers again, the text put back in
        // the form with the problem next to it, as the forms do.
        Err(FollowUpError::Invalid {
            problem,
            field,
            opened,
            typed,
        }) => {
            let status = HttpError::from(problem.clone()).status;
            let problem = problem_text(page, field, &problem);
            let again = FollowUpAgain {
                problem: &problem,
                typed: &typed,
            };
            return p.post.answers(&opened, Some(again), status);
        }
        Err(FollowUpError::Limited(refusal)) => return refusal.respond(Surface::Page),
        Err(FollowUpError::Failed(e)) => return p.post.failed(e),
    };
    secret_body::html(status, render::not_sent(page, &why))
}

/// `POST /replies/delete`: without `confirm=yes`, the page that asks to
/// confirm; with it, deletes every answer of the mailbox.
pub async fn delete(
    State(state): State<AppState>,
    Client(client): Client,
    req: Request,
) -> Response {
    let mut p = match posted(&state, client, req).await {
        Ok(p) => p,
        Err(res) => return res,
    };
    let confirmed = take_text(&mut p.fields, CONFIRM_FIELD).is_some_and(|c| c.as_str() == "yes");
    let post = &p.post;
    if !confirmed {
        let [token] = match post.tokens() {
            Ok(tokens) => tokens,
            Err(refusal) => return refusal.respond(Surface::Page),
        };
        let html = render::confirm_delete(post.page(), token.as_deref(), p.code.expose());
        return secret_body::html(StatusCode::OK, html);
    }
    match super::delete(&state, p.code).await {
        Ok(()) => secret_body::html(StatusCode::OK, render::deleted(post.page())),
        Err(e) => post.failed(e),
    }
}

/// A post to a reply page that [`Post::receive`] let through, with its
/// code parsed and its other fields.
struct Posted<'a> {
    post: Post<'a>,
    code: ReplyCode,
    fields: Vec<(String, RawValue)>,
    _in_flight: InFlight,
}

/// Receives a post to a reply page and parses its code; or the answer it
/// gets instead (a refusal, the form again saying what is wrong with the
/// code).
async fn posted(
    state: &AppState,
    client: Option<ClientKey>,
    req: Request,
) -> Result<Posted<'_>, Response> {
    let post = Post::new(state, client, req.headers(), req.uri().query());
    let (mut fields, in_flight) = post.receive(req).await?;
    let code = take_code(&mut fields).map_err(|e| post.bad_code(e))?;
    Ok(Posted {
        post,
        code,
        fields,
        _in_flight: in_flight,
    })
}

/// One request to the reply pages: the state, the client and the reader's
/// language.
struct Post<'a> {
    state: &'a AppState,
    client: Option<ClientKey>,
    lang: Lang,
    cross_site: bool,
    kind: BodyKind,
}

impl<'a> Post<'a> {
    fn new(
        state: &'a AppState,
        client: Option<ClientKey>,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Post<'a> {
        let abuse = &state.intake().config.abuse;
        Post {
            state,
            client,
            lang: Page::negotiate(headers, query, REPLIES_PATH).lang,
            cross_site: abuse.check_origin && origin::is_cross_site(headers, abuse.public_origin()),
            kind: BodyKind::of(headers),
        }
    }

    fn page(&self) -> Page<'static> {
        Page::new(self.lang, REPLIES_PATH)
    }

    /// Fresh form tokens for the `N` forms of one page (none with
    /// `abuse.form_tokens` off), the page charged once to the client's
    /// budget of opened forms.
    fn tokens<const N: usize>(&self) -> Result<[Option<String>; N], Refusal> {
        if !self.state.intake().config.abuse.form_tokens {
            return Ok(std::array::from_fn(|_| None));
        }
        self.state.limits().issue_token(self.client)?;
        Ok(std::array::from_fn(|_| {
            Some(self.state.tokens().issue(TOKEN_ID))
        }))
    }

    /// The page asking for the code, with `notice`.
    fn ask(&self, notice: Option<Msg>, status: StatusCode) -> Response {
        match self.tokens() {
            Ok([token]) => (
                status,
                Html(render::ask(self.page(), token.as_deref(), notice)),
            )
                .into_response(),
            Err(refusal) => refusal.respond(Surface::Page),
        }
    }

    /// The answers page of `opened`.
    fn answers(
        &self,
        opened: &Opened,
        again: Option<FollowUpAgain<'_>>,
        status: StatusCode,
    ) -> Response {
        let page = self.page();
        let shown: Vec<ShownAnswer<'_>> = opened
            .answers()
            .iter()
            .map(|a| ShownAnswer {
                day: &a.day,
                status: a.answer.status.map(status_msg),
                message: a.answer.message.as_str(),
            })
            .collect();
        let [follow_up, delete] = match self.tokens() {
            Ok(tokens) => tokens,
            Err(refusal) => return refusal.respond(Surface::Page),
        };
        // The page carries the answers, and the code in the hidden fields of
        // its two forms: its body is zeroized once sent.
        let html = render::answers(
            page,
            &shown,
            opened.status().map(status_msg),
            opened.code().expose(),
            [follow_up.as_deref(), delete.as_deref()],
            again,
        );
        secret_body::html(status, html)
    }

    /// A failure of ours: the plain error page, its cause logged once.
    fn failed(&self, e: HttpError) -> Response {
        e.on(Surface::Page).into_response()
    }

    /// The checks and the body of a post, in the order of the forms'
    /// posts; its fields, the form token taken out and used up.
    async fn receive(&self, req: Request) -> Result<(Vec<(String, RawValue)>, InFlight), Response> {
        if self.kind != BodyKind::Urlencoded {
            let refusal = Refusal::UnsupportedMediaType {
                expected: PAGE_MEDIA_TYPES,
            };
            return Err(closing(refusal.respond(Surface::Page)));
        }
        if self.cross_site {
            return Err(closing(Refusal::CrossSite.respond(Surface::Page)));
        }
        let limits = self.state.limits();
        let in_flight = limits
            .enter(self.client)
            .map_err(|r| r.respond(Surface::Page))?;
        let body = Bytes::from_request(req, self.state)
            .await
            .map_err(|e| closing(HttpError::from(e).into_response()))?;
        let mut fields =
            decode_urlencoded(&body).map_err(|e| HttpError::from(e).into_response())?;
        drop(body);
        let token = take_text(&mut fields, TOKEN_FIELD);
        let held = if self.state.intake().config.abuse.form_tokens {
            let tokens = self.state.tokens();
            let presented = token.as_deref().map(String::as_str);
            match tokens
                .verify(TOKEN_ID, presented)
                .and_then(|v| tokens.hold(v))
            {
                Ok(held) => Some(held),
                Err(e) => {
                    let why = Refusal::Token(e).form_reason();
                    return Err(self.ask(why, Refusal::Token(e).status()));
                }
            }
        } else {
            None
        };
        limits
            .charge(self.client, Budget::Replies)
            .map_err(|r| r.respond(Surface::Page))?;
        if let Some(held) = held {
            held.keep();
        }
        Ok((fields, in_flight))
    }

    /// The form again, saying what is wrong with the code that was sent
    /// (400).
    fn bad_code(&self, e: CodeError) -> Response {
        let why = match e {
            CodeError::Words => Msg::RepliesErrWords,
            CodeError::Checksum => Msg::RepliesErrChecksum,
        };
        self.ask(Some(why), StatusCode::BAD_REQUEST)
    }
}

/// The code a post carries, parsed.
fn take_code(fields: &mut Vec<(String, RawValue)>) -> Result<ReplyCode, CodeError> {
    let typed = take_text(fields, CODE_FIELD).unwrap_or_default();
    super::parse_code(&typed)
}

/// The catalogue's name of `status`.
fn status_msg(status: ReplyStatus) -> Msg {
    match status {
        ReplyStatus::Received => Msg::StatusReceived,
        ReplyStatus::InProgress => Msg::StatusInProgress,
        ReplyStatus::Answered => Msg::StatusAnswered,
        ReplyStatus::Closed => Msg::StatusClosed,
    }
}
