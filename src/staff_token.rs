//! Staff API tokens: minting, the hashes the config holds, and checking a
//! presented token in constant time.
//!
//! A token is 256 random bits, so a plain SHA-256 of it is enough to store
//! (no password hashing: there is nothing to guess). The config holds only
//! hashes; a presented token is hashed and compared with every configured
//! hash without an early exit, so timing tells nothing about how close a
//! guess was or which hash matched. Tokens are never logged.
//!
//! Each token carries a [`Scope`]: what it may do (list, download,
//! acknowledge) and for which forms. A bare hash in the config may do
//! everything; a `{ hash, can, forms }` table only what it names.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use data_encoding::{HEXLOWER, HEXLOWER_PERMISSIVE};
use serde::Deserialize;

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
    /// Parses `sha256:<64 hex digits>` (either case).
    pub fn parse(s: &str) -> Option<TokenHash> {
        let hex_part = s.trim().strip_prefix("sha256:")?;
        let mut out = [0u8; 32];
        if HEXLOWER_PERMISSIVE.decode_len(hex_part.len()).ok()? != out.len() {
            return None;
        }
        HEXLOWER_PERMISSIVE
            .decode_mut(hex_part.as_bytes(), &mut out)
            .ok()?;
        Some(TokenHash(out))
    }

    /// The hash of `token`.
    pub fn of(token: &str) -> TokenHash {
        TokenHash(Sha256::digest(token.trim().as_bytes()).into())
    }
}

impl fmt::Display for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", HEXLOWER.encode(&self.0))
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
    // Encoded straight into the zeroized string: no plain copy is left behind.
    let mut token = Zeroizing::new(String::with_capacity(
        TOKEN_PREFIX.len() + HEXLOWER.encode_len(bytes.len()),
    ));
    token.push_str(TOKEN_PREFIX);
    HEXLOWER.encode_append(&*bytes, &mut token);
    token
}

/// What a staff token may do, as named in `can = [...]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// List records (`GET /api/v1/staff/submissions`).
    List,
    /// Download a record and mark it exported (what `pull` does with it).
    Download,
    /// Acknowledge a record: the server deletes its copy.
    Ack,
}

impl Action {
    /// Every action: the scope of a bare hash.
    pub const ALL: [Action; 3] = [Action::List, Action::Download, Action::Ack];

    /// The action as a phrase for an error message.
    pub fn describe(self) -> &'static str {
        match self {
            Action::List => "list records",
            Action::Download => "download records",
            Action::Ack => "acknowledge records",
        }
    }
}

/// One `staff.tokens` entry of the config.
#[derive(Debug, Clone)]
pub enum TokenEntry {
    /// `"sha256:<hex>"`: every action on every form's records.
    Full(String),
    /// `{ hash = "sha256:<hex>", can = [...], forms = [...] }`.
    Scoped(ScopedEntry),
}

impl TokenEntry {
    /// The `sha256:<hex>` line.
    pub fn hash(&self) -> &str {
        match self {
            TokenEntry::Full(h) => h,
            TokenEntry::Scoped(s) => &s.hash,
        }
    }
}

/// By hand rather than `#[serde(untagged)]`, which would answer any mistake
/// in a table (a misspelt key, an unknown action) with "data did not match
/// any variant" instead of naming it.
impl<'de> Deserialize<'de> for TokenEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TokenEntry, D::Error> {
        struct EntryVisitor;
        impl<'de> serde::de::Visitor<'de> for EntryVisitor {
            type Value = TokenEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a \"sha256:<hex>\" string or a table { hash, can, forms }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TokenEntry, E> {
                Ok(TokenEntry::Full(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<TokenEntry, A::Error> {
                ScopedEntry::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(TokenEntry::Scoped)
            }
        }
        d.deserialize_any(EntryVisitor)
    }
}

/// A token limited to some actions and, optionally, some forms.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopedEntry {
    /// `sha256:<64 hex>` as printed by `sealform token`.
    pub hash: String,
    /// What it may do; at least one action.
    pub can: Vec<Action>,
    /// The ids of the forms whose records it may reach; absent: every form.
    #[serde(default)]
    pub forms: Option<Vec<String>>,
}

/// What one token may do, and to the records of which forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    can: HashSet<Action>,
    /// `None`: every form, records of an unknown form included.
    forms: Option<HashSet<String>>,
}

impl Scope {
    /// Every action on every form's records.
    pub fn full() -> Scope {
        Scope {
            can: Action::ALL.into_iter().collect(),
            forms: None,
        }
    }

