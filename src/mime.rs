//! The MIME format of a record's plaintext: the writer the server seals
//! ([`EnvelopeWriter`]), the parser the offline `decrypt` command reads it
//! back with ([`parse()`]), and the limits both sides share.
//!
//! `gpg -d record.pgp > x.eml` must open in any mail client, so the sealed
//! plaintext is an RFC 5322 message with a `multipart/mixed` body:
//! 1. `text/plain` (quoted-printable): the fields as `Label: value`;
//! 2. one base64 part per attachment, name and type only in its headers;
//! 3. last, `application/json` (base64): the machine-readable record.
//!
//! After the closing boundary comes padding (the MIME epilogue, which parsers
//! ignore) so that the total length falls into a size bucket: at least
//! [`MIN_PADDED_LEN`], then Padmé rounding ([`padded_len`]).
//!
//! The pieces: `write` (the envelope, as a stream), `encode` (base64 lines,
//! quoted-printable, header words), `decode` (their inverse), `parse` (a decrypted envelope taken
//! apart; every byte of it is hostile input). This module knows nothing of
//! OpenPGP, keys, configuration, HTTP or the command line: it must never
//! depend on `unseal`, `config`, `http` or `cli`, and never store, log or
//! format plaintext into an error.

mod decode;
mod encode;
mod parse;
mod write;

pub use parse::{ParseError, Parsed, parse, safe_file_name};
pub use write::{
    AttachmentInfo, AttachmentWriter, EnvelopeField, EnvelopeWriter, FieldValue, Head,
    REPLY_KEY_FILE, REPLY_KEY_HEADER, REPLY_MAILBOX_HEADER, ReplyKey,
};

/// The smallest padded envelope. A message of a few thousand characters
/// appears twice (text and JSON parts), so 8 KiB makes ordinary messages all
/// the same size.
pub const MIN_PADDED_LEN: u64 = 8 * 1024;

/// Length of a padded envelope whose content is `len` bytes long: at least
/// [`MIN_PADDED_LEN`], otherwise `len` rounded up with Padmé (overhead at most
/// 12 %, and the rounded length leaks O(log log len) bits).
pub fn padded_len(len: u64) -> u64 {
    if len <= MIN_PADDED_LEN {
        return MIN_PADDED_LEN;
    }
    let e = 63 - u64::from(len.leading_zeros()); // floor(log2 len)
    let s = 64 - u64::from(e.leading_zeros()); // floor(log2 e) + 1
    let mask = (1u64 << (e - s)) - 1;
    (len + mask) & !mask
}

/// Most MIME parts a record may have. A form writes one text part (two when
/// text fields follow files), one JSON part and one part per file, and the
/// HTTP layer accepts at most `fields × 2 + max_files` multipart parts; no
/// sensible form comes near this. A crafted plaintext of `--b` lines would
/// otherwise make a part (and an attachment file) for every 4 bytes.
pub const MAX_PARTS: usize = 10_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padme_rounds_up_by_at_most_twelve_percent() {
        assert_eq!(padded_len(0), MIN_PADDED_LEN);
        assert_eq!(padded_len(MIN_PADDED_LEN), MIN_PADDED_LEN);
        for len in [8193u64, 10_000, 65_537, 1 << 20, 1_000_000_007, 5 << 30] {
            let p = padded_len(len);
            assert!(p >= len && (p - len) * 100 <= len * 12, "{len} -> {p}");
            assert_eq!(padded_len(p), p, "a bucket is a fixed point");
        }
    }
}
