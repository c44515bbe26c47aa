//! OpenPGP encryption of a plaintext stream to a form's recipients.
//!
//! The output is one binary OpenPGP message that GnuPG 2.2 decrypts with
//! `gpg -d`: a PKESK packet per recipient key, then a SEIPDv1 packet (AES-256,
//! with MDC) around a literal packet with an empty file name and date 0. There
//! is no compression, which would leak the plaintext's redundancy through the
//! record's length and defeat the envelope's padding.
//!
//! SEIPDv1 is forced per recipient: Sequoia would otherwise choose SEIPDv2
//! whenever every recipient certificate advertises it (certificates made by
//! Sequoia itself do), and GnuPG 2.2 and 2.4 cannot read that.
//!
//! This is CPU work: call it from a blocking thread, never from an async task.

use std::io::{self, Write};

use sequoia_openpgp as openpgp;

use openpgp::KeyHandle;
use openpgp::serialize::stream::{Encryptor, LiteralWriter, Message, Recipient};
use openpgp::types::{DataFormat, SymmetricAlgorithm};

use crate::keys::{Recipients, gnupg_features};

/// Why a record could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// Writing the plaintext (or the ciphertext to its sink) failed.
    #[error("writing the record failed: {0}")]
    Io(#[from] io::Error),
    /// Sequoia refused to build or finish the message.
    #[error("OpenPGP encryption failed: {0}")]
    OpenPgp(String),
}

impl SealError {
    fn openpgp(e: anyhow::Error) -> Self {
        // An io::Error from the sink may be wrapped; keep its kind visible
        // (a full disk must be told apart from a bug).
        match e.downcast::<io::Error>() {
            Ok(io) => SealError::Io(io),
            Err(e) => SealError::OpenPgp(e.to_string()),
        }
    }
}

/// Encrypts what `write_plaintext` writes to `recipients`, streaming the
/// ciphertext into `sink`.
///
/// The plaintext is never buffered whole: each write passes through the
/// encryptor into `sink`. If `write_plaintext` fails, the error is returned
/// and whatever reached `sink` must be discarded.
pub fn seal<W, F, T>(
    sink: &mut W,
    recipients: &Recipients,
    write_plaintext: F,
) -> Result<T, SealError>
where
    W: Write + Send + Sync,
    F: FnOnce(&mut dyn Write) -> io::Result<T>,
{
    // SEIPDv2 is chosen only when every recipient reads it: never with
    // `seipdv1_only`, otherwise as each certificate says. A SEIPDv2 PKESK
    // names its recipient by fingerprint, so the handle is one (a v3 PKESK
    // takes its key ID from it); a hidden recipient has none, which both
    // write as the wildcard.
    let recips: Vec<Recipient<'_>> = recipients
        .keys
        .iter()
        .map(|k| {
            let features = if recipients.seipdv1_only {
                gnupg_features()
            } else {
                k.features.clone()
            };
            let handle = (!recipients.hidden).then(|| KeyHandle::from(k.key.fingerprint()));
            Recipient::new(features, handle, &k.key)
        })
        .collect();
    let message = Message::new(sink);
    let message = Encryptor::for_recipients(message, recips)
        .symmetric_algo(SymmetricAlgorithm::AES256)
        .build()
        .map_err(SealError::openpgp)?;
    let mut literal = LiteralWriter::new(message)
        .format(DataFormat::Binary)
        .build()
        .map_err(SealError::openpgp)?;
    let out = write_plaintext(&mut literal)?;
    literal.finalize().map_err(SealError::openpgp)?;
    Ok(out)
}

/// The recipient key handles named by the PKESK packets at the start of a
/// sealed record (`None` for a wildcard recipient). Stops at the encrypted
/// data: the ciphertext body is not read.
pub fn record_recipients(record: &std::path::Path) -> openpgp::Result<Vec<Option<KeyHandle>>> {
    use openpgp::Packet;
    use openpgp::parse::{PacketParserResult, Parse};

    let mut out = Vec::new();
    let mut ppr = openpgp::parse::PacketParser::from_file(record)?;
    while let PacketParserResult::Some(pp) = ppr {
        match &pp.packet {
            Packet::PKESK(p) => out.push(p.recipient()),
            _ => break,
        }
        ppr = pp.next()?.1;
    }
    Ok(out)
}
