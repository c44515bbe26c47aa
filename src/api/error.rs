//! The error body every API route answers with:
//! `{"error": {"code", "message", "field"?}}`, and the stable codes it
//! carries ([`ErrorCode`]).

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
    pub code: ErrorCode,
    /// A message safe to show: fixed text or a schema field's name, never a
    /// submitted value.
    pub message: Cow<'static, str>,
    /// The schema field concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The stable, machine-readable codes of the API's errors, written as
/// snake_case strings (`"unknown_form"`, `"rate_limited"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Nothing is at this address.
    NotFound,
    /// The address does not take this method.
    MethodNotAllowed,
    /// No form has this id.
    UnknownForm,
    /// No recipient certificate has this fingerprint.
    UnknownKey,
    /// The body's content type is not one the route takes.
    UnsupportedMediaType,
    /// A browser said the post came from another web site.
    CrossSite,
    /// An HTML form post's form token or honeypot did not pass.
    Refused,
    /// A rate budget is spent: send again after `Retry-After`.
    RateLimited,
    /// Every in-flight submission slot is taken.
    Busy,
    /// The client has its share of submissions in flight.
    TooManyAtOnce,
    /// The client has its share of uploads in progress.
    TooManyUploads,
    /// The server cannot take submissions now (storage, sealing queue).
    Unavailable,
    /// A fault of the server's own.
    Internal,
    /// The body is larger than the server accepts.
    PayloadTooLarge,
    /// A file is larger than the form accepts.
    FileTooLarge,
    /// An upload's files together are larger than the form accepts.
    UploadTooLarge,
    /// An upload has more files than the form accepts.
    TooManyFiles,
    /// The body did not arrive in time.
    RequestTimeout,
    /// The body could not be decoded.
    Malformed,
    /// Text that is not UTF-8.
    InvalidUtf8,
    /// More fields (or parts) than the form takes.
    TooManyFields,
    /// A field the form does not have.
    UnknownField,
    /// A field given twice.
    DuplicateField,
    /// A required field is absent or blank.
    MissingField,
    /// A value longer than its field allows.
    TooLong,
    /// A value of the wrong JSON type.
    WrongType,
    /// A value that is not one of its field's options.
    InvalidOption,
    /// A value that is not an e-mail address.
    InvalidEmail,
    /// Control characters where they are not allowed.
    InvalidCharacters,
    /// Text sent for a file field.
    ExpectedFile,
    /// A reply code that is not twelve words of its list.
    InvalidCode,
    /// A reply code whose words fail its checksum (a typo).
    CodeChecksum,
    /// A follow-up to a mailbox no answer has named a form in yet (or a
    /// code that opens nothing: the two cannot be told apart).
    NotAnsweredYet,
    /// A follow-up to a form that no longer takes one.
    FollowUpClosed,
    /// The staff API wants a valid token.
    Unauthorized,
    /// The staff token's scope leaves this out.
    Forbidden,
    /// Other bytes are stored under this answer id already.
    Conflict,
    /// The mailbox holds as many answers as it may (`[replies]
    /// max_per_mailbox`).
    MailboxFull,
}
