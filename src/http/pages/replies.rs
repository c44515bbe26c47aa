//! The tipster's reply pages (`/replies`): the form asking for the reply
//! code ([`ask`]), the answers a code opened with the follow-up and delete
//! forms ([`answers`]), the delete confirmation ([`confirm_delete`]) and
//! the pages after a follow-up or a delete. They only render: what answers
//! a post is decided in `http/replies/page.rs`.
//!
//! The code is written only into the hidden fields of the forms that post
//! it back (never into a link, so never into a URL or a Referer), and every
//! one of these pages is `no-store` (the global default).

use maud::{Markup, html};

use super::layout::{Page, layout};
use crate::http::form_tokens::TOKEN_FIELD;
use crate::i18n::Msg;

/// The path of the reply pages.
pub const REPLIES_PATH: &str = "/replies";
/// The path the follow-up form posts to.
pub const FOLLOW_UP_PATH: &str = "/replies/follow-up";
/// The path the delete forms post to.
pub const DELETE_PATH: &str = "/replies/delete";

/// The form field that carries the reply code.
pub const CODE_FIELD: &str = "code";
/// The form field that carries a follow-up's text.
pub const MESSAGE_FIELD: &str = "message";
/// The form field that confirms a delete.
pub const CONFIRM_FIELD: &str = "confirm";

/// One answer as a page shows it.
pub struct ShownAnswer<'a> {
    /// The day it was pushed (`YYYY-MM-DD`).
    pub day: &'a str,
    /// Its status, as a message of the catalogue.
    pub status: Option<Msg>,
    /// The newsroom's text (escaped by maud).
    pub message: &'a str,
}

/// The page asking for the code: `notice` says why it came back (a typo in
/// the code, nothing in the mailbox, a refused post), `token` is the form's
/// fresh form token. The page is the same, byte for byte apart from the
/// token, whatever the code that was typed (it is not echoed).
pub fn ask(page: Page<'_>, token: Option<&str>, notice: Option<Msg>) -> String {
    let title = page.t(Msg::RepliesTitle);
    layout(
        page,
        title,
        html! {
            h1 { (title) }
            @if let Some(notice) = notice {
                div.notice role="status" { p { (page.t(notice)) } }
            }
            p { (page.t(Msg::RepliesIntro)) }
            form method="post" action={ (REPLIES_PATH) "?lang=" (page.code()) }
                accept-charset="utf-8" {
                (token_input(token))
                div.field {
                    label for="f-code" { (page.t(Msg::RepliesCodeLabel)) }
                    p.hint id="f-code-hint" { (page.t(Msg::RepliesCodeHint)) }
                    textarea id="f-code" name=(CODE_FIELD) rows="3" required
                        autocomplete="off" autocapitalize="none" spellcheck="false"
                        aria-describedby="f-code-hint" {}
                }
                button type="submit" { (page.t(Msg::RepliesRead)) }
            }
            p { a href={ "/?lang=" (page.code()) } { (page.t(Msg::BackToForms)) } }
        },
    )
}

/// A follow-up sent back for a mistake: what is wrong and what was typed.
pub struct FollowUpAgain<'a> {
    /// What to fix, in the page's language.
    pub problem: &'a str,
    /// The text as it was sent, shown again in the textarea.
    pub typed: &'a str,
}

