//! Why a submission (or a form's page) is turned away before anything is
//! stored: [`Refusal`], one typed reason per check, with its status, its
//! API code and message, its `Retry-After` and, for the refusals an HTML
//! form answers by coming back, the reason the form shows. How a refusal is
//! answered on a form route is decided in `http/submit/page.rs`; here is
//! everything else about it.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::{HttpError, Surface, closing};
use super::form_tokens::TokenError;
use crate::api::error::ErrorCode;
use crate::i18n::Msg;

/// The media types an HTML form's route takes.
pub const PAGE_MEDIA_TYPES: &str = "application/x-www-form-urlencoded or multipart/form-data";
/// The media types the API's submission route takes.
pub const API_MEDIA_TYPES: &str = "application/json or multipart/form-data";

/// Why a submission may not go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No form has the id in the path.
    UnknownForm,
    /// The body's media type is not one the route takes (`expected`).
    UnsupportedMediaType {
        /// What the route takes, for the message.
        expected: &'static str,
    },
    /// A browser said the post comes from another site.
    CrossSite,
    /// The hidden field that only bots fill was filled.
    Honeypot,
    /// The form token did not pass.
    Token(TokenError),
    /// A rate budget is spent; send again in `wait`.
    RateLimited {
        /// How long until the budget has room.
        wait: Duration,
    },
    /// The client opened too many forms (fresh form tokens) lately.
    TooManyFormsOpened {
        /// How long until the budget has room.
        wait: Duration,
    },
    /// Every in-flight submission slot is taken.
    Busy,
    /// The client has its share of submissions in flight.
    TooManyAtOnce,
    /// Every upload slot is taken and none is behind the minimum rate.
    NoUploadSlot,
    /// The client has its share of uploads in progress.
    TooManyUploads,
}

/// How long a client turned away for a full slot table should wait.
const SLOT_WAIT: Duration = Duration::from_secs(5);

impl Refusal {
    /// When to send again (`Retry-After`), for a refusal by a limit.
    pub fn wait(&self) -> Option<Duration> {
        match *self {
            Refusal::RateLimited { wait } | Refusal::TooManyFormsOpened { wait } => Some(wait),
            Refusal::Busy
            | Refusal::TooManyAtOnce
            | Refusal::NoUploadSlot
            | Refusal::TooManyUploads => Some(SLOT_WAIT),
            _ => None,
        }
    }

    /// The reason an HTML form shows above itself when it comes back after
    /// this refusal: an abuse check a person can meet (a page left open for
    /// hours, autofill in the hidden field, a busy moment).
    pub fn form_reason(&self) -> Option<Msg> {
        Some(match self {
            Refusal::CrossSite => Msg::RefusedCrossSite,
            Refusal::Honeypot => Msg::RefusedHoneypot,
            Refusal::Token(TokenError::Invalid) => Msg::RefusedTokenInvalid,
            Refusal::Token(TokenError::Expired) => Msg::RefusedTokenExpired,
            Refusal::Token(TokenError::Replayed) => Msg::RefusedTokenReplayed,
            Refusal::Token(TokenError::TooFast) => Msg::RefusedTooFast,
            Refusal::Token(TokenError::Busy) => Msg::RefusedBusy,
            _ => return None,
        })
    }

    /// Whether the form, back after this refusal, shows again what was
    /// written: not after a replay (that copy of the form reached the
    /// server before and was answered then), nor for another site's post
    /// (its words, not the person's).
    pub fn keeps_what_was_written(&self) -> bool {
        !matches!(
            self,
            Refusal::CrossSite | Refusal::Token(TokenError::Replayed)
        )
    }

