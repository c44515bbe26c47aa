//! The confirmation page: the receipt of a stored submission and what to
//! do with it, and for a form with replies the reply code, shown this once
//! with advice. Neither appears anywhere but in the body of this
//! `no-store` page, never in a URL.

use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::layout::{Page, form_response, layout};
use super::replies::REPLIES_PATH;
use crate::config::FormConfig;
use crate::i18n::Msg;
use crate::receipt::Receipt;
use crate::replies::ReplyCode;

/// The answer to a form post that was stored (200).
pub fn receipt_response(
    page: Page<'_>,
    form: &FormConfig,
    receipt: &Receipt,
    reply_code: Option<&ReplyCode>,
) -> Response {
    let html = render_receipt(page, form, &receipt.to_string(), reply_code);
    form_response(form, StatusCode::OK, html)
}

/// The confirmation page: the receipt and what to do with it.
fn render_receipt(
    page: Page<'_>,
    form: &FormConfig,
    receipt: &str,
    reply_code: Option<&ReplyCode>,
) -> String {
    let lang = page.code();
    let title = page.t(Msg::SentTitle);
    layout(
        page,
        title,
        html! {
            h1 { (title) }
            p { (page.cat.fill(page.lang, Msg::SentIntro, &[("form", &form.title_in(lang))])) }
            p.receipt { code #receipt { (receipt) } }
            p { (page.t(Msg::SentSave)) }
            @if let Some(code) = reply_code {
                h2 { (page.t(Msg::ReplyCodeTitle)) }
                p { (page.t(Msg::ReplyCodeIntro)) }
                p.receipt { code #reply-code { (code.expose()) } }
                p { strong { (page.t(Msg::ReplyCodeAdvice)) } }
                p {
                    (page.t(Msg::ReplyCodeWhere)) " "
                    a href={ (REPLIES_PATH) "?lang=" (lang) } target="_top" { (REPLIES_PATH) }
                }
            }
            p { (page.t(Msg::SentAdvice)) }
            p { a href={ "/?lang=" (lang) } target="_top" { (page.t(Msg::BackToForms)) } }
        },
    )
}
