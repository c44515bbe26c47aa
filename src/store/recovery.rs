//! Recovery at open: empties `spool/tmp/`, indexes spool files the index
//! lacks, finishes acknowledgements a crash interrupted and counts indexed
//! records whose file is gone. It must never delete a spool file that is
//! not acknowledged, nor run while the committer does.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::index::sync_tree;
use super::{
    IndexEntry, Receipt, RecordState, Recovery, Store, StoreError, day_string, io_err, sync_dir,
};

impl Store {
    pub(super) fn recover(
        &self,
        recipients_of: impl Fn(&Path) -> Vec<String>,
    ) -> Result<Recovery, StoreError> {
        let mut recovery = Recovery::default();
        // What fjall replayed from its journal at open may not be on stable
        // storage yet (a write that reached the kernel before a kill, never
        // fsynced): make it so before an acknowledgement found there lets
        // a spool file be deleted below.
        sync_tree(&self.index.dir)?;
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
        self.sync_index()?;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    use crate::store::tests::committed;
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
}
