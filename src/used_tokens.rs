//! The set of used form tokens that several nodes share, so that a form
//! sent once to one node is refused by every other ([`SharedUsedTokens`]).
//!
//! Each node keeps its own in-memory set as well (`http/form_tokens.rs`):
//! it refuses a replay to the same node at no cost and holds a token for
//! the one post using it. The shared set is asked only when a post that
//! passed every check uses its token up: the first node to record a nonce
//! wins, every later one answers "already sent". It holds the token's
//! nonce (random) and the day the token was issued, nothing finer, and
//! forgets a day's nonces once every token of that day has expired.
//!
//! Only a store that several nodes share needs one; the embedded store
//! serves one node, whose in-memory set is the whole truth.

mod postgres;

use std::time::{Duration, SystemTime};

pub use postgres::PgUsedTokens;

/// Bytes of a form token's nonce.
pub const NONCE_BYTES: usize = 16;

/// A form token's random nonce.
pub type Nonce = [u8; NONCE_BYTES];

/// Why the shared set could not answer.
#[derive(Debug, thiserror::Error)]
pub enum UsedTokensError {
    /// The database holding it cannot be reached (a 503 to the client).
    #[error("the shared set of used form tokens cannot be reached: {0}")]
    Unavailable(String),
}

/// Used form tokens recorded where every node sees them. Blocking: call it
/// from a blocking thread.
pub trait SharedUsedTokens: Send + Sync {
    /// Records `nonce`, of a token issued on `day` (`YYYY-MM-DD`, UTC), as
    /// used: `true` the first time any node records it, `false` if a node
    /// did before (a replay).
    fn first_use(&self, nonce: &Nonce, day: &str) -> Result<bool, UsedTokensError>;

    /// Forgets the nonces of tokens issued before `day`; returns how many.
    fn forget_before(&self, day: &str) -> Result<u64, UsedTokensError>;
}

/// The first day whose tokens may still be good at `now`, with tokens
/// valid for `lifetime`: every nonce of an earlier day can be forgotten.
pub fn oldest_day_kept(now: SystemTime, lifetime: Duration) -> String {
    crate::store::day_string(now.checked_sub(lifetime).unwrap_or(SystemTime::UNIX_EPOCH))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn a_day_is_forgotten_once_its_last_token_has_expired() {
        let day = 86_400;
        // 2026-12-07 01:00 UTC, tokens valid for 2 hours: one issued at
        // 23:59 the day before is still good.
        let now = UNIX_EPOCH + Duration::from_secs(20_794 * day + 3600);
        assert_eq!(crate::store::day_string(now), "2026-12-07");
        assert_eq!(
            oldest_day_kept(now, Duration::from_secs(7200)),
            "2026-12-06"
        );
        // At 02:01 every token of the 6th has expired.
        let later = now + Duration::from_secs(3660);
        assert_eq!(
            oldest_day_kept(later, Duration::from_secs(7200)),
            "2026-12-07"
        );
    }
}
