//! Server-rendered HTML: the form list, each form, the receipt page, the key
//! list and error pages.
//!
//! Pages need no JavaScript and load nothing from another origin; every
//! dynamic string goes through maud, which escapes it. A receipt appears only
//! in the body of a `no-store` response, never in a URL.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::error::{HttpError, PageError};
use super::tokens::{HONEYPOT_FIELD, TOKEN_FIELD, TokenError};
use super::{AppState, media_type};
use crate::config::{FieldKind, FormConfig};
use crate::keys::RecipientCert;
use crate::submission::{RawValue, Submission, decode_urlencoded};
use zeroize::Zeroizing;

const STYLESHEET: &str = include_str!("../../static/style.css");

fn layout(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · sealform" }
                link rel="stylesheet" href="/static/style.css";
            }
            body {
                main { (body) }
            }
        }
    }
    .into_string()
}

/// Renders a plain error page.
pub fn error_page(title: &str, message: &str) -> String {
    layout(
        title,
        html! {
            h1 { (title) }
            p { (message) }
            p { a href="/" { "Back to the forms" } }
        },
    )
}

/// Spaced groups of four, as GnuPG prints fingerprints.
fn spaced(hex: &str) -> String {
    hex.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `GET /`
pub async fn index(State(state): State<AppState>) -> Html<String> {
    let forms = &state.intake().config.forms;
    Html(layout(
        "Forms",
        html! {
            h1 { "Forms" }
            p { "Every message sent here is encrypted on arrival; the server keeps no readable copy." }
            ul.forms {
                @for f in forms {
                    li {
                        a href={ "/forms/" (f.id) } { (f.title) }
                        @if !f.description.is_empty() { p { (f.description) } }
                    }
                }
            }
            p { a href="/keys" { "The recipients' keys" } }
        },
    ))
}

fn recipients_of<'a>(state: &'a AppState, form: &FormConfig) -> Vec<&'a RecipientCert> {
    let keyring = &state.intake().keyring;
    match keyring.for_form(&form.id) {
        Some(r) => r
            .certs
            .iter()
            .filter_map(|f| keyring.cert(&f.to_hex()))
            .collect(),
        None => Vec::new(),
    }
}

