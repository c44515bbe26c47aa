//! Durable storage of sealed records: spool files are the truth, fjall is
//! the index.
//!
//! ```text
//! data_dir/
//!   spool/<receipt>.pgp   one binary OpenPGP message per record, atime and mtime 00:00 UTC of its day
//!   spool/tmp/            writes in flight; emptied at start
//!   index/                fjall: receipt -> {day, size, state, form, recipients}
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
//! [`Anticipated`] soon (in their fsync, or waiting for a sealing thread) it
//! waits for them (`GATHER`, 2 ms at most), so that under load a batch holds
//! several records rather than one or two; a lone record is committed at
//! once. Alone, a record pays the same syncs as before, in the same order.
//!
//! Ciphertext never goes into the index, and nothing in it is finer than a
//! day; its changes are made durable by fsyncing its journal
//! (`IndexDb::persist`). Everything here is blocking I/O: call it from a
//! blocking thread.
//!
//! Metadata at rest says no more than the day either. Every access and
//! modification time under `data_dir` (files, directories, the index's files)
//! is set back to 00:00 UTC after every commit batch, acknowledgement, export
//! mark and purge, and at start (see `store/times.rs`); fjall's background
//! workers write table files after a change, and the settler
//! (`store/settler.rs`) sets the day on them once they are done. fjall is
//! log-structured: its journal keeps every insert and removal in the order
//! made, and its table files keep removed entries until they are merged, so
//! the index would keep purged receipts and the order in which records
//! arrived. The index is therefore rebuilt into a fresh directory ([`Store::refresh`]) at start, at
//! every purge and (from `serve`) daily: its entries are copied in receipt
//! order, which is random, into the table files of a new index in
//! `index.new/` (no journal), fsynced, and swapped in with two
//! renames (`index` to `index.old`, `index.new` to `index`); then
//! `index.old/` is deleted. [`Store::open`] finishes or undoes a swap a crash
//! interrupted: `index.new/` without `index/` is complete (it was fsynced
//! before `index/` was moved away), `index.new/` beside `index/` may not be.
//! A lock on `data_dir` itself keeps a second process from doing that while
//! the first one is swapping.
//!
//! This file holds the [`Store`] type, its public API and the contract; the
//! jobs are in `store/`: `committer.rs` (the batching committer thread and
//! the commit's order of steps), `gather.rs` ([`Anticipated`] records and the
//! wait for them), `index.rs` (the fjall index, its rebuild, the repair of
//! an interrupted swap and the move of an index sled wrote),
//! `settler.rs` (the day on what fjall's workers write), `recovery.rs` (the
//! repairs at open), `retention.rs`
//! ([`Store::purge`]), `import.rs` ([`Store::import`], a record moved in
//! from another store) and `times.rs` (the day on every file).
//!
//! [`RecordStore`] (`store/record_store.rs`) is the one interface the rest
//! of sealform uses: it dispatches to this embedded store or to the
//! PostgreSQL backend (`store/postgres.rs`, its own contract there).

mod committer;
mod gather;
mod import;
mod index;
pub mod postgres;
mod record_store;
mod recovery;
mod retention;
mod settler;
#[cfg(test)]
mod tests;
pub(crate) mod times;

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::durable;
use crate::receipt::Receipt;

pub use committer::CommitAnswer;
use committer::Committer;
pub use gather::Anticipated;
use gather::Anticipations;
pub use import::Imported;
#[doc(hidden)]
pub use index::IndexDb;
use index::{Index, move_from_sled, put, settle_index_dirs, stamp_changed};
pub use record_store::{Pending, RecordReader, RecordStore};
pub use retention::Purged;
pub(crate) use retention::days_between;
use settler::Settler;

/// Where a record is in the staff routine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// The index failed.
    #[error("index: {0}")]
    Index(#[from] fjall::Error),
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
    /// The database cannot be reached, is going away, or cut a statement
    /// short: nothing was done, and the client may retry (503).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database refused an operation (its SQLSTATE and message; never
    /// its `DETAIL`, which can quote values).
    #[error("database: {0}")]
    Database(String),
    /// The database, or the way to reach it, breaks a promise sealform
    /// keeps (a setting named in the message): it does not start.
    #[error("{0}")]
    Refused(String),
}

impl StoreError {
    /// Another process holds the store (its lock on `data_dir`, or fjall's
    /// own lock on the index).
    pub fn is_locked(&self) -> bool {
        matches!(
            self,
            StoreError::Locked(_) | StoreError::Index(fjall::Error::Locked)
        )
    }

