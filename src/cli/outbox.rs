//! The outbox of answers to tipsters, shared by `sealform reply` (which
//! writes answers into it on the offline machine) and `sealform push`
//! (which uploads them from the online one): `OUTBOX/<mailbox>/<id>.pgp`,
//! one encrypted OpenPGP message each, and `OUTBOX/manifest.json`, which
//! lists every answer with its SHA-256 and the day it was pushed, if it was.
//!
//! A file dropped into `OUTBOX/<mailbox>/` by hand (from `gpg --encrypt`)
//! is adopted: renamed to a fresh `<id>.pgp` and listed. Every file and the
//! manifest are written to a new file, fsynced and renamed, and the folder
//! fsynced. Nothing here holds plaintext.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::durable::{create_private_dir_all, create_private_file, sync_path};
use crate::replies::{AnswerId, MailboxId};

/// The manifest's file name.
const MANIFEST: &str = "manifest.json";

/// A manifest larger than this is refused (an entry is about 150 bytes).
const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// `manifest.json`.
#[derive(Default, Serialize, Deserialize)]
struct Manifest {
    answers: Vec<Entry>,
}

/// One answer of the outbox.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct Entry {
    /// The mailbox it is for.
    pub mailbox: String,
    /// Its id.
    pub id: String,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// The day (UTC) it was pushed, once it was.
    #[serde(default)]
    pub pushed: Option<String>,
}

/// An outbox folder and its manifest.
pub(super) struct Outbox {
    dir: PathBuf,
    manifest: Manifest,
}

/// An answer waiting to be pushed.
pub(super) struct Pending {
    /// The mailbox.
    pub mailbox: MailboxId,
    /// The answer's id.
    pub id: AnswerId,
    /// Its file.
    pub path: PathBuf,
}

