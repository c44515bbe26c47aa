//! `sealform reply` (offline machine): answers a tipster. Reads the record
//! folder `sealform decrypt` wrote (its `message.eml`: the `Reply-Mailbox`
//! header, the form and the `reply-key.asc` part), encrypts the message with
//! its status and form to the mailbox certificate (and to the staff
//! member's own certificates with `--key`), padded like a record, and
//! writes it into the outbox (`cli/outbox.rs`) for `sealform push`.
//!
//! The message is plaintext: it is read into zeroized memory, never
//! written anywhere but into the encryptor, and never printed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context as _, bail};
use sequoia_openpgp as openpgp;
use zeroize::Zeroizing;

use openpgp::cert::{Cert, CertParser};
use openpgp::parse::Parse;

use super::outbox::Outbox;
use crate::mime::REPLY_KEY_FILE;
use crate::replies::{MailboxId, ReplyStatus, answer_plaintext, reply_key_in, seal_answer};

/// What `sealform reply` was asked.
pub struct Options<'a> {
    /// The record's folder, as `sealform decrypt` wrote it.
    pub record: &'a Path,
    /// The file holding the answer's text.
    pub message: &'a Path,
    /// The status to tell the tipster.
    pub status: Option<ReplyStatus>,
    /// Certificates to encrypt to as well (the staff member's own).
    pub keys: &'a [PathBuf],
    /// The outbox folder.
    pub out: &'a Path,
    /// Lock all memory (mlockall).
    pub mlock: bool,
}

/// Largest answer text read: padded (Padmé adds at most 12 %) and
/// encrypted, it stays under the server's default cap on a whole answer
/// (`[replies] max_answer_bytes`, 1 MiB), so what `reply` writes `push`
/// can upload.
const MAX_MESSAGE_BYTES: u64 = 768 << 10;

/// Runs `reply`.
pub fn run(opts: &Options<'_>) -> anyhow::Result<ExitCode> {
    crate::harden::harden_process(opts.mlock).context("while hardening the process")?;
    let (mailbox, form, cert) = read_record(opts.record)?;
    let mut also = Vec::new();
    for path in opts.keys {
        for cert in CertParser::from_file(path)
            .with_context(|| format!("while reading {}", path.display()))?
        {
            also.push(cert.with_context(|| format!("while reading {}", path.display()))?);
        }
    }
    let message = read_message(opts.message)?;
    let plaintext = answer_plaintext(form.as_deref(), opts.status, &message);
    drop(message);
    let sealed = seal_answer(&cert, &also, &plaintext, SystemTime::now())
        .context("while encrypting the answer")?;
    drop(plaintext);
    let mut outbox = Outbox::open(opts.out)?;
    let id = outbox.add(&mailbox, &sealed)?;
    println!(
        "wrote {}: answer {id} to mailbox {mailbox} ({} bytes); `sealform push` uploads it",
        opts.out
            .join(mailbox.to_string())
            .join(format!("{id}.pgp"))
            .display(),
        sealed.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// The mailbox, form and certificate of a decrypted record's folder.
fn read_record(dir: &Path) -> anyhow::Result<(MailboxId, Option<String>, Cert)> {
    let eml = dir.join("message.eml");
    let plain = Zeroizing::new(std::fs::read(&eml).with_context(|| {
        format!(
            "while reading {} (give --record the folder `sealform decrypt` wrote for the \
                 record)",
            eml.display()
        )
    })?);
    let parsed = crate::mime::parse(&plain).context("while reading the record")?;
    if parsed.reply_mailbox.is_none() {
        bail!(
            "{} has no Reply-Mailbox header: its form does not give reply codes ([[forms]] \
             replies = true), so there is no way to answer it anonymously",
            eml.display()
        );
    }
    let Some((mailbox, cert)) = reply_key_in(&parsed) else {
        bail!(
            "{}: the Reply-Mailbox or Reply-Key header is damaged, or no {REPLY_KEY_FILE} part \
             has the certificate the Reply-Key header names",
            eml.display()
        );
    };
    Ok((mailbox, parsed.form, cert))
}

/// The answer's text, at most [`MAX_MESSAGE_BYTES`], in zeroized memory.
fn read_message(path: &Path) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("while reading {}", path.display()))?;
    // Room for the whole file, so the buffer never reallocates and leaves
    // an unzeroized copy behind.
    let size = file
        .metadata()
        .map_or(0, |m| m.len())
        .min(MAX_MESSAGE_BYTES + 1);
    let mut out = Zeroizing::new(Vec::with_capacity(usize::try_from(size).unwrap_or(0) + 1));
    file.take(MAX_MESSAGE_BYTES + 1)
        .read_to_end(&mut out)
        .with_context(|| format!("while reading {}", path.display()))?;
    if out.len() as u64 > MAX_MESSAGE_BYTES {
        bail!(
            "{} is larger than {MAX_MESSAGE_BYTES} bytes",
            path.display()
        );
    }
    if std::str::from_utf8(&out).is_err() {
        bail!("{} is not UTF-8 text", path.display());
    }
    Ok(out)
}