    /// The database cannot be reached now: the client should retry later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
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
    /// The thread that sets the day on what fjall's workers write; `None`
    /// only while dropping.
    settler: Option<Settler>,
    /// Batches committed so far (each one directory fsync and one index
    /// flush).
    batches: Arc<AtomicU64>,
    /// Records the committer waits a little for (see [`Anticipated`]).
    anticipated: Arc<Anticipations>,
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
        if let Some(moved) = move_from_sled(data_dir, &dir)? {
            tracing::info!(entries = moved, "the index sled wrote was moved into fjall");
        }
        let db = IndexDb::open(&dir, cache_bytes)?;
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
            settler: None,
            batches: Arc::default(),
            anticipated: Arc::default(),
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
        let settler = Settler::start(Arc::clone(&store.index))?;
        // For what fjall's workers do after the rebuild above (a merge of
        // its tables on open).
        settler.nudge();
        store.committer = Some(store.start_committer(settler.nudger())?);
        store.settler = Some(settler);
        Ok((store, recovery))
    }

    /// Rebuilds the index without its history (see the module's
    /// documentation) and sets the day of `now` on every file and directory
    /// under `data_dir`. Run at start, by every purge and daily by `serve`;
    /// it takes time in proportion to the number of records, and commits
    /// wait for the index meanwhile.
    pub fn refresh(&self, now: SystemTime) -> Result<(), StoreError> {
        self.index.rebuild()?;
        self.nudge_settler();
        times::stamp_tree(&self.data_dir, start_of_day(now))
            .map_err(io_err("setting the day on", &self.data_dir))
    }

    /// Sets the day of `now` on what a change of the spool or the index
    /// moves (see [`stamp_changed`]), and tells the settler of the change.
    fn stamp_changed(&self, now: SystemTime) -> Result<(), StoreError> {
        self.nudge_settler();
        stamp_changed(&self.spool, &self.tmp, &self.index, now)
    }

    /// Tells the settler the index changed (nothing to tell before it
    /// starts: [`Store::open`] ends with a walk of the whole tree).
    fn nudge_settler(&self) {
        if let Some(settler) = &self.settler {
            settler.nudge();
        }
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

    /// Counts a record as [`Anticipated`] by the committer until the guard is
    /// dropped.
    pub fn anticipate(&self) -> Anticipated {
        Anticipations::anticipate(&self.anticipated)
    }

    /// How many records are [`Anticipated`] now.
    pub fn anticipated(&self) -> usize {
        self.anticipated.count.load(Ordering::SeqCst)
    }

    /// The spool path of a record (whether or not it exists).
    pub fn path_of(&self, receipt: &Receipt) -> PathBuf {
        self.spool.join(format!("{receipt}.pgp"))
    }

    /// The index entry of a record. A read may move the access time of an
    /// index file (fjall reads its tables without `O_NOATIME`), so the
    /// settler is told.
    pub fn get(&self, receipt: &Receipt) -> Result<Option<IndexEntry>, StoreError> {
        let entry = self.index.with(|db| match db.get(receipt.key())? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        });
        self.nudge_settler();
        entry
    }

    /// Opens a record's spool file for reading without moving its access
    /// time (where the kernel allows: the process owns the file).
    pub fn open_record(&self, receipt: &Receipt) -> io::Result<File> {
        times::open_unread(&self.path_of(receipt))
    }

    /// Every indexed record, in receipt order (which is random). Tells the
    /// settler, as [`Store::get`] does.
    pub fn list(&self) -> Result<Vec<(Receipt, IndexEntry)>, StoreError> {
        let _nudge = NudgeAfter(self);
        self.index.with(|db| {
            let mut out = Vec::new();
            for kv in db.entries() {
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

    /// Inserts (or replaces) an entry and makes it durable, under one hold
    /// of the index: a rebuild cannot come between the two.
    fn put_durably(&self, receipt: &Receipt, entry: &IndexEntry) -> Result<(), StoreError> {
        self.index.with(|db| {
            put(db, receipt, entry)?;
            db.persist()
        })
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
            self.put_durably(receipt, &entry)?;
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
            self.put_durably(receipt, &entry)?;
        }
        self.remove_spool_file(receipt)?;
        self.stamp_changed(SystemTime::now())?;
        Ok(Some(entry))
    }

    fn remove_spool_file(&self, receipt: &Receipt) -> Result<(), StoreError> {
        let path = self.path_of(receipt);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.spool),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("removing record", &path)(e)),
        }
    }

    /// Makes every change to the index so far durable (its journal
    /// fsynced): an unlink must never overtake the index update that
    /// explains it.
    fn sync_index(&self) -> Result<(), StoreError> {
        self.index.with(|db| db.persist())
    }

    /// Makes the index durable and, once fjall's workers are done (for at
    /// most 10 s), sets the day on it: at shutdown, when no
    /// settler will come after.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.sync_index()?;
        let deadline = std::time::Instant::now() + SHUTDOWN_SETTLE;
        while self.index.busy() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        stamp_changed(&self.spool, &self.tmp, &self.index, SystemTime::now())
    }
}

/// Tells the settler of a read once it is over (see [`Store::list`]).
struct NudgeAfter<'a>(&'a Store);

impl Drop for NudgeAfter<'_> {
    fn drop(&mut self) {
        self.0.nudge_settler();
    }
}

/// How long [`Store::flush`] waits at shutdown for fjall's workers to finish
/// writing out and merging tables (a merge of the whole index of 100,000
/// records takes well under a second).
const SHUTDOWN_SETTLE: Duration = Duration::from_secs(10);

/// A record being written in `spool/tmp/`. Dropping it without
/// [`Store::commit`] deletes the file: a failed submission leaves nothing.
pub struct PendingRecord {
    receipt: Receipt,
    file: Option<File>,
    path: PathBuf,
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
