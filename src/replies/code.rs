//! The reply code: 12 words of the BIP39 English list, 128 random bits and
//! a 4-bit checksum that catches most typos. It lives in zeroized memory,
//! has no `Debug` or `Display`, and is shown once through
//! [`ReplyCode::expose`].

use bip39::{Language, Mnemonic};
use rand::RngCore;
use zeroize::Zeroizing;

use super::{Derived, ReplyError};

/// Words in a reply code.
const WORDS: usize = 12;

/// Bytes of entropy in a reply code (12 words × 11 bits − 4 checksum bits).
pub(super) const ENTROPY_BYTES: usize = 16;

/// A reply code, normalized: 12 lowercase words separated by one space.
pub struct ReplyCode {
    text: Zeroizing<String>,
    entropy: Zeroizing<[u8; ENTROPY_BYTES]>,
}

/// Why a typed code is not a reply code. Neither variant says which word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// Not 12 words, or a word not in the list.
    #[error("a reply code is 12 words from the list")]
    Words,
    /// 12 words of the list whose checksum fails: a typo.
    #[error("the words do not form a reply code (a word is mistyped)")]
    Checksum,
}

impl ReplyCode {
    /// A fresh code from the operating system's random generator.
    pub fn generate() -> ReplyCode {
        let mut entropy = Zeroizing::new([0u8; ENTROPY_BYTES]);
        rand::rngs::OsRng.fill_bytes(&mut entropy[..]);
        ReplyCode::from_entropy(entropy)
    }

    /// The code these bits write.
    fn from_entropy(entropy: Zeroizing<[u8; ENTROPY_BYTES]>) -> ReplyCode {
        // 16 bytes is a valid BIP39 entropy length, so this cannot fail;
        // the fallback keeps the function total without a panic.
        let mut text = Zeroizing::new(String::with_capacity(WORDS * 9));
        if let Ok(m) = Mnemonic::from_entropy_in(Language::English, &entropy[..]) {
            for (i, w) in m.words().enumerate() {
                if i > 0 {
                    text.push(' ');
                }
                text.push_str(w);
            }
        }
        ReplyCode { text, entropy }
    }

    /// Reads a typed code: surrounding and repeated whitespace of any kind
    /// and letter case are ignored.
    pub fn parse(typed: &str) -> Result<ReplyCode, CodeError> {
        let mut text = Zeroizing::new(String::with_capacity(WORDS * 9));
        for (i, word) in typed.split_whitespace().enumerate() {
            if i >= WORDS || word.len() > 8 {
                return Err(CodeError::Words);
            }
            if i > 0 {
                text.push(' ');
            }
            for c in word.chars() {
                text.push(c.to_ascii_lowercase());
            }
        }
        let words = text.split(' ').filter(|w| !w.is_empty());
        let mut count = 0;
        for w in words {
            if Language::English.find_word(w).is_none() {
                return Err(CodeError::Words);
            }
            count += 1;
        }
        if count != WORDS {
            return Err(CodeError::Words);
        }
        let m = Mnemonic::parse_in_normalized(Language::English, &text).map_err(|e| match e {
            bip39::Error::InvalidChecksum => CodeError::Checksum,
            _ => CodeError::Words,
        })?;
        let (bits, len) = m.to_entropy_array();
        let bits = Zeroizing::new(bits);
        let mut entropy = Zeroizing::new([0u8; ENTROPY_BYTES]);
        if len != ENTROPY_BYTES {
            return Err(CodeError::Words);
        }
        entropy.copy_from_slice(&bits[..ENTROPY_BYTES]);
        Ok(ReplyCode { text, entropy })
    }

    /// The code's text, to be shown once to the person it belongs to.
    /// Never log, store or format it.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// The mailbox address and certificate (with its secret key) this code
    /// derives.
    pub fn derive(&self) -> Result<Derived, ReplyError> {
        Derived::from_entropy(&self.entropy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_code_is_twelve_list_words_that_parse_back_to_the_same_bits() {
        let code = ReplyCode::generate();
        let words: Vec<&str> = code.expose().split(' ').collect();
        assert_eq!(words.len(), 12);
        assert!(
            words
                .iter()
                .all(|w| Language::English.find_word(w).is_some())
        );
        let typed = format!("  {}\n", code.expose().to_uppercase().replace(' ', " \t "));
        let back = ReplyCode::parse(&typed).expect("parse");
        assert_eq!(back.expose(), code.expose());
        assert_eq!(*back.entropy, *code.entropy);
        assert_ne!(ReplyCode::generate().expose(), code.expose());
    }

    #[test]
    fn a_known_vector_parses_to_its_entropy() {
        // BIP39's first English test vector: 16 zero bytes.
        let zero = "abandon abandon abandon abandon abandon abandon abandon abandon abandon \
                    abandon abandon about";
        let code = ReplyCode::parse(zero).expect("vector");
        assert_eq!(*code.entropy, [0u8; 16]);
        assert_eq!(
            ReplyCode::from_entropy(Zeroizing::new([0u8; 16])).expose(),
            zero.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }

    #[test]
    fn typos_are_told_apart_from_what_is_not_a_code() {
        let code = ReplyCode::generate();
        let words: Vec<&str> = code.expose().split(' ').collect();
        let cases: Vec<(String, CodeError)> = vec![
            (String::new(), CodeError::Words),
            (words[..11].join(" "), CodeError::Words),
            (format!("{} abandon", code.expose()), CodeError::Words),
            (format!("{} zzzz", words[..11].join(" ")), CodeError::Words),
            ("../../etc/passwd".into(), CodeError::Words),
        ];
        for (typed, want) in cases {
            assert_eq!(ReplyCode::parse(&typed).err(), Some(want), "{typed}");
        }
        // The last word of BIP39's zero vector swapped for another list
        // word: every word is known, the checksum fails.
        let typo = ["abandon"; 12].join(" ");
        assert_eq!(ReplyCode::parse(&typo).err(), Some(CodeError::Checksum));
    }
}
