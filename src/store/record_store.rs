//! The one interface to the records, whichever backend keeps them:
//! [`RecordStore`] dispatches each operation to the embedded store
//! ([`Store`]: spool files and an index under `data_dir`) or to
//! PostgreSQL ([`PgStore`]). Records go in through a [`Pending`] writer the
//! sealing code writes ciphertext into, then a commit that answers only once
//! the record is durable and indexed; they come out through a
//! [`RecordReader`]. An enum rather than a trait object: there are two
//! backends, known here, whose pending records and readers are different
//! types, and an enum keeps them concrete (no box per record, no generic
//! parameter spreading into `Intake` and the HTTP layer).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::SystemTime;

use super::postgres::{PgPending, PgReader, PgStore};
use super::{
    Anticipated, CommitAnswer, Imported, IndexEntry, Indexing, PendingRecord, Purged, Recovery,
    Store, StoreError,
};
use crate::config::{Config, StoreBackend};
use crate::receipt::Receipt;

/// The records, in the backend the configuration names (`[store] backend`).
pub enum RecordStore {
    /// Spool files and the index under `data_dir`.
    Fs(Store),
    /// A PostgreSQL database.
    Postgres(PgStore),
}

/// A record being written, in either backend.
pub enum Pending {
    /// A file in `spool/tmp/`.
    Fs(PendingRecord),
    /// Chunks in an open transaction (boxed: it holds a connection).
    Postgres(Box<PgPending>),
}

/// A record's ciphertext being read, in either backend.
pub enum RecordReader {
    /// A spool file.
    Fs(File),
    /// Chunks in the database.
    Postgres(PgReader),
}

impl RecordStore {
    /// Opens the backend of `config`: the embedded store (recovering from
    /// an unclean stop; `recipients_of` names the recipients of a spool
    /// file found without an index entry), or the database (checking its
    /// settings and migrating its schema).
    pub fn open(
        config: &Config,
        recipients_of: impl Fn(&Path) -> Vec<String>,
    ) -> Result<(RecordStore, Recovery), StoreError> {
        match config.store.backend {
            StoreBackend::Fs => {
                let (store, recovery) = Store::open(
                    &config.server.data_dir,
                    config.server.index_cache_bytes,
                    recipients_of,
                )?;
                Ok((RecordStore::Fs(store), recovery))
            }
            StoreBackend::Postgres => Ok((
                RecordStore::Postgres(PgStore::open(&config.store)?),
                Recovery::default(),
            )),
        }
    }

    /// Starts a record: picks its receipt.
    pub fn create(&self) -> Result<Pending, StoreError> {
        Ok(match self {
            RecordStore::Fs(s) => Pending::Fs(s.create()?),
            RecordStore::Postgres(s) => Pending::Postgres(Box::new(s.create())),
        })
    }

    /// Makes a written record durable and indexed, then calls `done` with
    /// the outcome (see [`CommitAnswer`]): the embedded store fsyncs here
    /// and hands the rest to its committer thread; PostgreSQL commits here.
    /// Blocking: call it on a blocking thread.
    pub fn enqueue_then(
        &self,
        pending: Pending,
        indexing: impl Into<Indexing>,
        now: SystemTime,
        done: CommitAnswer,
    ) {
        match (self, pending) {
            (RecordStore::Fs(s), Pending::Fs(p)) => s.enqueue_then(p, indexing, now, done),
            (RecordStore::Postgres(s), Pending::Postgres(p)) => {
                done(s.commit(*p, indexing.into(), now));
            }
            _ => done(Err(StoreError::Database(
                "a record started in one backend was committed to another".into(),
            ))),
        }
    }

    /// [`RecordStore::enqueue_then`], waited for. Blocking.
    pub fn commit(
        &self,
        pending: Pending,
        indexing: impl Into<Indexing>,
        now: SystemTime,
    ) -> Result<(Receipt, IndexEntry), StoreError> {
        match (self, pending) {
            (RecordStore::Fs(s), Pending::Fs(p)) => s.commit(p, indexing, now),
            (RecordStore::Postgres(s), Pending::Postgres(p)) => s.commit(*p, indexing.into(), now),
            _ => Err(StoreError::Database(
                "a record started in one backend was committed to another".into(),
            )),
        }
    }

    /// Counts a record as anticipated by the embedded store's committer
    /// (see [`Anticipated`]); PostgreSQL commits each record on its own
    /// thread, so nothing waits for it there.
    pub fn anticipate(&self) -> Option<Anticipated> {
        match self {
            RecordStore::Fs(s) => Some(s.anticipate()),
            RecordStore::Postgres(_) => None,
        }
    }

    /// How many records are anticipated now (always 0 on PostgreSQL).
    pub fn anticipated(&self) -> usize {
        match self {
            RecordStore::Fs(s) => s.anticipated(),
            RecordStore::Postgres(_) => 0,
        }
    }

    /// The index entry of a record.
    pub fn get(&self, receipt: &Receipt) -> Result<Option<IndexEntry>, StoreError> {
        match self {
            RecordStore::Fs(s) => s.get(receipt),
            RecordStore::Postgres(s) => s.get(receipt),
        }
    }

