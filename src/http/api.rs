//! The JSON API's form schemas (`GET /api/v1/forms`). Submissions come in
//! through `http/submit.rs`, the one front door of both submission routes.

use axum::Json;
use axum::extract::State;

use super::AppState;
use crate::api::forms::{FormInfo, FormList};

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
