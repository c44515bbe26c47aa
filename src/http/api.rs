//! The JSON API: form schemas and submissions.
//!
//! Errors are `{"error": {"code", "message", "field"?}}` with the statuses
//! that the OpenAPI document lists ([`super::openapi`]); a 201 answers `{"receipt": "<id>"}` once the record is durable.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::api::forms::{FormInfo, FormList};
use crate::submission::{Submission, decode_json};

/// `GET /api/v1/forms`: every form's schema and recipients.
pub async fn forms(State(state): State<AppState>) -> Json<FormList> {
    let intake = state.intake();
    let forms = intake
        .config
        .forms
        .iter()
        .map(|f| {
            let recipients = intake
                .keyring
                .for_form(&f.id)
                .map(|r| r.certs.iter().map(|c| c.to_hex()).collect())
                .unwrap_or_default();
            FormInfo::of(f, recipients)
        })
        .collect();
    Json(FormList { forms })
}

/// `POST /api/v1/forms/{form}/submissions` with `{"fields": {...}}`, once
/// `upload::api_submit` has checked the form and the content type and
/// charged the API's rate budgets (multipart bodies it takes itself).
pub async fn submit(
    state: &AppState,
    form_index: usize,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let config = &state.intake().config;
    let body = body?;
    let submission = Submission::validate(&config.forms[form_index], decode_json(&body)?)?;
    drop(body);
    let receipt = state.seal(form_index, submission).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "receipt": receipt.to_string() })),
    ))
}
