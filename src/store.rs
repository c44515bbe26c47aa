//! Durable storage of sealed records: spool files are the truth, sled is the
//! index.
//!
//! ```text
//! data_dir/
//!   spool/<receipt>.pgp   one binary OpenPGP message per record, atime and mtime 00:00 UTC of its day
//!   spool/tmp/            writes in flight; emptied at start
//!   index/                sled: receipt -> {day, size, state, form, recipients}
//!   index.new/, index.old/  only while the index is rebuilt (see below)
//! ```
//!
//! The durability contract lives here: a commit ([`Store::commit`] or
//! [`Store::enqueue_then`]) answers only after the file is fsynced, renamed
//! into place, the directory fsynced, and the index entry inserted and
//! flushed. A crash at any point loses nothing that was acknowledged:
//! leftovers in `spool/tmp/` are deleted by [`Store::open`], and a spool file
//! without an index entry is indexed again.
//!
//! Each file is fsynced by the thread that wrote it; the rest is done in
//! batches by one committer thread (group commit): it takes every fsynced
//! record waiting, renames them all, fsyncs the directory once, inserts their
//! index entries and flushes the index once. While more records are
//! [`Expected`] soon (in their fsync, or waiting for a sealing thread) it
//! waits for them (`GATHER`, 2 ms at most), so that under load a batch holds
//! several records rather than one or two; a lone record is committed at
//! once. Alone, a record pays the same syncs as before, in the same order.
//!
//! sled alone is not durable (its flush skips the disk cache and big values go
//! to never-synced blob files), so ciphertext never goes into it, and nothing
//! in it is finer than a day. Everything here is blocking I/O: call it from a
//! blocking thread.
//!
//! Metadata at rest says no more than the day either. Every access and
//! modification time under `data_dir` (files, directories, sled's files) is
//! set back to 00:00 UTC after every commit batch, acknowledgement, export
//! mark and purge, and at start (see `store/times.rs`). sled is log-structured: it
//! appends every insert and removal to `index/db`, so the file would keep
//! purged receipts and the order in which records arrived. The index is
//! therefore rebuilt into a fresh directory ([`Store::refresh`]) at start, at
//! every purge and (from `serve`) daily: its entries are copied in receipt
//! order, which is random, into `index.new/`, fsynced, and swapped in with two
//! renames (`index` to `index.old`, `index.new` to `index`); then
//! `index.old/` is deleted. [`Store::open`] finishes or undoes a swap a crash
//! interrupted: `index.new/` without `index/` is complete (it was fsynced
//! before `index/` was moved away), `index.new/` beside `index/` may not be.
//! A lock on `data_dir` itself keeps a second process from doing that while
//! the first one is swapping.

mod times;

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File, FileTimes};
use std::io::{self, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use serde::{Deserialize, Serialize};

use crate::durable;
use crate::receipt::Receipt;

/// Where a record is in the staff routine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordState {
    /// Stored, not yet fetched by staff.
    New,
    /// Copied into an export bundle.
    Exported,
    /// Acknowledged by staff; the spool file is deleted.
    Acked,
}

/// What the index knows about a record: nothing finer than a day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Day of arrival, `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Size of the spool file in bytes (padded, so a size bucket).
    pub size: u64,
    /// Where the record is in the staff routine.
    pub state: RecordState,
    /// Primary fingerprints of the certificates it is encrypted to (key IDs
    /// for keys not in the keyring; empty for hidden recipients).
    pub recipients: Vec<String>,
    /// The id of the form it was sent with, so a staff token scoped to some
    /// forms sees only theirs. `None` for a record indexed before sealform
    /// kept it, or indexed again from its spool file (the form is inside the
    /// ciphertext): only a token for every form sees such a record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<String>,
    /// Day the record was acknowledged, `YYYY-MM-DD` (UTC), for retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_day: Option<String>,
}

/// What the index keeps of a record besides its day, size and state: the
/// form it came from and the recipients it is sealed to.
#[derive(Debug, Clone, Default)]
pub struct Indexing {
    /// The form's id.
    pub form: Option<String>,
    /// As [`IndexEntry::recipients`].
    pub recipients: Vec<String>,
}

impl From<Vec<String>> for Indexing {
    /// Recipients only, the form unknown.
    fn from(recipients: Vec<String>) -> Indexing {
        Indexing {
            form: None,
            recipients,
        }
    }
}

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{action} {}: {source}", Redacted(path))]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The sled index failed.
    #[error("index: {0}")]
    Index(#[from] sled::Error),
    /// An index entry could not be decoded.
    #[error("index entry is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// Another process has the store open.
    #[error("could not acquire lock on {}: another sealform process has the store open", .0.display())]
    Locked(PathBuf),
    /// A rebuild of the index failed after the old one was closed, and it
    /// could not be opened again; the next start repairs it.
    #[error("the index is closed after a failed rebuild: restart sealform")]
    IndexClosed,
}

impl StoreError {
    /// Another process holds the index (sled admits one at a time). sled
    /// 0.34 says so only in its message (an `Other` error that quotes the
    /// lock's `WouldBlock`).
    pub fn is_locked(&self) -> bool {
        match self {
            StoreError::Locked(_) => true,
            StoreError::Index(sled::Error::Io(e)) => {
                e.to_string().starts_with("could not acquire lock")
            }
            _ => false,
        }
    }

    /// The disk (or quota) is full: the client should retry later.
    pub fn is_storage_full(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => is_storage_full(source),
            _ => false,
        }
    }
}

/// `ENOSPC` or `EDQUOT`.
pub fn is_storage_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

/// A path fit for a log line: a receipt in the file name becomes
/// `<receipt>`, since receipts must never be logged.
struct Redacted<'a>(&'a Path);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.0.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let stem = name.strip_suffix(".pgp").unwrap_or(name);
        match (Receipt::parse(stem), self.0.parent()) {
            (Some(_), Some(parent)) => {
                let ext = if name.ends_with(".pgp") { ".pgp" } else { "" };
                write!(f, "{}/<receipt>{ext}", parent.display())
            }
            _ => write!(f, "{}", self.0.display()),
        }
    }
}

