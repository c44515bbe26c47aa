//! The sled index: opening it, inserting entries, setting the day on what
//! a change moved, and rebuilding it without its history (copy, fsync, swap)
//! with the repair of a swap a crash interrupted. It must never hold
//! ciphertext nor anything finer than a day, and never leave `index/`
//! missing once a swap step is durable.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use super::{
    IndexEntry, Receipt, StoreError, create_private_dir, io_err, start_of_day, sync_dir, times,
};
use crate::durable;

/// The sled index, which [`Store::refresh`] replaces whole. Every use of the
/// database holds the read lock for as long as it uses it, so that the
/// rebuild, holding the write lock, can close the old one.
pub(super) struct Index {
    pub(super) data_dir: PathBuf,
    /// `data_dir/index`.
    pub(super) dir: PathBuf,
    pub(super) cache_bytes: u64,
    /// `None` only if a rebuild failed after closing the old database and
    /// could not open one again.
    pub(super) db: RwLock<Option<sled::Db>>,
}

impl Index {
    /// Runs `f` on the open database, holding the read lock.
    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&sled::Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let db = self.db.read().unwrap_or_else(|p| p.into_inner());
        f(db.as_ref().ok_or(StoreError::IndexClosed)?)
    }

    /// Rebuilds the index into a fresh directory with the same entries and
    /// none of the history sled's log keeps, and swaps it in (see the
    /// module's documentation for the steps and what a crash leaves).
    pub(super) fn rebuild(&self) -> Result<(), StoreError> {
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
pub(super) fn open_sled(dir: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
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
fn sync_tree(root: &Path) -> Result<(), StoreError> {
    for entry in walkdir::WalkDir::new(root).contents_first(true) {
        let entry = entry.map_err(|e| io_err("syncing", root)(times::without_path(e)))?;
        durable::sync_path(entry.path()).map_err(io_err("syncing", entry.path()))?;
    }
    Ok(())
}

/// Sets the day of `now` on what a commit, acknowledgement or export mark
/// moves: `spool/tmp/`, `spool/`, `index/` and `index/db`, four system calls
/// (a record's own file got its day when it was written). The rest under
/// `data_dir` changes only when the index is opened or rebuilt, which sets
/// the day on all of it ([`Store::refresh`]): sled writes `conf` and `snap.*`
/// only when it opens an index, and blob files only for values far larger
/// than an index entry.
pub(super) fn stamp_changed(
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
pub(super) fn put(db: &sled::Db, receipt: &Receipt, entry: &IndexEntry) -> Result<(), StoreError> {
    db.insert(receipt.key(), serde_json::to_vec(entry)?)?;
    Ok(())
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
}