    /// Every indexed record, in receipt order (which is random).
    pub fn list(&self) -> Result<Vec<(Receipt, IndexEntry)>, StoreError> {
        match self {
            RecordStore::Fs(s) => s.list(),
            RecordStore::Postgres(s) => s.list(),
        }
    }

    /// Opens a record's ciphertext for reading; `None` when it is not
    /// there (unknown, acknowledged, or its spool file gone).
    pub fn open_record(&self, receipt: &Receipt) -> Result<Option<RecordReader>, StoreError> {
        match self {
            RecordStore::Fs(s) => match s.open_record(receipt) {
                Ok(f) => Ok(Some(RecordReader::Fs(f))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(StoreError::Io {
                    action: "opening",
                    path: s.path_of(receipt),
                    source,
                }),
            },
            RecordStore::Postgres(s) => Ok(s.open_record(receipt)?.map(RecordReader::Postgres)),
        }
    }

    /// Marks a record as copied into an export bundle (only a `new` record
    /// changes). `None` if the receipt is unknown.
    pub fn mark_exported(&self, receipt: &Receipt) -> Result<Option<IndexEntry>, StoreError> {
        match self {
            RecordStore::Fs(s) => s.mark_exported(receipt),
            RecordStore::Postgres(s) => s.mark_exported(receipt),
        }
    }

    /// Acknowledges a record: its state and day recorded, its ciphertext
    /// deleted. `None` if the receipt is unknown; twice is harmless.
    pub fn ack(
        &self,
        receipt: &Receipt,
        now: SystemTime,
    ) -> Result<Option<IndexEntry>, StoreError> {
        match self {
            RecordStore::Fs(s) => s.ack(receipt, now),
            RecordStore::Postgres(s) => s.ack(receipt, now),
        }
    }

    /// Applies retention at `now` (see [`Store::purge`]).
    pub fn purge(
        &self,
        acked_days: Option<u32>,
        unacked_days: Option<u32>,
        now: SystemTime,
    ) -> Result<Purged, StoreError> {
        match self {
            RecordStore::Fs(s) => s.purge(acked_days, unacked_days, now),
            RecordStore::Postgres(s) => s.purge(acked_days, unacked_days, now),
        }
    }

    /// The daily upkeep: the embedded store rebuilds its index and sets the
    /// day on its files ([`Store::refresh`]); PostgreSQL vacuums
    /// ([`PgStore::refresh`]).
    pub fn refresh(&self, now: SystemTime) -> Result<(), StoreError> {
        match self {
            RecordStore::Fs(s) => s.refresh(now),
            RecordStore::Postgres(s) => s.refresh(),
        }
    }

    /// Flushes what is not yet durable (at shutdown). Every PostgreSQL
    /// commit already is.
    pub fn flush(&self) -> Result<(), StoreError> {
        match self {
            RecordStore::Fs(s) => s.flush(),
            RecordStore::Postgres(_) => Ok(()),
        }
    }

    /// Stores a record moved from another store under its own `receipt`
    /// and `entry` (day, state, recipients, form, day of acknowledgement),
    /// `ciphertext` as its content (not read when acknowledged), as durable
    /// as a commit when this returns; [`Imported::AlreadyThere`] (nothing
    /// changed) if the receipt is known, so that a copy can be run again.
    /// Blocking.
    pub fn import(
        &self,
        receipt: &Receipt,
        entry: &IndexEntry,
        ciphertext: &mut dyn Read,
    ) -> Result<Imported, StoreError> {
        match self {
            RecordStore::Fs(s) => s.import(receipt, entry, ciphertext),
            RecordStore::Postgres(s) => s.import(receipt, entry, ciphertext),
        }
    }

    /// The PostgreSQL backend, if that is the one in use.
    pub fn postgres(&self) -> Option<&PgStore> {
        match self {
            RecordStore::Fs(_) => None,
            RecordStore::Postgres(s) => Some(s),
        }
    }
}

impl Pending {
    /// The receipt this record will have.
    pub fn receipt(&self) -> Receipt {
        match self {
            Pending::Fs(p) => p.receipt(),
            Pending::Postgres(p) => p.receipt(),
        }
    }

    /// Writes what was written so far to disk, for a spool file (see
    /// [`PendingRecord::sync_data`]); a chunk in the database needs nothing.
    pub fn sync_data(&self) -> io::Result<()> {
        match self {
            Pending::Fs(p) => p.sync_data(),
            Pending::Postgres(_) => Ok(()),
        }
    }
}

impl Write for Pending {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Pending::Fs(p) => p.write(buf),
            Pending::Postgres(p) => p.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Pending::Fs(p) => p.flush(),
            Pending::Postgres(p) => p.flush(),
        }
    }
}

impl Read for RecordReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            RecordReader::Fs(f) => f.read(buf),
            RecordReader::Postgres(r) => r.read(buf),
        }
    }
}

impl Seek for RecordReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match self {
            RecordReader::Fs(f) => f.seek(to),
            RecordReader::Postgres(r) => r.seek(to),
        }
    }
}
