//! The error body every API route answers with:
//! `{"error": {"code", "message", "field"?}}`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `{"error": {...}}`: a failed request, as the API answers it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inside of an [`ErrorBody`].
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable machine-readable code.
    pub code: Cow<'static, str>,
    /// A message safe to show: fixed text or a schema field's name, never a
    /// submitted value.
    pub message: Cow<'static, str>,
    /// The schema field concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
