//! `GET /api/v1/staff/status`: the daily digest's state for staff (any
//! token that may list records): per reader, by position and certificate
//! fingerprint, never by address, the time of the last digest the relay
//! accepted and why the last one sent nothing, if it did not. `notify` is
//! null without `[notify]`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::staff::{StaffError, StaffState};
use crate::staff_token::Action;

/// The handler of `GET /api/v1/staff/status`.
pub async fn status(
    State(st): State<StaffState>,
    headers: HeaderMap,
) -> Result<Json<Value>, StaffError> {
    st.authorize(&headers, Action::List)?;
    let intake = Arc::clone(&st.intake);
    let notify = intake.config.notify.as_ref().map(|notify| {
        let ledger = crate::notify::ledger(&intake.config.server.data_dir, notify);
        json!({ "at": notify.at, "readers": ledger.snapshot() })
    });
    Ok(Json(json!({ "notify": notify })))
}
