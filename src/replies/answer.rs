//! The plaintext of an answer and its two ends: [`seal_answer`] encrypts
//! one to a mailbox's certificate (and any staff key) the way records are
//! sealed, and [`Derived::open`] decrypts one with the key a code derives.
//!
//! The plaintext is a block of `Sealform-` header lines (form, status, when
//! it was written, the message's length), a blank line, the message, then padding (spaces) up to the length a record of that size
//! would be padded to ([`crate::mime::padded_len`]); `Sealform-Length` says
//! where the message ends. A plaintext that does not start with such a
//! block (one made with plain `gpg --encrypt`) is all message. An answer is
//! hostile input: the message is held in zeroized memory and no error
//! carries a byte of it.

use std::fmt;
use std::io::{Read, Write};
use std::str::FromStr;
use std::time::SystemTime;

use sequoia_openpgp as openpgp;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use openpgp::cert::Cert;
use openpgp::crypto::{KeyPair, SessionKey};
use openpgp::packet::{PKESK, SKESK, Tag};
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageStructure, VerificationHelper,
};
use openpgp::parse::{PacketParser, Parse};
use openpgp::policy::StandardPolicy;
use openpgp::types::SymmetricAlgorithm;

use super::{Derived, ReplyError};
use crate::keys::{Recipients, validate};

/// The header naming the form an answer belongs to.
pub const FORM_HEADER: &str = "Sealform-Form";
/// The header carrying an answer's status.
pub const STATUS_HEADER: &str = "Sealform-Status";
/// The header giving the message's length in bytes (the rest is padding).
const LENGTH_HEADER: &str = "Sealform-Length";
/// The header giving when the answer was written (RFC 3339, UTC, seconds):
/// inside the ciphertext, it orders a day's answers for the tipster.
pub const WRITTEN_HEADER: &str = "Sealform-Written";

/// Where the newsroom is with a tip, as the tipster reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ReplyStatus {
    /// The tip arrived and is waiting to be read.
    Received,
    /// Someone is working on it.
    InProgress,
    /// The newsroom answered.
    Answered,
    /// Nothing more will happen.
    Closed,
}

impl ReplyStatus {
    /// Every status, in order.
    pub const ALL: [ReplyStatus; 4] = [
        ReplyStatus::Received,
        ReplyStatus::InProgress,
        ReplyStatus::Answered,
        ReplyStatus::Closed,
    ];

    /// The kebab-case name (as in JSON and on the command line).
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyStatus::Received => "received",
            ReplyStatus::InProgress => "in-progress",
            ReplyStatus::Answered => "answered",
            ReplyStatus::Closed => "closed",
        }
    }
}

impl fmt::Display for ReplyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReplyStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<ReplyStatus, String> {
        ReplyStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| "one of received, in-progress, answered, closed".to_string())
    }
}

