//! The index (fjall): opening it, inserting entries, setting the day on what
//! a change moved, rebuilding it without its history (copy, fsync, swap)
//! with the repair of a swap a crash interrupted, and the one-time move of
//! an index sled wrote (before sealform used fjall) into fjall. It must never
//! hold ciphertext nor anything finer than a day, and never leave `index/`
//! missing once a swap step is durable.
//!
//! Why fjall: sled 0.34.7 (2021) kept about 300 bytes in memory per entry
//! whatever its cache was set to, and its flush did not reach the disk cache
//! (BENCHMARKS.md, issue 24's fifth target). fjall is a log-structured merge
//! tree: a write goes to its journal and to a memtable of about
//! [`MEMTABLE_BYTES`]; full memtables are written out as sorted table files,
//! and tables are merged (compaction), both by background workers. Its
//! memory is bounded by the memtable and the block cache, and its `persist`
//! fsyncs the journal.
//!
//! That background work writes files at moments of its own. The committer
//! sets the day on everything under `index/` after every batch, and the
//! settler ([`settle`]) does it again once fjall's background work after the
//! last change has finished (see `store.rs`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{
    IndexEntry, Receipt, StoreError, create_private_dir, io_err, start_of_day, sync_dir, times,
};
use crate::durable;

/// Entries held in memory before fjall writes them out as a table file
/// (about 7,000 of the store's entries).
pub(super) const MEMTABLE_BYTES: u64 = 1 << 20;

/// The name of the index's one keyspace: receipt -> [`IndexEntry`] as JSON.
const RECORDS: &str = "records";

/// The open index: a fjall database and its one keyspace. Public only for
/// `examples/index-memory.rs`; the rest of sealform goes through
/// [`Store`](super::Store).
pub struct IndexDb {
    records: Keyspace,
    db: Database,
}

impl IndexDb {
    /// Opens (creating if needed) the index at `dir`, with writes to the
    /// journal kept in memory until [`IndexDb::persist`], and two background
    /// workers: a full memtable is sealed only when a worker takes the
    /// request, so with one worker busy merging tables the memtable went on
    /// growing (`examples/index-memory.rs`, 300,000 entries in a burst:
    /// about 220 bytes per entry past the first 65,000 with one worker, flat
    /// at 12–18 MiB with two).
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<IndexDb, StoreError> {
        let db = Database::builder(dir)
            .cache_size(cache_bytes)
            .worker_threads(2)
            .manual_journal_persist(true)
            .open()?;
        let records = db.keyspace(RECORDS, || {
            KeyspaceCreateOptions::default()
                .max_memtable_size(MEMTABLE_BYTES)
                .manual_journal_persist(true)
        })?;
        Ok(IndexDb { records, db })
    }

    /// The entry stored under `key`, as written.
    pub(super) fn get(&self, key: &[u8]) -> Result<Option<fjall::Slice>, StoreError> {
        Ok(self.records.get(key)?)
    }

    /// Inserts or replaces an entry; durable only after [`IndexDb::persist`].
    pub fn insert(&self, key: &[u8], value: Vec<u8>) -> Result<(), StoreError> {
        Ok(self.records.insert(key, value)?)
    }

    /// Removes an entry; durable only after [`IndexDb::persist`].
    pub(super) fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        Ok(self.records.remove(key)?)
    }

    /// Every entry, in key order (receipt order, which is random).
    pub fn entries(
        &self,
    ) -> impl Iterator<Item = Result<(fjall::Slice, fjall::Slice), StoreError>> + '_ {
        self.records
            .iter()
            .map(|guard| guard.into_inner().map_err(StoreError::from))
    }

    /// Writes the journal out and fsyncs it: every change made so far is
    /// durable when this returns.
    pub fn persist(&self) -> Result<(), StoreError> {
        Ok(self.db.persist(PersistMode::SyncAll)?)
    }

    /// fjall's background workers have work to do or are doing it: a memtable
    /// waiting to be written out, a table file being written or merged.
    pub(super) fn busy(&self) -> bool {
        self.records.sealed_memtable_count() > 0
            || self.db.outstanding_flushes() > 0
            || self.db.active_compactions() > 0
    }

    /// Writes `entries` (in ascending key order) into this empty index as
    /// table files, without its journal, and makes them durable.
    fn ingest(
        &self,
        entries: impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>>,
    ) -> Result<u64, StoreError> {
        let mut entries = entries.peekable();
        if entries.peek().is_none() {
            return Ok(0);
        }
        let mut ingestion = self.records.start_ingestion()?;
        let mut count = 0;
        for kv in entries {
            let (k, v) = kv?;
            ingestion.write(k, v)?;
            count += 1;
        }
        ingestion.finish()?;
        self.persist()?;
        Ok(count)
    }
}

/// The index, which [`Store::refresh`] replaces whole. Every use of the
/// database holds the read lock for as long as it uses it, so that the
/// rebuild, holding the write lock, can close the old one.
pub(super) struct Index {
    pub(super) data_dir: PathBuf,
    /// `data_dir/index`.
    pub(super) dir: PathBuf,
    pub(super) cache_bytes: u64,
    /// `None` only if a rebuild failed after closing the old database and
    /// could not open one again.
    pub(super) db: RwLock<Option<IndexDb>>,
}

