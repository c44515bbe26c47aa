//! The JSON API: form schemas and submissions.
//!
//! Errors are `{"error": {"code", "message", "field"?}}` with the statuses
//! that the OpenAPI document lists ([`super::openapi`]); a 201 answers `{"receipt": "<id>"}` once the record is durable.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::error::{ApiError, HttpError};
use super::{AppState, Segment, media_type};
use crate::submission::{Submission, decode_json};

/// `GET /api/v1/forms`: every form's schema and recipients.
pub async fn forms(State(state): State<AppState>) -> Json<Value> {
    let intake = state.intake();
    let forms: Vec<Value> = intake
        .config
        .forms
        .iter()
        .map(|f| {
            let recipients: Vec<String> = intake
                .keyring
                .for_form(&f.id)
                .map(|r| r.certs.iter().map(|c| c.to_hex()).collect())
                .unwrap_or_default();
            json!({
                "id": f.id,
                "title": f.title,
                "description": f.description,
                "recipients": recipients,
                "fields": f.fields.iter().map(|x| json!({
                    "name": x.name,
                    "label": x.label,
                    "kind": x.kind.as_str(),
                    "hint": x.hint,
                    "required": x.required,
                    "max_len": x.max_len(),
                    "options": x.options,
                "multiple": x.multiple,
                })).collect::<Vec<_>>(),
                "max_file_bytes": f.max_file_bytes,
                "max_files": f.max_files,
                "max_total_bytes": f.max_total_bytes,
            })
        })
        .collect();
    Json(json!({ "forms": forms }))
}

/// `POST /api/v1/forms/{form}/submissions` with `{"fields": {...}}`
/// (multipart bodies are taken by `upload::api_submit` first).
pub async fn submit(
    State(state): State<AppState>,
    Segment(id): Segment,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let config = &state.intake().config;
    let form_index = config.form_index(&id).ok_or_else(HttpError::unknown_form)?;
    if media_type(&headers).as_deref() != Some("application/json") {
        return Err(
            HttpError::unsupported_media_type("application/json or multipart/form-data").into(),
        );
    }
    let body = body?;
    let submission = Submission::validate(&config.forms[form_index], decode_json(&body)?)?;
    drop(body);
    let receipt = state.seal(form_index, submission).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "receipt": receipt.to_string() })),
    ))
}
