//! The intake pipeline: a validated submission in, a durable sealed record
//! out. One function family seals every record, whichever route it came
//! by: [`Intake::submit`] for a submission decoded in memory (the
//! urlencoded and JSON routes) and [`Intake::submit_stream`] for a streamed
//! multipart upload. Both start the record and seal its envelope with
//! `Intake::seal_record` and commit it with `Intake::commit_then`
//! (`intake/record.rs`), which fsyncs the file on the calling blocking
//! thread and hands it to the store's batching committer; both answer only
//! once the record is durable and indexed.
//!
//! The CPU half of [`Intake::submit`] runs on the pipeline's own sealing
//! workers (`intake/workers.rs`, one thread per CPU slot), the fsync on a
//! blocking thread, and the caller awaits the committer's answer without
//! holding a thread. An upload waits for the network between its chunks, so
//! [`Intake::submit_stream`] seals it on a blocking thread of its own
//! (`intake/stream.rs`). Nothing here builds HTTP answers or sees a request:
//! the HTTP layer maps an [`IntakeError`] to its status.

mod record;
mod stream;
mod workers;

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::keys::{KeyProblem, KeyWarning, Keyring};
use crate::mime::EnvelopeWriter;
use crate::receipt::Receipt;
use crate::replies::{Derived, Mailboxes, ReplyError};
use crate::seal::SealError;
use crate::store::{RecordStore, Recovery, StoreError};
use crate::submission::Submission;

pub use stream::{UploadError, UploadEvent, available_space};
use workers::SealingWorkers;

