//! The tipster's side of anonymous replies, shared by the pages
//! (`/replies`, [`page`]) and the JSON API (`/api/v1/replies*`, [`api`]):
//! opening the mailbox a reply code derives ([`open`]), sending a follow-up
//! to the newsroom that answered ([`follow_up`]) and deleting the mailbox
//! ([`delete`]). The library that derives and decrypts is `replies.rs`.
//!
//! The code, the secret key it derives and every decrypted answer live only
//! in this request's memory and are zeroized when it ends; the work runs on
//! a blocking thread. A code that opens nothing and a code whose mailbox is
//! empty take the same path (the mailbox is derived and listed in both
//! cases) and give the same answer. Nothing here logs a code, a mailbox or
//! an answer.

pub mod api;
pub mod page;

use std::sync::Arc;

use axum::http::StatusCode;
use zeroize::Zeroizing;

use super::AppState;
use super::error::{HttpError, join_failure};
use super::refusal::Refusal;
use crate::api::error::ErrorCode;
use crate::api::replies::MAX_CODE_BYTES;
use crate::config::FieldConfig;
use crate::receipt::Receipt;
use crate::replies::{Answer, CodeError, Derived, ReplyCode, ReplyError, ReplyStatus};
use crate::submission::{RawValue, Rejection, Submission};

/// The form token id of the reply forms: not a valid form id (those have
/// no `/`), so a form's token is never good here, nor the other way round.
pub const TOKEN_ID: &str = "/replies";

/// The API's route that reads a mailbox.
pub const API_READ_ROUTE: &str = "/api/v1/replies";
/// The API's route of a follow-up.
pub const API_FOLLOW_UP_ROUTE: &str = "/api/v1/replies/follow-up";
/// The API's route that deletes a mailbox.
pub const API_DELETE_ROUTE: &str = "/api/v1/replies/delete";

/// The field of a form a follow-up's text goes into.
pub const FOLLOW_UP_FIELD: &str = "message";

/// The largest body the reply routes read: a code and a follow-up's text.
/// A longer follow-up than its form's `message` field takes is refused by
/// that field's rule anyway.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// What a code opened: the secrets it derives and its mailbox's answers
/// that could be decrypted, oldest first. Held for one request; everything
/// in it is zeroized when dropped.
pub struct Opened {
    code: ReplyCode,
    derived: Derived,
    answers: Vec<OpenedAnswer>,
}

/// One decrypted answer and the day it was pushed.
pub struct OpenedAnswer {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// What it says.
    pub answer: Answer,
}

impl Opened {
    /// The code that opened the mailbox (for the forms that post it back).
    pub fn code(&self) -> &ReplyCode {
        &self.code
    }

    /// The answers, oldest first.
    pub fn answers(&self) -> &[OpenedAnswer] {
        &self.answers
    }

    /// The status the newest answer that gives one gives.
    pub fn status(&self) -> Option<ReplyStatus> {
        self.answers.iter().rev().find_map(|a| a.answer.status)
    }

    /// The form the newest answer that names one names.
    fn form(&self) -> Option<&str> {
        self.answers
            .iter()
            .rev()
            .find_map(|a| a.answer.form.as_deref())
    }
}

/// `typed` as a reply code: [`ReplyCode::parse`], for at most
/// [`MAX_CODE_BYTES`] bytes (twelve words of the list are far fewer).
pub fn parse_code(typed: &str) -> Result<ReplyCode, CodeError> {
    if typed.len() > MAX_CODE_BYTES {
        return Err(CodeError::Words);
    }
    ReplyCode::parse(typed)
}

/// Derives what `code` opens and decrypts every answer its mailbox holds,
/// on a blocking thread, oldest first. An answer that cannot be decrypted
/// (pushed for another code, damaged) is left out.
pub async fn open(state: &AppState, code: ReplyCode) -> Result<Opened, HttpError> {
    let mailboxes = Arc::clone(state.mailboxes());
    let job = tokio::task::spawn_blocking(move || {
        let derived = code.derive()?;
        let stored = mailboxes.list(&derived.mailbox)?;
        let mut answers = Vec::with_capacity(stored.len());
        for s in stored {
            // An answer this code cannot open (pushed to the wrong mailbox,
            // damaged) is left out. Nothing is logged: a line would carry
            // the moment a tipster read.
            if let Ok(answer) = derived.open(&s.ciphertext) {
                answers.push(OpenedAnswer { day: s.day, answer });
            }
        }
        // Oldest first: by day, then by the time written inside the
        // answer (`sealform reply` writes it; a plain gpg answer has none
        // and comes first within its day). The store can only order by day.
        answers.sort_by(|a, b| (&a.day, a.answer.written).cmp(&(&b.day, b.answer.written)));
        Ok::<_, ReplyError>(Opened {
            code,
            derived,
            answers,
        })
    });
    match job.await {
        Ok(Ok(opened)) => Ok(opened),
        Ok(Err(e)) => Err(store_failed("reading a reply mailbox failed", &e)),
        Err(e) => Err(failed("reading a reply mailbox failed", &join_failure(&e))),
    }
}

