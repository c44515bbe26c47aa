//! The reply store: the answers staff pushed, one OpenPGP message each,
//! under the mailbox they were pushed to, with the day they were pushed and
//! nothing finer. Two backends, chosen with the record store (`[store]
//! backend`): folders under `data_dir/replies/` (`mailboxes/fs.rs`), or a
//! table in the PostgreSQL database that several nodes share
//! (`mailboxes/postgres.rs`), so that an answer pushed to one node is read
//! on any.
//!
//! A mailbox is named only by its folder, or its key in the table; nothing
//! here knows a record, a receipt or a code. The I/O blocks: call it from a
//! blocking thread.

mod fs;
mod postgres;

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::SystemTime;

use super::{MailboxId, ReplyError};
use crate::store::RecordStore;

pub use fs::FsMailboxes;
pub use postgres::PgMailboxes;

/// The id of one answer in a mailbox: 128 bits, 26 lowercase base32
/// characters (what the staff route's `{id}` holds).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AnswerId([u8; 16]);

impl AnswerId {
    /// A fresh random id.
    pub fn random() -> AnswerId {
        AnswerId(rand::random())
    }
}

impl fmt::Display for AnswerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            &data_encoding::BASE32_NOPAD
                .encode(&self.0)
                .to_ascii_lowercase(),
        )
    }
}

impl fmt::Debug for AnswerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AnswerId({self})")
    }
}

/// A string that is not an answer id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an answer id (26 lowercase base32 characters)")]
pub struct BadAnswerId;

impl FromStr for AnswerId {
    type Err = BadAnswerId;

    fn from_str(s: &str) -> Result<AnswerId, BadAnswerId> {
        super::from_base32(s).map(AnswerId).ok_or(BadAnswerId)
    }
}

/// What [`Mailboxes::put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// The answer is stored now.
    Stored,
    /// The same bytes were stored under this id before.
    AlreadyThere,
}

/// One stored answer, still encrypted.
#[derive(Debug, Clone)]
pub struct StoredAnswer {
    /// Its id.
    pub id: AnswerId,
    /// The day it was pushed, `YYYY-MM-DD`.
    pub day: String,
    /// The OpenPGP message.
    pub ciphertext: Vec<u8>,
}

/// The reply store of the record store's backend.
pub enum Mailboxes {
    /// Folders under `data_dir/replies/`.
    Fs(FsMailboxes),
    /// The `reply_answers` table of the PostgreSQL store's database.
    Postgres(PgMailboxes),
}

impl Mailboxes {
    /// The reply store that goes with `store`: in its database when it is
    /// PostgreSQL (every node sees every answer), else under `data_dir`
    /// (opened, created if needed, and cleaned of what an interrupted put
    /// or delete left behind). A mailbox holds at most `max_per_mailbox`
    /// answers.
    pub fn open(
        store: &RecordStore,
        data_dir: &Path,
        max_per_mailbox: usize,
    ) -> Result<Mailboxes, ReplyError> {
        Ok(match store {
            RecordStore::Fs(_) => Mailboxes::Fs(FsMailboxes::open(data_dir, max_per_mailbox)?),
            RecordStore::Postgres(pg) => {
                Mailboxes::Postgres(PgMailboxes::new(pg.pool(), max_per_mailbox))
            }
        })
    }

    /// Stores `ciphertext` as answer `id` of `mailbox`, durably, on the day
    /// of `now`. The same bytes again are [`Put::AlreadyThere`]; other bytes
    /// under a stored id are [`ReplyError::Conflict`]; a mailbox holding
    /// `max_per_mailbox` answers is [`ReplyError::Full`].
    pub fn put(
        &self,
        mailbox: &MailboxId,
        id: &AnswerId,
        ciphertext: &[u8],
        now: SystemTime,
    ) -> Result<Put, ReplyError> {
        match self {
            Mailboxes::Fs(m) => m.put(mailbox, id, ciphertext, now),
            Mailboxes::Postgres(m) => m.put(mailbox, id, ciphertext, now),
        }
    }

    /// The answers of `mailbox`, oldest first (by day, then id); none when
    /// the mailbox does not exist.
    pub fn list(&self, mailbox: &MailboxId) -> Result<Vec<StoredAnswer>, ReplyError> {
        let mut answers = match self {
            Mailboxes::Fs(m) => m.list(mailbox)?,
            Mailboxes::Postgres(m) => m.list(mailbox)?,
        };
        answers.sort_by(|a, b| (&a.day, a.id).cmp(&(&b.day, b.id)));
        Ok(answers)
    }

    /// Every mailbox that holds answers (or held some until a purge that
    /// has not yet removed its folder), in no particular order.
    pub fn mailbox_ids(&self) -> Result<Vec<MailboxId>, ReplyError> {
        match self {
            Mailboxes::Fs(m) => m.mailbox_ids(),
            Mailboxes::Postgres(m) => m.mailbox_ids(),
        }
    }

    /// Deletes `mailbox` and all its answers at once.
    pub fn delete(&self, mailbox: &MailboxId) -> Result<(), ReplyError> {
        match self {
            Mailboxes::Fs(m) => m.delete(mailbox),
            Mailboxes::Postgres(m) => m.delete(mailbox),
        }
    }

    /// Deletes every answer pushed `keep_days` or more midnights before
    /// `now` (0: every answer), and mailboxes left without answers; returns
    /// how many answers went. Several nodes may run it at once.
    pub fn purge(&self, keep_days: u32, now: SystemTime) -> Result<usize, ReplyError> {
        match self {
            Mailboxes::Fs(m) => m.purge(keep_days, now),
            Mailboxes::Postgres(m) => m.purge(keep_days, now),
        }
    }
}
