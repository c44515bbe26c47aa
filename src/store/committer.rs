//! The batching committer (group commit): the thread that takes every
//! fsynced record waiting, renames them into the spool, fsyncs the directory
//! once, indexes them and flushes the index once, then answers each record.
//! It owns the commit's order of steps (the durability contract in
//! `store.rs`); it must never answer a record before those steps are done,
//! nor answer a record twice.

use std::fs::{self, FileTimes};
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::SystemTime;

use tokio::sync::oneshot;

use super::gather::{Anticipations, GATHER, gather};
use super::index::{Index, put, stamp_changed};
use super::settler::Nudger;
use super::{
    Anticipated, IndexEntry, Indexing, PendingRecord, RecordState, Store, StoreError, day_string,
    io_err, start_of_day,
};
use crate::durable;
use crate::receipt::Receipt;

/// The committer thread's end of the store.
pub(super) struct Committer {
    queue: mpsc::Sender<CommitJob>,
    thread: JoinHandle<()>,
}

/// A written record waiting for the committer.
struct CommitJob {
    pending: PendingRecord,
    entry: IndexEntry,
    done: CommitAnswer,
}

/// Receives the outcome of a record's commit ([`Store::enqueue_then`]). It is
/// called at most once: on the committer thread, or on the caller's for an
/// error before the record was queued. It is dropped without being called
/// when the committer panics on the record's batch or stops with the record
/// queued, so a caller must notice that drop (a closed channel does). It must
/// be quick, must not panic (the rest of its batch would go unanswered) and
/// must not call into the [`Store`]: it runs on the committer.
pub type CommitAnswer = Box<dyn FnOnce(Result<(Receipt, IndexEntry), StoreError>) + Send>;

impl Store {
    /// Sets a finished record's mtime to the start of its day, fsyncs and
    /// closes it (blocking: call it on a blocking thread), and queues it for
    /// the committer; the outcome, including an error before the record was
    /// queued, is waited for with [`Committing::wait`].
    pub(super) fn enqueue(
        &self,
        pending: PendingRecord,
        indexing: impl Into<Indexing>,
        now: SystemTime,
    ) -> Committing {
        let (done, finished) = oneshot::channel();
        let done: CommitAnswer = Box::new(move |outcome| {
            let _ = done.send(outcome);
        });
        self.enqueue_then(pending, indexing, now, done);
        Committing {
            finished,
            spool: self.spool.clone(),
        }
    }

    /// [`Store::commit`] without the wait, for a caller with its own way to
    /// be told: sets the record's day as its mtime, fsyncs and closes it
    /// (blocking: call it on a blocking thread) and queues it for the
    /// committer. `done` gets the outcome ([`CommitAnswer`]): on this thread
    /// if the record fails before it is queued (its file already deleted), on
    /// the committer thread otherwise. An async caller is answered by the
    /// committer directly, with no thread to wake in between.
    pub fn enqueue_then(
        &self,
        mut pending: PendingRecord,
        indexing: impl Into<Indexing>,
        now: SystemTime,
        done: CommitAnswer,
    ) {
        let (entry, anticipated) = match self.sync_pending(&mut pending, indexing.into(), now) {
            Ok(synced) => synced,
            Err(e) => {
                drop(pending); // deletes its file
                done(Err(e));
                return;
            }
        };
        let stopped = || StoreError::Io {
            action: "committing to",
            path: self.spool.clone(),
            source: io::Error::other("the committer has stopped"),
        };
        let Some(committer) = self.committer.as_ref() else {
            drop(pending);
            done(Err(stopped()));
            return;
        };
        let job = CommitJob {
            pending,
            entry,
            done,
        };
        if let Err(mpsc::SendError(CommitJob { pending, done, .. })) = committer.queue.send(job) {
            drop(pending);
            done(Err(stopped()));
            return;
        }
        // Anticipated until it is queued: if it was the last one, this drop wakes
        // a committer that was waiting for it, and the job is there to take.
        drop(anticipated);
    }

