//! The bodies of the tipster's reply routes (`POST /api/v1/replies`,
//! `/api/v1/replies/follow-up`, `/api/v1/replies/delete`): the requests,
//! which carry a reply code (and a follow-up's text) and are zeroized when
//! dropped, and the answers read from a mailbox.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::replies::ReplyStatus;

/// The longest reply code the routes read, in bytes: twelve words of the
/// list are far shorter; anything longer is not a code.
pub const MAX_CODE_BYTES: usize = 512;

/// `{"code"}`: read, or delete, the mailbox a reply code opens.
#[derive(Deserialize, ToSchema, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
#[schema(as = ReplyCodeRequest)]
pub struct CodeRequest {
    /// The reply code: twelve words separated by spaces, as shown once
    /// when the tip was sent.
    #[schema(
        min_length = 1,
        max_length = 512,
        example = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
    )]
    pub code: String,
}

/// `{"code", "message"}`: a follow-up to the newsroom that answered.
#[derive(Deserialize, ToSchema, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct FollowUpRequest {
    /// The reply code.
    #[schema(min_length = 1, max_length = 512)]
    pub code: String,
    /// The follow-up's text (the form's `message` field: its length limit
    /// applies).
    #[schema(min_length = 1)]
    pub message: String,
}

/// `{"status", "answers"}`: what a mailbox holds. The same body, with no
/// answer and no status, for a code that opens nothing and for a mailbox
/// not answered yet: the server cannot tell them apart, nor say which. No
/// `Debug`: it holds decrypted answers.
#[derive(Serialize, Deserialize, ToSchema, Zeroize, ZeroizeOnDrop)]
pub struct RepliesRead {
    /// The newest status an answer gave (`null` when none did).
    #[zeroize(skip)]
    pub status: Option<ReplyStatus>,
    /// The answers, oldest first.
    pub answers: Vec<AnswerRead>,
}

/// One answer of a mailbox, decrypted (no `Debug`, like
/// [`crate::replies::Answer`]'s hides its message).
#[derive(Serialize, Deserialize, ToSchema, Zeroize, ZeroizeOnDrop)]
pub struct AnswerRead {
    /// The day it was pushed to the server (`YYYY-MM-DD`, UTC).
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub day: String,
    /// The status it gave, if any.
    #[zeroize(skip)]
    pub status: Option<ReplyStatus>,
    /// The newsroom's text.
    pub message: String,
}