/// What [`Store::open`] repaired.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Unfinished writes deleted from `spool/tmp/`.
    pub removed_partial: usize,
    /// Spool files that had no index entry and were indexed.
    pub reindexed: usize,
    /// Acknowledged records whose spool file was still there, now deleted.
    pub finished_acks: usize,
    /// Records indexed as unacknowledged whose spool file is gone (deleted
    /// outside sealform, or a spool and an index restored from different
    /// backups). Nothing can bring them back; they are counted so that the
    /// operator hears of it at start rather than from a staff download.
    pub missing_files: usize,
}

/// The spool and its index.
pub struct Store {
    data_dir: PathBuf,
    spool: PathBuf,
    tmp: PathBuf,
    index: Arc<Index>,
    /// `data_dir` itself, held open with an exclusive lock for as long as
    /// the store is: no other process may swap or repair the index meanwhile.
    _lock: File,
    /// Serializes read-modify-write of index entries (state changes, purge).
    changes: Mutex<()>,
    /// The committer thread and its queue; `None` only while dropping.
    committer: Option<Committer>,
    /// Batches committed so far (each one directory fsync and one index
    /// flush).
    batches: Arc<AtomicU64>,
    /// Records the committer waits a little for (see [`Expected`]).
    expected: Arc<Expectations>,
}

/// The sled index, which [`Store::refresh`] replaces whole. Every use of the
/// database holds the read lock for as long as it uses it, so that the
/// rebuild, holding the write lock, can close the old one.
struct Index {
    data_dir: PathBuf,
    /// `data_dir/index`.
    dir: PathBuf,
    cache_bytes: u64,
    /// `None` only if a rebuild failed after closing the old database and
    /// could not open one again.
    db: RwLock<Option<sled::Db>>,
}

impl Index {
    /// Runs `f` on the open database, holding the read lock.
    fn with<T>(&self, f: impl FnOnce(&sled::Db) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let db = self.db.read().unwrap_or_else(|p| p.into_inner());
        f(db.as_ref().ok_or(StoreError::IndexClosed)?)
    }

    /// Rebuilds the index into a fresh directory with the same entries and
    /// none of the history sled's log keeps, and swaps it in (see the
    /// module's documentation for the steps and what a crash leaves).
    fn rebuild(&self) -> Result<(), StoreError> {
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        let fresh = self.data_dir.join(FRESH_INDEX);
        let old = slot.as_ref().ok_or(StoreError::IndexClosed)?;
        let copied = (|| {
            remove_dir_if_present(&fresh)?;
            create_private_dir(&fresh)?;
            old.flush()?;
            let new = open_sled(&fresh, self.cache_bytes)?;
            // In key order, which is receipt order: random, so the new log
            // says nothing of the order in which records arrived.
            for kv in old.iter() {
                let (k, v) = kv?;
                new.insert(k, v)?;
            }
            new.flush()?;
            drop(new);
            sync_tree(&fresh)?;
            sync_dir(&self.data_dir)
        })();
        if let Err(e) = copied {
            // The old index is still open and whole; a partial copy only
            // takes space (on a full disk, the space it failed for).
            let _ = remove_dir_if_present(&fresh);
            return Err(e);
        }
        // Closed before its directory is moved: sled opens some files by
        // path.
        drop(slot.take());
        let swapped = self.swap_in();
        let settled = settle_index_dirs(&self.data_dir);
        *slot = Some(open_sled(&self.dir, self.cache_bytes)?);
        swapped.and(settled)
    }

    /// `index/` to `index.old/`, `index.new/` to `index/`, then `index.old/`
    /// deleted; each step made durable before the next.
    fn swap_in(&self) -> Result<(), StoreError> {
        let old = self.data_dir.join(OLD_INDEX);
        let fresh = self.data_dir.join(FRESH_INDEX);
        remove_dir_if_present(&old)?;
        fs::rename(&self.dir, &old).map_err(io_err("moving aside", &self.dir))?;
        fs::rename(&fresh, &self.dir).map_err(io_err("moving into place", &fresh))?;
        sync_dir(&self.data_dir)?;
        remove_dir_if_present(&old)?;
        sync_dir(&self.data_dir)
    }
}

/// Where a rebuilt index is written before it is swapped in.
const FRESH_INDEX: &str = "index.new";

/// Where the old index is while the rebuilt one is swapped in.
const OLD_INDEX: &str = "index.old";

/// Opens sled at `dir`. No periodic flush: every change here is flushed
/// (and followed by setting the day on the files) by the code that made it,
/// so that nothing writes the index behind those settings.
fn open_sled(dir: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    Ok(sled::Config::new()
        .path(dir)
        .cache_capacity(cache_bytes)
        .flush_every_ms(None)
        .open()?)
}

/// Finishes or undoes a swap of the index that a crash interrupted:
/// `index.new/` with no `index/` is complete and becomes `index/`; an
/// `index.new/` beside `index/` may be partial and is deleted, and so is any
/// `index.old/` once `index/` is there.
fn settle_index_dirs(data_dir: &Path) -> Result<(), StoreError> {
    let (index, fresh, old) = (
        data_dir.join("index"),
        data_dir.join(FRESH_INDEX),
        data_dir.join(OLD_INDEX),
    );
    let exists = |p: &Path| p.symlink_metadata().is_ok();
    if !exists(&index) {
        let complete = if exists(&fresh) && exists(&old) {
            Some(&fresh)
        } else if exists(&old) {
            Some(&old)
        } else {
            None
        };
        if let Some(from) = complete {
            fs::rename(from, &index).map_err(io_err("moving into place", from))?;
            sync_dir(data_dir)?;
        }
    }
    let mut removed = false;
    for leftover in [fresh, old] {
        if exists(&leftover) {
            remove_dir_if_present(&leftover)?;
            removed = true;
        }
    }
    if removed {
        sync_dir(data_dir)?;
    }
    Ok(())
}