    /// The part of a commit done by the thread that wrote the record: the
    /// day as mtime, the fsync, the close. The record is [`Anticipated`] from
    /// just before its fsync; the guard is returned.
    fn sync_pending(
        &self,
        pending: &mut PendingRecord,
        indexing: Indexing,
        now: SystemTime,
    ) -> Result<(IndexEntry, Anticipated), StoreError> {
        let file = pending.file.take().ok_or_else(|| StoreError::Io {
            action: "committing",
            path: pending.path.clone(),
            source: io::Error::other("record already committed"),
        })?;
        let size = file
            .metadata()
            .map_err(io_err("reading", &pending.path))?
            .len();
        let day = start_of_day(now);
        file.set_times(FileTimes::new().set_accessed(day).set_modified(day))
            .map_err(io_err("setting the day on", &pending.path))?;
        let anticipated = self.anticipate();
        file.sync_all().map_err(io_err("syncing", &pending.path))?;
        drop(file);
        let entry = IndexEntry {
            day: day_string(now),
            size,
            state: RecordState::New,
            recipients: indexing.recipients,
            form: indexing.form,
            acked_day: None,
        };
        Ok((entry, anticipated))
    }

    /// Starts the committer thread (after recovery, which it must not race).
    pub(super) fn start_committer(&self, settler: Nudger) -> Result<Committer, StoreError> {
        let (queue, jobs) = mpsc::channel();
        let worker = BatchCommitter {
            spool: self.spool.clone(),
            tmp: self.tmp.clone(),
            index: Arc::clone(&self.index),
            batches: Arc::clone(&self.batches),
            anticipated: Arc::clone(&self.anticipated),
            settler,
        };
        let thread = std::thread::Builder::new()
            .name("committer".into())
            .spawn(move || worker.run(&jobs))
            .map_err(io_err("starting the committer for", &self.spool))?;
        Ok(Committer { queue, thread })
    }
}

impl Drop for Store {
    /// Lets the committer finish what was queued, then stops it and the
    /// settler, so that the index is closed when the store is.
    fn drop(&mut self) {
        if let Some(Committer { queue, thread }) = self.committer.take() {
            drop(queue);
            let _ = thread.join();
        }
        // After the committer, whose nudger goes with it.
        if let Some(settler) = self.settler.take() {
            settler.stop();
        }
        // Closed here, its workers stopped, then the day set on what they
        // wrote last: no settler comes after.
        let closed = self
            .index
            .db
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if closed.is_some() {
            drop(closed);
            let day = start_of_day(SystemTime::now());
            if let Err(e) = super::times::stamp_tree(&self.index.dir, day) {
                tracing::warn!(error = %e, "setting the day on the index at close failed");
            }
        }
    }
}

/// The outcome of a record's commit, to come. Dropping it does not cancel the
/// commit.
#[must_use = "a record is durable only once its commit has finished"]
pub(super) struct Committing {
    finished: oneshot::Receiver<Result<(Receipt, IndexEntry), StoreError>>,
    spool: PathBuf,
}

impl Committing {
    /// Waits on this thread for the commit. Panics if called from async
    /// code: use [`Store::enqueue_then`] there.
    pub(super) fn wait(self) -> Result<(Receipt, IndexEntry), StoreError> {
        let spool = self.spool;
        self.finished
            .blocking_recv()
            .unwrap_or_else(|_| Err(committer_died(&spool)))
    }
}

fn committer_died(spool: &Path) -> StoreError {
    StoreError::Io {
        action: "committing to",
        path: spool.to_owned(),
        source: io::Error::other("the committer stopped before this record was committed"),
    }
}

/// The committer thread: commits whatever is queued, a batch at a time.
struct BatchCommitter {
    spool: PathBuf,
    tmp: PathBuf,
    index: Arc<Index>,
    batches: Arc<AtomicU64>,
    anticipated: Arc<Anticipations>,
    /// Told of every batch, for what fjall's workers write after it.
    settler: Nudger,
}

