//! Form tokens: each rendered HTML form carries a signed, expiring,
//! single-use token; no JavaScript needed.
//!
//! A token is `nonce ‖ issued ‖ tag`: 16 random bytes, the issue time in
//! milliseconds, and an HMAC-SHA256 tag (truncated to 16 bytes) over the
//! form id and both. The key and the clock are a [`TokenKey`]
//! (`form_tokens/key.rs`): by default a key drawn at start, held only in
//! memory, with the time since this process started (a monotonic clock, not
//! the time of day); with `[abuse] form_token_secret_file`, the key every
//! node reads from that file, with the Unix time, so that any node accepts
//! a form another node rendered. Used nonces are kept in a bounded
//! in-memory set until their token would have expired anyway; nodes that
//! share a database also record them there ([`SharedUsedTokens`], asked
//! only when a post uses its token up), so that a token used on one node is
//! refused by the others. Nothing here is written to disk or logged.

mod key;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use data_encoding::BASE64URL_NOPAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

pub use key::{MIN_SECRET_BYTES, SecretFileError, TokenKey};

use crate::config::AbuseConfig;
use crate::used_tokens::{NONCE_BYTES, SharedUsedTokens, oldest_day_kept};

/// The form parameter carrying the token. Not a valid field name, so it
/// never collides with a configured field.
pub const TOKEN_FIELD: &str = "sf.token";

/// The honeypot parameter: hidden from people, filled by naive bots.
pub const HONEYPOT_FIELD: &str = "sf.homepage";

const NONCE: usize = NONCE_BYTES;
const TAG: usize = 16;
const TOKEN_BYTES: usize = NONCE + 8 + TAG;

/// Why a form post's token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token, or not one of ours, or for another form.
    #[error("the form was not sent from a page of this site, or it was changed on the way")]
    Invalid,
    /// Older than the token lifetime.
    #[error("the form was open for too long and has expired")]
    Expired,
    /// Already used once.
    #[error("this form was already sent once")]
    Replayed,
    /// Sent sooner after rendering than a person can fill a form.
    #[error("the form was sent too quickly after it was opened")]
    TooFast,
    /// Too many tokens in use right now to remember another.
    #[error("the server is busy")]
    Busy,
}

/// A token [`FormTokens::verify`] accepted, not yet used up.
pub struct Verified {
    nonce: [u8; NONCE],
    expires: Instant,
    /// When the token was issued, as this node's clock reads it.
    issued: SystemTime,
}

/// A token taken by one post ([`FormTokens::hold`]): given back when
/// dropped, unless [`Held::keep`] used it up.
pub struct Held<'a> {
    tokens: &'a FormTokens,
    /// `None` once kept.
    nonce: Option<[u8; NONCE]>,
    issued: SystemTime,
}

impl Held<'_> {
    /// Uses the token up for good on this node.
    pub fn keep(mut self) {
        self.nonce = None;
    }

    /// Uses the token up for good on every node: on this one, and in the
    /// shared set when there is one, where `Replayed` says another node
    /// used it first. If the shared set cannot be reached the token is
    /// given back and the post refused as `Busy` (503): it may be sent
    /// again.
    pub async fn keep_everywhere(self) -> Result<(), TokenError> {
        let (Some(shared), Some(nonce)) = (self.tokens.shared.clone(), self.nonce) else {
            self.keep();
            return Ok(());
        };
        let day = crate::store::day_string(self.issued);
        let first = tokio::task::spawn_blocking(move || shared.first_use(&nonce, &day)).await;
        match first {
            Ok(Ok(true)) => {
                self.keep();
                Ok(())
            }
            Ok(Ok(false)) => {
                self.keep();
                Err(TokenError::Replayed)
            }
            Ok(Err(_)) | Err(_) => Err(TokenError::Busy),
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(nonce) = self.nonce.take() {
            if let Ok(mut used) = self.tokens.used.lock() {
                used.remove(&nonce);
            }
        }
    }
}

/// Issues and checks form tokens.
pub struct FormTokens {
    key: TokenKey,
    lifetime: Duration,
    min_fill: Duration,
    max_tracked: usize,
    used: Mutex<HashMap<[u8; NONCE], Instant>>,
    /// The set every node sharing the store sees, if there is one.
    shared: Option<Arc<dyn SharedUsedTokens>>,
    /// The day the shared set was last told to forget what came before.
    shared_forgotten: Mutex<Option<String>>,
}

impl FormTokens {
    /// Token rules from `config`, signed with `key`.
    pub fn new(config: &AbuseConfig, key: TokenKey) -> FormTokens {
        FormTokens {
            key,
            lifetime: Duration::from_secs(config.token_lifetime_secs),
            min_fill: Duration::from_secs(config.min_fill_secs),
            max_tracked: config.max_tracked_tokens,
            used: Mutex::new(HashMap::new()),
            shared: None,
            shared_forgotten: Mutex::new(None),
        }
    }

    /// The same, also recording used tokens in `shared`, which the other
    /// nodes see.
    pub fn sharing(self, shared: Arc<dyn SharedUsedTokens>) -> FormTokens {
        FormTokens {
            shared: Some(shared),
            ..self
        }
    }

