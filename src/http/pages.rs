//! Server-rendered HTML: the form list and the stylesheet here; a module
//! per page beside it: [`layout`] (what every page shares, error pages),
//! [`form`] (a form, fresh or again with its problems), [`receipt`] (the
//! confirmation), [`keys`] (the recipients' certificates) and [`replies`]
//! (a tipster reading the answers to a tip).
//!
//! Pages need no JavaScript and load nothing from another origin; every
//! dynamic string goes through maud, which escapes it. All page text comes
//! from [`crate::i18n`] in the request's language, form text from the
//! config's translations. What answers a form post is decided in
//! `http/submit.rs`; the pages here only render.

pub mod form;
pub mod keys;
pub mod layout;
pub mod receipt;
pub mod replies;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{PreEscaped, html};

use super::AppState;
use crate::i18n::Msg;
use layout::{Page, layout};

const STYLESHEET: &str = include_str!("../../static/style.css");

/// `GET /`
pub async fn index(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Html<String> {
    let page = Page::negotiate(&headers, query.as_deref(), "/");
    let lang = page.code();
    let forms = &state.intake().config.forms;
    Html(layout(
        page,
        page.t(Msg::FormsTitle),
        html! {
            h1 { (page.t(Msg::FormsTitle)) }
            p { (page.t(Msg::FormsIntro)) }
            ul.forms {
                @for f in forms {
                    li {
                        a href={ "/forms/" (f.id) "?lang=" (lang) } { (f.title_in(lang)) }
                        @if !f.description_in(lang).is_empty() { p { (f.description_in(lang)) } }
                    }
                }
            }
            p { a href={ "/keys?lang=" (lang) } { (page.t(Msg::KeysLink)) } }
            @if forms.iter().any(|f| f.replies) {
                p { a href={ (replies::REPLIES_PATH) "?lang=" (lang) } { (page.t(Msg::RepliesLink)) } }
            }
        },
    ))
}

/// `GET /static/style.css`
pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        PreEscaped(STYLESHEET).0,
    )
        .into_response()
}
