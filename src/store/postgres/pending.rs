//! A record being written into PostgreSQL: the ciphertext is cut into
//! chunks of [`CHUNK`] bytes, each inserted as it fills, in a transaction
//! opened with the first full chunk; [`PgPending::commit`] inserts the last
//! chunk and the record's row and commits. A record smaller than a chunk
//! takes a connection only for its commit. Memory stays at one chunk
//! whatever the record's size. Dropped without a commit, the transaction
//! is rolled back: a failed submission leaves nothing.

use std::io::{self, Write};
use std::sync::Mutex;

use postgres::Statement;
use postgres::types::ToSql;

use super::connect::{Conn, Pool, db_err, take};
use super::{CHUNK, row_params};
use crate::receipt::Receipt;
use crate::store::{IndexEntry, RecordState, StoreError};

/// A record being written; see the module's documentation.
pub struct PgPending {
    receipt: Receipt,
    pool: Pool,
    /// The chunk being filled.
    buf: Vec<u8>,
    /// The connection in its open transaction, from the first full chunk
    /// on, with the prepared insert of a chunk. In a mutex only because the
    /// encryptor wants a `Sync` sink and a client is not; never contended
    /// (every use takes `&mut self`).
    open: Option<Mutex<(Conn, Statement)>>,
    /// Chunks inserted so far.
    chunks: i32,
    /// Bytes written so far.
    size: u64,
}

impl PgPending {
    pub(super) fn new(pool: Pool) -> PgPending {
        PgPending::with_receipt(pool, Receipt::random())
    }

    /// A record under a receipt it already has (an import).
    pub(super) fn with_receipt(pool: Pool, receipt: Receipt) -> PgPending {
        PgPending {
            receipt,
            pool,
            buf: Vec::new(),
            open: None,
            chunks: 0,
            size: 0,
        }
    }

    /// The receipt this record will have.
    pub fn receipt(&self) -> Receipt {
        self.receipt
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Takes a connection and opens the record's transaction, unless open.
    fn begin(&mut self) -> Result<(), StoreError> {
        if self.open.is_none() {
            let mut conn = take(&self.pool)?;
            conn.batch_execute("BEGIN").map_err(db_err)?;
            let insert = conn
                .prepare("INSERT INTO chunks (receipt, seq, data) VALUES ($1, $2, $3)")
                .map_err(db_err)?;
            self.open = Some(Mutex::new((conn, insert)));
        }
        Ok(())
    }

    /// Inserts the chunk in `buf` (opening the transaction first if need
    /// be) and empties `buf`.
    fn insert_chunk(&mut self) -> Result<(), StoreError> {
        self.begin()?;
        let receipt = self.receipt.to_string();
        let Some((conn, insert)) = self.open.as_mut().map(unlocked) else {
            return Err(StoreError::Database("no open transaction".into()));
        };
        let data: &[u8] = &self.buf;
        let params: [&(dyn ToSql + Sync); 3] = [&receipt, &self.chunks, &data];
        conn.execute(&*insert, &params).map_err(db_err)?;
        self.chunks += 1;
        self.buf.clear();
        Ok(())
    }

    /// Inserts what is left of the ciphertext and the record's row `entry`,
    /// and commits; returns once `COMMIT` has returned (with
    /// `synchronous_commit` on, checked at start: the record is durable).
    pub(super) fn commit(mut self, entry: &IndexEntry) -> Result<(), StoreError> {
        // An empty record still gets its (empty) chunk, so that it can be
        // read; an acknowledged one (an import) has none.
        let keeps_ciphertext = entry.state != RecordState::Acked;
        if !self.buf.is_empty() || (self.chunks == 0 && keeps_ciphertext) {
            self.insert_chunk()?;
        }
        self.begin()?;
        let receipt = self.receipt.to_string();
        let Some((conn, _)) = self.open.as_mut().map(unlocked) else {
            return Err(StoreError::Database("no open transaction".into()));
        };
        let (state, size, recipients) = row_params(entry)?;
        conn.execute(
            "INSERT INTO records (receipt, day, size, state, recipients, form, acked_day) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &receipt as &(dyn ToSql + Sync),
                &entry.day,
                &size,
                &state,
                &recipients,
                &entry.form,
                &entry.acked_day,
            ],
        )
        .map_err(db_err)?;
        conn.batch_execute("COMMIT").map_err(db_err)?;
        // Committed: nothing for the drop to roll back.
        self.open = None;
        Ok(())
    }
}

impl Write for PgPending {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(CHUNK);
        }
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.size += n as u64;
        if self.buf.len() == CHUNK {
            self.insert_chunk().map_err(io::Error::other)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for PgPending {
    fn drop(&mut self) {
        if let Some((conn, _)) = self.open.as_mut().map(unlocked) {
            // Best effort: a connection that fails this is broken, and the
            // pool discards it (a closed client) or the server aborts the
            // transaction when the connection closes.
            let _ = conn.batch_execute("ROLLBACK");
        }
    }
}

/// The content of a mutex only ever used through `&mut`.
fn unlocked<T>(m: &mut Mutex<T>) -> &mut T {
    m.get_mut().unwrap_or_else(|p| p.into_inner())
}