fn remove_dir_if_present(dir: &Path) -> Result<(), StoreError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("removing", dir)(e)),
    }
}

/// fsyncs every file and directory under `root`, `root` last.
fn sync_tree(root: &Path) -> Result<(), StoreError> {
    for entry in walkdir::WalkDir::new(root).contents_first(true) {
        let entry = entry.map_err(|e| io_err("syncing", root)(times::without_path(e)))?;
        durable::sync_path(entry.path()).map_err(io_err("syncing", entry.path()))?;
    }
    Ok(())
}

/// Takes the store's lock: `data_dir` opened and locked exclusively.
fn lock_store(data_dir: &Path) -> Result<File, StoreError> {
    let dir = File::open(data_dir).map_err(io_err("opening", data_dir))?;
    match rustix::fs::flock(&dir, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(dir),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
            Err(StoreError::Locked(data_dir.to_owned()))
        }
        Err(e) => Err(io_err("locking", data_dir)(e.into())),
    }
}

/// The committer thread's end of the store.
struct Committer {
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

/// A batch is cut at this many records so that the first of them is not kept
/// waiting behind an unbounded rename loop.
const MAX_BATCH: usize = 512;

/// How long the committer may wait for [`Expected`] records (in their fsync,
/// or waiting for a sealing thread) before it commits the ones it has. Every
/// batch costs a directory fsync and an index flush; at a few thousand
/// records a second these made up an eighth of all the server's CPU time
/// when batches held one or two records. The wait only happens while records
/// are expected (a lone submission is committed at once), and this bounds it
/// on a slow disk or behind a long seal.
const GATHER: Duration = Duration::from_millis(2);

impl Store {
    /// Opens (creating if needed) the store under `data_dir`, empties
    /// `spool/tmp/` and indexes spool files the index lacks; `recipients_of`
    /// names the recipients of such a file from its PKESK packets.
    pub fn open(
        data_dir: &Path,
        cache_bytes: u64,
        recipients_of: impl Fn(&Path) -> Vec<String>,
    ) -> Result<(Store, Recovery), StoreError> {
        let spool = data_dir.join("spool");
        let tmp = spool.join("tmp");
        for dir in [data_dir, &spool, &tmp] {
            create_private_dir(dir)?;
        }
        let lock = lock_store(data_dir)?;
        settle_index_dirs(data_dir)?;
        let dir = data_dir.join("index");
        let db = open_sled(&dir, cache_bytes)?;
        let mut store = Store {
            data_dir: data_dir.to_owned(),
            spool,
            tmp,
            index: Arc::new(Index {
                data_dir: data_dir.to_owned(),
                dir,
                cache_bytes,
                db: RwLock::new(Some(db)),
            }),
            _lock: lock,
            changes: Mutex::new(()),
            committer: None,
            batches: Arc::default(),
            expected: Arc::default(),
        };
        let recovery = store.recover(recipients_of)?;
        if let Err(e) = store.refresh(SystemTime::now()) {
            // Only a failed swap leaves the index closed; a copy that could
            // not be written (a full disk) leaves the old one in use, and the
            // store must open then too: refusing to start would not make
            // space.
            if matches!(e, StoreError::IndexClosed) || store.index.with(|_| Ok(())).is_err() {
                return Err(e);
            }
            tracing::warn!(
                error = %e,
                "the index could not be rebuilt without its history; it is used as it is until \
                 the next rebuild"
            );
        }
        store.committer = Some(store.start_committer()?);
        Ok((store, recovery))
    }

    /// Rebuilds the index without its history (see the module's
    /// documentation) and sets the day of `now` on every file and directory
    /// under `data_dir`. Run at start, by every purge and daily by `serve`;
    /// it takes time in proportion to the number of records, and commits
    /// wait for the index meanwhile.
    pub fn refresh(&self, now: SystemTime) -> Result<(), StoreError> {
        self.index.rebuild()?;
        times::stamp_tree(&self.data_dir, start_of_day(now))
            .map_err(io_err("setting the day on", &self.data_dir))
    }

    /// Sets the day of `now` on what a change of the spool or the index
    /// moves (see [`stamp_changed`]).
    fn stamp_changed(&self, now: SystemTime) -> Result<(), StoreError> {
        stamp_changed(&self.spool, &self.tmp, &self.index, now)
    }

    fn recover(
        &self,
        recipients_of: impl Fn(&Path) -> Vec<String>,
    ) -> Result<Recovery, StoreError> {
        let mut recovery = Recovery::default();
        for entry in fs::read_dir(&self.tmp).map_err(io_err("listing", &self.tmp))? {
            let path = entry.map_err(io_err("listing", &self.tmp))?.path();
            fs::remove_file(&path).map_err(io_err("removing partial record", &path))?;
            recovery.removed_partial += 1;
        }
        if recovery.removed_partial > 0 {
            sync_dir(&self.tmp)?;
        }
        let files = self.spool_files()?;
        let present: HashSet<Receipt> = files.iter().map(|(r, _)| *r).collect();
        for (receipt, path) in files {
            match self.get(&receipt)? {
                None => {
                    let meta = fs::metadata(&path).map_err(io_err("reading", &path))?;
                    let modified = meta.modified().map_err(io_err("reading", &path))?;
                    let entry = IndexEntry {
                        day: day_string(modified),
                        size: meta.len(),
                        state: RecordState::New,
                        recipients: recipients_of(&path),
                        form: None,
                        acked_day: None,
                    };
                    self.put(&receipt, &entry)?;
                    recovery.reindexed += 1;
                }
                Some(e) if e.state == RecordState::Acked => {
                    fs::remove_file(&path)
                        .map_err(io_err("removing acknowledged record", &path))?;
                    recovery.finished_acks += 1;
                }
                Some(_) => {}
            }
        }
        if recovery.finished_acks > 0 {
            sync_dir(&self.spool)?;
        }
        recovery.missing_files = self
            .list()?
            .iter()
            .filter(|(r, e)| e.state != RecordState::Acked && !present.contains(r))
            .count();
        self.index.with(|db| Ok(db.flush()?))?;
        Ok(recovery)
    }

