//! Importing a record with its identity (receipt, day, state, recipients,
//! form, day of acknowledgement), for moving a store between backends: the
//! embedded store's half ([`Store::import`]). It must never answer before
//! the record is as durable as a committed one, nor overwrite a record that
//! is already there.

use std::fs::{self, FileTimes};
use std::io::{self, Read};
use std::time::SystemTime;

use super::{IndexEntry, RecordState, Store, StoreError, io_err, sync_dir};
use crate::durable;
use crate::receipt::Receipt;

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    /// The record is stored now.
    Stored,
    /// A record with this receipt was there already; nothing changed.
    AlreadyThere,
}

/// The start of `day` (`YYYY-MM-DD`, UTC), or an error naming the entry's
/// field.
pub(super) fn start_of(day: &str) -> Result<SystemTime, StoreError> {
    chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| SystemTime::from(t.and_utc()))
        .ok_or_else(|| StoreError::Database(format!("an imported entry's day is not a day: {day}")))
}

/// Fails unless `read` is the size the entry says.
pub(super) fn check_size(read: u64, entry: &IndexEntry) -> Result<(), StoreError> {
    if read == entry.size {
        Ok(())
    } else {
        Err(StoreError::Database(format!(
            "an imported record has {read} bytes of ciphertext, its entry says {}",
            entry.size
        )))
    }
}

impl Store {
    /// Stores a record under `receipt` with `entry` as its index entry and
    /// `ciphertext` as its spool file (not read for an acknowledged record,
    /// which has none): the file is written in `spool/tmp/`, dated to its
    /// day, fsynced, renamed into `spool/` and the directory fsynced, then
    /// the entry is inserted and the index synced, as a commit does.
    /// [`Imported::AlreadyThere`] if the receipt is known. Blocking.
    pub fn import(
        &self,
        receipt: &Receipt,
        entry: &IndexEntry,
        ciphertext: &mut dyn Read,
    ) -> Result<Imported, StoreError> {
        let _guard = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        if self.get(receipt)?.is_some() {
            return Ok(Imported::AlreadyThere);
        }
        let day = start_of(&entry.day)?;
        if entry.state != RecordState::Acked {
            let tmp = self.tmp.join(receipt.to_string());
            let written = (|| -> Result<(), StoreError> {
                let mut file =
                    durable::create_private_file(&tmp).map_err(io_err("creating", &tmp))?;
                let n = io::copy(ciphertext, &mut file).map_err(io_err("writing", &tmp))?;
                check_size(n, entry)?;
                file.set_times(FileTimes::new().set_accessed(day).set_modified(day))
                    .map_err(io_err("setting the day on", &tmp))?;
                file.sync_all().map_err(io_err("syncing", &tmp))?;
                let path = self.path_of(receipt);
                fs::rename(&tmp, &path).map_err(io_err("renaming into", &path))?;
                sync_dir(&self.spool)
            })();
            if let Err(e) = written {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        }
        self.put_durably(receipt, entry)?;
        self.stamp_changed(SystemTime::now())?;
        Ok(Imported::Stored)
    }
}