    /// The refusal as an error: status, code and fixed message.
    pub fn error(&self) -> HttpError {
        use StatusCode as S;
        let (status, code, message) = match *self {
            Refusal::UnknownForm => return HttpError::unknown_form(),
            Refusal::UnsupportedMediaType { expected } => {
                return HttpError::unsupported_media_type(expected);
            }
            // The operator hears of it (once, from `log_failures`).
            Refusal::NoUploadSlot => {
                return HttpError::unavailable().warning(
                    "refusing an upload: max_concurrent_uploads are in progress, none behind the minimum rate",
                );
            }
            Refusal::CrossSite => (
                S::FORBIDDEN,
                ErrorCode::CrossSite,
                "the request came from another web site; nothing was stored",
            ),
            Refusal::Honeypot | Refusal::Token(_) => (
                if *self == Refusal::Token(TokenError::Busy) {
                    S::SERVICE_UNAVAILABLE
                } else {
                    S::BAD_REQUEST
                },
                ErrorCode::Refused,
                "the form post was refused; nothing was stored",
            ),
            Refusal::RateLimited { .. } => (
                S::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                "too many submissions; nothing was stored, please wait a little and send again",
            ),
            Refusal::TooManyFormsOpened { .. } => (
                S::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                "too many forms opened; please wait a little and open the form again",
            ),
            Refusal::Busy => (
                S::SERVICE_UNAVAILABLE,
                ErrorCode::Busy,
                "the server is busy; nothing was stored, please send again in a moment",
            ),
            Refusal::TooManyAtOnce => (
                S::TOO_MANY_REQUESTS,
                ErrorCode::TooManyAtOnce,
                "too many submissions from you at once; nothing was stored, please wait for the others to finish",
            ),
            Refusal::TooManyUploads => (
                S::TOO_MANY_REQUESTS,
                ErrorCode::TooManyUploads,
                "too many uploads from you at once; nothing was stored, please wait for the others to finish",
            ),
        };
        HttpError::new(status, code, message)
    }

    /// The status this refusal answers with.
    pub fn status(&self) -> StatusCode {
        self.error().status
    }

    /// The refusal answered as an error on `surface` (JSON, or a plain
    /// page). One by a limit says `Retry-After` (whole seconds) and
    /// `Connection: close`: the body, if any, is not read (hyper closes the
    /// connection rather than drain it).
    pub fn respond(&self, surface: Surface) -> Response {
        let res = self.error().on(surface).into_response();
        match self.wait() {
            Some(wait) => closing(retry_after(res, wait)),
            None => res,
        }
    }
}

/// `res` with `Retry-After: wait` in whole seconds, at least one.
fn retry_after(mut res: Response, wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_refusal_answers_the_api_with_its_status_code_and_wait() {
        let wait = Duration::from_millis(1200);
        // (refusal, status, code, Retry-After)
        let cases = [
            (Refusal::UnknownForm, 404, "unknown_form", None),
            (
                Refusal::UnsupportedMediaType {
                    expected: API_MEDIA_TYPES,
                },
                415,
                "unsupported_media_type",
                None,
            ),
            (Refusal::CrossSite, 403, "cross_site", None),
            (Refusal::Honeypot, 400, "refused", None),
            (Refusal::Token(TokenError::Busy), 503, "refused", None),
            (
                Refusal::RateLimited { wait },
                429,
                "rate_limited",
                Some("2"),
            ),
            (
                Refusal::TooManyFormsOpened { wait },
                429,
                "rate_limited",
                Some("2"),
            ),
            (Refusal::Busy, 503, "busy", Some("5")),
            (Refusal::TooManyAtOnce, 429, "too_many_at_once", Some("5")),
            (Refusal::NoUploadSlot, 503, "unavailable", Some("5")),
            (Refusal::TooManyUploads, 429, "too_many_uploads", Some("5")),
        ];
        for (refusal, status, code, retry) in cases {
            let res = refusal.respond(Surface::Api);
            assert_eq!(res.status().as_u16(), status, "{refusal:?}");
            let header = |name| res.headers().get(name).and_then(|v| v.to_str().ok());
            assert_eq!(header(header::RETRY_AFTER), retry, "{refusal:?}");
            // A refusal by a limit comes before the body is read.
            let close = retry.map(|_| "close");
            assert_eq!(header(header::CONNECTION), close, "{refusal:?}");
            let body = axum::body::to_bytes(res.into_body(), 1 << 16)
                .await
                .expect("body");
            let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            assert_eq!(body["error"]["code"], code, "{refusal:?}");
        }
    }

    #[test]
    fn only_abuse_checks_bring_the_form_back_and_only_a_person_s_own_words() {
        assert_eq!(
            Refusal::CrossSite.form_reason(),
            Some(Msg::RefusedCrossSite)
        );
        assert!(!Refusal::CrossSite.keeps_what_was_written());
        let replayed = Refusal::Token(TokenError::Replayed);
        assert!(!replayed.keeps_what_was_written());
        assert!(Refusal::Honeypot.keeps_what_was_written());
        assert_eq!(Refusal::Busy.form_reason(), None);
        assert_eq!(Refusal::UnknownForm.form_reason(), None);
    }
}