    /// Every `spool/<receipt>.pgp`, with its receipt.
    fn spool_files(&self) -> Result<Vec<(Receipt, PathBuf)>, StoreError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.spool).map_err(io_err("listing", &self.spool))? {
            let path = entry.map_err(io_err("listing", &self.spool))?.path();
            let receipt = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".pgp"))
                .and_then(Receipt::parse);
            if let Some(r) = receipt {
                out.push((r, path));
            }
        }
        Ok(out)
    }

    /// Starts a record: picks a receipt and creates its file in `spool/tmp/`.
    pub fn create(&self) -> Result<PendingRecord, StoreError> {
        let receipt = Receipt::random();
        let path = self.tmp.join(receipt.to_string());
        let file = durable::create_private_file(&path).map_err(io_err("creating", &path))?;
        Ok(PendingRecord {
            receipt,
            file: Some(file),
            path,
        })
    }

    /// Makes a finished record durable and indexed, in the order the
    /// durability contract requires. When this returns `Ok`, the record
    /// survives a crash. Blocking, and it panics if called from async code:
    /// there, call [`Store::enqueue_then`] on a blocking thread with a
    /// `done` that sends to the task.
    pub fn commit(
        &self,
        pending: PendingRecord,
        indexing: impl Into<Indexing>,
        now: SystemTime,
    ) -> Result<(Receipt, IndexEntry), StoreError> {
        self.enqueue(pending, indexing, now).wait()
    }

    /// Counts a record as [`Expected`] by the committer until the guard is
    /// dropped.
    pub fn expect(&self) -> Expected {
        Expectations::expect(&self.expected)
    }

    /// How many records are [`Expected`] now.
    pub fn expected(&self) -> usize {
        self.expected.count.load(Ordering::SeqCst)
    }

    /// Sets a finished record's mtime to the start of its day, fsyncs and
    /// closes it (blocking: call it on a blocking thread), and queues it for
    /// the committer; the outcome, including an error before the record was
    /// queued, is waited for with [`Committing::wait`].
    fn enqueue(
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
        let (entry, expected) = match self.sync_pending(&mut pending, indexing.into(), now) {
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
        // Expected until it is queued: if it was the last one, this drop wakes
        // a committer that was waiting for it, and the job is there to take.
        drop(expected);
    }

    /// The part of a commit done by the thread that wrote the record: the
    /// day as mtime, the fsync, the close. The record is [`Expected`] from
    /// just before its fsync; the guard is returned.
    fn sync_pending(
        &self,
        pending: &mut PendingRecord,
        indexing: Indexing,
        now: SystemTime,
    ) -> Result<(IndexEntry, Expected), StoreError> {
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
        let expected = self.expect();
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
        Ok((entry, expected))
    }

    /// Starts the committer thread (after recovery, which it must not race).
    fn start_committer(&self) -> Result<Committer, StoreError> {
        let (queue, jobs) = mpsc::channel();
        let worker = BatchCommitter {
            spool: self.spool.clone(),
            tmp: self.tmp.clone(),
            index: Arc::clone(&self.index),
            batches: Arc::clone(&self.batches),
            expected: Arc::clone(&self.expected),
        };
        let thread = std::thread::Builder::new()
            .name("committer".into())
            .spawn(move || worker.run(&jobs))
            .map_err(io_err("starting the committer for", &self.spool))?;
        Ok(Committer { queue, thread })
    }

    /// The spool path of a record (whether or not it exists).
    pub fn path_of(&self, receipt: &Receipt) -> PathBuf {
        self.spool.join(format!("{receipt}.pgp"))
    }

    /// The index entry of a record.
    pub fn get(&self, receipt: &Receipt) -> Result<Option<IndexEntry>, StoreError> {
        self.index.with(|db| match db.get(receipt.key())? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        })
    }

    /// Opens a record's spool file for reading without moving its access
    /// time (where the kernel allows: the process owns the file).
    pub fn open_record(&self, receipt: &Receipt) -> io::Result<File> {
        times::open_unread(&self.path_of(receipt))
    }

    /// Every indexed record, in receipt order (which is random).
    pub fn list(&self) -> Result<Vec<(Receipt, IndexEntry)>, StoreError> {
        self.index.with(|db| {
            let mut out = Vec::new();
            for kv in db.iter() {
                let (k, v) = kv?;
                let Some(receipt) = Receipt::from_key(&k) else {
                    continue;
                };
                out.push((receipt, serde_json::from_slice(&v)?));
            }
            Ok(out)
        })
    }

    fn put(&self, receipt: &Receipt, entry: &IndexEntry) -> Result<(), StoreError> {
        self.index.with(|db| put(db, receipt, entry))
    }

    /// Marks a record as copied into an export bundle (only a `new` record
    /// changes). `None` if the receipt is unknown.
    pub fn mark_exported(&self, receipt: &Receipt) -> Result<Option<IndexEntry>, StoreError> {
        let _guard = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut entry) = self.get(receipt)? else {
            return Ok(None);
        };
        if entry.state == RecordState::New {
            entry.state = RecordState::Exported;
            self.put(receipt, &entry)?;
            self.index.with(|db| Ok(db.flush()?))?;
            self.stamp_changed(SystemTime::now())?;
        }
        Ok(Some(entry))
    }

    /// Acknowledges a record: records the state and the day (nothing finer),
    /// makes the index durable, and only then deletes the spool file and
    /// syncs the spool directory. A crash in between is finished by
    /// [`Store::open`]. `None` if the receipt is unknown; acknowledging twice
    /// is harmless.
    pub fn ack(
        &self,
        receipt: &Receipt,
        now: SystemTime,
    ) -> Result<Option<IndexEntry>, StoreError> {
        let _guard = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut entry) = self.get(receipt)? else {
            return Ok(None);
        };
        if entry.state != RecordState::Acked {
            entry.state = RecordState::Acked;
            entry.acked_day = Some(day_string(now));
            self.put(receipt, &entry)?;
            self.sync_index()?;
        }
        self.remove_spool_file(receipt)?;
        self.stamp_changed(SystemTime::now())?;
        Ok(Some(entry))
    }

    /// Applies retention at `now`: deletes the index entries of records
    /// acknowledged `acked_days` or more calendar days ago and, only when
    /// `unacked_days` is set, the files and entries of never-acknowledged
    /// records that arrived more than that many calendar days ago (so each
    /// is kept at least `unacked_days` whole days: only its day is stored).
    /// Then the index is rebuilt ([`Store::refresh`]), so that nothing else
    /// keeps a deleted record, not even sled's log.
    pub fn purge(
        &self,
        acked_days: Option<u32>,
        unacked_days: Option<u32>,
        now: SystemTime,
    ) -> Result<Purged, StoreError> {
        let _guard = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let today = day_string(now);
        let mut purged = Purged::default();
        for (receipt, entry) in self.list()? {
            // Calendar days since `day`, the only time stored.
            let age = |day: &str| days_between(day, &today);
            let delete = match entry.state {
                // Only an index entry goes (the file went at the ack): due
                // once `acked_days` day boundaries have passed, so 0 means
                // at the next purge.
                RecordState::Acked => acked_days.is_some_and(|k| {
                    age(entry.acked_day.as_deref().unwrap_or(&entry.day))
                        .is_some_and(|a| a >= i64::from(k))
                }),
                // An unread record goes only after `unacked_days` whole days
                // however late on its day it arrived: one more boundary than
                // the days asked (a tip from 23:59 with `unacked_days = 1`
                // is kept until the second midnight, not the first).
                RecordState::New | RecordState::Exported => {
                    unacked_days.is_some_and(|k| age(&entry.day).is_some_and(|a| a > i64::from(k)))
                }
            };
            if !delete {
                continue;
            }
            // Index first: a crash before the unlink leaves a file that is
            // indexed again at start (and purged again), never an entry
            // pointing at nothing.
            self.index.with(|db| Ok(db.remove(receipt.key())?))?;
            self.sync_index()?;
            self.remove_spool_file(&receipt)?;
            match entry.state {
                RecordState::Acked => purged.acked += 1,
                _ => purged.unacked += 1,
            }
        }
        self.refresh(now)?;
        Ok(purged)
    }

    fn remove_spool_file(&self, receipt: &Receipt) -> Result<(), StoreError> {
        let path = self.path_of(receipt);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.spool),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("removing record", &path)(e)),
        }
    }

    /// Flushes sled, then fsyncs its data file: sled's own flush does not
    /// reach the disk cache, and an unlink must never overtake the index
    /// update that explains it.
    fn sync_index(&self) -> Result<(), StoreError> {
        self.index.with(|db| {
            db.flush()?;
            let db_file = self.index.dir.join("db");
            match File::open(&db_file) {
                Ok(f) => f.sync_all().map_err(io_err("syncing", &db_file))?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("opening", &db_file)(e)),
            }
            sync_dir(&self.index.dir)
        })
    }

    /// Flushes the index (at shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.index.with(|db| Ok(db.flush()?))?;
        self.stamp_changed(SystemTime::now())
    }
}