/// The answers a code opened, oldest first, the newest `status`, then the
/// follow-up form (with `again`, after a mistake) and the button that asks
/// to delete them. `tokens` are the fresh form tokens of the follow-up and
/// the delete forms.
pub fn answers(
    page: Page<'_>,
    shown: &[ShownAnswer<'_>],
    status: Option<Msg>,
    code: &str,
    tokens: [Option<&str>; 2],
    again: Option<FollowUpAgain<'_>>,
) -> String {
    let title = page.t(Msg::RepliesTitle);
    let lang = page.code();
    layout(
        page,
        title,
        html! {
            h1 { (title) }
            @if let Some(status) = status {
                p.status #status { strong { (status_line(page, status)) } }
            }
            @for a in shown {
                article.answer {
                    h2 { (page.cat.fill(page.lang, Msg::RepliesAnswerOf, &[("day", &a.day)])) }
                    @if let Some(s) = a.status { p.answer-status { (status_line(page, s)) } }
                    div.answer-text { @for line in a.message.lines() { (line) br; } }
                }
            }
            p { (page.t(Msg::RepliesKeepPrivate)) }
            h2 { (page.t(Msg::FollowUpTitle)) }
            p { (page.t(Msg::FollowUpIntro)) }
            form method="post" action={ (FOLLOW_UP_PATH) "?lang=" (lang) } accept-charset="utf-8" {
                (token_input(tokens[0]))
                input type="hidden" name=(CODE_FIELD) value=(code);
                div.field {
                    label for="f-message" { (page.t(Msg::FollowUpLabel)) }
                    @if let Some(again) = &again {
                        p.error id="f-message-error" {
                            span.visually-hidden { (page.t(Msg::ErrorPrefix)) " " }
                            (again.problem)
                        }
                        textarea id="f-message" name=(MESSAGE_FIELD) rows="8" required
                            aria-invalid="true" aria-describedby="f-message-error"
                            autofocus { (again.typed) }
                    } @else {
                        textarea id="f-message" name=(MESSAGE_FIELD) rows="8" required {}
                    }
                }
                button type="submit" { (page.t(Msg::FollowUpSend)) }
            }
            h2 { (page.t(Msg::DeleteTitle)) }
            p { (page.t(Msg::DeleteWarning)) }
            form method="post" action={ (DELETE_PATH) "?lang=" (lang) } accept-charset="utf-8" {
                (token_input(tokens[1]))
                input type="hidden" name=(CODE_FIELD) value=(code);
                button type="submit" { (page.t(Msg::DeleteAsk)) }
            }
        },
    )
}

/// The second step of a delete: the warning again and the button that
/// deletes.
pub fn confirm_delete(page: Page<'_>, token: Option<&str>, code: &str) -> String {
    let title = page.t(Msg::DeleteConfirmTitle);
    layout(
        page,
        title,
        html! {
            h1 { (title) }
            p { (page.t(Msg::DeleteWarning)) }
            form method="post" action={ (DELETE_PATH) "?lang=" (page.code()) } accept-charset="utf-8" {
                (token_input(token))
                input type="hidden" name=(CODE_FIELD) value=(code);
                input type="hidden" name=(CONFIRM_FIELD) value="yes";
                button type="submit" { (page.t(Msg::DeleteConfirm)) }
            }
            (back(page))
        },
    )
}

/// After a follow-up was stored: its receipt.
pub fn follow_up_sent(page: Page<'_>, receipt: &str) -> String {
    let title = page.t(Msg::FollowUpSentTitle);
    layout(
        page,
        title,
        html! {
            h1 { (title) }
            p { (page.t(Msg::FollowUpReceipt)) }
            p.receipt { code #receipt { (receipt) } }
            p { (page.t(Msg::SentAdvice)) }
            (back(page))
        },
    )
}

/// After a delete.
pub fn deleted(page: Page<'_>) -> String {
    let title = page.t(Msg::DeletedTitle);
    layout(
        page,
        title,
        html! {
            h1 { (title) }
            p #deleted { (page.t(Msg::Deleted)) }
            p { a href={ "/?lang=" (page.code()) } { (page.t(Msg::BackToForms)) } }
        },
    )
}

/// A follow-up that was not sent: why (`message`, in the page's
/// language), and the way back.
pub fn not_sent(page: Page<'_>, message: &str) -> String {
    let title = page.t(Msg::NotSentTitle);
    layout(
        page,
        title,
        html! {
            h1 { (title) }
            p #why { (message) }
            (back(page))
        },
    )
}

fn status_line(page: Page<'_>, status: Msg) -> String {
    page.cat.fill(
        page.lang,
        Msg::RepliesStatus,
        &[("status", &page.t(status))],
    )
}

fn token_input(token: Option<&str>) -> Markup {
    html! { @if let Some(t) = token { input type="hidden" name=(TOKEN_FIELD) value=(t); } }
}

fn back(page: Page<'_>) -> Markup {
    html! {
        p { a href={ (REPLIES_PATH) "?lang=" (page.code()) } { (page.t(Msg::RepliesAgain)) } }
    }
}
