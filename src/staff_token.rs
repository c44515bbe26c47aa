//! Staff API tokens: minting, the hashes the config holds, and checking a
//! presented token in constant time.
//!
//! A token is 256 random bits, so a plain SHA-256 of it is enough to store
//! (no password hashing: there is nothing to guess). The config holds only
//! hashes; a presented token is hashed and compared with every configured
//! hash without an early exit, so timing tells nothing about how close a
//! guess was or which hash matched. Tokens are never logged.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Prefix of every token, so a leaked one is recognisable (e.g. by secret
/// scanners).
pub const TOKEN_PREFIX: &str = "sealform_";

/// The SHA-256 of a token, as configured in `staff.tokens`.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Parses `sha256:<64 hex digits>`.
    pub fn parse(s: &str) -> Option<TokenHash> {
        let hex_part = s.trim().strip_prefix("sha256:")?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).ok()?;
        Some(TokenHash(out))
    }

    /// The hash of `token`.
    pub fn of(token: &str) -> TokenHash {
        TokenHash(Sha256::digest(token.trim().as_bytes()).into())
    }
}

impl fmt::Display for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// A fresh token: the prefix and 256 random bits in lowercase hex.
pub fn mint() -> Zeroizing<String> {
    let bytes = Zeroizing::new(rand::random::<[u8; 32]>());
    Zeroizing::new(format!("{TOKEN_PREFIX}{}", hex::encode(*bytes)))
}

/// The configured token hashes.
#[derive(Debug, Clone, Default)]
pub struct TokenSet {
    hashes: Vec<TokenHash>,
}

impl TokenSet {
    /// The set of hashes configured as `sha256:<hex>` lines (unparsable lines
    /// are skipped; the config loader refuses them earlier).
    pub fn from_config(lines: &[String]) -> TokenSet {
        TokenSet {
            hashes: lines.iter().filter_map(|l| TokenHash::parse(l)).collect(),
        }
    }

    /// No token is configured: every request is refused.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Whether `presented` is one of the configured tokens. Compares with
    /// every hash in constant time, without stopping at a match.
    pub fn accepts(&self, presented: &str) -> bool {
        let h = TokenHash::of(presented);
        let mut found = subtle::Choice::from(0u8);
        for known in &self.hashes {
            found |= known.0.ct_eq(&h.0);
        }
        bool::from(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_is_accepted_by_its_hash_and_nothing_else_is() {
        let token = mint();
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() == TOKEN_PREFIX.len() + 64);
        let line = TokenHash::of(&token).to_string();
        let set = TokenSet::from_config(std::slice::from_ref(&line));
        assert!(set.accepts(&token));
        for wrong in ["", "sealform_", &token[..token.len() - 1], &line] {
            assert!(!set.accepts(wrong), "{wrong:?}");
        }
        assert!(!TokenSet::default().accepts(&token));
        assert_ne!(mint(), token);
    }

    #[test]
    fn malformed_hash_lines_do_not_parse() {
        for bad in [
            "",
            "sha256:",
            "sha256:abc",
            "md5:00",
            &format!("sha256:{}", "g".repeat(64)),
        ] {
            assert!(TokenHash::parse(bad).is_none(), "{bad:?}");
        }
        assert!(TokenHash::parse(&format!("sha256:{}", "a".repeat(64))).is_some());
    }
}
