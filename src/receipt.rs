//! A record's identity, the [`Receipt`]: its random bits, its text form (the
//! spool file name, the staff API, the thank-you page) and its index key.
//!
//! A receipt must never be logged: its `Debug` form says nothing, and it
//! carries no time, so it cannot date or order a record.

use std::fmt;

/// A record's identity: 128 random bits, shown as 26 lowercase base32
/// characters. It orders nothing and reveals no time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Receipt([u8; 16]);

impl Receipt {
    /// A fresh random receipt.
    pub fn random() -> Receipt {
        Receipt(rand::random())
    }

    /// Parses the 26-character form (any case); `None` if it is not one.
    pub fn parse(s: &str) -> Option<Receipt> {
        if s.len() != 26 {
            return None;
        }
        let bytes = data_encoding::BASE32_NOPAD
            .decode(s.to_ascii_uppercase().as_bytes())
            .ok()?;
        let r = Receipt(bytes.try_into().ok()?);
        (r.to_string() == s.to_ascii_lowercase()).then_some(r)
    }

    /// The receipt whose index key is `key`; `None` if `key` is not 16 bytes.
    pub(crate) fn from_key(key: &[u8]) -> Option<Receipt> {
        <[u8; 16]>::try_from(key).ok().map(Receipt)
    }

    /// The bytes it is indexed under.
    pub(crate) fn key(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            &data_encoding::BASE32_NOPAD
                .encode(&self.0)
                .to_ascii_lowercase(),
        )
    }
}

impl fmt::Debug for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Receipts must not end up in logs next to a time.
        f.write_str("Receipt(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_are_26_lowercase_base32_characters_that_parse_back() {
        let r = Receipt::random();
        let s = r.to_string();
        assert_eq!(s.len(), 26);
        assert!(
            s.chars()
                .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c))
        );
        assert_eq!(Receipt::parse(&s), Some(r));
        assert_eq!(Receipt::parse(&s.to_ascii_uppercase()), Some(r));
        assert_eq!(Receipt::parse("../../etc/passwd"), None);
        assert_eq!(Receipt::parse(&s[..25]), None);
        assert_ne!(Receipt::random(), r);
        assert_eq!(format!("{r:?}"), "Receipt(..)");
    }

    #[test]
    fn a_receipt_comes_back_from_its_index_key() {
        let r = Receipt::random();
        assert_eq!(Receipt::from_key(r.key()), Some(r));
        assert_eq!(Receipt::from_key(&r.key()[..15]), None);
    }
}
