//! `sealform store copy --from A --to B`: every record of the store that
//! config A names, with its state, into the store config B names (from the
//! embedded store to PostgreSQL and back), with both servers stopped.
//!
//! Each record keeps its receipt, day, state, recipients, form and day of
//! acknowledgement; its ciphertext is hashed (SHA-256) as it is read from
//! A, and read back from B and hashed again once B says it is durable: a
//! record whose two digests differ stops the copy. A copy that was stopped
//! (or killed) is run again the same way: a record B already holds with the
//! same entry and the same digest is skipped, any other is written; one
//! it holds differently (changed there since) stops the copy.
//! Then every answer to tipsters in A's reply store (folders under A's
//! data_dir, or A's database) is put into B's with the day it was pushed,
//! so its expiry does not move; an answer B holds already with the same
//! bytes is skipped. Opening an embedded reply store removes what an
//! interrupted push or deletion left there (a `.partial` answer, a
//! `.gone-` folder), in A as in B; nothing else of A changes.
//!
//! Nothing is printed about a record or an answer but counts: a receipt is
//! a secret of the person who sent it, a mailbox address a tipster's.

use std::io::{self, Read};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context as _, bail, ensure};
use sha2::{Digest as _, Sha256};

use crate::config::Config;
use crate::receipt::Receipt;
use crate::replies::{Mailboxes, Put, ReplyError};
use crate::store::{Imported, IndexEntry, RecordState, RecordStore, days_between};

/// What happened to one record.
enum Copied {
    /// Written to the destination and checked.
    Written,
    /// The destination held it already, identical.
    AlreadyThere,
}

/// Copies every record of the store of `from` into the store of `to`.
pub fn run(from: &Path, to: &Path) -> anyhow::Result<ExitCode> {
    let load = |path: &Path| {
        Config::load(path).with_context(|| format!("while reading {}", path.display()))
    };
    let (from_config, to_config) = (load(from)?, load(to)?);
    let stop = "stop it (and every other node on this store) before copying";
    let source = super::local_store::open(&from_config, stop).context("the --from store")?;
    let dest = super::local_store::open(&to_config, stop).context("the --to store")?;
    let records = source.list().context("while listing the --from store")?;
    let (mut written, mut there) = (0usize, 0usize);
    for (i, (receipt, entry)) in records.iter().enumerate() {
        let copied = copy_one(&source, &dest, receipt, entry)
            .with_context(|| format!("while copying record {} of {}", i + 1, records.len()))?;
        match copied {
            Copied::Written => written += 1,
            Copied::AlreadyThere => there += 1,
        }
    }
    dest.flush().context("while flushing the --to store")?;
    println!(
        "{} record(s): {written} copied, {there} already there (same entry and sha256)",
        records.len()
    );
    let open = |store: &RecordStore, config: &Config| {
        Mailboxes::open(
            store,
            &config.server.data_dir,
            config.replies.max_per_mailbox,
        )
    };
    let from_answers = open(&source, &from_config).context("the --from reply store")?;
    let to_answers = open(&dest, &to_config).context("the --to reply store")?;
    let (written, there) = copy_answers(
        &from_answers,
        &to_answers,
        to_config.replies.max_per_mailbox,
    )?;
    println!(
        "{} answer(s) to tipsters: {written} copied, {there} already there",
        written + there
    );
    Ok(ExitCode::SUCCESS)
}

