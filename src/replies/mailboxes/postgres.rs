//! The reply store in PostgreSQL: the table `reply_answers(mailbox, id,
//! day, ciphertext)` (`store/postgres/migrations/0003_reply_answers.sql`)
//! in the records' database, reached through the store's pool, so that
//! every node sees every answer.
//!
//! A put is one transaction under an advisory lock of its mailbox, so that
//! the bound on answers and the id check hold when two nodes take answers
//! for the same mailbox at once; the 2xx comes after `COMMIT` (with
//! `synchronous_commit` on, checked at start). Days are `YYYY-MM-DD` text
//! written by sealform, as in `records`; no column holds a time.

use std::time::{Duration, SystemTime};

use super::{AnswerId, Put, StoredAnswer};
use crate::replies::{MailboxId, ReplyError};
use crate::store::postgres::{Conn, Pool, db_err};
use crate::store::{StoreError, day_string};

/// Answers kept in the database of the PostgreSQL store.
pub struct PgMailboxes {
    pool: Pool,
    max_per_mailbox: usize,
}

/// A database error as a [`ReplyError`]: [`ReplyError::Unavailable`] when
/// the database cannot be reached (a 503), else [`ReplyError::Database`].
fn reply_err(e: StoreError) -> ReplyError {
    if e.is_unavailable() {
        ReplyError::Unavailable(e.to_string())
    } else {
        ReplyError::Database(e.to_string())
    }
}

impl PgMailboxes {
    /// The reply store in the database `pool` reaches; its table exists
    /// once the store has opened (and migrated) the database.
    pub(crate) fn new(pool: Pool, max_per_mailbox: usize) -> PgMailboxes {
        PgMailboxes {
            pool,
            max_per_mailbox,
        }
    }

    fn conn(&self) -> Result<Conn, ReplyError> {
        self.pool
            .get()
            .map_err(|e| ReplyError::Unavailable(format!("no database connection: {e}")))
    }

    /// [`super::Mailboxes::put`].
    pub fn put(
        &self,
        mailbox: &MailboxId,
        id: &AnswerId,
        ciphertext: &[u8],
        now: SystemTime,
    ) -> Result<Put, ReplyError> {
        let db = |e| reply_err(db_err(e));
        let key = mailbox.to_string();
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(db)?;
        // The mailbox's own lock (64 bits of a hash of its address: a
        // collision only makes two mailboxes wait for each other).
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&key],
        )
        .map_err(db)?;
        let stored = tx
            .query_opt(
                "SELECT ciphertext FROM reply_answers WHERE mailbox = $1 AND id = $2",
                &[&key, &id.to_string()],
            )
            .map_err(db)?;
        if let Some(row) = stored {
            let same = row.try_get::<_, &[u8]>(0).map_err(db)? == ciphertext;
            return if same {
                Ok(Put::AlreadyThere)
            } else {
                Err(ReplyError::Conflict)
            };
        }
        let count: i64 = tx
            .query_one(
                "SELECT count(*) FROM reply_answers WHERE mailbox = $1",
                &[&key],
            )
            .map_err(db)?
            .try_get(0)
            .map_err(db)?;
        if usize::try_from(count).unwrap_or(usize::MAX) >= self.max_per_mailbox {
            return Err(ReplyError::Full);
        }
        tx.execute(
            "INSERT INTO reply_answers (mailbox, id, day, ciphertext) VALUES ($1, $2, $3, $4)",
            &[&key, &id.to_string(), &day_string(now), &ciphertext],
        )
        .map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(Put::Stored)
    }

    /// [`super::Mailboxes::list`] (sorted there). Rows are read one at a
    /// time, so a full mailbox is held once (its answers), not twice.
    pub fn list(&self, mailbox: &MailboxId) -> Result<Vec<StoredAnswer>, ReplyError> {
        use postgres::fallible_iterator::FallibleIterator as _;
        let db = |e| reply_err(db_err(e));
        let key = mailbox.to_string();
        let mut conn = self.conn()?;
        let mut rows = conn
            .query_raw(
                "SELECT id, day, ciphertext FROM reply_answers WHERE mailbox = $1",
                [&key],
            )
            .map_err(db)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(db)? {
            let id: &str = row.try_get(0).map_err(db)?;
            // The table's check allows only ids sealform writes.
            let Ok(id) = id.parse::<AnswerId>() else {
                continue;
            };
            out.push(StoredAnswer {
                id,
                day: row.try_get(1).map_err(db)?,
                ciphertext: row.try_get(2).map_err(db)?,
            });
        }
        Ok(out)
    }

    /// [`super::Mailboxes::mailbox_ids`].
    pub fn mailbox_ids(&self) -> Result<Vec<MailboxId>, ReplyError> {
        let db = |e| reply_err(db_err(e));
        let rows = self
            .conn()?
            .query("SELECT DISTINCT mailbox FROM reply_answers", &[])
            .map_err(db)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let name: &str = row.try_get(0).map_err(db)?;
            out.extend(name.parse::<MailboxId>().ok());
        }
        Ok(out)
    }

    /// [`super::Mailboxes::delete`]: every answer of `mailbox`, in one
    /// statement.
    pub fn delete(&self, mailbox: &MailboxId) -> Result<(), ReplyError> {
        self.conn()?
            .execute(
                "DELETE FROM reply_answers WHERE mailbox = $1",
                &[&mailbox.to_string()],
            )
            .map_err(|e| reply_err(db_err(e)))?;
        Ok(())
    }

    /// [`super::Mailboxes::purge`]: one statement, so several nodes may run
    /// it at once (a row another node deletes first is simply not counted
    /// here). A mailbox is its rows: one without answers is gone with them.
    pub fn purge(&self, keep_days: u32, now: SystemTime) -> Result<usize, ReplyError> {
        // Pushed `keep_days` or more midnights ago: on that day or before.
        // Days are YYYY-MM-DD, so text order is time order.
        // `keep_days` is at most a hundred years (`config/retention.rs`).
        let last = day_string(now - Duration::from_secs(86_400 * u64::from(keep_days)));
        let n = self
            .conn()?
            .execute("DELETE FROM reply_answers WHERE day <= $1", &[&last])
            .map_err(|e| reply_err(db_err(e)))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}
