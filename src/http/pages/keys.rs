//! The recipients' keys: the list (`GET /keys`) and each armored
//! certificate (`GET /keys/{fingerprint}.asc`). Public keys only; nothing
//! here reads a secret.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::html;

use super::layout::{Page, layout, spaced};
use crate::api::error::ErrorCode;
use crate::http::error::HttpError;
use crate::http::{AppState, Segment};
use crate::i18n::Msg;

/// `GET /keys`
pub async fn keys(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Html<String> {
    let page = Page::negotiate(&headers, query.as_deref(), "/keys");
    let certs = state.intake().keyring.certs();
    Html(layout(
        page,
        page.t(Msg::KeysTitle),
        html! {
            h1 { (page.t(Msg::KeysTitle)) }
            p { (page.t(Msg::KeysIntro)) }
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
    Segment(file): Segment,
) -> Result<Response, HttpError> {
    let not_found = || {
        HttpError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownKey,
            "there is no such key",
        )
    };
    let fpr = file.strip_suffix(".asc").ok_or_else(not_found)?;
    let cert = state.intake().keyring.cert(fpr).ok_or_else(not_found)?;
    Ok((
        [(header::CONTENT_TYPE, "application/pgp-keys")],
        cert.armored.clone(),
    )
        .into_response())
}
