//! The PostgreSQL backend: records kept in a database several nodes share.
//!
//! ```text
//! schema_version(version)                  migrations applied (store/postgres/migrate.rs)
//! records(receipt, day, size, state, recipients, form, acked_day)   the index, one row a record
//! chunks(receipt, seq, data)               the ciphertext, 1 MiB a row
//! used_tokens(nonce, day)                  form tokens used on any node (used_tokens/postgres.rs)
//! reply_answers(mailbox, id, day, ciphertext)  answers to tipsters (replies/mailboxes/postgres.rs)
//! ```
//!
//! The durability contract is the embedded store's: a record's chunks and
//! its row are inserted in one transaction (`store/postgres/pending.rs`),
//! and the caller is answered only once `COMMIT` has returned, with
//! `synchronous_commit` on (checked at start, with `track_commit_timestamp`
//! off: `store/postgres/connect.rs`). Nothing in a row is finer than the
//! day, as in the embedded index: days are `YYYY-MM-DD` text written by
//! sealform, no column holds a time and no default calls the clock.
//!
//! State changes and retention are single statements or short transactions
//! that several nodes may run at once: an acknowledgement updates the row
//! only if it is not acknowledged yet, and a purge deletes the rows it can
//! lock (`FOR UPDATE SKIP LOCKED`) with `DELETE ... RETURNING`, so two nodes
//! purging together neither delete a record twice nor fail. Everything here
//! is blocking (the `postgres` client runs its own small runtime per
//! connection): call it from a blocking thread, as the embedded store.
//!
//! A database that cannot be reached gives [`StoreError::Unavailable`]
//! (a 503 to the client, see `store.rs`), within the timeouts set in
//! `connect.rs`; the pool replaces broken connections by itself.

mod connect;
mod migrate;
mod pending;
mod reader;

use std::io::{self, Read};
use std::time::{Duration, SystemTime};

use postgres::Row;

use super::import::check_size;
use super::{Imported, IndexEntry, Indexing, Purged, RecordState, StoreError, day_string};
use crate::config::StoreConfig;
use crate::receipt::Receipt;

pub(crate) use connect::{Conn, Pool, db_err};
pub use pending::PgPending;
pub use reader::PgReader;

/// Bytes of ciphertext in one row of `chunks` (the last one of a record is
/// shorter).
pub const CHUNK: usize = 1 << 20;

/// The columns of `records` an [`IndexEntry`] is read from, in [`entry`]'s
/// order.
const ENTRY_COLUMNS: &str = "receipt, day, size, state, recipients, form, acked_day";

/// Records in a PostgreSQL database.
pub struct PgStore {
    pool: Pool,
}

impl PgStore {
    /// Connects to the database of `config`, refuses a server whose settings
    /// break the durability or metadata promises, and applies the schema's
    /// migrations (under a lock: nodes may start together).
    pub fn open(config: &StoreConfig) -> Result<PgStore, StoreError> {
        let pool = connect::pool(config)?;
        let mut conn = connect::take(&pool).map_err(|e| {
            match connect::why_unreachable(config).filter(|_| e.is_unavailable()) {
                Some(why) => StoreError::Unavailable(format!("cannot connect: {why}")),
                None => e,
            }
        })?;
        connect::check_settings(&mut conn)?;
        migrate::migrate(&mut conn)?;
        drop(conn);
        Ok(PgStore { pool })
    }

    /// A connection of the backend's pool, for the features that keep
    /// their own tables in the same database (their migrations go in
    /// `store/postgres/migrations/` and `MIGRATIONS` in `store/postgres/migrate.rs`).
    pub(crate) fn conn(&self) -> Result<Conn, StoreError> {
        connect::take(&self.pool)
    }

    /// The backend's pool itself, for such a feature that outlives a
    /// borrow of the store (the shared set of used form tokens,
    /// `used_tokens/postgres.rs`).
    pub(crate) fn pool(&self) -> Pool {
        self.pool.clone()
    }

    /// Starts a record: picks a receipt; nothing is sent to the database
    /// until the first chunk is full.
    pub fn create(&self) -> PgPending {
        PgPending::new(self.pool.clone())
    }

    /// Commits a written record with its row; answers once `COMMIT` has
    /// returned. Blocking.
    pub fn commit(
        &self,
        pending: PgPending,
        indexing: Indexing,
        now: SystemTime,
    ) -> Result<(Receipt, IndexEntry), StoreError> {
        let receipt = pending.receipt();
        let entry = IndexEntry {
            day: day_string(now),
            size: pending.size(),
            state: RecordState::New,
            recipients: indexing.recipients,
            form: indexing.form,
            acked_day: None,
        };
        pending.commit(&entry)?;
        Ok((receipt, entry))
    }

