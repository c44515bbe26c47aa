//! What became of a submission: stored ([`Accepted`], with the reply code
//! of a form with replies), or not ([`Failure`]): a fixable mistake, a
//! refusal, or an error; each answered once, by the route's surface
//! (`http/submit.rs` for the API, `http/submit/page.rs` for an HTML form).

use axum::extract::rejection::BytesRejection;

use crate::config::FormConfig;
use crate::http::error::HttpError;
use crate::http::refusal::Refusal;
use crate::receipt::Receipt;
use crate::replies::{Derived, ReplyCode};
use crate::submission::Rejection;

/// A submission stored durably: its receipt and, for a form with replies,
/// the reply code, shown once and then dropped (zeroized).
pub struct Accepted {
    /// The record's receipt.
    pub receipt: Receipt,
    /// The reply code (forms with `replies = true`).
    pub reply_code: Option<ReplyCode>,
}

/// For a form with replies, a fresh reply code and what it derives (the
/// record carries the mailbox and certificate); nothing otherwise.
pub fn reply_for(form: &FormConfig) -> Result<Option<(ReplyCode, Derived)>, HttpError> {
    if !form.replies {
        return Ok(None);
    }
    let code = ReplyCode::generate();
    let derived = code.derive().map_err(|e| HttpError::internal(&e))?;
    Ok(Some((code, derived)))
}

/// Why a submission was not stored.
#[derive(Debug)]
pub enum Failure {
    /// Fields broke the form's rules in ways a person can fix: an HTML form
    /// comes back with them marked (422).
    Invalid(Vec<Rejection>),
    /// Turned away by a check or a limit.
    Refused(Refusal),
    /// Anything else, answered as it is.
    Error(HttpError),
}

impl From<HttpError> for Failure {
    fn from(e: HttpError) -> Failure {
        Failure::Error(e)
    }
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Failure {
        Failure::Refused(r)
    }
}

impl From<Rejection> for Failure {
    /// A malformed body is an error; a broken rule of the form is fixable.
    fn from(r: Rejection) -> Failure {
        if r.is_malformed() {
            Failure::Error(r.into())
        } else {
            Failure::Invalid(vec![r])
        }
    }
}

impl From<BytesRejection> for Failure {
    fn from(r: BytesRejection) -> Failure {
        Failure::Error(r.into())
    }
}
