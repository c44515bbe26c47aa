//! The intake pipeline: a validated submission in, a durable sealed record
//! out.
//!
//! [`Intake::seal_submission`] writes the envelope through the sealer into a
//! pending spool file and commits it. It is blocking (encryption and fsync):
//! the HTTP layer calls it in its two halves: [`Intake::seal_pending`] (CPU)
//! on one of the sealing threads ([`crate::sealer`]), then
//! [`Intake::enqueue_then`] (the file's fsync) on a blocking thread, and
//! awaits the commit's answer without holding a thread. Handlers never build
//! packets and this module never sees HTTP.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::SystemTime;

use chrono::{DateTime, Utc};

use crate::config::{Config, FormConfig};
use crate::keys::{KeyProblem, KeyWarning, Keyring, Recipients};
use crate::mime::{EnvelopeWriter, Head};
use crate::receipt::Receipt;
use crate::seal::{SealError, seal};
use crate::store::{
    CommitAnswer, IndexEntry, Indexing, PendingRecord, Recovery, Store, StoreError,
};
use crate::submission::Submission;

/// Receives the outcome of [`Intake::enqueue_then`].
pub type Committed = Box<dyn FnOnce(Result<Receipt, IntakeError>) + Send>;

/// Ciphertext is written to the spool in chunks of this size.
const SPOOL_BUFFER: usize = 64 * 1024;

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
        let repaired = Recovery {
            missing_files: 0,
            ..recovery.clone()
        };
        if repaired != Recovery::default() {
            tracing::info!(
                removed_partial = recovery.removed_partial,
                reindexed = recovery.reindexed,
                finished_acks = recovery.finished_acks,
                "store recovered after an unclean stop"
            );
        }
        if recovery.missing_files > 0 {
            tracing::error!(
                missing = recovery.missing_files,
                "records in the index have no file in spool/: they were deleted outside \
                 sealform, or spool/ and index/ were restored from different backups; staff \
                 see them listed but cannot download them"
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
        let sealed = self.seal_pending(form, submission, now)?;
        self.commit(sealed, now)
    }

    /// The CPU half of [`Intake::seal_submission`]: writes the envelope
    /// through the sealer into a pending spool file, not yet durable.
    pub fn seal_pending(
        &self,
        form: &FormConfig,
        submission: &Submission,
        now: SystemTime,
    ) -> Result<SealedPending, IntakeError> {
        let recipients = self
            .keyring
            .for_form(&form.id)
            .ok_or(IntakeError::NoRoute)?;
        let pending = self.store.create()?;
        let receipt = pending.receipt().to_string();
        let head = Head {
            form: &form.id,
            title: &form.title,
            receipt: &receipt,
            received_at: DateTime::<Utc>::from(now),
        };
        let fields = submission.envelope_fields(form);
        let mut out = BufWriter::with_capacity(SPOOL_BUFFER, pending);
        seal(&mut out, &recipients, |w| {
            let mut envelope = EnvelopeWriter::start(w, &head)?;
            envelope.text_part(&form.title, &fields)?;
            envelope.json_part(&head, &fields)?;
            envelope.finish()?;
            Ok(())
        })?;
        out.flush().map_err(SealError::Io)?;
        let pending = out
            .into_inner()
            .map_err(|e| SealError::Io(e.into_error()))?;
        Ok(SealedPending {
            pending,
            indexing: self.indexing(form, &recipients),
        })
    }

    /// What the index keeps of a record of `form` sealed to `recipients`:
    /// the recipients as the ciphertext names them, and the form only when a
    /// staff token is scoped to forms or the digest counts per form
    /// ([`Config::indexes_form`]; the ciphertext does not say which form a
    /// record came from, so a store thief learns it only then).
    pub fn indexing(&self, form: &FormConfig, recipients: &Recipients) -> Indexing {
        Indexing {
            form: self.config.indexes_form().then(|| form.id.clone()),
            recipients: recipients.index_listing(),
        }
    }

    /// The I/O half of [`Intake::seal_submission`]: makes a sealed record
    /// durable and indexed (mostly waiting for the disk).
    pub fn commit(
        &self,
        sealed: SealedPending,
        now: SystemTime,
    ) -> Result<(Receipt, IndexEntry), IntakeError> {
        Ok(self.store.commit(sealed.pending, sealed.indexing, now)?)
    }

    /// [`Intake::commit`] without the wait: fsyncs the record's file
    /// (blocking: call it on a blocking thread) and queues it for the store's
    /// committer. `done` gets the receipt or the error: on this thread for an
    /// error before the record is queued, on the committer otherwise; it is
    /// dropped uncalled if the committer fails on the record's batch (see
    /// [`crate::store::CommitAnswer`] for what it may do).
    pub fn enqueue_then(&self, sealed: SealedPending, now: SystemTime, done: Committed) {
        let done: CommitAnswer =
            Box::new(move |outcome| done(outcome.map(|(receipt, _)| receipt).map_err(Into::into)));
        self.store
            .enqueue_then(sealed.pending, sealed.indexing, now, done);
    }
}

/// A sealed record in `spool/tmp/`, waiting for [`Intake::commit`].
/// Dropping it deletes the file.
pub struct SealedPending {
    pending: PendingRecord,
    indexing: Indexing,
}

/// How the offline tools (`purge`, `export`) name the recipients of a spool
/// file they find without an index entry: as `serve` does, by certificate
/// fingerprint, when `keys_dir` loads; by key ID when it does not (an
/// expired certificate must not stop an export).
pub fn reindex_recipients(config: &Config) -> impl Fn(&Path) -> Vec<String> + use<> {
    let keyring = Keyring::load(config, SystemTime::now())
        .ok()
        .map(|(k, _)| k);
    move |path| match &keyring {
        Some(keyring) => record_recipients(keyring, path),
        None => crate::seal::record_recipients(path)
            .map(|hs| {
                hs.into_iter()
                    .flatten()
                    .map(|h| sequoia_openpgp::KeyID::from(&h).to_hex())
                    .collect()
            })
            .unwrap_or_default(),
    }
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
