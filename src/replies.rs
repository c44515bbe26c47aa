//! Anonymous replies: the reply code a tipster is given, what it derives
//! (a mailbox address and an OpenPGP certificate), the plaintext of an
//! answer, and the reply store that holds answers as ciphertext.
//!
//! The server never stores a reply code, never logs one and never puts one
//! in an error: it exists only in memory while a submission is sealed or a
//! mailbox is read ([`ReplyCode`] zeroizes it and has no `Debug`). The
//! mailbox address and the certificate go into the sealed record only; the
//! reply store ([`Mailboxes`], under `data_dir/replies/` or in the
//! PostgreSQL store's database) names a mailbox by its folder or its key and
//! holds nothing that links it to a record. Nothing here
//! knows HTTP, the CLI or receipts.
//!
//! - `code.rs`: [`ReplyCode`], 12 BIP39 English words (128 bits and a
//!   checksum);
//! - `derive.rs`: [`Derived`], HKDF-SHA256 with distinct labels into a
//!   [`MailboxId`] and a deterministic v4 certificate;
//! - `answer.rs`: the plaintext of an answer ([`Answer`], [`ReplyStatus`]),
//!   its sealing to a mailbox's certificate and its opening;
//! - `mailboxes.rs`: the reply store, durable before a put returns, with
//!   the day and nothing finer: folders (`mailboxes/fs.rs`) or a table of
//!   the PostgreSQL store (`mailboxes/postgres.rs`).

mod answer;
mod code;
mod derive;
mod mailboxes;

pub use answer::{
    Answer, FORM_HEADER, ReplyStatus, STATUS_HEADER, answer_plaintext, check_encrypted, seal_answer,
};
pub use code::{CodeError, ReplyCode};
pub use derive::{BadMailbox, Derived, MailboxId};
pub use mailboxes::{
    AnswerId, BadAnswerId, FsMailboxes, Mailboxes, PgMailboxes, Put, StoredAnswer,
};

/// Why a reply could not be derived, sealed, opened or stored. No variant
/// carries a reply code, an answer's text or a mailbox address.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    /// Reading or writing the reply store failed.
    #[error("the reply store failed: {0}")]
    Io(#[from] std::io::Error),
    /// The database holding the reply store cannot be reached (a 503).
    #[error("the reply store's database cannot be reached: {0}")]
    Unavailable(String),
    /// The database holding the reply store refused a statement.
    #[error("the reply store's database failed: {0}")]
    Database(String),
    /// Sequoia refused to build a key, certificate or message.
    #[error("OpenPGP failed: {0}")]
    OpenPgp(String),
    /// The mailbox holds as many answers as it may.
    #[error("the mailbox is full")]
    Full,
    /// An answer with the same id but other bytes is stored already.
    #[error("another answer is stored under this id")]
    Conflict,
    /// The bytes are not an OpenPGP message this code opens (or not an
    /// OpenPGP message at all, or one with a compressed packet).
    #[error("the answer cannot be opened: {0}")]
    Open(String),
}

/// The mailbox and certificate a decrypted record names, if it is a record
/// of a form with replies: the `Reply-Mailbox` header, and the one
/// `reply-key.asc` part whose certificate has the fingerprint of the
/// `Reply-Key` header. The server writes both headers; a submitter can
/// upload a file named `reply-key.asc` too, but not one whose fingerprint
/// is the header's (it would need the code). `None` when either is missing
/// or malformed.
pub fn reply_key_in(parsed: &crate::mime::Parsed) -> Option<(MailboxId, sequoia_openpgp::Cert)> {
    use sequoia_openpgp::parse::Parse;
    let mailbox = parsed.reply_mailbox.as_deref()?.parse().ok()?;
    let wanted = parsed.reply_key.as_deref()?;
    let cert = parsed
        .attachments
        .iter()
        .filter(|(name, _)| name.as_str() == crate::mime::REPLY_KEY_FILE)
        .filter_map(|(_, bytes)| sequoia_openpgp::Cert::from_bytes(&bytes[..]).ok())
        .find(|c| c.fingerprint().to_hex() == wanted && !c.is_tsk())?;
    Some((mailbox, cert))
}

/// Lowercase base32 without padding: how mailbox addresses and answer ids
/// are written.
fn base32(bytes: &[u8]) -> String {
    data_encoding::BASE32_NOPAD
        .encode(bytes)
        .to_ascii_lowercase()
}

/// The `N` bytes `s` writes, if it is exactly their [`base32`] form (one
/// spelling only: these name folders and files).
fn from_base32<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != (N * 8).div_ceil(5) || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let bytes = data_encoding::BASE32_NOPAD
        .decode(s.to_ascii_uppercase().as_bytes())
        .ok()?;
    let bytes: [u8; N] = bytes.try_into().ok()?;
    (base32(&bytes) == s).then_some(bytes)
}

impl ReplyError {
    fn openpgp(e: impl std::fmt::Display) -> ReplyError {
        ReplyError::OpenPgp(e.to_string())
    }
}

#[cfg(test)]
mod tests;