/// One decrypted answer. Its `Debug` form says nothing of the message.
pub struct Answer {
    /// The form it belongs to (from `Sealform-Form`), if it says.
    pub form: Option<String>,
    /// Its status (from `Sealform-Status`), if it says.
    pub status: Option<ReplyStatus>,
    /// When it was written (from `Sealform-Written`), if it says.
    pub written: Option<SystemTime>,
    /// The message.
    pub message: Zeroizing<String>,
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer")
            .field("form", &self.form)
            .field("status", &self.status)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

/// The padded plaintext of an answer written now: headers, blank line,
/// message, padding. A form id holding a line break is left out.
pub fn answer_plaintext(
    form: Option<&str>,
    status: Option<ReplyStatus>,
    message: &[u8],
) -> Zeroizing<Vec<u8>> {
    let mut head = String::new();
    if let Some(form) = form.filter(|f| !f.contains(['\n', '\r'])) {
        head.push_str(&format!("{FORM_HEADER}: {form}\n"));
    }
    if let Some(status) = status {
        head.push_str(&format!("{STATUS_HEADER}: {status}\n"));
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    head.push_str(&format!("{WRITTEN_HEADER}: {now}\n"));
    head.push_str(&format!("{LENGTH_HEADER}: {}\n\n", message.len()));
    let len = head.len() + message.len();
    let padded = usize::try_from(crate::mime::padded_len(len as u64)).unwrap_or(len);
    let mut out = Zeroizing::new(Vec::with_capacity(padded.max(len)));
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(message);
    out.resize(padded.max(len), b' ');
    out
}

/// Reads a decrypted plaintext into an [`Answer`].
fn parse_plaintext(plain: Zeroizing<Vec<u8>>) -> Answer {
    let mut form = None;
    let mut status = None;
    let mut written = None;
    let mut length = None;
    let mut body = 0;
    if plain.starts_with(b"Sealform-") {
        let mut at = 0;
        let mut headers_ok = false;
        while let Some(nl) = plain[at..].iter().position(|&b| b == b'\n') {
            let line = &plain[at..at + nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            at += nl + 1;
            if line.is_empty() {
                headers_ok = true;
                break;
            }
            let Some((name, value)) = std::str::from_utf8(line)
                .ok()
                .and_then(|l| l.split_once(':'))
                .filter(|(n, _)| n.starts_with("Sealform-"))
            else {
                break;
            };
            let value = value.trim();
            match name {
                FORM_HEADER => form = Some(value.to_string()),
                STATUS_HEADER => status = value.parse().ok(),
                WRITTEN_HEADER => {
                    written = chrono::DateTime::parse_from_rfc3339(value)
                        .ok()
                        .map(SystemTime::from)
                }
                LENGTH_HEADER => length = value.parse::<usize>().ok(),
                _ => {}
            }
        }
        if headers_ok {
            body = at;
        } else {
            (form, status, written, length) = (None, None, None, None);
        }
    }
    let end = length.map_or(plain.len(), |l| body.saturating_add(l).min(plain.len()));
    let message = match std::str::from_utf8(&plain[body..end]) {
        Ok(s) => Zeroizing::new(s.to_string()),
        Err(_) => Zeroizing::new(String::from_utf8_lossy(&plain[body..end]).into_owned()),
    };
    Answer {
        form,
        status,
        written,
        message,
    }
}

/// Encrypts `plaintext` to the mailbox certificate `mailbox` and to every
/// certificate in `also` (a staff member's own key): SEIPDv1, AES-256, no
/// compression, as records are sealed ([`crate::seal::seal`]), with
/// wildcard key IDs, so a stored answer names neither the mailbox's key nor
/// the staff member's ([`Derived::open`] and GnuPG try their keys on each).
/// Each certificate must pass the checks recipient keys pass at `now`.
pub fn seal_answer(
    mailbox: &Cert,
    also: &[Cert],
    plaintext: &[u8],
    now: SystemTime,
) -> Result<Vec<u8>, ReplyError> {
    let mut recipients = Recipients {
        keys: Vec::new(),
        certs: Vec::new(),
        hidden: true,
        seipdv1_only: true,
    };
    // The staff keys come first: GnuPG tries its key on each anonymous
    // recipient in turn, and one that fails first (the mailbox's, of the
    // same algorithm) makes `gpg -d` exit with an error though it decrypts.
    for cert in also.iter().chain(std::iter::once(mailbox)) {
        let (checked, _) = validate(cert.clone(), std::path::Path::new("-"), now, true)
            .map_err(|p| ReplyError::OpenPgp(p.to_string()))?;
        if checked.encryption_keys.is_empty() {
            return Err(ReplyError::OpenPgp(format!(
                "{} has no usable encryption key",
                checked.fingerprint()
            )));
        }
        recipients.certs.push(checked.fingerprint());
        recipients.keys.extend(checked.encryption_keys);
    }
    let mut out = Vec::new();
    crate::seal::seal(&mut out, &recipients, |w: &mut dyn Write| {
        w.write_all(plaintext)
    })
    .map_err(|e| ReplyError::OpenPgp(e.to_string()))?;
    Ok(out)
}

/// Checks that `bytes` is an encrypted OpenPGP message (binary or
/// armored): one or more PKESK packets, then one encrypted container, and
/// nothing else. Anything else (a plaintext, a signature, a key) must not be
/// stored: the reply store holds ciphertext only.
pub fn check_encrypted(bytes: &[u8]) -> Result<(), ReplyError> {
    use openpgp::Packet;
    use openpgp::parse::PacketParserResult;
    let not = |why: &str| ReplyError::Open(format!("not an encrypted OpenPGP message: {why}"));
    let mut ppr = PacketParser::from_bytes(bytes).map_err(|_| not("unreadable"))?;
    let (mut pkesks, mut containers) = (0, 0);
    while let PacketParserResult::Some(pp) = ppr {
        match (&pp.packet, containers) {
            (Packet::PKESK(_), 0) => pkesks += 1,
            (Packet::SEIP(_), 0) if pkesks > 0 => containers += 1,
            _ => return Err(not("unexpected packet")),
        }
        // `next`, not `recurse`: the container stays opaque.
        ppr = pp.next().map_err(|_| not("damaged"))?.1;
    }
    if containers == 1 {
        Ok(())
    } else {
        Err(not("no encrypted data"))
    }
}

impl Derived {
    /// Decrypts one stored answer with this code's key. The whole message
    /// is authenticated (MDC) before anything is returned; a compressed
    /// packet is refused (the certificate asks for none).
    pub fn open(&self, ciphertext: &[u8]) -> Result<Answer, ReplyError> {
        let policy = StandardPolicy::new();
        let helper = Opener {
            key: self.decryptor().clone(),
        };
        let refused = |e: anyhow::Error| ReplyError::Open(e.to_string());
        let mut d = DecryptorBuilder::from_bytes(ciphertext)
            .map_err(refused)?
            .with_policy(&policy, None, helper)
            .map_err(refused)?;
        // Without compression the plaintext is shorter than the message.
        let mut plain = Zeroizing::new(Vec::with_capacity(ciphertext.len()));
        (&mut d)
            .take(ciphertext.len() as u64)
            .read_to_end(&mut plain)
            .map_err(|e| ReplyError::Open(e.to_string()))?;
        if !d.message_processed() {
            return Err(ReplyError::Open("the message is incomplete".into()));
        }
        Ok(parse_plaintext(plain))
    }
}

/// The decryption helper: one key pair, no compressed data, no signatures.
struct Opener {
    key: KeyPair,
}

impl VerificationHelper for Opener {
    fn inspect(&mut self, pp: &PacketParser<'_>) -> openpgp::Result<()> {
        if pp.packet.tag() == Tag::CompressedData {
            return Err(anyhow::anyhow!("compressed data packet"));
        }
        Ok(())
    }
    fn get_certs(&mut self, _: &[openpgp::KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(Vec::new())
    }
    fn check(&mut self, _: MessageStructure<'_>) -> openpgp::Result<()> {
        Ok(())
    }
}

impl DecryptionHelper for Opener {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        _: &[SKESK],
        sym: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        for pkesk in pkesks {
            if let Some((algo, sk)) = pkesk.decrypt(&mut self.key, sym) {
                if decrypt(algo, &sk) {
                    return Ok(None);
                }
            }
        }
        Err(anyhow::anyhow!("not for this code"))
    }
}