    /// Stores a record under `receipt` with `entry` as its row and
    /// `ciphertext` as its chunks (not read for an acknowledged record), in
    /// one transaction; answers once it has committed.
    /// [`Imported::AlreadyThere`] if the receipt is known. Blocking.
    pub fn import(
        &self,
        receipt: &Receipt,
        entry: &IndexEntry,
        ciphertext: &mut dyn Read,
    ) -> Result<Imported, StoreError> {
        if self.get(receipt)?.is_some() {
            return Ok(Imported::AlreadyThere);
        }
        let mut pending = PgPending::with_receipt(self.pool.clone(), *receipt);
        // An acknowledged record has no ciphertext.
        if entry.state != RecordState::Acked {
            io::copy(ciphertext, &mut pending).map_err(|e| match e.downcast::<StoreError>() {
                Ok(store) => store,
                Err(e) => StoreError::Database(format!("reading an imported record: {e}")),
            })?;
            check_size(pending.size(), entry)?;
        }
        match pending.commit(entry) {
            Ok(()) => Ok(Imported::Stored),
            // Imported meanwhile by another process (a unique violation).
            Err(StoreError::Database(text)) if text.contains("23505") => Ok(Imported::AlreadyThere),
            Err(e) => Err(e),
        }
    }

    /// The row of a record.
    pub fn get(&self, receipt: &Receipt) -> Result<Option<IndexEntry>, StoreError> {
        let mut conn = self.conn()?;
        let row = conn
            .query_opt(
                &format!("SELECT {ENTRY_COLUMNS} FROM records WHERE receipt = $1"),
                &[&receipt.to_string()],
            )
            .map_err(db_err)?;
        row.map(|r| entry(&r).map(|(_, e)| e)).transpose()
    }

    /// Every record, in receipt order (which is random).
    pub fn list(&self) -> Result<Vec<(Receipt, IndexEntry)>, StoreError> {
        let mut conn = self.conn()?;
        let rows = conn
            .query(
                &format!("SELECT {ENTRY_COLUMNS} FROM records ORDER BY receipt"),
                &[],
            )
            .map_err(db_err)?;
        rows.iter().map(entry).collect()
    }

    /// Opens a record's ciphertext for reading; `None` when the record is
    /// unknown or acknowledged (its chunks are gone).
    pub fn open_record(&self, receipt: &Receipt) -> Result<Option<PgReader>, StoreError> {
        let mut conn = self.conn()?;
        let chunks: i64 = conn
            .query_one(
                "SELECT count(*) FROM chunks WHERE receipt = $1",
                &[&receipt.to_string()],
            )
            .map_err(db_err)?
            .get(0);
        if chunks == 0 {
            return Ok(None);
        }
        let chunks = i32::try_from(chunks)
            .map_err(|_| StoreError::Database("a record has too many chunks".into()))?;
        Ok(Some(PgReader::new(self.pool.clone(), receipt, chunks)))
    }

    /// Marks a record as copied into an export bundle (only a `new` record
    /// changes). `None` if the receipt is unknown.
    pub fn mark_exported(&self, receipt: &Receipt) -> Result<Option<IndexEntry>, StoreError> {
        let mut conn = self.conn()?;
        let changed = conn
            .query_opt(
                &format!(
                    "UPDATE records SET state = 'exported' WHERE receipt = $1 AND state = 'new' \
                     RETURNING {ENTRY_COLUMNS}"
                ),
                &[&receipt.to_string()],
            )
            .map_err(db_err)?;
        match changed {
            Some(row) => entry(&row).map(|(_, e)| Some(e)),
            None => self.get(receipt),
        }
    }