/// `GET /forms/{form}`
pub async fn form(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Html<String>, PageError> {
    let form = state
        .intake()
        .config
        .form(&id)
        .ok_or_else(HttpError::unknown_form)?;
    Ok(Html(form_page(&state, form, None)))
}

/// The form page, with a fresh token, and a notice above the form when a
/// post was refused.
fn form_page(state: &AppState, form: &FormConfig, notice: Option<&str>) -> String {
    let recipients = recipients_of(state, form);
    let abuse = &state.intake().config.abuse;
    let token = abuse.form_tokens.then(|| state.tokens().issue(&form.id));
    layout(
        &form.title,
        html! {
            h1 { (form.title) }
            @if let Some(n) = notice {
                div.notice role="alert" {
                    p { strong { "Your message was not sent. " } (n) }
                    p { "Nothing was stored. Please fill in the form below and send it again. "
                        "(Your browser's Back button may still show what you typed.)" }
                }
            }
            @if !form.description.is_empty() { p { (form.description) } }
            form method="post" action={ "/forms/" (form.id) } accept-charset="utf-8" {
                @if let Some(t) = &token { input type="hidden" name=(TOKEN_FIELD) value=(t); }
                @if abuse.honeypot {
                    div.hp aria-hidden="true" {
                        label for="f-sf-homepage" { "Leave this field empty" }
                        input type="text" id="f-sf-homepage" name=(HONEYPOT_FIELD) value="" tabindex="-1" autocomplete="off";
                    }
                }
                @for field in &form.fields { (render_field(field)) }
                button type="submit" { "Send encrypted" }
            }
            section.recipients {
                h2 { "Who can read this" }
                p { "Your message is encrypted on arrival to these OpenPGP keys. The server keeps no readable copy and no IP address." }
                ul {
                    @for c in &recipients {
                        li {
                            (c.display_name()) br;
                            code { (spaced(&c.fingerprint().to_hex())) }
                        }
                    }
                }
            }
        },
    )
}

fn render_field(field: &crate::config::FieldConfig) -> Markup {
    let id = format!("f-{}", field.name);
    let hint_id = format!("{id}-hint");
    let max = field.max_len();
    html! {
        div.field {
            @if field.kind == FieldKind::Checkbox {
                input type="checkbox" id=(id) name=(field.name) value="on" required[field.required];
                label for=(id) { (field.label) @if field.required { " (required)" } }
            } @else {
                label for=(id) { (field.label) @if field.required { " (required)" } }
                @if let Some(h) = &field.hint { p.hint id=(hint_id) { (h) } }
                @match field.kind {
                    FieldKind::Textarea => {
                        textarea id=(id) name=(field.name) rows="8" maxlength=(max) required[field.required] {}
                    }
                    FieldKind::Select => {
                        select id=(id) name=(field.name) required[field.required] {
                            option value="" { "Choose…" }
                            @for o in &field.options { option value=(o) { (o) } }
                        }
                    }
                    FieldKind::Email => {
                        input type="email" id=(id) name=(field.name) maxlength=(max) autocomplete="off" required[field.required];
                    }
                    _ => {
                        input type="text" id=(id) name=(field.name) maxlength=(max) autocomplete="off" required[field.required];
                    }
                }
                @if field.kind != FieldKind::Select { p.limit { "Up to " (max) " characters." } }
            }
        }
    }
}

/// `POST /forms/{form}`
pub async fn submit(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, PageError> {
    let config = &state.intake().config;
    let form_index = config
        .forms
        .iter()
        .position(|f| f.id == id)
        .ok_or_else(HttpError::unknown_form)?;
    let form = &config.forms[form_index];
    if config.abuse.check_origin && is_cross_site(&headers, config.abuse.public_origin()) {
        return Ok(refused(
            &state,
            form,
            StatusCode::FORBIDDEN,
            "It came from another web site. Only this site's own form can send messages here.",
        ));
    }
    if media_type(&headers).as_deref() != Some("application/x-www-form-urlencoded") {
        return Err(HttpError::unsupported_media_type("application/x-www-form-urlencoded").into());
    }
    let body = body?;
    let mut pairs = decode_urlencoded(&body)?;
    drop(body);
    let token = take_text(&mut pairs, TOKEN_FIELD);
    let honeypot = take_text(&mut pairs, HONEYPOT_FIELD);
    if config.abuse.honeypot && honeypot.is_some_and(|h| !h.trim().is_empty()) {
        return Ok(refused(
            &state,
            form,
            StatusCode::BAD_REQUEST,
            "A field that must stay empty was filled in, which is what automated spam does.",
        ));
    }
    if config.abuse.form_tokens {
        if let Err(e) = state
            .tokens()
            .redeem(&form.id, token.as_deref().map(|t| t.as_str()))
        {
            let (status, why) = match e {
                TokenError::Invalid => (
                    StatusCode::BAD_REQUEST,
                    "The form did not come from this site's page, or was changed on the way.",
                ),
                TokenError::Expired => (
                    StatusCode::BAD_REQUEST,
                    "The page was open for too long and the form expired.",
                ),
                TokenError::Replayed => (
                    StatusCode::BAD_REQUEST,
                    "This copy of the form was already sent once; each copy can be sent only once.",
                ),
                TokenError::TooFast => (
                    StatusCode::BAD_REQUEST,
                    "It was sent only a moment after the page opened, faster than a person types.",
                ),
                TokenError::Busy => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The server is very busy right now.",
                ),
            };
            return Ok(refused(&state, form, status, why));
        }
    }
    let submission = Submission::validate(form, pairs)?;
    let receipt = state.seal(form_index, submission).await?;
    let page = layout(
        "Sent",
        html! {
            h1 { "Your message was encrypted and stored" }
            p { "Only the recipients of " (form.title) " can read it. This is your receipt:" }
            p.receipt { code { (receipt.to_string()) } }
            p { "Save it if you want proof that your message arrived. You need nothing else; "
                "the server keeps no readable copy of what you sent." }
            p { a href="/" { "Back to the forms" } }
        },
    );
    Ok((
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Html(page),
    )
        .into_response())
}

/// Removes the parameter `name` (if sent once or more) and returns its last
/// text value.
fn take_text(pairs: &mut Vec<(String, RawValue)>, name: &str) -> Option<Zeroizing<String>> {
    let mut found = None;
    let mut i = 0;
    while i < pairs.len() {
        if pairs[i].0 == name {
            if let (_, RawValue::Text(t)) = pairs.remove(i) {
                found = Some(t);
            }
        } else {
            i += 1;
        }
    }
    found
}

/// A browser says this post comes from another site: `Sec-Fetch-Site` other
/// than `same-origin`/`none`, or an `Origin` that is neither `null` (which
/// browsers send for our own `no-referrer` pages) nor this site.
fn is_cross_site(headers: &HeaderMap, public_origin: Option<String>) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.to_str(), Ok("same-origin" | "none"));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let Ok(origin) = origin.to_str() else {
        return true;
    };
    let origin = origin.trim().to_ascii_lowercase();
    if origin == "null" {
        return false;
    }
    match public_origin {
        Some(expected) => origin != expected,
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_ascii_lowercase);
            let authority = origin.split_once("://").map(|(_, a)| a);
            host.is_none() || authority != host.as_deref()
        }
    }
}