impl Index {
    /// Runs `f` on the open database, holding the read lock.
    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&IndexDb) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let db = self.db.read().unwrap_or_else(|p| p.into_inner());
        f(db.as_ref().ok_or(StoreError::IndexClosed)?)
    }

    /// fjall's background workers are at work on the index (see
    /// [`IndexDb::busy`]); `false` if the index is closed.
    pub(super) fn busy(&self) -> bool {
        self.with(|db| Ok(db.busy())).unwrap_or(false)
    }

    /// Rebuilds the index into a fresh directory with the same entries and
    /// none of the history its journal and older tables keep, and swaps it
    /// in (see the module's documentation for the steps and what a crash
    /// leaves).
    pub(super) fn rebuild(&self) -> Result<(), StoreError> {
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        let old = slot.as_ref().ok_or(StoreError::IndexClosed)?;
        // In key order, which is receipt order: random, so the new tables
        // say nothing of the order in which records arrived.
        let entries = old
            .entries()
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())));
        write_fresh(&self.data_dir, self.cache_bytes, entries)?;
        // Closed (its workers stopped) before its directory is moved; a
        // change still in its journal's buffer goes to disk first.
        old.persist()?;
        drop(slot.take());
        let swapped = swap_in(&self.data_dir, &self.dir);
        let settled = settle_index_dirs(&self.data_dir);
        *slot = Some(IndexDb::open(&self.dir, self.cache_bytes)?);
        swapped.and(settled)
    }
}

/// Writes `entries` (in ascending key order) into a new index at
/// `data_dir/index.new`, closes it and fsyncs all of it and `data_dir`. On
/// failure the partial copy is deleted; whatever index `entries` came from is
/// untouched.
fn write_fresh(
    data_dir: &Path,
    cache_bytes: u64,
    entries: impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>>,
) -> Result<u64, StoreError> {
    let fresh = data_dir.join(FRESH_INDEX);
    let copied = (|| {
        remove_dir_if_present(&fresh)?;
        create_private_dir(&fresh)?;
        let new = IndexDb::open(&fresh, cache_bytes)?;
        let count = new.ingest(entries)?;
        // Dropping it waits for its workers, so nothing writes there after.
        drop(new);
        sync_tree(&fresh)?;
        sync_dir(data_dir)?;
        Ok(count)
    })();
    if copied.is_err() {
        // A partial copy only takes space (on a full disk, the space it
        // failed for).
        let _ = remove_dir_if_present(&fresh);
    }
    copied
}

/// Moves an index sled wrote (sealform before fjall) into fjall, once, at
/// open: its entries are copied as they are into `index.new/` and swapped in
/// as a rebuild is, so a crash at any step leaves either the old index or
/// the new one whole (sled's files are recognised by its `conf` file). Run
/// after [`settle_index_dirs`] and before the index is opened; `Ok(None)` if
/// there was nothing to move.
pub(super) fn move_from_sled(data_dir: &Path, dir: &Path) -> Result<Option<u64>, StoreError> {
    if !dir.join("conf").is_file() {
        return Ok(None);
    }
    if dir.join("version").exists() || dir.join("keyspaces").exists() {
        // An older sealform (sled) was started on an index fjall wrote: its
        // own index there is new and near empty, and moving it over
        // fjall's would lose every acknowledgement and export mark.
        return Err(StoreError::Refused(
            "data_dir/index holds both sled's files and fjall's: an older sealform ran on \
             this data_dir. Stop it, delete sled's files from index/ (conf, db, blobs/, \
             snap.*) to keep the index this version wrote, and start again"
                .into(),
        ));
    }
    let old = sled::Config::new()
        .path(dir)
        .flush_every_ms(None)
        .open()
        .map_err(sled_err)?;
    let entries = old
        .iter()
        .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(sled_err));
    let count = write_fresh(data_dir, 1 << 20, entries)?;
    drop(old);
    swap_in(data_dir, dir)?;
    Ok(Some(count))
}

/// An error of sled, which only [`move_from_sled`] still opens.
fn sled_err(e: sled::Error) -> StoreError {
    let e = match e {
        sled::Error::Io(io) => io,
        other => io::Error::other(other.to_string()),
    };
    StoreError::Io {
        action: "reading the sled index in",
        path: PathBuf::from("index"),
        source: e,
    }
}

/// `index/` to `index.old/`, `index.new/` to `index/`, then `index.old/`
/// deleted; each step made durable before the next.
fn swap_in(data_dir: &Path, dir: &Path) -> Result<(), StoreError> {
    let old = data_dir.join(OLD_INDEX);
    let fresh = data_dir.join(FRESH_INDEX);
    remove_dir_if_present(&old)?;
    fs::rename(dir, &old).map_err(io_err("moving aside", dir))?;
    fs::rename(&fresh, dir).map_err(io_err("moving into place", &fresh))?;
    sync_dir(data_dir)?;
    remove_dir_if_present(&old)?;
    sync_dir(data_dir)
}