impl Outbox {
    /// Opens the outbox at `dir`, creating it (0700) if needed.
    pub(super) fn open(dir: &Path) -> anyhow::Result<Outbox> {
        create_private_dir_all(dir).with_context(|| format!("while creating {}", dir.display()))?;
        let path = dir.join(MANIFEST);
        let manifest = match fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest::default(),
            Err(e) => return Err(e).with_context(|| format!("while reading {}", path.display())),
            Ok(m) if m.len() > MAX_MANIFEST_BYTES => {
                bail!("{} is larger than any outbox manifest", path.display())
            }
            Ok(_) => serde_json::from_slice(
                &fs::read(&path).with_context(|| format!("while reading {}", path.display()))?,
            )
            .with_context(|| format!("{} is not an outbox manifest", path.display()))?,
        };
        Ok(Outbox {
            dir: dir.to_owned(),
            manifest,
        })
    }

    /// Writes `ciphertext` as a new answer to `mailbox`; returns its id.
    pub(super) fn add(
        &mut self,
        mailbox: &MailboxId,
        ciphertext: &[u8],
    ) -> anyhow::Result<AnswerId> {
        let folder = self.dir.join(mailbox.to_string());
        create_private_dir_all(&folder)
            .with_context(|| format!("while creating {}", folder.display()))?;
        let id = AnswerId::random();
        let path = folder.join(format!("{id}.pgp"));
        write_new_synced(&path, ciphertext)?;
        sync_path(&folder).with_context(|| format!("while syncing {}", folder.display()))?;
        self.list(mailbox, &id, ciphertext);
        self.save()?;
        Ok(id)
    }

    fn list(&mut self, mailbox: &MailboxId, id: &AnswerId, bytes: &[u8]) {
        self.manifest.answers.push(Entry {
            mailbox: mailbox.to_string(),
            id: id.to_string(),
            sha256: sha256(bytes),
            size: bytes.len() as u64,
            pushed: None,
        });
    }

    /// Every answer not pushed yet (or changed since), adopting files
    /// dropped in by hand; what is not an answer folder or file is listed
    /// in the second vector, to be told.
    pub(super) fn pending(&mut self) -> anyhow::Result<(Vec<Pending>, Vec<PathBuf>)> {
        let mut pending = Vec::new();
        let mut skipped = Vec::new();
        for entry in read_dir_sorted(&self.dir)? {
            let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name == MANIFEST || name.starts_with('.') {
                continue;
            }
            let Some(mailbox) = name.parse::<MailboxId>().ok().filter(|_| entry.is_dir()) else {
                skipped.push(entry);
                continue;
            };
            for file in read_dir_sorted(&entry)? {
                let fname = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if fname.starts_with('.') || !file.is_file() {
                    continue;
                }
                let bytes =
                    fs::read(&file).with_context(|| format!("while reading {}", file.display()))?;
                let known = fname
                    .strip_suffix(".pgp")
                    .and_then(|s| s.parse::<AnswerId>().ok());
                let (id, path) = match known {
                    Some(id) => (id, file),
                    None => self.adopt(&mailbox, &file, &bytes)?,
                };
                let hash = sha256(&bytes);
                let listed = self
                    .manifest
                    .answers
                    .iter()
                    .position(|e| e.id == id.to_string() && e.mailbox == name);
                let done = match listed {
                    Some(i) if self.manifest.answers[i].sha256 == hash => {
                        self.manifest.answers[i].pushed.is_some()
                    }
                    Some(i) => {
                        self.manifest.answers[i].sha256 = hash;
                        self.manifest.answers[i].size = bytes.len() as u64;
                        self.manifest.answers[i].pushed = None;
                        false
                    }
                    None => {
                        self.list(&mailbox, &id, &bytes);
                        false
                    }
                };
                if !done {
                    pending.push(Pending {
                        mailbox: mailbox.clone(),
                        id,
                        path,
                    });
                }
            }
        }
        self.save()?;
        Ok((pending, skipped))
    }

    /// Renames a file dropped in by hand to a fresh `<id>.pgp`.
    fn adopt(
        &mut self,
        mailbox: &MailboxId,
        file: &Path,
        bytes: &[u8],
    ) -> anyhow::Result<(AnswerId, PathBuf)> {
        let id = AnswerId::random();
        let folder = self.dir.join(mailbox.to_string());
        let path = folder.join(format!("{id}.pgp"));
        fs::rename(file, &path).with_context(|| format!("while renaming {}", file.display()))?;
        sync_path(&folder).with_context(|| format!("while syncing {}", folder.display()))?;
        self.list(mailbox, &id, bytes);
        Ok((id, path))
    }

    /// Records that `id` was pushed on `day` (`YYYY-MM-DD`).
    pub(super) fn mark_pushed(&mut self, id: &AnswerId, day: &str) -> anyhow::Result<()> {
        let id = id.to_string();
        for e in self.manifest.answers.iter_mut().filter(|e| e.id == id) {
            e.pushed = Some(day.to_owned());
        }
        self.save()
    }

    /// Replaces the manifest atomically: new file, fsync, rename, fsync.
    fn save(&self) -> anyhow::Result<()> {
        let path = self.dir.join(MANIFEST);
        let tmp = self.dir.join(format!(".{MANIFEST}.tmp"));
        let _ = fs::remove_file(&tmp);
        let mut json = serde_json::to_vec_pretty(&self.manifest)?;
        json.push(b'\n');
        write_new_synced(&tmp, &json)?;
        fs::rename(&tmp, &path).with_context(|| format!("while replacing {}", path.display()))?;
        sync_path(&self.dir).with_context(|| format!("while syncing {}", self.dir.display()))
    }
}

/// SHA-256 of `bytes`, lowercase hex.
fn sha256(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(bytes))
}

/// Writes a new private file and fsyncs it.
fn write_new_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f =
        create_private_file(path).with_context(|| format!("while creating {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("while writing {}", path.display()))
}

/// The entries of `dir`, by name.
fn read_dir_sorted(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = fs::read_dir(dir)
        .with_context(|| format!("while reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("while reading {}", dir.display()))?;
    out.sort();
    Ok(out)
}