/// Puts every answer of `from` into `to` (whose mailboxes hold `to_max`
/// answers at most), on the day it was pushed; returns how many were
/// written and how many `to` held already. A mailbox of `from` holding more
/// than `to_max` stops the copy before any answer is written.
fn copy_answers(from: &Mailboxes, to: &Mailboxes, to_max: usize) -> anyhow::Result<(usize, usize)> {
    let (mut written, mut there) = (0usize, 0usize);
    let mailboxes = from
        .mailbox_ids()
        .context("while listing the --from reply store")?;
    for mailbox in &mailboxes {
        let held = from
            .list(mailbox)
            .context("while reading the --from reply store")?
            .len();
        ensure!(
            held <= to_max,
            "a mailbox of the --from store holds {held} answers, more than the --to \
             configuration's [replies] max_per_mailbox ({to_max}): raise it there and run the \
             copy again (no answer was copied)"
        );
    }
    for mailbox in &mailboxes {
        for answer in from
            .list(mailbox)
            .context("while reading the --from reply store")?
        {
            let days = days_between("1970-01-01", &answer.day)
                .and_then(|d| u64::try_from(d).ok())
                .context("an answer in the --from reply store has no valid day")?;
            let pushed = UNIX_EPOCH + Duration::from_secs(days * 86_400);
            match to.put(mailbox, &answer.id, &answer.ciphertext, pushed) {
                Ok(Put::Stored) => written += 1,
                Ok(Put::AlreadyThere) => there += 1,
                Err(ReplyError::Full) => bail!(
                    "a mailbox of the --to store is full (it holds answers the --from store \
                     does not have, up to [replies] max_per_mailbox): raise it there and run \
                     the copy again"
                ),
                Err(ReplyError::Conflict) => bail!(
                    "the --to reply store holds other bytes under an answer's id: it was \
                     changed there since an earlier copy"
                ),
                Err(e) => return Err(e).context("while writing the --to reply store"),
            }
        }
    }
    Ok((written, there))
}

/// Copies one record unless `dest` holds it identical already.
fn copy_one(
    source: &RecordStore,
    dest: &RecordStore,
    receipt: &Receipt,
    entry: &IndexEntry,
) -> anyhow::Result<Copied> {
    let expects_ciphertext = entry.state != RecordState::Acked;
    if dest.get(receipt)?.as_ref() == Some(entry) {
        let theirs = digest(ciphertext(dest, receipt)?)?;
        if theirs == digest(ciphertext(source, receipt)?)? {
            return Ok(Copied::AlreadyThere);
        }
    }
    let mut reader = ciphertext(source, receipt)?.map(Hashing::new);
    if expects_ciphertext && reader.is_none() {
        bail!("the --from store lists a record that is not acknowledged, but has no ciphertext");
    }
    // An acknowledged record has no ciphertext: nothing is read.
    let mut nothing = io::empty();
    let source_bytes: &mut dyn Read = match reader.as_mut() {
        Some(r) => r,
        None => &mut nothing,
    };
    if dest.import(receipt, entry, source_bytes)? == Imported::AlreadyThere {
        bail!(
            "the --to store holds this record already, but not as the --from store does: \
             it was changed there since an earlier copy; copy into an empty store"
        );
    }
    let read = reader.map(Hashing::finish);
    let written = digest(ciphertext(dest, receipt)?)?;
    ensure!(
        written == read,
        "the record's sha256 in the --to store differs from the one read from --from"
    );
    ensure!(
        dest.get(receipt)?.as_ref() == Some(entry),
        "the --to store did not keep the record's entry"
    );
    Ok(Copied::Written)
}

/// A record's ciphertext in `store`, if it has one.
fn ciphertext(store: &RecordStore, receipt: &Receipt) -> anyhow::Result<Option<impl Read>> {
    store.open_record(receipt).context("while opening a record")
}

/// The SHA-256 of what `reader` holds, if anything.
fn digest(reader: Option<impl Read>) -> anyhow::Result<Option<[u8; 32]>> {
    reader
        .map(|r| {
            let mut h = Hashing::new(r);
            io::copy(&mut h, &mut io::sink()).context("while reading a record")?;
            Ok(h.finish())
        })
        .transpose()
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Hashing<R> {
        Hashing {
            inner,
            hash: Sha256::new(),
        }
    }

    fn finish(self) -> [u8; 32] {
        self.hash.finalize().into()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}