/// Where a rebuilt index is written before it is swapped in.
const FRESH_INDEX: &str = "index.new";

/// Where the old index is while the rebuilt one is swapped in.
const OLD_INDEX: &str = "index.old";

/// Finishes or undoes a swap of the index that a crash interrupted:
/// `index.new/` with no `index/` is complete and becomes `index/`; an
/// `index.new/` beside `index/` may be partial and is deleted, and so is any
/// `index.old/` once `index/` is there.
pub(super) fn settle_index_dirs(data_dir: &Path) -> Result<(), StoreError> {
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
pub(super) fn sync_tree(root: &Path) -> Result<(), StoreError> {
    for entry in walkdir::WalkDir::new(root).contents_first(true) {
        let entry = entry.map_err(|e| io_err("syncing", root)(times::without_path(e)))?;
        durable::sync_path(entry.path()).map_err(io_err("syncing", entry.path()))?;
    }
    Ok(())
}

/// Sets the day of `now` on what a commit, acknowledgement or export mark
/// moves: `spool/tmp/`, `spool/` and everything under `index/` (its journal,
/// and any table file fjall's workers wrote meanwhile; a few dozen files). A
/// record's own file got its day when it was written.
pub(super) fn stamp_changed(
    spool: &Path,
    tmp: &Path,
    index: &Index,
    now: SystemTime,
) -> Result<(), StoreError> {
    let day = start_of_day(now);
    for path in [tmp, spool] {
        times::stamp(path, day).map_err(io_err("setting the day on", path))?;
    }
    times::stamp_tree(&index.dir, day).map_err(io_err("setting the day on", &index.dir))
}

/// Inserts (or replaces) a record's index entry, not yet persisted.
pub(super) fn put(db: &IndexDb, receipt: &Receipt, entry: &IndexEntry) -> Result<(), StoreError> {
    db.insert(receipt.key(), serde_json::to_vec(entry)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    use crate::store::tests::committed;
    use crate::store::{RecordState, Recovery, Store};
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
        // Every file of the index, in the order of their names (a rebuilt
        // index is one table file and fjall's own few small files).
        let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir.path().join("index"))
            .sort_by_file_name()
            .into_iter()
            .map(|e| e.expect("walk").into_path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        let bytes: Vec<u8> = files
            .iter()
            .flat_map(|p| fs::read(p).expect("read"))
            .collect();
        // A table stores a key without the prefix it shares with the one
        // before it: look for its last 12 bytes.
        let first_at = |r: &Receipt| {
            bytes
                .windows(12)
                .position(|w| w == &r.key()[4..])
                .expect("key in the index's files")
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
    fn the_index_files_hold_no_moment_of_their_writing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let since_epoch = |t: SystemTime| t.duration_since(std::time::UNIX_EPOCH).expect("epoch");
        let before = since_epoch(SystemTime::now());
        let (store, _) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("open");
        let now = SystemTime::now();
        let acked = committed(&store, now);
        store.ack(&acked, now).expect("ack");
        // Table files written out by the workers (enough entries for
        // several memtables), and one written by a rebuild.
        let entry = store.get(&acked).expect("get").expect("entry");
        for _ in 0..(4 * MEMTABLE_BYTES / 100) {
            store
                .index
                .with(|db| put(db, &Receipt::random(), &entry))
                .expect("put");
        }
        store.index.with(|db| db.persist()).expect("persist");
        while store.index.busy() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let tables_before_rebuild = walkdir::WalkDir::new(dir.path().join("index"))
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().components().any(|c| c.as_os_str() == "tables"))
            .filter(|e| e.file_type().is_file())
            .count();
        assert!(tables_before_rebuild > 1, "the workers wrote no table");
        let mut bytes = Vec::new();
        for e in walkdir::WalkDir::new(dir.path().join("index")) {
            let e = e.expect("walk");
            if e.file_type().is_file() {
                bytes.extend(fs::read(e.path()).expect("read"));
            }
        }
        store.refresh(SystemTime::now()).expect("refresh");
        for e in walkdir::WalkDir::new(dir.path().join("index")) {
            let e = e.expect("walk");
            if e.file_type().is_file() {
                bytes.extend(fs::read(e.path()).expect("read"));
            }
        }
        let after = since_epoch(SystemTime::now());
        // Any 8 bytes (little- or big-endian) that read as a moment of this
        // test, in seconds, milliseconds, microseconds or nanoseconds.
        let windows = [
            (u128::from(before.as_secs()), u128::from(after.as_secs())),
            (before.as_millis(), after.as_millis()),
            (before.as_micros(), after.as_micros()),
            (before.as_nanos(), after.as_nanos()),
        ];
        for w in bytes.windows(8) {
            let eight: [u8; 8] = w.try_into().expect("8 bytes");
            for v in [u64::from_le_bytes(eight), u64::from_be_bytes(eight)] {
                let v = u128::from(v);
                assert!(
                    !windows.iter().any(|(lo, hi)| (*lo..=*hi).contains(&v)),
                    "an index file holds the moment it was written ({v})"
                );
            }
        }
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
}