/// The refusal page for a post that failed an abuse check: it explains and
/// offers the form again, with a fresh token.
fn refused(state: &AppState, form: &FormConfig, status: StatusCode, why: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Html(form_page(state, form, Some(why))),
    )
        .into_response()
}

/// `GET /keys`
pub async fn keys(State(state): State<AppState>) -> Html<String> {
    let certs = state.intake().keyring.certs();
    Html(layout(
        "Keys",
        html! {
            h1 { "Recipient keys" }
            p { "Submissions are encrypted to these OpenPGP certificates." }
            ul {
                @for c in certs {
                    @let fpr = c.fingerprint().to_hex();
                    li {
                        (c.display_name()) br;
                        a href={ "/keys/" (fpr) ".asc" } { code { (spaced(&fpr)) } }
                    }
                }
            }
        },
    ))
}

/// `GET /keys/{fingerprint}.asc`
pub async fn key_file(
    State(state): State<AppState>,
    Path(file): Path<String>,
) -> Result<Response, PageError> {
    let not_found = || HttpError::new(StatusCode::NOT_FOUND, "unknown_key", "there is no such key");
    let fpr = file.strip_suffix(".asc").ok_or_else(not_found)?;
    let cert = state.intake().keyring.cert(fpr).ok_or_else(not_found)?;
    Ok((
        [(header::CONTENT_TYPE, "application/pgp-keys")],
        cert.armored.clone(),
    )
        .into_response())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// (request headers, configured public origin, refused as cross-site)
    type Case = (
        &'static [(&'static str, &'static str)],
        Option<String>,
        bool,
    );

    #[test]
    fn cross_site_posts_are_told_from_same_site_ones() {
        let public = || Some("https://tips.example.org".to_owned());
        let cases: [Case; 10] = [
            (&[], None, false),
            (&[("sec-fetch-site", "same-origin")], None, false),
            (&[("sec-fetch-site", "none")], None, false),
            (&[("sec-fetch-site", "same-site")], None, true),
            (
                &[("sec-fetch-site", "cross-site"), ("origin", "null")],
                None,
                true,
            ),
            (&[("origin", "null")], public(), false),
            (&[("origin", "https://tips.example.org")], public(), false),
            (&[("origin", "https://evil.example")], public(), true),
            (
                &[("origin", "http://a.test:8080"), ("host", "a.test:8080")],
                None,
                false,
            ),
            (
                &[("origin", "http://evil.test"), ("host", "a.test:8080")],
                None,
                true,
            ),
        ];
        for (headers, public_origin, cross) in cases {
            let mut map = HeaderMap::new();
            for (k, v) in headers {
                map.insert(*k, v.parse().expect("value"));
            }
            assert_eq!(is_cross_site(&map, public_origin), cross, "{headers:?}");
        }
    }
}