    fn tag(&self, form: &str, nonce: &[u8], issued: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key.secret[..])
            .expect("HMAC takes any key length");
        mac.update(&(form.len() as u64).to_be_bytes());
        mac.update(form.as_bytes());
        mac.update(nonce);
        mac.update(issued);
        mac
    }

    /// A fresh token for `form`.
    pub fn issue(&self, form: &str) -> String {
        let mut nonce = [0u8; NONCE];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let issued = self.key.clock.now_ms().to_be_bytes();
        let tag = self.tag(form, &nonce, &issued).finalize().into_bytes();
        let mut raw = Vec::with_capacity(TOKEN_BYTES);
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&issued);
        raw.extend_from_slice(&tag[..TAG]);
        BASE64URL_NOPAD.encode(&raw)
    }

    /// Accepts `token` for `form` once, if it is ours, neither too young nor
    /// too old, and not used before: [`FormTokens::verify`], then
    /// [`FormTokens::spend`].
    pub fn redeem(&self, form: &str, token: Option<&str>) -> Result<(), TokenError> {
        let verified = self.verify(form, token)?;
        self.spend(verified)
    }

    /// Checks `token` for `form` (ours, neither too young nor too old, not
    /// used yet) without using it up: a post refused after this (by a rate
    /// limit) leaves the person's token good for the next try.
    pub fn verify(&self, form: &str, token: Option<&str>) -> Result<Verified, TokenError> {
        let raw = token
            .and_then(|t| BASE64URL_NOPAD.decode(t.trim().as_bytes()).ok())
            .filter(|r| r.len() == TOKEN_BYTES)
            .ok_or(TokenError::Invalid)?;
        let (nonce, rest) = raw.split_at(NONCE);
        let (issued, tag) = rest.split_at(8);
        self.tag(form, nonce, issued)
            .verify_truncated_left(tag)
            .map_err(|_| TokenError::Invalid)?;
        let mut ms = [0u8; 8];
        ms.copy_from_slice(issued);
        // A token from a node whose clock is ahead looks younger: at worst
        // "too fast" until the clocks agree again.
        let age = Duration::from_millis(
            self.key
                .clock
                .now_ms()
                .saturating_sub(u64::from_be_bytes(ms)),
        );
        if age > self.lifetime {
            return Err(TokenError::Expired);
        }
        if age < self.min_fill {
            return Err(TokenError::TooFast);
        }
        let mut key = [0u8; NONCE];
        key.copy_from_slice(nonce);
        let used = self.used.lock().map_err(|_| TokenError::Busy)?;
        if used.contains_key(&key) {
            return Err(TokenError::Replayed);
        }
        Ok(Verified {
            nonce: key,
            expires: Instant::now() + (self.lifetime - age),
            issued: SystemTime::now()
                .checked_sub(age)
                .unwrap_or(SystemTime::UNIX_EPOCH),
        })
    }

    /// Uses up a verified token; `Replayed` if another post spent it since
    /// it was verified.
    pub fn spend(&self, token: Verified) -> Result<(), TokenError> {
        self.hold(token).map(Held::keep)
    }

    /// Takes a verified token for one post: from now on any other post with
    /// it is refused (`Replayed`), as if it were used up. It stays used up
    /// once [`Held::keep`] is called; dropped without that (the post was
    /// refused by a rate limit or for want of an upload slot), it is given
    /// back, good for the next try. So a token is checked and taken in one
    /// step before a post is charged or takes a slot, and two posts sent
    /// with the same token at once can never both get that far.
    pub fn hold(&self, token: Verified) -> Result<Held<'_>, TokenError> {
        let now = Instant::now();
        let mut used = self.used.lock().map_err(|_| TokenError::Busy)?;
        if used.contains_key(&token.nonce) {
            return Err(TokenError::Replayed);
        }
        if used.len() >= self.max_tracked {
            used.retain(|_, expires| *expires > now);
            if used.len() >= self.max_tracked {
                return Err(TokenError::Busy);
            }
        }
        used.insert(token.nonce, token.expires);
        Ok(Held {
            tokens: self,
            nonce: Some(token.nonce),
            issued: token.issued,
        })
    }

    /// Forgets used tokens that have expired anyway.
    pub fn forget_expired(&self) {
        let now = Instant::now();
        if let Ok(mut used) = self.used.lock() {
            used.retain(|_, expires| *expires > now);
            used.shrink_to_fit();
        }
    }

    /// Forgets, in the shared set (if any), the tokens of the days whose
    /// every token has expired: once a day, on the first call after the
    /// oldest day still good has changed. A failure is logged; the next
    /// call tries again.
    pub async fn forget_expired_everywhere(&self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let day = oldest_day_kept(SystemTime::now(), self.lifetime);
        let done = self.shared_forgotten.lock().ok().and_then(|d| d.clone());
        if done.as_deref() == Some(day.as_str()) {
            return;
        }
        let before = day.clone();
        match tokio::task::spawn_blocking(move || shared.forget_before(&before)).await {
            Ok(Ok(_)) => {
                if let Ok(mut done) = self.shared_forgotten.lock() {
                    *done = Some(day);
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot forget expired form tokens"),
            Err(e) => tracing::warn!(
                error = super::join_failure(&e),
                "cannot forget expired form tokens"
            ),
        }
    }

    /// Used tokens remembered now.
    pub fn tracked(&self) -> usize {
        self.used.lock().map_or(0, |u| u.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(min_fill: u64, lifetime: u64, max: usize) -> FormTokens {
        FormTokens::new(
            &AbuseConfig {
                min_fill_secs: min_fill,
                token_lifetime_secs: lifetime,
                max_tracked_tokens: max,
                ..AbuseConfig::default()
            },
            TokenKey::random(),
        )
    }

    #[test]
    fn a_token_is_accepted_once() {
        let t = tokens(0, 60, 10);
        let tok = t.issue("tip");
        assert_eq!(t.redeem("tip", Some(&tok)), Ok(()));
        assert_eq!(t.redeem("tip", Some(&tok)), Err(TokenError::Replayed));
    }

    #[test]
    fn bad_tokens_are_refused() {
        let t = tokens(0, 60, 10);
        let other = tokens(0, 60, 10).issue("tip");
        let mut flipped = t.issue("tip").into_bytes();
        flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        let for_other_form = t.issue("other");
        let cases: [(Option<&str>, TokenError); 5] = [
            (None, TokenError::Invalid),
            (Some(""), TokenError::Invalid),
            (Some(&other), TokenError::Invalid),
            (Some(&flipped), TokenError::Invalid),
            (Some(&for_other_form), TokenError::Invalid),
        ];
        for (tok, want) in cases {
            assert_eq!(t.redeem("tip", tok), Err(want), "{tok:?}");
        }
    }

    #[test]
    fn a_token_sent_too_soon_is_refused_and_stays_usable() {
        let t = tokens(3, 60, 10);
        let tok = t.issue("tip");
        assert_eq!(t.redeem("tip", Some(&tok)), Err(TokenError::TooFast));
        assert_eq!(t.tracked(), 0);
    }

    #[test]
    fn a_verified_token_is_not_used_up_until_it_is_spent() {
        let t = tokens(0, 60, 10);
        let tok = t.issue("tip");
        assert!(t.verify("tip", Some(&tok)).is_ok());
        assert!(t.verify("tip", Some(&tok)).is_ok(), "verify spends nothing");
        assert_eq!(t.tracked(), 0);
        let (a, b) = (
            t.verify("tip", Some(&tok)).expect("ok"),
            t.verify("tip", Some(&tok)).expect("ok"),
        );
        assert_eq!(t.spend(a), Ok(()));
        assert_eq!(t.spend(b), Err(TokenError::Replayed), "spent once only");
        assert!(matches!(
            t.verify("tip", Some(&tok)),
            Err(TokenError::Replayed)
        ));
    }

    #[test]
    fn a_held_token_is_refused_to_every_other_post_until_given_back() {
        let t = tokens(0, 60, 10);
        let tok = t.issue("tip");
        let held = t
            .hold(t.verify("tip", Some(&tok)).expect("ok"))
            .expect("held");
        assert!(matches!(
            t.verify("tip", Some(&tok)),
            Err(TokenError::Replayed)
        ));
        drop(held);
        assert_eq!(t.tracked(), 0, "given back");
        let held = t
            .hold(t.verify("tip", Some(&tok)).expect("ok"))
            .expect("held");
        held.keep();
        assert_eq!(t.redeem("tip", Some(&tok)), Err(TokenError::Replayed));
        assert_eq!(t.tracked(), 1);
    }

    #[test]
    fn the_replay_set_is_bounded() {
        let t = tokens(0, 60, 3);
        for _ in 0..3 {
            assert_eq!(t.redeem("tip", Some(&t.issue("tip"))), Ok(()));
        }
        assert_eq!(
            t.redeem("tip", Some(&t.issue("tip"))),
            Err(TokenError::Busy)
        );
        assert_eq!(t.tracked(), 3);
    }

    fn shared(secret: &[u8]) -> FormTokens {
        FormTokens::new(
            &AbuseConfig {
                min_fill_secs: 0,
                ..AbuseConfig::default()
            },
            TokenKey {
                secret: zeroize::Zeroizing::new(secret.to_vec()),
                clock: key::TokenClock::Wall,
            },
        )
    }

    #[test]
    fn nodes_with_one_shared_secret_accept_each_others_tokens() {
        let (a, b) = (shared(&[1; 32]), shared(&[1; 32]));
        let stranger = shared(&[2; 32]);
        let tok = a.issue("tip");
        assert_eq!(stranger.redeem("tip", Some(&tok)), Err(TokenError::Invalid));
        assert_eq!(b.redeem("tip", Some(&tok)), Ok(()));
        assert_eq!(b.redeem("tip", Some(&tok)), Err(TokenError::Replayed));
    }
}
