//! Reading a record's ciphertext out of PostgreSQL one chunk at a time:
//! memory stays at one chunk, and a connection is held only while a chunk
//! is fetched.

use std::io::{self, Read, Seek, SeekFrom};

use postgres::types::ToSql;

use super::CHUNK;
use super::connect::{Pool, db_err, take};
use crate::receipt::Receipt;
use crate::store::StoreError;

/// A record's ciphertext, read chunk by chunk ([`Read`], and [`Seek`] from
/// the start).
pub struct PgReader {
    pool: Pool,
    receipt: String,
    /// How many chunks the record has.
    chunks: i32,
    /// The next chunk to fetch.
    next: i32,
    /// The chunk being read, and how far.
    cur: Vec<u8>,
    pos: usize,
}

impl PgReader {
    pub(super) fn new(pool: Pool, receipt: &Receipt, chunks: i32) -> PgReader {
        PgReader {
            pool,
            receipt: receipt.to_string(),
            chunks,
            next: 0,
            cur: Vec::new(),
            pos: 0,
        }
    }

    fn fetch(&mut self) -> Result<(), StoreError> {
        let mut conn = take(&self.pool)?;
        let row = conn
            .query_opt(
                "SELECT data FROM chunks WHERE receipt = $1 AND seq = $2",
                &[&self.receipt as &(dyn ToSql + Sync), &self.next],
            )
            .map_err(db_err)?;
        let Some(row) = row else {
            // Acknowledged or purged while being read.
            return Err(StoreError::Database(
                "the record's ciphertext went away while it was read".into(),
            ));
        };
        self.cur = row.try_get(0).map_err(db_err)?;
        self.pos = 0;
        self.next += 1;
        Ok(())
    }
}

impl Read for PgReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.next >= self.chunks {
                return Ok(0);
            }
            self.fetch().map_err(io::Error::other)?;
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Seek for PgReader {
    /// Only from the start: every chunk but the last is [`CHUNK`] bytes.
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let SeekFrom::Start(offset) = to else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a record in the database seeks from its start only",
            ));
        };
        let chunk = CHUNK as u64;
        let index = i32::try_from(offset / chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        self.next = index;
        self.cur.clear();
        self.pos = 0;
        let within = (offset % chunk) as usize;
        if within > 0 {
            if self.next < self.chunks {
                self.fetch().map_err(io::Error::other)?;
            }
            self.pos = within.min(self.cur.len());
        }
        Ok(offset)
    }
}
