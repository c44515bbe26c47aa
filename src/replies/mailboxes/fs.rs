//! The reply store on the local disk:
//! `data_dir/replies/<mailbox>/<day>_<answer-id>.pgp`, one OpenPGP message
//! per answer, as pushed by staff. Every file is written to a temporary
//! name, fsynced, renamed and its directory fsynced before a put returns;
//! every file and directory time is set to 00:00 UTC (`store/times.rs`).
//! The day in the file name is the day the answer was pushed: expiry counts
//! from it, whatever later stamping (the store's daily walk over
//! `data_dir`) does to the file times.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use super::{AnswerId, Put, StoredAnswer};
use crate::durable::{create_private_dir_all, create_private_file, sync_path};
use crate::replies::{MailboxId, ReplyError};
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

/// The reply store under `data_dir/replies/`.
pub struct FsMailboxes {
    root: PathBuf,
    max_per_mailbox: usize,
    /// Serializes changes, so the bound and the id check hold.
    changes: Mutex<()>,
}

impl FsMailboxes {
    /// Opens (creating if needed) the store, removing what an interrupted
    /// put or delete left behind.
    pub fn open(data_dir: &Path, max_per_mailbox: usize) -> Result<FsMailboxes, ReplyError> {
        let root = data_dir.join(REPLIES_DIR);
        create_private_dir_all(&root)?;
        let m = FsMailboxes {
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
        let (names, _) = names_in(&self.root)?.unwrap_or_default();
        for name in names {
            let path = self.root.join(&name);
            if name.starts_with(GONE_PREFIX) {
                fs::remove_dir_all(&path)?;
            } else if name.parse::<MailboxId>().is_ok() {
                let (files, _) = names_in(&path)?.unwrap_or_default();
                for file in files.iter().filter(|f| f.ends_with(PARTIAL_EXT)) {
                    fs::remove_file(path.join(file))?;
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
        let (stored, moved) = answers_in(&dir)?;
        if let Some((_, _, path)) = stored.iter().find(|(_, a, _)| a == id) {
            let same = read_unread(path)? == ciphertext;
            restamp_if_moved(&dir, moved)?;
            return if same {
                Ok(Put::AlreadyThere)
            } else {
                Err(ReplyError::Conflict)
            };
        }
        if stored.len() >= self.max_per_mailbox {
            restamp_if_moved(&dir, moved)?;
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
        let (answers, moved) = answers_in(&dir)?;
        let mut out = Vec::new();
        for (day, id, path) in answers {
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
        restamp_if_moved(&dir, moved)?;
        Ok(out)
    }

    /// [`super::Mailboxes::mailbox_ids`]: the folders named as mailboxes.
    pub fn mailbox_ids(&self) -> Result<Vec<MailboxId>, ReplyError> {
        let (names, moved) = names_in(&self.root)?.unwrap_or_default();
        restamp_if_moved(&self.root, moved)?;
        Ok(names.iter().filter_map(|n| n.parse().ok()).collect())
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
    /// `now` (0: every answer), and mailboxes left without answers; returns
    /// how many answers went. A mailbox that fails does not stop the others:
    /// the failures are counted in one log line (no mailbox named) and
    /// tried again at the next purge.
    pub fn purge(&self, keep_days: u32, now: SystemTime) -> Result<usize, ReplyError> {
        let _guard = self.lock();
        // A deletion cut short (its `.gone-` folder) goes now, not only at
        // the next start.
        self.clean()?;
        let today = day_string(now);
        let day = start_of_day(now);
        let (names, _) = names_in(&self.root)?.unwrap_or_default();
        let (mut purged, mut failed) = (0, 0);
        for mailbox in names.iter().filter_map(|n| n.parse::<MailboxId>().ok()) {
            match self.purge_mailbox(&mailbox, keep_days, &today, day) {
                Ok(n) => purged += n,
                Err(_) => failed += 1,
            }
        }
        if failed > 0 {
            tracing::warn!(
                mailboxes = failed,
                "expired answers of some mailboxes could not be deleted; the next purge tries again"
            );
        }
        sync_path(&self.root)?;
        stamp(&self.root, day)?;
        Ok(purged)
    }

    /// [`FsMailboxes::purge`] of one mailbox: its expired answers, and the
    /// whole folder (strays included) once no answer is left.
    fn purge_mailbox(
        &self,
        mailbox: &MailboxId,
        keep_days: u32,
        today: &str,
        day: SystemTime,
    ) -> io::Result<usize> {
        let dir = self.dir(mailbox);
        let (answers, moved) = answers_in(&dir)?;
        let (mut purged, mut left) = (0, answers.len());
        for (pushed, _, path) in answers {
            if days_between(&pushed, today).is_some_and(|age| age >= i64::from(keep_days)) {
                fs::remove_file(&path)?;
                purged += 1;
                left -= 1;
            }
        }
        if left == 0 {
            fs::remove_dir_all(&dir)?;
        } else if purged > 0 {
            sync_path(&dir)?;
            stamp(&dir, day)?;
        } else {
            restamp_if_moved(&dir, moved)?;
        }
        Ok(purged)
    }
}

/// The names in `dir` (not `.` and `..`), read without moving its access
/// time where the kernel allows (`O_NOATIME` needs the folder's owner), and
/// whether the access time may have moved; `None` if `dir` does not exist.
/// A read that moved it would need the time set back, which moves the
/// folder's change time (ctime) to that moment instead.
fn names_in(dir: &Path) -> io::Result<Option<(Vec<String>, bool)>> {
    use rustix::fs::{CWD, Dir, Mode, OFlags, openat};
    use rustix::io::Errno;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let opened = match openat(CWD, dir, flags | OFlags::NOATIME, Mode::empty()) {
        Err(Errno::PERM) => openat(CWD, dir, flags, Mode::empty()).map(|fd| (fd, true)),
        other => other.map(|fd| (fd, false)),
    };
    let (fd, moved) = match opened {
        Ok(opened) => opened,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut names = Vec::new();
    for entry in Dir::new(fd)? {
        let entry = entry?;
        if let Ok(name) = entry.file_name().to_str() {
            if name != "." && name != ".." {
                names.push(name.to_owned());
            }
        }
    }
    Ok(Some((names, moved)))
}

/// Sets `dir`'s times back to the day of its last change after a read that
/// may have moved its access time (see [`names_in`]).
fn restamp_if_moved(dir: &Path, moved: bool) -> io::Result<()> {
    if !moved {
        return Ok(());
    }
    match fs::metadata(dir).and_then(|m| m.modified()) {
        Ok(changed) => stamp(dir, start_of_day(changed)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The answers in a mailbox folder: day, id and path (none if it does not
/// exist), and whether listing it may have moved its access time.
type Listing = (Vec<(String, AnswerId, PathBuf)>, bool);

fn answers_in(dir: &Path) -> io::Result<Listing> {
    let Some((names, moved)) = names_in(dir)? else {
        return Ok((Vec::new(), false));
    };
    let mut out = Vec::new();
    for name in names {
        let Some((day, id)) = name
            .strip_suffix(ANSWER_EXT)
            .and_then(|n| n.split_once('_'))
        else {
            continue;
        };
        if let Ok(id) = id.parse::<AnswerId>() {
            out.push((day.to_string(), id, dir.join(&name)));
        }
    }
    Ok((out, moved))
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
