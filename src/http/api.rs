//! The JSON API's form schemas (`GET /api/v1/forms`). Submissions come in
//! through `http/submit.rs`, the one front door of both submission routes.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;

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
