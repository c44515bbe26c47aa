//! The public API's bodies: the forms list (`GET /api/v1/forms`) and the
//! answer to an accepted submission (`201 {"receipt"}`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::config::{FieldConfig, FormConfig};
use crate::receipt::Receipt;
use crate::replies::ReplyCode;

/// `{"forms": [...]}`: every form's schema and recipients.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FormList {
    /// The forms, in the configuration's order.
    pub forms: Vec<FormInfo>,
}

/// One form as the API describes it: what a client needs to fill it in
/// and to check whom its submissions are sealed to.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FormInfo {
    /// The form's id, as in its submission route.
    pub id: String,
    /// Its title.
    pub title: String,
    /// The paragraph shown above it (may be empty).
    pub description: String,
    /// Primary fingerprints of the certificates its submissions are
    /// sealed to.
    pub recipients: Vec<String>,
    /// Its fields, in display order.
    pub fields: Vec<FieldInfo>,
    /// Largest single attached file, in bytes.
    pub max_file_bytes: u64,
    /// Most files one submission may attach.
    pub max_files: usize,
    /// Largest sum of all attached files of one submission, in bytes.
    pub max_total_bytes: u64,
}

impl FormInfo {
    /// `form`'s description, with the fingerprints of the certificates
    /// its submissions are sealed to.
    pub fn of(form: &FormConfig, recipients: Vec<String>) -> FormInfo {
        FormInfo {
            id: form.id.clone(),
            title: form.title.clone(),
            description: form.description.clone(),
            recipients,
            fields: form.fields.iter().map(FieldInfo::of).collect(),
            max_file_bytes: form.max_file_bytes,
            max_files: form.max_files,
            max_total_bytes: form.max_total_bytes,
        }
    }
}

/// One field of a form.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FieldInfo {
    /// Its name: the key of its value in a submission.
    pub name: String,
    /// Its label.
    pub label: String,
    /// `text`, `textarea`, `email`, `select`, `checkbox` or `file`.
    pub kind: String,
    /// A hint shown under it, if any.
    pub hint: Option<String>,
    /// Whether a submission must fill it.
    pub required: bool,
    /// The longest value it takes, in characters.
    pub max_len: usize,
    /// The values a `select` takes (empty for other kinds).
    pub options: Vec<String>,
    /// Whether a `file` field takes several files.
    pub multiple: bool,
}

impl FieldInfo {
    /// `field` as the API describes it.
    pub fn of(field: &FieldConfig) -> FieldInfo {
        FieldInfo {
            name: field.name.clone(),
            label: field.label.clone(),
            kind: field.kind.as_str().to_owned(),
            hint: field.hint.clone(),
            required: field.required,
            max_len: field.max_len(),
            options: field.options.clone(),
            multiple: field.multiple,
        }
    }
}

/// `{"receipt": "...", "reply_code": "..."}`: a submission sealed and
/// stored durably. The receipt and the reply code are the only copies the
/// client gets; both are zeroized when this is dropped (send it with
/// `src/http/secret_body.rs`, whose body is zeroized too).
#[derive(Serialize, Deserialize, ToSchema, Zeroize, ZeroizeOnDrop)]
#[schema(as = Receipt)]
pub struct Submitted {
    /// The record's receipt.
    #[schema(pattern = "^[a-z2-7]{26}$")]
    pub receipt: String,
    /// For a form with replies: 12 words that open the answers to this
    /// submission at `/replies` (`POST /api/v1/replies`). Shown once; the
    /// server keeps no copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[a-z]+( [a-z]+){11}$")]
    pub reply_code: Option<String>,
}

impl std::fmt::Debug for Submitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the receipt nor the reply code may reach a log.
        f.write_str("Submitted(..)")
    }
}

impl Submitted {
    /// The answer for the record `receipt`, with its reply code if any.
    pub fn new(receipt: &Receipt, reply_code: Option<&ReplyCode>) -> Submitted {
        Submitted {
            receipt: receipt.to_string(),
            reply_code: reply_code.map(|c| c.expose().to_owned()),
        }
    }
}
