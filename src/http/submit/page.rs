//! How an HTML form's post is answered ([`PageReply`]): the receipt page;
//! the form again with what the person typed and the problems marked
//! (422); the form again, fresh, saying why an abuse check refused the post;
//! or a page in the reader's language saying that nothing was stored.
//!
//! A person can meet most refusals (sending again within seconds of a
//! mistake, a page left open for hours, a restart, a busy moment, autofill
//! in the hidden field), so what they wrote comes back with them, as after a
//! mistake ([`Refusal::keeps_what_was_written`] says when not). A chosen
//! file cannot be put back: the page asks for it again.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::front::Front;
use super::outcome::{Accepted, Failure};
use crate::config::FormConfig;
use crate::http::AppState;
use crate::http::error::Surface;
use crate::http::limits::ClientKey;
use crate::http::pages::form::{Echo, render_form};
use crate::http::pages::layout::{Page, form_response, not_sent};
use crate::http::pages::receipt::receipt_response;
use crate::http::refusal::Refusal;
use crate::i18n::{Lang, Msg};
use crate::submission::RawValue;

/// Everything a form route's answer needs, worked out before the body is
/// read: the reader's language, the form (if the path names one) and the
/// client (a refusal's fresh form token is charged to it).
pub struct PageReply<'a> {
    state: &'a AppState,
    form: Option<&'a FormConfig>,
    client: Option<ClientKey>,
    lang: Lang,
    /// The form's path, or `/` for a form that does not exist.
    path: String,
}

impl<'a> PageReply<'a> {
    /// The reply to the post `front` describes, in the language `headers`
    /// and `query` ask for.
    pub fn new(
        state: &'a AppState,
        front: &Front,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> PageReply<'a> {
        let form = front.form_index.map(|i| &state.intake().config.forms[i]);
        let path = form.map_or_else(|| "/".to_owned(), |f| format!("/forms/{}", f.id));
        let lang = Page::negotiate(headers, query, &path).lang;
        PageReply {
            state,
            form,
            client: front.client,
            lang,
            path,
        }
    }

    fn page(&self) -> Page<'_> {
        Page::new(self.lang, &self.path)
    }

    /// What of `raw` the form would show again.
    pub fn echo_of(&self, raw: &[(String, RawValue)]) -> Option<Echo> {
        self.form.map(|form| Echo::of(form, raw))
    }

    /// The answer to a post that was read: stored, or why not. `echo` is
    /// what the person typed.
    pub fn answer(&self, outcome: Result<Accepted, Failure>, echo: Option<Echo>) -> Response {
        let Some(form) = self.form else {
            return self.refused(Refusal::UnknownForm, None);
        };
        match outcome {
            Ok(accepted) => receipt_response(
                self.page(),
                form,
                &accepted.receipt,
                accepted.reply_code.as_ref(),
            ),
            Err(Failure::Invalid(problems)) => {
                let echo = echo.unwrap_or_else(|| Echo::empty(form));
                let html = render_form(self.page(), self.state, form, &echo, &problems, None);
                drop(echo);
                form_response(form, StatusCode::UNPROCESSABLE_ENTITY, html)
            }
            Err(Failure::Refused(refusal)) => self.refused(refusal, echo),
            Err(Failure::Error(mut e)) => {
                let mut res = not_sent(self.page(), Some(form), e.status);
                e.hand_log_to(&mut res);
                res
            }
        }
    }

    /// The answer to a refused post: the form again after an abuse check
    /// (with `echo`, when the refusal keeps what was written), a page in
    /// the reader's language for an unknown form or media type, or the
    /// refusal itself (a limit: `Retry-After`).
    pub fn refused(&self, refusal: Refusal, echo: Option<Echo>) -> Response {
        match (refusal.form_reason(), self.form) {
            (Some(why), Some(form)) => {
                let echo = match echo {
                    Some(echo) if refusal.keeps_what_was_written() => echo,
                    _ => Echo::empty(form),
                };
                self.form_again(form, &echo, why, refusal.status())
            }
            _ => match refusal {
                Refusal::UnknownForm | Refusal::UnsupportedMediaType { .. } => {
                    not_sent(self.page(), self.form, refusal.status())
                }
                _ => refusal.respond(Surface::Page),
            },
        }
    }

    /// The form again after an abuse check refused a post, with `why` and a
    /// fresh token (charged to the client's `form_page_client` budget: past
    /// it, 429 instead, so refused posts cannot mint tokens a client may not
    /// get from `GET /forms/{form}`).
    fn form_again(&self, form: &FormConfig, echo: &Echo, why: Msg, status: StatusCode) -> Response {
        if self.state.intake().config.abuse.form_tokens {
            if let Err(refused) = self.state.limits().issue_token(self.client) {
                return refused.respond(Surface::Page);
            }
        }
        let html = render_form(self.page(), self.state, form, echo, &[], Some(why));
        form_response(form, status, html)
    }
}
