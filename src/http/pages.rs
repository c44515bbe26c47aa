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
use super::{AppState, media_type};
use crate::config::{FieldKind, FormConfig};
use crate::keys::RecipientCert;
use crate::store::Receipt;
use crate::submission::{Submission, decode_urlencoded};

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

/// A byte count for people: `2 GiB`, `300 MiB`, `512 KiB`, `12 bytes`.
fn human_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if n >= size {
            let whole = n / size;
            let tenth = (n % size) * 10 / size;
            return if tenth == 0 {
                format!("{whole} {unit}")
            } else {
                format!("{whole}.{tenth} {unit}")
            };
        }
    }
    format!("{n} bytes")
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
    let recipients = recipients_of(&state, form);
    Ok(Html(layout(
        &form.title,
        html! {
            h1 { (form.title) }
            @if !form.description.is_empty() { p { (form.description) } }
            form method="post" action={ "/forms/" (form.id) } accept-charset="utf-8"
                enctype=[form.takes_files().then_some("multipart/form-data")] {
                @for field in &form.fields { (render_field(field)) }
                @if form.takes_files() {
                    p.limit { "Up to " (form.max_files) " files, " (human_bytes(form.max_file_bytes))
                        " each, " (human_bytes(form.max_total_bytes)) " in total." }
                }
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
    )))
}

fn render_field(field: &crate::config::FieldConfig) -> Markup {
    let id = format!("f-{}", field.name);
    let hint_id = format!("{id}-hint");
    if field.kind == FieldKind::File {
        return html! {
            div.field {
                label for=(id) { (field.label) @if field.required { " (required)" } }
                @if let Some(h) = &field.hint { p.hint id=(hint_id) { (h) } }
                input type="file" id=(id) name=(field.name) multiple[field.multiple] required[field.required];
                p.limit { "Files are encrypted as they arrive; their names are stored only inside the encrypted record." }
            }
        };
    }
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
    if media_type(&headers).as_deref() != Some("application/x-www-form-urlencoded") {
        return Err(HttpError::unsupported_media_type(
            "application/x-www-form-urlencoded or multipart/form-data",
        )
        .into());
    }
    let body = body?;
    let form = &config.forms[form_index];
    let submission = Submission::validate(form, decode_urlencoded(&body)?)?;
    drop(body);
    let receipt = state.seal(form_index, submission).await?;
    Ok(receipt_page(form, receipt))
}

/// The 200 page showing the receipt of a stored submission.
pub fn receipt_page(form: &FormConfig, receipt: Receipt) -> Response {
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
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Html(page),
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