    /// The scope an entry of the config gives.
    pub fn of(entry: &TokenEntry) -> Scope {
        match entry {
            TokenEntry::Full(_) => Scope::full(),
            TokenEntry::Scoped(s) => Scope {
                can: s.can.iter().copied().collect(),
                forms: s.forms.as_ref().map(|f| f.iter().cloned().collect()),
            },
        }
    }

    /// Whether the token may do `action` at all.
    pub fn can(&self, action: Action) -> bool {
        self.can.contains(&action)
    }

    /// Whether the token reaches a record of `form`. A record whose form the
    /// index does not know (indexed by an older version, or again from its
    /// spool file) is reached only by a token for every form.
    pub fn covers(&self, form: Option<&str>) -> bool {
        match &self.forms {
            None => true,
            Some(forms) => form.is_some_and(|f| forms.contains(f)),
        }
    }

    /// Whether the token is limited to some forms.
    pub fn limited_to_forms(&self) -> bool {
        self.forms.is_some()
    }
}

/// The configured token hashes, each with its scope.
#[derive(Debug, Clone, Default)]
pub struct TokenSet {
    tokens: Vec<(TokenHash, Arc<Scope>)>,
}

impl TokenSet {
    /// The tokens configured as `staff.tokens` entries (unparsable hashes
    /// are skipped; the config loader refuses them earlier).
    pub fn from_config(entries: &[TokenEntry]) -> TokenSet {
        TokenSet {
            tokens: entries
                .iter()
                .filter_map(|e| Some((TokenHash::parse(e.hash())?, Arc::new(Scope::of(e)))))
                .collect(),
        }
    }

    /// No token is configured: every request is refused.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Whether `presented` is one of the configured tokens.
    pub fn accepts(&self, presented: &str) -> bool {
        self.scope_of(presented).is_some()
    }

    /// The scope of `presented`, if it is one of the configured tokens.
    /// Compares with every hash in constant time, without stopping at a
    /// match, and picks the matching entry without a branch on the data.
    pub fn scope_of(&self, presented: &str) -> Option<Arc<Scope>> {
        use subtle::ConditionallySelectable;
        let h = TokenHash::of(presented);
        let mut found = subtle::Choice::from(0u8);
        let mut at = 0u64;
        for (i, (known, _)) in self.tokens.iter().enumerate() {
            let eq = known.0.ct_eq(&h.0);
            at = u64::conditional_select(&at, &(i as u64), eq);
            found |= eq;
        }
        if !bool::from(found) {
            return None;
        }
        let at = usize::try_from(at).ok()?;
        self.tokens.get(at).map(|(_, scope)| Arc::clone(scope))
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
        let set = TokenSet::from_config(&[TokenEntry::Full(line.clone())]);
        assert!(set.accepts(&token));
        for wrong in ["", "sealform_", &token[..token.len() - 1], &line] {
            assert!(!set.accepts(wrong), "{wrong:?}");
        }
        assert!(!TokenSet::default().accepts(&token));
        assert_ne!(mint(), token);
    }

    #[test]
    fn each_token_gets_the_scope_of_its_own_entry() {
        let (a, b) = (mint(), mint());
        let entries = [
            TokenEntry::Scoped(ScopedEntry {
                hash: TokenHash::of(&a).to_string(),
                can: vec![Action::List],
                forms: Some(vec!["tip".into()]),
            }),
            TokenEntry::Full(TokenHash::of(&b).to_string()),
        ];
        let set = TokenSet::from_config(&entries);
        let scope_a = set.scope_of(&a).expect("a is configured");
        assert!(scope_a.can(Action::List) && !scope_a.can(Action::Download));
        assert!(!scope_a.can(Action::Ack));
        assert!(scope_a.covers(Some("tip")));
        assert!(!scope_a.covers(Some("leak")) && !scope_a.covers(None));
        assert_eq!(*set.scope_of(&b).expect("b is configured"), Scope::full());
        assert!(Scope::full().covers(None));
        assert!(set.scope_of("sealform_nope").is_none());
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

    #[test]
    fn hash_lines_parse_in_either_case_and_only_at_64_digits() {
        let hash = TokenHash::of("sealform_x");
        let line = hash.to_string();
        assert_eq!(TokenHash::parse(&line), Some(hash.clone()));
        assert_eq!(
            TokenHash::parse(&line.to_ascii_uppercase().replace("SHA256", "sha256")),
            Some(hash)
        );
        for len in [62, 63, 65, 66] {
            assert!(
                TokenHash::parse(&format!("sha256:{}", "a".repeat(len))).is_none(),
                "{len}"
            );
        }
        assert!(TokenHash::parse(&format!("sha256:{}", "é".repeat(32))).is_none());
    }
}