impl Drop for Store {
    /// Lets the committer finish what was queued, then stops it, so that the
    /// index is closed when the store is.
    fn drop(&mut self) {
        if let Some(Committer { queue, thread }) = self.committer.take() {
            drop(queue);
            let _ = thread.join();
        }
    }
}

/// The outcome of a record's commit, to come. Dropping it does not cancel the
/// commit.
#[must_use = "a record is durable only once its commit has finished"]
pub struct Committing {
    finished: oneshot::Receiver<Result<(Receipt, IndexEntry), StoreError>>,
    spool: PathBuf,
}

impl Committing {
    /// Waits on this thread for the commit. Panics if called from async
    /// code: use [`Store::enqueue_then`] there.
    pub fn wait(self) -> Result<(Receipt, IndexEntry), StoreError> {
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
    expected: Arc<Expectations>,
}

impl BatchCommitter {
    fn run(self, jobs: &mpsc::Receiver<CommitJob>) {
        let _ = self.expected.committer.set(std::thread::current());
        while let Ok(first) = jobs.recv() {
            let batch = gather(first, jobs, &self.expected, GATHER);
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
        if let Err(e) = db.flush() {
            let e = match e {
                sled::Error::Io(io) => io,
                other => io::Error::other(format!("index flush failed: {other}")),
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
        for job in indexed {
            let receipt = job.pending.receipt;
            (job.done)(Ok((receipt, job.entry)));
        }
    }
}

/// The batch that starts with `first`: every job already queued, and those
/// that arrive while more are [`Expected`], up to `wait` after `first` was
/// taken or [`MAX_BATCH`] jobs. While it waits the committer sleeps: jobs
/// arriving do not wake it one by one; the last expected record does (or
/// the deadline), and it then takes all that came.
fn gather<T>(
    first: T,
    jobs: &mpsc::Receiver<T>,
    expected: &Expectations,
    wait: Duration,
) -> Vec<T> {
    let deadline = Instant::now() + wait;
    let mut batch = vec![first];
    // Set before the count is read, and the drop reads it after taking the
    // count down (all SeqCst): either this sees the count at zero, or that
    // drop sees this flag and wakes the thread. Outside `gather` no drop
    // wakes the committer, so a lone submission costs no extra wake-up.
    expected.gathering.store(true, Ordering::SeqCst);
    loop {
        // Read before draining: a record queued and then no longer expected
        // in between is in the queue when it is drained.
        let more = expected.count.load(Ordering::SeqCst) > 0;
        let mut closed = false;
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        let now = Instant::now();
        if batch.len() >= MAX_BATCH || !more || closed || now >= deadline {
            expected.gathering.store(false, Ordering::SeqCst);
            return batch;
        }
        // Woken early by the drop that takes the count to zero; a wake-up
        // for another reason only makes this look again.
        std::thread::park_timeout(deadline - now);
    }
}

/// Sets the day of `now` on what a commit, acknowledgement or export mark
/// moves: `spool/tmp/`, `spool/`, `index/` and `index/db`, four system calls
/// (a record's own file got its day when it was written). The rest under
/// `data_dir` changes only when the index is opened or rebuilt, which sets
/// the day on all of it ([`Store::refresh`]): sled writes `conf` and `snap.*`
/// only when it opens an index, and blob files only for values far larger
/// than an index entry.
fn stamp_changed(
    spool: &Path,
    tmp: &Path,
    index: &Index,
    now: SystemTime,
) -> Result<(), StoreError> {
    let day = start_of_day(now);
    let db = index.dir.join("db");
    for path in [tmp, spool, &index.dir, &db] {
        times::stamp(path, day).map_err(io_err("setting the day on", path))?;
    }
    Ok(())
}

/// Inserts (or replaces) a record's index entry, not yet flushed.
fn put(db: &sled::Db, receipt: &Receipt, entry: &IndexEntry) -> Result<(), StoreError> {
    db.insert(receipt.key(), serde_json::to_vec(entry)?)?;
    Ok(())
}

/// Answers every job of a batch with (a copy of) one error; the error kind is
/// kept so a full disk is still told apart.
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

/// What [`Store::purge`] deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    /// Acknowledged records whose index entry was deleted.
    pub acked: usize,
    /// Never-acknowledged records deleted (file and entry).
    pub unacked: usize,
}

/// Whole days from `from` to `to` (both `YYYY-MM-DD`); `None` if either
/// does not parse.
fn days_between(from: &str, to: &str) -> Option<i64> {
    let parse = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
    Some((parse(to)? - parse(from)?).num_days())
}

/// A record being written in `spool/tmp/`. Dropping it without
/// [`Store::commit`] deletes the file: a failed submission leaves nothing.
pub struct PendingRecord {
    receipt: Receipt,
    file: Option<File>,
    path: PathBuf,
}

/// A record the committer will soon have, counted while this lives: when it
/// forms a batch and the queue is empty, the committer waits for such
/// records (`GATHER`, 2 ms at most) instead of committing a batch of one.
///
/// Two kinds are expected: a record in its fsync ([`Store::enqueue_then`]
/// holds one), and a submission waiting for a sealing thread (the HTTP layer
/// holds one from the moment it asks for a sealing thread until the job
/// starts).
/// The second kind means that every sealing thread is busy: holding a batch
/// open then costs latency, not throughput, and it takes the index flushes
/// (each one wakes all of sled's I/O threads) from about two records each to
/// six or more. A record being *sealed* is not expected: at moderate load
/// one nearly always is, so every batch would wait the full 2 ms and the
/// clients, waiting for their answers, would send the next submissions too
/// late to keep the sealing threads busy (measured: −30 % at 8 connections).
#[must_use = "a record is expected only while its guard lives"]
pub struct Expected(Arc<Expectations>);

/// The count of [`Expected`] records and whom to wake when it drops to zero.
#[derive(Default)]
struct Expectations {
    count: AtomicUsize,
    /// The committer is in [`gather`], waiting for the count to reach zero.
    gathering: AtomicBool,
    /// The committer thread (set when it starts).
    committer: OnceLock<std::thread::Thread>,
}

impl Expectations {
    fn expect(this: &Arc<Expectations>) -> Expected {
        this.count.fetch_add(1, Ordering::SeqCst);
        Expected(Arc::clone(this))
    }
}

impl Drop for Expected {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1
            && self.0.gathering.load(Ordering::SeqCst)
            && let Some(committer) = self.0.committer.get()
        {
            committer.unpark();
        }
    }
}

impl PendingRecord {
    /// The receipt this record will have.
    pub fn receipt(&self) -> Receipt {
        self.receipt
    }

