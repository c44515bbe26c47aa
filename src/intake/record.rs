//! The start and the end of every record, shared by both ways in
//! ([`Intake::submit`] and [`Intake::submit_stream`]): a pending spool file
//! with an envelope sealed into it to the form's recipients, and its commit
//! through the store's batching committer. The callers write the envelope;
//! nothing here sees a submitted value, and nothing here waits for the
//! committer.
//!
//! [`Intake::submit`]: super::Intake::submit
//! [`Intake::submit_stream`]: super::Intake::submit_stream

use std::io::{self, BufWriter, Write};
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use super::{Intake, IntakeError};
use crate::config::FormConfig;
use crate::keys::Recipients;
use crate::mime::{Head, ReplyKey};
use crate::receipt::Receipt;
use crate::replies::Derived;
use crate::seal::{SealError, seal};
use crate::store::{CommitAnswer, Indexing, Pending};

/// Ciphertext is written to the spool in chunks of this size.
const SPOOL_BUFFER: usize = 64 * 1024;

/// Where a record's commit is answered: the task waiting for its receipt.
pub(super) type Answer = oneshot::Sender<Result<Receipt, IntakeError>>;

/// A sealed record not yet durable (a file in `spool/tmp/`, or chunks in an
/// open transaction). Dropping it deletes the file or rolls back.
pub(super) struct SealedRecord {
    pending: Pending,
    indexing: Indexing,
}

impl Intake {
    /// Starts a record of `form` received at `now` and seals its envelope:
    /// picks the receipt, creates the pending file and runs `envelope`
    /// (which writes the plaintext, given the record's head) through the
    /// OpenPGP encryptor to `form`'s recipients into the file, buffered.
    /// `wrap` puts a writer of the caller's between the encryptor and the
    /// file, `unwrap` takes it off again. With `reply`, the envelope
    /// carries its mailbox (`Reply-Mailbox`) and certificate
    /// (`reply-key.asc`), inside the ciphertext only. CPU work: call it on
    /// a sealing or blocking thread. On any error the pending file is
    /// deleted.
    pub(super) fn seal_record<W: Write + Send + Sync>(
        &self,
        form: &FormConfig,
        now: SystemTime,
        reply: Option<&Derived>,
        wrap: impl FnOnce(Pending) -> W,
        unwrap: impl FnOnce(W) -> Pending,
        envelope: impl FnOnce(&mut dyn Write, &Head<'_>) -> io::Result<()>,
    ) -> Result<SealedRecord, IntakeError> {
        let recipients = self
            .keyring
            .for_form(&form.id)
            .ok_or(IntakeError::NoRoute)?;
        let pending = self.store.create()?;
        let receipt = pending.receipt().to_string();
        let reply_key = reply.map(|d| {
            let fingerprint = d.cert().fingerprint().to_hex();
            (d.mailbox.to_string(), fingerprint, d.cert_armored())
        });
        let head = Head {
            form: &form.id,
            title: &form.title,
            receipt: &receipt,
            received_at: DateTime::<Utc>::from(now),
            reply: reply_key
                .as_ref()
                .map(|(mailbox, fingerprint, cert)| ReplyKey {
                    mailbox,
                    fingerprint,
                    cert_armored: cert,
                }),
        };
        let mut out = BufWriter::with_capacity(SPOOL_BUFFER, wrap(pending));
        seal(&mut out, &recipients, |w| envelope(w, &head))?;
        out.flush().map_err(SealError::Io)?;
        let wrapped = out
            .into_inner()
            .map_err(|e| SealError::Io(e.into_error()))?;
        Ok(SealedRecord {
            pending: unwrap(wrapped),
            indexing: self.indexing(form, &recipients),
        })
    }

    /// What the index keeps of a record of `form` sealed to `recipients`:
    /// the recipients as the ciphertext names them, and the form only when a
    /// staff token is scoped to forms or the digest counts per form
    /// (`Config::indexes_form`; the ciphertext does not say which form a
    /// record came from, so a store thief learns it only then).
    fn indexing(&self, form: &FormConfig, recipients: &Recipients) -> Indexing {
        Indexing {
            form: self.config.indexes_form().then(|| form.id.clone()),
            recipients: recipients.index_listing(),
        }
    }

    /// Makes `sealed` durable and indexed through the store's batching
    /// committer: fsyncs its file here (blocking: call it on a blocking
    /// thread, never a sealing one) and queues it. `answer` gets the receipt
    /// or the error: from here for an error before the record is queued,
    /// from the committer otherwise. It is dropped unsent if the committer
    /// panics on the record's batch (see [`crate::store::CommitAnswer`]), so
    /// its receiver must treat a closed channel as a failure
    /// ([`IntakeError::Unanswered`]).
    pub(super) fn commit_then(&self, sealed: SealedRecord, now: SystemTime, answer: Answer) {
        let done: CommitAnswer = Box::new(move |outcome| {
            let _ = answer.send(outcome.map(|(receipt, _)| receipt).map_err(Into::into));
        });
        self.store
            .enqueue_then(sealed.pending, sealed.indexing, now, done);
    }
}
