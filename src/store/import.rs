//! Records brought in whole from another store (`sealform store copy`),
//! keeping their identity: receipt, day, state, recipients, form and the
//! day of acknowledgement, and the ciphertext byte for byte.
//!
//! The order is a commit's: the ciphertext is written to `spool/tmp/`,
//! fsynced, dated to its day and renamed into `spool/` (the directory
//! fsynced), and only then is the index entry written and synced. A crash
//! in between leaves a spool file the next [`Store::open`] indexes again (a
//! copy run again then puts the source's entry back). Importing a record
//! that is already there replaces it, so a copy that was stopped can be run
//! again.

use std::fs;
use std::io::{self, Read};
use std::time::SystemTime;

use super::{IndexEntry, Store, StoreError, io_err, sync_dir, times};
use crate::durable;
use crate::receipt::Receipt;

impl Store {
    /// Writes the record `receipt` as `entry` describes it, with
    /// `ciphertext` as its spool file (`None` for an acknowledged record,
    /// which has none); durable when this returns. Blocking.
    pub fn import(
        &self,
        receipt: &Receipt,
        entry: &IndexEntry,
        ciphertext: Option<&mut dyn Read>,
    ) -> Result<(), StoreError> {
        let day = day_start(&entry.day).ok_or_else(|| {
            io_err("dating a record for", &self.spool)(io::Error::new(
                io::ErrorKind::InvalidData,
                "its day is not YYYY-MM-DD",
            ))
        })?;
        let _guard = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        match ciphertext {
            Some(source) => {
                let tmp = self.tmp.join(format!("import-{receipt}"));
                let mut file =
                    durable::replace_private_file(&tmp).map_err(io_err("creating", &tmp))?;
                io::copy(source, &mut file).map_err(io_err("writing", &tmp))?;
                file.sync_all().map_err(io_err("syncing", &tmp))?;
                drop(file);
                times::stamp(&tmp, day).map_err(io_err("setting the day on", &tmp))?;
                let path = self.path_of(receipt);
                fs::rename(&tmp, &path).map_err(io_err("renaming", &path))?;
                sync_dir(&self.spool)?;
            }
            None => self.remove_spool_file(receipt)?,
        }
        self.put(receipt, entry)?;
        self.sync_index()?;
        self.stamp_changed(SystemTime::now())
    }
}

/// 00:00 UTC of `day` (`YYYY-MM-DD`).
fn day_start(day: &str) -> Option<SystemTime> {
    let date = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    Some(SystemTime::from(
        date.and_time(chrono::NaiveTime::MIN).and_utc(),
    ))
}
