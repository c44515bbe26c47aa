//! Retention: [`Store::purge`] deletes what its retention days allow,
//! index entry before file, then rebuilds the index. It must never delete
//! an unacknowledged record unless `unacked_days` is set, nor keep a record
//! earlier than the whole days asked.

use std::time::SystemTime;

use super::{RecordState, Store, StoreError, day_string};

impl Store {
    /// Applies retention at `now`: deletes the index entries of records
    /// acknowledged `acked_days` or more calendar days ago and, only when
    /// `unacked_days` is set, the files and entries of never-acknowledged
    /// records that arrived more than that many calendar days ago (so each
    /// is kept at least `unacked_days` whole days: only its day is stored).
    /// Then the index is rebuilt ([`Store::refresh`]), so that nothing else
    /// keeps a deleted record, not even the index's journal or older tables.
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
            self.index.with(|db| {
                db.remove(receipt.key())?;
                db.persist()
            })?;
            self.remove_spool_file(&receipt)?;
            match entry.state {
                RecordState::Acked => purged.acked += 1,
                _ => purged.unacked += 1,
            }
        }
        self.refresh(now)?;
        Ok(purged)
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
pub(crate) fn days_between(from: &str, to: &str) -> Option<i64> {
    let parse = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
    Some((parse(to)? - parse(from)?).num_days())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    use crate::store::tests::committed;
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
