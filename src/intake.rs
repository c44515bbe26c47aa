//! The intake pipeline: a validated submission in, a durable sealed record
//! out.
//!
//! [`Intake::seal_submission`] writes the envelope through the sealer into a
//! pending spool file and commits it. It is blocking (encryption and fsync):
//! the HTTP layer calls it in its parts: [`Intake::seal_in_memory`] (CPU
//! only) holding a slot for CPU work, [`Intake::write_pending`] and
//! [`Intake::enqueue`] (the file and its fsync) on the same blocking thread
//! without the slot, then it awaits the commit without holding a thread. Handlers never build packets
//! and this module never sees HTTP.

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use chrono::{DateTime, Utc};

use crate::config::{Config, FormConfig};
use crate::envelope::{EnvelopeWriter, Head};
use crate::keys::{KeyProblem, KeyWarning, Keyring};
use crate::seal::{SealError, seal};
use crate::store::{Committing, IndexEntry, PendingRecord, Receipt, Store, StoreError};
use crate::submission::Submission;

/// Room for the ciphertext of an ordinary submission (the smallest padded
/// envelope is 8 KiB); bigger ones grow the buffer.
const CIPHERTEXT_CAPACITY: usize = 16 * 1024;

/// Everything a submission needs on its way to the spool.
pub struct Intake {
    /// The loaded configuration.
    pub config: Config,
    /// The validated recipients and their routing.
    pub keyring: Keyring,
    /// The spool and index.
    pub store: Store,
}

/// Why a submission could not be stored. Never caused by its content.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The form has no recipients (cannot happen after a successful start).
    #[error("form has no recipient route")]
    NoRoute,
    /// Encryption or writing the ciphertext failed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The spool or index failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IntakeError {
    /// The disk is full: the right answer is 503, not 500.
    pub fn is_storage_full(&self) -> bool {
        match self {
            IntakeError::Seal(SealError::Io(e)) => crate::store::is_storage_full(e),
            IntakeError::Store(e) => e.is_storage_full(),
            _ => false,
        }
    }
}

/// Why the intake pipeline could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The keys or the form routing are unusable; every problem is listed.
    #[error("{} key problem(s)", .0.len())]
    Keys(Vec<KeyProblem>),
    /// The store could not be opened or recovered.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Intake {
    /// Loads and validates the keys at `now`, routes the forms and opens the
    /// store (recovering from an unclean stop): everything `serve` needs
    /// before it listens. Returns the warnings to show loudly.
    pub fn open(config: Config, now: SystemTime) -> Result<(Intake, Vec<KeyWarning>), OpenError> {
        let (keyring, warnings) = Keyring::load(&config, now).map_err(OpenError::Keys)?;
        let (store, recovery) = Store::open(
            &config.server.data_dir,
            config.server.index_cache_bytes,
            |path| record_recipients(&keyring, path),
        )?;
        if recovery != Default::default() {
            tracing::info!(
                removed_partial = recovery.removed_partial,
                reindexed = recovery.reindexed,
                finished_acks = recovery.finished_acks,
                "store recovered after an unclean stop"
            );
        }
        let intake = Intake {
            config,
            keyring,
            store,
        };
        Ok((intake, warnings))
    }

    /// Seals `submission` to `form`'s recipients and commits it durably.
    /// Returns once the record would survive a crash.
    pub fn seal_submission(
        &self,
        form: &FormConfig,
        submission: &Submission,
        now: SystemTime,
    ) -> Result<(Receipt, IndexEntry), IntakeError> {
        let sealed = self.seal_in_memory(form, submission, now)?;
        self.commit(self.write_pending(sealed)?, now)
    }

    /// The CPU half of [`Intake::seal_submission`]: seals the envelope into
    /// memory (ciphertext only: the plaintext never leaves the sealer's
    /// zeroizing buffers). Nothing here waits for the disk, so the caller's
    /// slot for CPU work is never held by a blocked thread.
    pub fn seal_in_memory(
        &self,
        form: &FormConfig,
        submission: &Submission,
        now: SystemTime,
    ) -> Result<SealedInMemory, IntakeError> {
        let recipients = self
            .keyring
            .for_form(&form.id)
            .ok_or(IntakeError::NoRoute)?;
        let receipt = Receipt::random();
        let receipt_text = receipt.to_string();
        let head = Head {
            form: &form.id,
            title: &form.title,
            receipt: &receipt_text,
            received_at: DateTime::<Utc>::from(now),
        };
        let fields = submission.envelope_fields(form);
        let mut ciphertext = Vec::with_capacity(CIPHERTEXT_CAPACITY);
        seal(&mut ciphertext, &recipients, |w| {
            let mut envelope = EnvelopeWriter::start(w, &head)?;
            envelope.text_part(&form.title, &fields)?;
            envelope.json_part(&head, &fields)?;
            envelope.finish()?;
            Ok(())
        })?;
        Ok(SealedInMemory {
            receipt,
            ciphertext,
            recipients: recipients.index_listing(),
        })
    }

    /// Writes a record sealed in memory to its pending spool file (the
    /// file's own fsync is part of the commit).
    pub fn write_pending(&self, sealed: SealedInMemory) -> Result<SealedPending, IntakeError> {
        let mut pending = self.store.create_for(sealed.receipt)?;
        pending
            .write_all(&sealed.ciphertext)
            .map_err(SealError::Io)?;
        Ok(SealedPending {
            pending,
            recipients: sealed.recipients,
        })
    }

    /// The I/O half of [`Intake::seal_submission`]: makes a sealed record
    /// durable and indexed (mostly waiting for the disk).
    pub fn commit(
        &self,
        sealed: SealedPending,
        now: SystemTime,
    ) -> Result<(Receipt, IndexEntry), IntakeError> {
        Ok(self.enqueue(sealed, now)?.wait()?)
    }

    /// [`Intake::commit`] without the wait: queues the record for the
    /// store's committer; await [`Committing::finished`] for the answer.
    pub fn enqueue(
        &self,
        sealed: SealedPending,
        now: SystemTime,
    ) -> Result<Committing, IntakeError> {
        Ok(self.store.enqueue(sealed.pending, sealed.recipients, now)?)
    }
}

/// A sealed record in memory, waiting for [`Intake::write_pending`].
pub struct SealedInMemory {
    receipt: Receipt,
    ciphertext: Vec<u8>,
    recipients: Vec<String>,
}

/// A sealed record in `spool/tmp/`, waiting for [`Intake::commit`].
/// Dropping it deletes the file.
pub struct SealedPending {
    pending: PendingRecord,
    recipients: Vec<String>,
}

/// Names the recipients of a spool file from its PKESK packets: certificate
/// fingerprints where the key is known, key IDs otherwise.
fn record_recipients(keyring: &Keyring, path: &Path) -> Vec<String> {
    let Ok(handles) = crate::seal::record_recipients(path) else {
        return Vec::new();
    };
    let mut out: Vec<String> = handles
        .into_iter()
        .flatten()
        .map(|h| {
            let id = sequoia_openpgp::KeyID::from(&h);
            keyring
                .cert_for_key_id(&id)
                .map_or_else(|| id.to_hex(), |c| c.fingerprint().to_hex())
        })
        .collect();
    out.dedup();
    out
}
