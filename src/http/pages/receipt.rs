//! The confirmation page: the receipt of a stored submission and what to
//! do with it. The receipt appears only in the body of this `no-store`
//! page, never in a URL.

use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::layout::{Page, form_response, layout};
use crate::config::FormConfig;
use crate::i18n::Msg;
use crate::receipt::Receipt;

/// The answer to a form post that was stored (200).
pub fn receipt_response(page: Page<'_>, form: &FormConfig, receipt: &Receipt) -> Response {
    let html = render_receipt(page, form, &receipt.to_string());
    form_response(form, StatusCode::OK, html)
}

/// The confirmation page: the receipt and what to do with it.
fn render_receipt(page: Page<'_>, form: &FormConfig, receipt: &str) -> String {
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
            p { (page.t(Msg::SentAdvice)) }
            p { a href={ "/?lang=" (lang) } target="_top" { (page.t(Msg::BackToForms)) } }
        },
    )
}
