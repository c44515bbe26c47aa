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
//! Nothing is printed about a record but counts: a receipt is a secret of
//! the person who sent it.

use std::io::{self, Read};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail, ensure};
use sha2::{Digest as _, Sha256};

use crate::config::Config;
use crate::receipt::Receipt;
use crate::store::{Imported, IndexEntry, RecordState, RecordStore};

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
    Ok(ExitCode::SUCCESS)
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
