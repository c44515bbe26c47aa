//! The reply store: `data_dir/replies/<mailbox>/<day>_<answer-id>.pgp`,
//! one OpenPGP message per answer, as pushed by staff. Every file is
//! written to a temporary name, fsynced, renamed and its directory fsynced
//! before a put returns; every file and directory time is set to 00:00 UTC
//! (`store/times.rs`). The day in the file name is the day the answer was
//! pushed: expiry counts from it, whatever later stamping (the store's
//! daily walk over `data_dir`) does to the file times.
//!
//! A mailbox is named only by its folder; nothing here knows a record, a
//! receipt or a code. The I/O blocks: call it from a blocking thread.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::SystemTime;

use super::{MailboxId, ReplyError};
use crate::durable::{create_private_dir_all, create_private_file, sync_path};
use crate::store::times::{open_unread, stamp};
use crate::store::{day_string, days_between, start_of_day};

/// The folder under `data_dir` that holds the mailboxes.
const REPLIES_DIR: &str = "replies";

/// Ending of an answer file.
const ANSWER_EXT: &str = ".pgp";

/// Ending of an answer being written (removed at open if left behind).
const PARTIAL_EXT: &str = ".partial";

/// Prefix of a mailbox being deleted (removed at open if left behind).
const GONE_PREFIX: &str = ".gone-";

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

/// The reply store under `data_dir/replies/`.
pub struct Mailboxes {
    root: PathBuf,
    max_per_mailbox: usize,
    /// Serializes changes, so the bound and the id check hold.
    changes: Mutex<()>,
}

impl Mailboxes {
    /// Opens (creating if needed) the store, removing what an interrupted
    /// put or delete left behind.
    pub fn open(data_dir: &Path, max_per_mailbox: usize) -> Result<Mailboxes, ReplyError> {
        let root = data_dir.join(REPLIES_DIR);
        create_private_dir_all(&root)?;
        let m = Mailboxes {
            root,
            max_per_mailbox,
            changes: Mutex::new(()),
        };
        m.clean()?;
        Ok(m)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.changes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes leftovers: mailboxes being deleted and partial answers.
    fn clean(&self) -> Result<(), ReplyError> {
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(GONE_PREFIX) {
                fs::remove_dir_all(entry.path())?;
                continue;
            }
            if !entry.file_type()?.is_dir() {
                continue;
            }
            for file in fs::read_dir(entry.path())? {
                let file = file?;
                if file.file_name().to_string_lossy().ends_with(PARTIAL_EXT) {
                    fs::remove_file(file.path())?;
                }
            }
        }
        sync_path(&self.root)?;
        Ok(())
    }

    fn dir(&self, mailbox: &MailboxId) -> PathBuf {
        self.root.join(mailbox.to_string())
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
        let _guard = self.lock();
        let dir = self.dir(mailbox);
        let stored = answers_in(&dir)?;
        if let Some((_, _, path)) = stored.iter().find(|(_, a, _)| a == id) {
            return if read_unread(path)? == ciphertext {
                Ok(Put::AlreadyThere)
            } else {
                Err(ReplyError::Conflict)
            };
        }
        if stored.len() >= self.max_per_mailbox {
            return Err(ReplyError::Full);
        }
        let day = start_of_day(now);
        if !dir.exists() {
            create_private_dir_all(&dir)?;
            sync_path(&self.root)?;
        }
        let name = format!("{}_{id}", day_string(now));
        let partial = dir.join(format!("{name}{PARTIAL_EXT}"));
        let result = write_synced(&partial, ciphertext, day).and_then(|()| {
            fs::rename(&partial, dir.join(format!("{name}{ANSWER_EXT}")))?;
            sync_path(&dir)
        });
        if let Err(e) = result {
            let _ = fs::remove_file(&partial);
            return Err(e.into());
        }
        stamp(&dir, day)?;
        stamp(&self.root, day)?;
        Ok(Put::Stored)
    }

    /// The answers of `mailbox`, oldest first (by day, then id); none when
    /// the mailbox does not exist.
    pub fn list(&self, mailbox: &MailboxId) -> Result<Vec<StoredAnswer>, ReplyError> {
        let dir = self.dir(mailbox);
        // Listing a folder is a read that may move its access time: it is
        // set back to the day of its last change afterwards.
        let changed = fs::metadata(&dir).and_then(|m| m.modified());
        let mut out = Vec::new();
        for (day, id, path) in answers_in(&dir)? {
            match read_unread(&path) {
                Ok(ciphertext) => out.push(StoredAnswer {
                    id,
                    day,
                    ciphertext,
                }),
                // Purged or deleted meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        out.sort_by(|a, b| (&a.day, a.id).cmp(&(&b.day, b.id)));
        if let Ok(changed) = changed {
            stamp(&dir, start_of_day(changed))?;
        }
        Ok(out)
    }

    /// Deletes `mailbox` and all its answers at once: the folder is first
    /// renamed away (one durable step), then removed.
    pub fn delete(&self, mailbox: &MailboxId) -> Result<(), ReplyError> {
        let _guard = self.lock();
        let dir = self.dir(mailbox);
        let gone = self
            .root
            .join(format!("{GONE_PREFIX}{}", AnswerId::random()));
        match fs::rename(&dir, &gone) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        sync_path(&self.root)?;
        fs::remove_dir_all(&gone)?;
        sync_path(&self.root)?;
        stamp(&self.root, start_of_day(SystemTime::now()))?;
        Ok(())
    }

    /// Deletes every answer pushed `keep_days` or more midnights before
    /// `now` (0: every answer), and mailboxes left empty; returns how many
    /// answers went.
    pub fn purge(&self, keep_days: u32, now: SystemTime) -> Result<usize, ReplyError> {
        let _guard = self.lock();
        let today = day_string(now);
        let mut purged = 0;
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            let Some(mailbox) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<MailboxId>().ok())
            else {
                continue;
            };
            let dir = self.dir(&mailbox);
            let answers = answers_in(&dir)?;
            let mut left = answers.len();
            for (day, _, path) in answers {
                if days_between(&day, &today).is_some_and(|age| age >= i64::from(keep_days)) {
                    fs::remove_file(&path)?;
                    purged += 1;
                    left -= 1;
                }
            }
            if left == 0 {
                fs::remove_dir(&dir)?;
            } else {
                sync_path(&dir)?;
                stamp(&dir, start_of_day(now))?;
            }
        }
        sync_path(&self.root)?;
        stamp(&self.root, start_of_day(now))?;
        Ok(purged)
    }
}

/// The answers in a mailbox folder: day, id and path; none if it does
/// not exist.
fn answers_in(dir: &Path) -> io::Result<Vec<(String, AnswerId, PathBuf)>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some((day, id)) = name
            .to_str()
            .and_then(|n| n.strip_suffix(ANSWER_EXT))
            .and_then(|n| n.split_once('_'))
        else {
            continue;
        };
        if let Ok(id) = id.parse::<AnswerId>() {
            out.push((day.to_string(), id, entry.path()));
        }
    }
    Ok(out)
}

/// Writes a new private file, fsyncs it and sets its times to `day`.
fn write_synced(path: &Path, bytes: &[u8], day: SystemTime) -> io::Result<()> {
    let mut f = create_private_file(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    stamp(path, day)
}

/// Reads a whole file without moving its access time where the kernel
/// allows.
fn read_unread(path: &Path) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    open_unread(path)?.read_to_end(&mut out)?;
    Ok(out)
}