    /// Writes what was written so far to disk (`fdatasync`). For large
    /// records, doing this as they grow keeps dirty pages few, so the
    /// fsyncs of other records (and the final commit) stay quick.
    pub fn sync_data(&self) -> io::Result<()> {
        match self.file.as_ref() {
            Some(f) => f.sync_data(),
            None => Ok(()),
        }
    }
}

impl Write for PendingRecord {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.file.as_mut() {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("record already committed")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for PendingRecord {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            self.file = None;
            // Best effort: whatever is left is removed at the next start.
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    durable::create_private_dir_all(dir).map_err(io_err("creating directory", dir))
}

/// fsync a directory so a rename or unlink in it is durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    durable::sync_path(dir).map_err(io_err("syncing directory", dir))
}

/// 00:00 UTC of the day `t` falls in.
pub fn start_of_day(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(secs - secs % 86_400)
}

/// `YYYY-MM-DD` (UTC) of `t`.
pub fn day_string(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%d")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_committed_record_is_in_the_spool_and_index_with_only_its_day() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("open");
        let mut p = store.create().expect("create");
        p.write_all(b"ciphertext").expect("write");
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_123);
        let (r, entry) = store.commit(p, vec!["FPR".into()], now).expect("commit");
        let path = store.path_of(&r);
        assert_eq!(fs::read(&path).expect("read"), b"ciphertext");
        assert_eq!(
            fs::metadata(&path)
                .expect("meta")
                .modified()
                .expect("mtime"),
            UNIX_EPOCH + Duration::from_secs(1_799_971_200)
        );
        assert_eq!(entry.day, "2027-01-15");
        assert_eq!(store.get(&r).expect("get"), Some(entry));
        assert_eq!(
            fs::read_dir(dir.path().join("spool/tmp"))
                .expect("tmp")
                .count(),
            0
        );
    }