/// Everything a submission needs on its way to the spool.
pub struct Intake {
    /// The loaded configuration.
    pub config: Config,
    /// The validated recipients and their routing.
    pub keyring: Keyring,
    /// The records, in the configured backend.
    pub store: RecordStore,
    /// The reply store (`data_dir/replies/`, or the PostgreSQL store's
    /// database): staff answers to tipsters.
    pub mailboxes: Arc<Mailboxes>,
    /// The threads that seal in-memory submissions ([`Intake::submit`]).
    workers: SealingWorkers,
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
    /// The sealing workers have stopped (only a dropped [`Intake`] stops
    /// them, so in practice never): nothing was stored, and the submission
    /// may be sent again later.
    #[error("the sealing threads have stopped")]
    Unavailable,
    /// No answer came: the sealing job panicked (it logged that, without
    /// its message), or the committer dropped the record's batch in a panic.
    /// Whether the record is stored is unknown.
    #[error(
        "no answer came: the sealing job panicked or the committer failed on the record's batch"
    )]
    Unanswered(#[from] oneshot::error::RecvError),
    /// The blocking thread of an upload did not finish: it panicked (its
    /// message, which could quote a value, is not kept) or the runtime was
    /// shutting down.
    #[error("a blocking task {0}")]
    Interrupted(&'static str),
}

impl IntakeError {
    /// The database cannot be reached: the right answer is 503, not 500.
    /// A chunk that could not be written reaches here inside the sealing
    /// error's I/O error.
    pub fn is_store_unavailable(&self) -> bool {
        match self {
            IntakeError::Store(e) => e.is_unavailable(),
            IntakeError::Seal(SealError::Io(e)) => e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<StoreError>())
                .is_some_and(StoreError::is_unavailable),
            _ => false,
        }
    }

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
    /// The sealing workers could not be started.
    #[error(transparent)]
    Workers(std::io::Error),
    /// The reply store could not be opened.
    #[error(transparent)]
    Replies(#[from] ReplyError),
}

impl Intake {
    /// Loads and validates the keys at `now`, routes the forms and opens the
    /// store (recovering from an unclean stop) and starts the sealing
    /// workers: everything `serve` needs before it listens. Returns the
    /// warnings to show loudly.
    pub fn open(config: Config, now: SystemTime) -> Result<(Intake, Vec<KeyWarning>), OpenError> {
        let (keyring, warnings) = Keyring::load(&config, now).map_err(OpenError::Keys)?;
        let (store, recovery) =
            RecordStore::open(&config, |path| record_recipients(&keyring, path))?;
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
        let mailboxes = Arc::new(Mailboxes::open(
            &store,
            &config.server.data_dir,
            config.replies.max_per_mailbox,
        )?);
        let workers = SealingWorkers::start(config.server.max_concurrent_seals)
            .map_err(OpenError::Workers)?;
        let intake = Intake {
            config,
            keyring,
            store,
            mailboxes,
            workers,
        };
        Ok((intake, warnings))
    }

    /// Seals `submission`, valid for form number `form_index`, on a sealing
    /// worker (with `reply`, the record carries that mailbox and
    /// certificate: see `Intake::seal_record` in `intake/record.rs`) and
    /// waits, without holding a thread, until it is durable: the
    /// file's fsync runs on a blocking thread (it needs no CPU slot), and
    /// the rest of the commit on the store's committer, which batches it
    /// with others and answers this task directly. If this future is
    /// dropped before a worker takes the job, the submission is dropped
    /// (and zeroized) unsealed.
    pub async fn submit(
        self: &Arc<Self>,
        form_index: usize,
        submission: Submission,
        reply: Option<Derived>,
    ) -> Result<Receipt, IntakeError> {
        let (answer, answered) = oneshot::channel();
        let intake = Arc::clone(self);
        let runtime = tokio::runtime::Handle::current();
        // Until a sealing thread takes it, the committer waits a little for
        // this submission rather than committing small batches (see
        // `store::Anticipated`); dropped with the job if it never runs.
        let anticipated = self.store.anticipate();
        let job = move || {
            drop(anticipated);
            // The client went away while this waited its turn: nobody would
            // get the receipt, so the submission is dropped (and zeroized)
            // unsealed, as it would have been before it was queued.
            if answer.is_closed() {
                return;
            }
            let form = &intake.config.forms[form_index];
            let now = SystemTime::now();
            let same = |record| record;
            let sealed = intake.seal_record(form, now, reply.as_ref(), same, same, |w, head| {
                let fields = submission.envelope_fields(form);
                let mut envelope = EnvelopeWriter::start(w, head)?;
                envelope.text_part(&form.title, &fields)?;
                envelope.json_part(head, &fields)?;
                envelope.finish()?;
                Ok(())
            });
            match sealed {
                Ok(sealed) => {
                    drop(submission);
                    drop(reply);
                    runtime.spawn_blocking(move || intake.commit_then(sealed, now, answer));
                }
                Err(e) => {
                    let _ = answer.send(Err(e));
                }
            }
        };
        if self.workers.submit(job).await.is_err() {
            return Err(IntakeError::Unavailable);
        }
        answered.await?
    }

    /// Seals the upload for form number `form_index` whose events arrive on
    /// `events` (see [`UploadEvent`]) on a blocking thread while they
    /// arrive, and waits until it is durable: once [`UploadEvent::End`] has
    /// come and the fields pass the form's rules, the file is fsynced on
    /// that thread and committed by the store's committer, as
    /// [`Intake::submit`] commits. On any error the record's temp file is
    /// gone when this returns; if this future is dropped, the blocking
    /// thread still finishes (a closed channel stops it). `reply` as for
    /// [`Intake::submit`].
    pub async fn submit_stream(
        self: &Arc<Self>,
        form_index: usize,
        events: mpsc::Receiver<UploadEvent>,
        reply: Option<Derived>,
    ) -> Result<Receipt, UploadError> {
        let (answer, answered) = oneshot::channel();
        let intake = Arc::clone(self);
        let sealing = tokio::task::spawn_blocking(move || {
            let form = &intake.config.forms[form_index];
            let now = SystemTime::now();
            let sealed = stream::seal_stream(&intake, form, events, now, reply.as_ref())?;
            intake.commit_then(sealed, now, answer);
            Ok::<(), UploadError>(())
        });
        match sealing.await {
            Ok(sealed) => sealed?,
            Err(join) => {
                let what = if join.is_panic() {
                    "panicked"
                } else {
                    "was cancelled"
                };
                return Err(IntakeError::Interrupted(what).into());
            }
        }
        Ok(answered.await.map_err(IntakeError::from)??)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_left_unanswered_is_logged_as_such_not_as_a_closed_channel() {
        let (answer, answered) = oneshot::channel::<()>();
        drop(answer);
        let closed = answered.blocking_recv().expect_err("no answer");
        let logged = IntakeError::from(closed).to_string();
        assert!(logged.starts_with("no answer came"), "{logged}");
    }
}