impl BatchCommitter {
    fn run(self, jobs: &mpsc::Receiver<CommitJob>) {
        let _ = self.anticipated.committer.set(std::thread::current());
        while let Ok(first) = jobs.recv() {
            let batch = gather(first, jobs, &self.anticipated, GATHER);
            // A panic must not stop all storing: the batch's jobs are dropped
            // (their `done` is dropped uncalled, so a waiter on a channel sees
            // it closed; their temp files are removed or, once renamed,
            // indexed at the next start) and the next batch is
            // committed as usual. Nothing about the batch is logged: a
            // panic message might name a receipt.
            if catch_unwind(AssertUnwindSafe(|| self.commit(batch))).is_err() {
                tracing::error!(
                    "the committer failed on a batch of records; they were not acknowledged"
                );
            }
            self.batches.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Commits a batch of fsynced records in the contract's order; every
    /// job gets its answer. A failure after a rename leaves the file in the
    /// spool unacknowledged (it is indexed at the next start); one before
    /// leaves nothing.
    fn commit(&self, batch: Vec<CommitJob>) {
        // 1. The names.
        let mut renamed = Vec::with_capacity(batch.len());
        for mut job in batch {
            let receipt = job.pending.receipt;
            let final_path = self.spool.join(format!("{receipt}.pgp"));
            match fs::rename(&job.pending.path, &final_path) {
                Ok(()) => {
                    job.pending.path = PathBuf::new(); // nothing left to clean up
                    renamed.push(job);
                }
                Err(e) => {
                    let CommitJob { pending, done, .. } = job;
                    drop(pending); // deletes its file before the answer
                    done(Err(io_err("moving into the spool", &final_path)(e)));
                }
            }
        }
        if renamed.is_empty() {
            return;
        }
        // 2. The directory that holds them.
        if let Err(e) = durable::sync_path(&self.spool) {
            return fail_all(renamed, "syncing directory", &self.spool, &e);
        }
        // 3. The index, under its read lock (a rebuild waits for the step).
        let guard = self.index.db.read().unwrap_or_else(|p| p.into_inner());
        let Some(db) = guard.as_ref() else {
            let closed = io::Error::other(StoreError::IndexClosed.to_string());
            return fail_all(renamed, "indexing in", &self.index.dir, &closed);
        };
        let mut indexed = Vec::with_capacity(renamed.len());
        for job in renamed {
            let receipt = job.pending.receipt;
            match put(db, &receipt, &job.entry) {
                Ok(()) => indexed.push(job),
                Err(e) => (job.done)(Err(e)),
            }
        }
        if let Err(e) = db.persist() {
            let e = match e {
                StoreError::Index(fjall::Error::Io(io)) => io,
                other => io::Error::other(format!("index persist failed: {other}")),
            };
            return fail_all(indexed, "flushing the index of", &self.index.dir, &e);
        }
        // Done with the index: a rebuild waiting for it may go on.
        drop(guard);
        // 4. The day, back on what this batch moved. The records are durable
        // already: a failure here is logged, not answered.
        if let Err(e) = stamp_changed(&self.spool, &self.tmp, &self.index, SystemTime::now()) {
            tracing::warn!(error = %e, "setting the day on the spool and index failed");
        }
        self.settler.nudge();
        for job in indexed {
            let receipt = job.pending.receipt;
            (job.done)(Ok((receipt, job.entry)));
        }
    }
}

/// Answers every job of a batch whose files were renamed into the spool
/// with `e`. Never as a full disk, even when it is one: that answer tells
/// the client nothing was stored, and these records may well be (a file in
/// the spool is indexed at the next start), so they get the answer that the
/// server could not confirm it.
fn fail_all(jobs: Vec<CommitJob>, action: &'static str, path: &Path, e: &io::Error) {
    for job in jobs {
        let copy = io::Error::other(e.to_string());
        (job.done)(Err(io_err(action, path)(copy)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    use crate::store::Recovery;
    use crate::store::tests::committed;
    #[test]
    fn concurrent_commits_share_syncs_and_are_all_in_the_spool_and_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("open");
        let receipts: Vec<Receipt> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        (0..25)
                            .map(|_| {
                                let mut p = store.create().expect("create");
                                p.write_all(b"ciphertext").expect("write");
                                store
                                    .commit(p, vec![], SystemTime::now())
                                    .expect("commit")
                                    .0
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("worker"))
                .collect()
        });
        assert_eq!(receipts.len(), 200);
        // Eight writers at once: the committer must have shared its syncs.
        let batches = store.batches.load(Ordering::Relaxed);
        assert!(
            batches < 200,
            "{batches} batches for 200 concurrent commits"
        );
        for r in &receipts {
            assert!(store.path_of(r).is_file());
            assert!(store.get(r).expect("get").is_some());
        }
        assert_eq!(store.list().expect("list").len(), 200);
        drop(store);
        let (_, recovery) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("reopen");
        assert_eq!(recovery, Recovery::default());
    }

    /// Two written records: the first cannot be renamed into the spool (a
    /// non-empty directory is in the way of its name), the second can.
    fn a_blocked_and_a_fine_record(store: &Store) -> (PendingRecord, PendingRecord) {
        let mut blocked = store.create().expect("create");
        blocked.write_all(b"ciphertext").expect("write");
        let in_the_way = store.path_of(&blocked.receipt());
        fs::create_dir(&in_the_way).expect("mkdir");
        fs::write(in_the_way.join("x"), b"").expect("non-empty");
        let mut fine = store.create().expect("create");
        fine.write_all(b"ciphertext").expect("write");
        (blocked, fine)
    }

    #[test]
    fn answers_come_from_the_committer_and_a_failure_after_its_file_is_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("open");
        let (tx, answers) = mpsc::channel();
        let answer = |tmp: PathBuf| -> CommitAnswer {
            let tx = tx.clone();
            Box::new(move |outcome| {
                let thread = std::thread::current().name().map(str::to_owned);
                // What the answer's receiver may rely on when it gets it.
                let tmp_left = tmp.exists();
                let _ = tx.send((thread, outcome.map(|(r, _)| r), tmp_left));
            })
        };
        let (blocked, fine) = a_blocked_and_a_fine_record(&store);
        let (fine_receipt, blocked_receipt) = (fine.receipt(), blocked.receipt());
        let tmp = |r: Receipt| dir.path().join("spool/tmp").join(r.to_string());
        store.enqueue_then(fine, vec![], SystemTime::now(), answer(tmp(fine_receipt)));
        store.enqueue_then(
            blocked,
            vec![],
            SystemTime::now(),
            answer(tmp(blocked_receipt)),
        );
        let mut got: Vec<_> = (0..2)
            .map(|_| {
                answers
                    .recv_timeout(Duration::from_secs(30))
                    .expect("answered")
            })
            .collect();
        got.sort_by_key(|(_, outcome, _)| outcome.is_err());
        let (thread, outcome, tmp_left) = &got[0];
        assert_eq!(thread.as_deref(), Some("committer"));
        assert_eq!(outcome.as_ref().expect("committed"), &fine_receipt);
        assert!(!tmp_left);
        assert!(store.get(&fine_receipt).expect("get").is_some());
        let (thread, outcome, tmp_left) = &got[1];
        assert_eq!(thread.as_deref(), Some("committer"));
        let err = outcome.as_ref().expect_err("the rename must fail");
        assert!(
            err.to_string().starts_with("moving into the spool"),
            "{err}"
        );
        assert!(!tmp_left, "answered before its temporary file was deleted");
    }

    #[test]
    fn an_error_before_queueing_is_answered_at_once_on_the_callers_thread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("open");
        let mut p = store.create().expect("create");
        let tmp = p.path.clone();
        p.file = None; // as if already committed: refused before its fsync
        let (tx, answers) = mpsc::channel();
        let here = std::thread::current().id();
        store.enqueue_then(
            p,
            vec![],
            SystemTime::now(),
            Box::new(move |outcome| {
                let _ = tx.send((std::thread::current().id(), outcome.is_err(), tmp.exists()));
            }),
        );
        // Answered before `enqueue_then` returned.
        let (thread, failed, tmp_left) = answers.try_recv().expect("answered at once");
        assert_eq!(thread, here);
        assert!(failed);
        assert!(!tmp_left, "answered before its temporary file was deleted");
        assert_eq!(store.anticipated(), 0);
    }

    #[test]
    fn an_answer_that_panics_costs_its_batch_its_answers_but_not_the_committer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("open");
        let mut p = store.create().expect("create");
        p.write_all(b"ciphertext").expect("write");
        store.enqueue_then(
            p,
            vec![],
            SystemTime::now(),
            Box::new(|_| panic!("a broken answer")),
        );
        // Whether or not it shared that batch, this one gets an answer.
        let mut q = store.create().expect("create");
        q.write_all(b"ciphertext").expect("write");
        let _ = store.enqueue(q, vec![], SystemTime::now()).wait();
        // And the committer still commits.
        committed(&store, SystemTime::now());
    }

    #[test]
    fn a_record_that_cannot_be_renamed_gets_an_error_and_leaves_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("open");
        let (blocked, fine) = a_blocked_and_a_fine_record(&store);
        let blocked = store.enqueue(blocked, vec![], SystemTime::now());
        let fine = store.enqueue(fine, vec![], SystemTime::now());
        let err = blocked.wait().expect_err("the rename must fail");
        assert!(
            err.to_string().starts_with("moving into the spool"),
            "{err}"
        );
        // Its neighbour in the batch is committed, and the committer lives on.
        let (receipt, _) = fine.wait().expect("the other record");
        assert!(store.get(&receipt).expect("get").is_some());
        assert_eq!(store.list().expect("list").len(), 1);
        assert_eq!(
            fs::read_dir(dir.path().join("spool/tmp"))
                .expect("tmp")
                .count(),
            0
        );
        committed(&store, SystemTime::now());
        assert_eq!(store.list().expect("list").len(), 2);
    }
}
