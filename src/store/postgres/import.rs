//! Records brought in whole from another store (`sealform store copy`),
//! keeping their identity: receipt, day, state, recipients, form, day of
//! acknowledgement, and the ciphertext byte for byte.
//!
//! One transaction: the record's old row and chunks (if a copy was run
//! before) deleted, the ciphertext inserted chunk by chunk as it is read
//! (memory: one chunk), the row inserted, then `COMMIT`: a copy killed
//! half-way leaves a record wholly there or not at all.

use std::io::Read;

use postgres::types::ToSql;

use super::connect::db_err;
use super::{CHUNK, PgStore, row_params};
use crate::receipt::Receipt;
use crate::store::{IndexEntry, StoreError};

impl PgStore {
    /// Writes the record `receipt` as `entry` describes it, with
    /// `ciphertext` (`None` for an acknowledged record, which has none);
    /// durable when this returns. Blocking.
    pub fn import(
        &self,
        receipt: &Receipt,
        entry: &IndexEntry,
        ciphertext: Option<&mut dyn Read>,
    ) -> Result<(), StoreError> {
        let key = receipt.to_string();
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(db_err)?;
        tx.execute("DELETE FROM chunks WHERE receipt = $1", &[&key])
            .map_err(db_err)?;
        tx.execute("DELETE FROM records WHERE receipt = $1", &[&key])
            .map_err(db_err)?;
        if let Some(source) = ciphertext {
            let insert = tx
                .prepare("INSERT INTO chunks (receipt, seq, data) VALUES ($1, $2, $3)")
                .map_err(db_err)?;
            let mut buf = vec![0u8; CHUNK];
            let mut seq: i32 = 0;
            loop {
                let n = fill(source, &mut buf)?;
                if n == 0 && seq > 0 {
                    break;
                }
                let data: &[u8] = &buf[..n];
                let params: [&(dyn ToSql + Sync); 3] = [&key, &seq, &data];
                tx.execute(&insert, &params).map_err(db_err)?;
                seq += 1;
                if n < CHUNK {
                    break;
                }
            }
        }
        let (state, size, recipients) = row_params(entry)?;
        tx.execute(
            "INSERT INTO records (receipt, day, size, state, recipients, form, acked_day) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &key as &(dyn ToSql + Sync),
                &entry.day,
                &size,
                &state,
                &recipients,
                &entry.form,
                &entry.acked_day,
            ],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)
    }
}

/// Reads into `buf` until it is full or `source` ends; how many bytes.
fn fill(source: &mut dyn Read, buf: &mut [u8]) -> Result<usize, StoreError> {
    let mut n = 0;
    while n < buf.len() {
        match source.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(StoreError::Database(format!(
                    "reading a record to import: {e}"
                )));
            }
        }
    }
    Ok(n)
}