    /// Acknowledges a record: its state and day, and its chunks deleted, in
    /// one transaction. `None` if the receipt is unknown; acknowledging
    /// twice (or from two nodes at once) is harmless.
    pub fn ack(
        &self,
        receipt: &Receipt,
        now: SystemTime,
    ) -> Result<Option<IndexEntry>, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(db_err)?;
        let key = receipt.to_string();
        let changed = tx
            .query_opt(
                &format!(
                    "UPDATE records SET state = 'acked', acked_day = $2 \
                     WHERE receipt = $1 AND state <> 'acked' RETURNING {ENTRY_COLUMNS}"
                ),
                &[&key, &day_string(now)],
            )
            .map_err(db_err)?;
        let found = match changed {
            Some(row) => {
                tx.execute("DELETE FROM chunks WHERE receipt = $1", &[&key])
                    .map_err(db_err)?;
                Some(row)
            }
            None => tx
                .query_opt(
                    &format!("SELECT {ENTRY_COLUMNS} FROM records WHERE receipt = $1"),
                    &[&key],
                )
                .map_err(db_err)?,
        };
        tx.commit().map_err(db_err)?;
        found.map(|r| entry(&r).map(|(_, e)| e)).transpose()
    }

    /// Applies retention at `now`, with the same days as the embedded store
    /// ([`super::Store::purge`]): rows of records acknowledged `acked_days`
    /// or more calendar days ago; with `unacked_days`, records never
    /// acknowledged that arrived more than that many days ago (their chunks
    /// with them). Several nodes may run it at once. Then
    /// [`PgStore::refresh`].
    pub fn purge(
        &self,
        acked_days: Option<u32>,
        unacked_days: Option<u32>,
        now: SystemTime,
    ) -> Result<Purged, StoreError> {
        let days_ago = |k: u32| day_string(now - Duration::from_secs(86_400 * u64::from(k)));
        // Days are YYYY-MM-DD, so text order is time order.
        let acked_by: Option<String> = acked_days.map(days_ago);
        let unacked_before: Option<String> = unacked_days.map(days_ago);
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(db_err)?;
        let rows = tx
            .query(
                "DELETE FROM records WHERE receipt IN ( \
                   SELECT receipt FROM records WHERE \
                     (state = 'acked' AND coalesce(acked_day, day) <= $1) \
                     OR (state <> 'acked' AND day < $2) \
                   FOR UPDATE SKIP LOCKED) \
                 RETURNING state",
                &[&acked_by, &unacked_before],
            )
            .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        drop(conn);
        let mut purged = Purged::default();
        for row in rows {
            let state: String = row.try_get(0).map_err(db_err)?;
            match state.as_str() {
                "acked" => purged.acked += 1,
                _ => purged.unacked += 1,
            }
        }
        self.refresh()?;
        Ok(purged)
    }

    /// Vacuums the tables, so that the space of deleted rows (acknowledged
    /// ciphertext, purged records, expired answers) is reclaimed for reuse rather than left
    /// until autovacuum's turn. Run daily by `serve` and after every purge.
    /// On a store of real size VACUUM outlasts the statement timeout meant
    /// for requests, so the timeout is lifted for it alone and restored
    /// (to the connection's default) before the connection goes back.
    pub fn refresh(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        conn.batch_execute("SET statement_timeout = 0")
            .map_err(db_err)?;
        let vacuumed = conn
            .batch_execute("VACUUM records, chunks, reply_answers")
            .map_err(db_err);
        let restored = conn
            .batch_execute("RESET statement_timeout")
            .map_err(db_err);
        vacuumed.and(restored)
    }
}

/// The state as `records.state` holds it.
fn state_text(state: RecordState) -> &'static str {
    match state {
        RecordState::New => "new",
        RecordState::Exported => "exported",
        RecordState::Acked => "acked",
    }
}

/// The parameters of a row that are not plain text: state, size, recipients.
fn row_params(entry: &IndexEntry) -> Result<(&'static str, i64, &Vec<String>), StoreError> {
    let size = i64::try_from(entry.size)
        .map_err(|_| StoreError::Database("a record's size is out of range".into()))?;
    Ok((state_text(entry.state), size, &entry.recipients))
}

/// A row of [`ENTRY_COLUMNS`] as a receipt and its entry.
fn entry(row: &Row) -> Result<(Receipt, IndexEntry), StoreError> {
    let corrupt = |what: &str| StoreError::Database(format!("a row of records has {what}"));
    let receipt: String = row.try_get(0).map_err(db_err)?;
    let receipt = Receipt::parse(&receipt).ok_or_else(|| corrupt("a malformed receipt"))?;
    let size: i64 = row.try_get(2).map_err(db_err)?;
    let state: String = row.try_get(3).map_err(db_err)?;
    let state = match state.as_str() {
        "new" => RecordState::New,
        "exported" => RecordState::Exported,
        "acked" => RecordState::Acked,
        _ => return Err(corrupt("an unknown state")),
    };
    let entry = IndexEntry {
        day: row.try_get(1).map_err(db_err)?,
        size: u64::try_from(size).map_err(|_| corrupt("a negative size"))?,
        state,
        recipients: row.try_get(4).map_err(db_err)?,
        form: row.try_get(5).map_err(db_err)?,
        acked_day: row.try_get(6).map_err(db_err)?,
    };
    Ok((receipt, entry))
}