/// Deletes every answer the mailbox of `code` holds (none: nothing to do;
/// the same answer either way).
pub async fn delete(state: &AppState, code: ReplyCode) -> Result<(), HttpError> {
    let mailboxes = Arc::clone(state.mailboxes());
    let job = tokio::task::spawn_blocking(move || {
        let derived = code.derive()?;
        drop(code);
        mailboxes.delete(&derived.mailbox)
    });
    match job.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(store_failed("deleting a reply mailbox failed", &e)),
        Err(e) => Err(failed("deleting a reply mailbox failed", &join_failure(&e))),
    }
}

/// Why a follow-up was not stored.
pub enum FollowUpError<'a> {
    /// No answer names a form yet (or the code opens nothing).
    NotAnsweredYet,
    /// The form the newest answer names is gone, no longer takes replies,
    /// or has no `message` field a follow-up can fill alone.
    Closed,
    /// The form's own rate budget (`limits.form_each`) is spent.
    Limited(Refusal),
    /// The text breaks the `message` field's rules (blank, too long).
    Invalid {
        /// What is wrong.
        problem: Rejection,
        /// The field it breaks.
        field: &'a FieldConfig,
        /// The mailbox, still open, to show its answers again.
        opened: Box<Opened>,
        /// What was typed, to put back in the form.
        typed: Zeroizing<String>,
    },
    /// Anything else.
    Failed(HttpError),
}

impl FollowUpError<'_> {
    /// The error as the API answers it (409 for the first two, the field's
    /// 4xx, or the failure).
    pub fn into_http(self) -> HttpError {
        use crate::api::error::ErrorCode;
        use axum::http::StatusCode;
        match self {
            FollowUpError::NotAnsweredYet => HttpError::new(
                StatusCode::CONFLICT,
                ErrorCode::NotAnsweredYet,
                "no answer has come for this code yet, so there is nobody to send a follow-up to; nothing was stored",
            ),
            FollowUpError::Closed => HttpError::new(
                StatusCode::CONFLICT,
                ErrorCode::FollowUpClosed,
                "the form this answer belongs to takes no follow-up now; nothing was stored",
            ),
            FollowUpError::Limited(refusal) => refusal.error(),
            FollowUpError::Invalid { problem, .. } => HttpError::from(problem),
            FollowUpError::Failed(e) => e,
        }
    }
}

/// Seals `message` as a follow-up: a record of the form the newest answer
/// names (its `message` field filled, nothing else), carrying the same
/// mailbox and certificate as the tip (so staff can link the two), sealed
/// to that form's recipients and stored like any record.
pub async fn follow_up<'a>(
    state: &'a AppState,
    code: ReplyCode,
    message: Zeroizing<String>,
) -> Result<Receipt, FollowUpError<'a>> {
    let opened = open(state, code).await.map_err(FollowUpError::Failed)?;
    let form_id = opened.form().ok_or(FollowUpError::NotAnsweredYet)?;
    let config = &state.intake().config;
    let index = config
        .form_index(form_id)
        .filter(|&i| config.forms[i].replies)
        .ok_or(FollowUpError::Closed)?;
    let form = &config.forms[index];
    let typed = message.clone();
    let raw = vec![(FOLLOW_UP_FIELD.to_owned(), RawValue::Text(message))];
    let submission = match Submission::validate(form, raw) {
        Ok(s) => s,
        Err(
            problem @ (Rejection::Missing(_)
            | Rejection::TooLong(..)
            | Rejection::InvalidCharacters(_)),
        ) if problem.field() == Some(FOLLOW_UP_FIELD) => {
            let field = form.fields.iter().find(|f| f.name == FOLLOW_UP_FIELD);
            return Err(match field {
                Some(field) => FollowUpError::Invalid {
                    problem,
                    field,
                    opened: Box::new(opened),
                    typed,
                },
                None => FollowUpError::Closed,
            });
        }
        // No `message` field, another required field, or a `message`
        // that is not text: the form takes no follow-up on its own.
        Err(_) => return Err(FollowUpError::Closed),
    };
    // A follow-up becomes a record of this form: it is charged to the
    // form's own budget too, as a post to the form would be.
    state
        .limits()
        .charge_form_each(index)
        .map_err(FollowUpError::Limited)?;
    let Opened { derived, .. } = opened;
    state
        .seal(index, submission, Some(derived))
        .await
        .map_err(FollowUpError::Failed)
}

/// A 500 whose cause (which names no code, mailbox or answer) is logged.
fn failed(what: &'static str, cause: &dyn std::fmt::Display) -> HttpError {
    HttpError::failed().logging(what, cause)
}

/// [`failed`], but a 503 when the reply store's database cannot be reached:
/// the tipster may try again shortly.
fn store_failed(what: &'static str, e: &ReplyError) -> HttpError {
    match e {
        ReplyError::Unavailable(_) => HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "answers cannot be read or deleted right now; please try again later",
        )
        .logging(what, e),
        _ => failed(what, e),
    }
}