    #[test]
    fn a_record_is_no_longer_expected_once_queued() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("open");
        let p = store.create().expect("create");
        assert_eq!(store.expected(), 0);
        let committing = store.enqueue(p, vec![], SystemTime::now());
        assert_eq!(store.expected(), 0);
        committing.wait().expect("commit");

        let (first, second) = (store.expect(), store.expect());
        assert_eq!(store.expected(), 2);
        drop(first);
        assert_eq!(store.expected(), 1);
        drop(second);
        assert_eq!(store.expected(), 0);
    }

    #[test]
    fn gathering_takes_what_is_queued_and_waits_only_while_records_are_expected() {
        let long = Duration::from_secs(30);
        let (tx, rx) = mpsc::channel();
        let expectations = Arc::new(Expectations::default());
        expectations
            .committer
            .set(std::thread::current())
            .expect("set once");

        // Nothing expected: what is queued, at once.
        tx.send(2).expect("received");
        tx.send(3).expect("received");
        let started = Instant::now();
        assert_eq!(gather(1, &rx, &expectations, long), vec![1, 2, 3]);
        assert!(started.elapsed() < long / 2, "waited with nothing coming");

        // Two expected (in their fsync, or waiting for a sealing thread):
        // waits for both, queued then no longer counted as
        // `Store::enqueue_then` does; the last one's drop wakes the gathering thread.
        let (first, second) = (
            Expectations::expect(&expectations),
            Expectations::expect(&expectations),
        );
        let late = {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for (job, guard) in [(5, first), (6, second)] {
                    std::thread::sleep(Duration::from_millis(100));
                    tx.send(job).expect("received");
                    drop(guard);
                }
            })
        };
        let started = Instant::now();
        assert_eq!(gather(4, &rx, &expectations, long), vec![4, 5, 6]);
        assert!(started.elapsed() < long / 2, "not woken by the last one");
        late.join().expect("joined");

        // It never comes: the wait is bounded.
        let never = Expectations::expect(&expectations);
        let started = Instant::now();
        assert_eq!(
            gather(7, &rx, &expectations, Duration::from_millis(100)),
            vec![7]
        );
        assert!(started.elapsed() >= Duration::from_millis(100));
        drop(never);

        // A batch is cut at MAX_BATCH.
        for i in 0..MAX_BATCH + 10 {
            tx.send(i).expect("received");
        }
        assert_eq!(gather(0, &rx, &expectations, long).len(), MAX_BATCH);
        assert_eq!(gather(0, &rx, &expectations, long).len(), 12);
    }

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
        assert_eq!(store.expected(), 0);
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

    #[test]
    fn an_abandoned_record_leaves_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("open");
        let mut p = store.create().expect("create");
        p.write_all(b"half").expect("write");
        drop(p);
        assert_eq!(
            fs::read_dir(dir.path().join("spool/tmp"))
                .expect("tmp")
                .count(),
            0
        );
        assert!(store.list().expect("list").is_empty());
    }

    #[test]
    fn opening_removes_partials_and_reindexes_unindexed_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = Receipt::random();
        {
            let (store, _) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("open");
            fs::write(dir.path().join("spool/tmp/leftover"), b"partial").expect("write");
            fs::write(store.path_of(&r), b"orphan").expect("write");
        }
        let (store, recovery) =
            Store::open(dir.path(), 1 << 20, |_| vec!["K".into()]).expect("reopen");
        assert_eq!(recovery.removed_partial, 1);
        assert_eq!(recovery.reindexed, 1);
        assert_eq!(recovery.missing_files, 0);
        let entry = store.get(&r).expect("get").expect("indexed");
        assert_eq!((entry.size, entry.state), (6, RecordState::New));
        assert_eq!(entry.recipients, vec!["K".to_string()]);
    }

    #[test]
    fn opening_counts_unacknowledged_records_whose_file_is_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = SystemTime::now();
        let (kept, lost, acked) = {
            let (store, _) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("open");
            let ids = (
                committed(&store, now),
                committed(&store, now),
                committed(&store, now),
            );
            store.ack(&ids.2, now).expect("ack");
            fs::remove_file(store.path_of(&ids.1)).expect("lose");
            ids
        };
        let (store, recovery) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("reopen");
        // The acknowledged record's file is gone by design; only the lost
        // one counts, and nothing is removed from the index.
        assert_eq!(recovery.missing_files, 1);
        assert_eq!(recovery.reindexed, 0);
        for r in [kept, lost, acked] {
            assert!(store.get(&r).expect("get").is_some());
        }
    }

    /// A copy of the directory tree at `from` at `to`.
    fn copy_tree(from: &Path, to: &Path) {
        for e in walkdir::WalkDir::new(from) {
            let e = e.expect("walk");
            let dest = to.join(e.path().strip_prefix(from).expect("under"));
            if e.file_type().is_dir() {
                fs::create_dir_all(&dest).expect("mkdir");
            } else {
                fs::copy(e.path(), &dest).expect("copy");
            }
        }
    }

    #[test]
    fn a_rebuild_of_the_index_cut_short_at_any_step_leaves_every_entry_at_the_next_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = SystemTime::now();
        let (kept, acked) = {
            let (store, _) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("open");
            let ids = (committed(&store, now), committed(&store, now));
            store.ack(&ids.1, now).expect("ack");
            ids
        };
        let saved = tempfile::tempdir().expect("tempdir");
        copy_tree(&dir.path().join("index"), &saved.path().join("index"));
        let at = |name: &str| dir.path().join(name);
        let partial = |name: &str| {
            fs::create_dir_all(at(name)).expect("mkdir");
            fs::write(at(name).join("db"), b"half a segment").expect("write");
        };
        let complete = |name: &str| copy_tree(&saved.path().join("index"), &at(name));
        let steps: [(&str, &dyn Fn()); 4] = [
            // Killed while writing index.new/.
            ("index.new partly written", &|| partial(FRESH_INDEX)),
            // Between the two renames: index.new/ is complete.
            ("index moved aside", &|| {
                fs::rename(at("index"), at(OLD_INDEX)).expect("aside");
                complete(FRESH_INDEX);
            }),
            // After the second rename, before index.old/ was deleted.
            ("index.old left", &|| complete(OLD_INDEX)),
            // index.old/ alone (index.new/ lost): the old index comes back.
            ("only index.old", &|| {
                fs::rename(at("index"), at(OLD_INDEX)).expect("aside");
            }),
        ];
        for (step, cut) in steps {
            cut();
            let (store, recovery) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("reopen");
            assert_eq!(recovery, Recovery::default(), "{step}");
            let state = |r| store.get(r).expect("get").map(|e| e.state);
            assert_eq!(state(&kept), Some(RecordState::New), "{step}");
            assert_eq!(state(&acked), Some(RecordState::Acked), "{step}");
            for leftover in [FRESH_INDEX, OLD_INDEX] {
                assert!(!at(leftover).exists(), "{step}: {leftover} left");
            }
        }
    }

    #[test]
    fn a_refreshed_index_holds_its_entries_in_receipt_order_not_in_order_of_arrival() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("open");
        let now = SystemTime::now();
        let arrived: Vec<Receipt> = (0..20).map(|_| committed(&store, now)).collect();
        store.refresh(now).expect("refresh");
        let db = fs::read(dir.path().join("index/db")).expect("read");
        let first_at = |r: &Receipt| {
            db.windows(16)
                .position(|w| w == r.key())
                .expect("key in the index file")
        };
        let mut by_place = arrived.clone();
        by_place.sort_by_key(first_at);
        let mut sorted = arrived.clone();
        sorted.sort();
        assert_eq!(
            by_place, sorted,
            "the file keeps an order other than the receipts'"
        );
        assert_ne!(arrived, sorted, "the receipts arrived sorted (1 in 20!)");
    }

    #[test]
    fn a_second_store_on_the_same_data_dir_is_refused_before_it_touches_a_rebuild() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_store, _) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("open");
        // As if the first store were writing its rebuilt index right now.
        let fresh = dir.path().join(FRESH_INDEX);
        fs::create_dir(&fresh).expect("mkdir");
        let err = Store::open(dir.path(), 1 << 20, |_| vec![])
            .err()
            .expect("refused");
        assert!(err.is_locked(), "{err}");
        assert!(
            fresh.exists(),
            "the second store repaired the first one's rebuild"
        );
    }

    fn committed(store: &Store, now: SystemTime) -> Receipt {
        let mut p = store.create().expect("create");
        p.write_all(b"ciphertext").expect("write");
        store.commit(p, vec![], now).expect("commit").0
    }

    #[test]
    fn acknowledging_records_the_day_durably_and_deletes_the_spool_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("open");
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_123);
        let r = committed(&store, now);
        let e = store.mark_exported(&r).expect("export").expect("known");
        assert_eq!(e.state, RecordState::Exported);
        let e = store.ack(&r, now).expect("ack").expect("known");
        assert_eq!(
            (e.state, e.acked_day.as_deref()),
            (RecordState::Acked, Some("2027-01-15"))
        );
        assert!(!store.path_of(&r).exists());
        // Exporting an acknowledged record does not bring it back.
        let e = store.mark_exported(&r).expect("export").expect("known");
        assert_eq!(e.state, RecordState::Acked);
        assert!(store.ack(&Receipt::random(), now).expect("ack").is_none());
        drop(store);
        let (store, _) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("reopen");
        assert_eq!(
            store.get(&r).expect("get").expect("kept").state,
            RecordState::Acked
        );
    }

    #[test]
    fn purge_deletes_acknowledged_records_after_acked_days_and_unread_ones_only_when_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("open");
        let day = 86_400;
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let acked = committed(&store, t0);
        let unread = committed(&store, t0);
        let exported = committed(&store, t0);
        store.ack(&acked, t0).expect("ack");
        store.mark_exported(&exported).expect("export");
        let later = t0 + Duration::from_secs(400 * day);
        // Without unacked_days, unread records survive any purge.
        let p = store.purge(Some(10), None, t0).expect("purge");
        assert_eq!(p, Purged::default());
        let p = store.purge(Some(0), None, later).expect("purge");
        assert_eq!((p.acked, p.unacked), (1, 0));
        assert!(store.get(&acked).expect("get").is_none());
        assert!(store.get(&unread).expect("get").is_some() && store.path_of(&unread).exists());
        assert!(store.get(&exported).expect("get").is_some());
        // With unacked_days set, old unread records go, file and entry.
        let p = store.purge(Some(0), Some(500), later).expect("purge");
        assert_eq!(p, Purged::default());
        let p = store.purge(Some(0), Some(30), later).expect("purge");
        assert_eq!((p.acked, p.unacked), (0, 2));
        assert!(store.list().expect("list").is_empty());
        assert!(!store.path_of(&unread).exists() && !store.path_of(&exported).exists());
        // Kept at least the days asked: one arrived late on its day is
        // still there the next day with unacked_days = 1, gone the day after.
        let late = UNIX_EPOCH + Duration::from_secs(1_800_000_000 / day * day + day - 10);
        let tip = committed(&store, late);
        let p = store
            .purge(None, Some(1), late + Duration::from_secs(20))
            .expect("purge");
        assert_eq!(p.unacked, 0);
        assert!(store.path_of(&tip).exists());
        let p = store
            .purge(None, Some(1), late + Duration::from_secs(20 + day))
            .expect("purge");
        assert_eq!(p.unacked, 1);
        assert!(!store.path_of(&tip).exists());
    }
}
