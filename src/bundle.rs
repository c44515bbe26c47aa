//! Export bundles: the folder staff carry from the server to the offline
//! machine.
//!
//! ```text
//! DIR/<receipt>.pgp     one sealed record, byte for byte as stored
//! DIR/MANIFEST.json     {"version": 1, "records": [{receipt, sha256, size, day, recipients}]}
//! ```
//!
//! `sealform pull` and `sealform export` write the same bundle; `decrypt`
//! and `ack` check files against the manifest. A record is written to
//! `DIR/.<receipt>.pgp.part`, fsynced, checked and only then renamed into
//! place, and the manifest is replaced atomically after each batch of
//! records: an interrupted run leaves no file that looks complete, and the
//! next run removes the `.part` leftovers. Bundles hold only ciphertext; nothing
//! here decrypts.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::Receipt;

/// The manifest's file name inside a bundle.
pub const MANIFEST: &str = "MANIFEST.json";

/// One record as the manifest lists it: nothing finer than a day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// The record's receipt (its file is `<receipt>.pgp`).
    pub receipt: String,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
    /// Size of the file in bytes.
    pub size: u64,
    /// Day of arrival, `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Fingerprints of the certificates it is encrypted to.
    pub recipients: Vec<String>,
}

/// `MANIFEST.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version (1).
    pub version: u32,
    /// The records, in receipt order.
    pub records: Vec<ManifestEntry>,
}

/// Why a bundle operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A filesystem operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// `MANIFEST.json` is not a manifest.
    #[error("{} is not a valid manifest: {source}", path.display())]
    BadManifest {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A file does not match what the manifest (or the server) says.
    #[error("{} does not match {what}: expected sha256 {expected}, found {found}; the file was altered or damaged in transit", path.display())]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Against what it was checked.
        what: &'static str,
        /// The expected digest.
        expected: String,
        /// The digest of the file.
        found: String,
    },
    /// The manifest does not list this record.
    #[error("{} is not listed in {MANIFEST}", path.display())]
    NotListed {
        /// The file.
        path: PathBuf,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BundleError {
    let path = path.to_owned();
    move |source| BundleError::Io {
        action,
        path,
        source,
    }
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// SHA-256 of a file, lowercase hex, streamed.
pub fn sha256_file(path: &Path) -> Result<String, BundleError> {
    let mut f = File::open(path).map_err(io_err("reading", path))?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h).map_err(io_err("reading", path))?;
    Ok(hex::encode(h.finalize()))
}

/// Reads `dir/MANIFEST.json`; `Ok(None)` if there is none.
pub fn read_manifest(dir: &Path) -> Result<Option<Manifest>, BundleError> {
    let path = dir.join(MANIFEST);
    match fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|source| BundleError::BadManifest { path, source }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("reading", &path)(e)),
    }
}

/// A bundle folder being written.
pub struct Bundle {
    dir: PathBuf,
    records: BTreeMap<String, ManifestEntry>,
}

impl Bundle {
    /// Opens (creating, mode 0700) the bundle at `dir`, removes leftovers of
    /// an interrupted run and reads the manifest.
    pub fn open(dir: &Path) -> Result<Bundle, BundleError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err("creating", dir))?;
        for entry in fs::read_dir(dir).map_err(io_err("listing", dir))? {
            let path = entry.map_err(io_err("listing", dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.') && (name.ends_with(".part") || name.ends_with(".tmp")) {
                fs::remove_file(&path).map_err(io_err("removing leftover", &path))?;
            }
        }
        let records = read_manifest(dir)?
            .map(|m| m.records)
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.receipt.clone(), e))
            .collect();
        Ok(Bundle {
            dir: dir.to_owned(),
            records,
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of a record's file in the bundle.
    pub fn path_of(&self, receipt: &Receipt) -> PathBuf {
        self.dir.join(format!("{receipt}.pgp"))
    }

    /// The manifest entries, in receipt order.
    pub fn entries(&self) -> impl Iterator<Item = &ManifestEntry> {
        self.records.values()
    }

    /// Whether the record is listed and its file matches the manifest.
    pub fn has_verified(&self, receipt: &Receipt) -> bool {
        self.verify(receipt).is_ok()
    }

    /// Checks the record's file against its manifest entry.
    pub fn verify(&self, receipt: &Receipt) -> Result<(), BundleError> {
        let path = self.path_of(receipt);
        let entry = self
            .records
            .get(&receipt.to_string())
            .ok_or_else(|| BundleError::NotListed { path: path.clone() })?;
        let found = sha256_file(&path)?;
        if found != entry.sha256 {
            return Err(BundleError::Mismatch {
                path,
                what: MANIFEST,
                expected: entry.sha256.clone(),
                found,
            });
        }
        Ok(())
    }

    /// Adds a record: checks `bytes` against `expected_sha256` when given
    /// (from the server) and writes it durably under its final name. It is
    /// listed in the manifest at the next [`Bundle::save`]; until then a
    /// later run fetches it again.
    pub fn add(
        &mut self,
        receipt: &Receipt,
        bytes: &[u8],
        expected_sha256: Option<&str>,
        day: &str,
        recipients: &[String],
    ) -> Result<(), BundleError> {
        let final_path = self.path_of(receipt);
        let sha256 = sha256_hex(bytes);
        if let Some(expected) = expected_sha256 {
            if !expected.eq_ignore_ascii_case(&sha256) {
                return Err(BundleError::Mismatch {
                    path: final_path,
                    what: "the server's sha256",
                    expected: expected.to_owned(),
                    found: sha256,
                });
            }
        }
        let part = self.dir.join(format!(".{receipt}.pgp.part"));
        write_synced(&part, bytes)?;
        fs::rename(&part, &final_path).map_err(io_err("moving into place", &final_path))?;
        sync_dir(&self.dir)?;
        self.records.insert(
            receipt.to_string(),
            ManifestEntry {
                receipt: receipt.to_string(),
                sha256,
                size: bytes.len() as u64,
                day: day.to_owned(),
                recipients: recipients.to_vec(),
            },
        );
        Ok(())
    }

    /// Replaces `MANIFEST.json` atomically with every record added so far.
    pub fn save(&self) -> Result<(), BundleError> {
        let manifest = Manifest {
            version: 1,
            records: self.records.values().cloned().collect(),
        };
        let mut text = serde_json::to_vec_pretty(&manifest)
            .map_err(io::Error::other)
            .map_err(io_err("encoding", &self.dir))?;
        text.push(b'\n');
        let tmp = self.dir.join(".MANIFEST.json.tmp");
        write_synced(&tmp, &text)?;
        let path = self.dir.join(MANIFEST);
        fs::rename(&tmp, &path).map_err(io_err("moving into place", &path))?;
        sync_dir(&self.dir)
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err("creating", path))?;
    f.write_all(bytes).map_err(io_err("writing", path))?;
    f.sync_all().map_err(io_err("syncing", path))
}

fn sync_dir(dir: &Path) -> Result<(), BundleError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_added_to_a_bundle_is_listed_verified_and_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = Receipt::random();
        let mut b = Bundle::open(dir.path()).expect("open");
        b.add(&r, b"cipher", None, "2027-01-15", &["FPR".into()])
            .expect("add");
        b.save().expect("save");
        fs::write(dir.path().join(".x.pgp.part"), b"half").expect("leftover");
        let b = Bundle::open(dir.path()).expect("reopen");
        assert!(b.has_verified(&r));
        assert!(!dir.path().join(".x.pgp.part").exists());
        let m = read_manifest(dir.path()).expect("read").expect("manifest");
        assert_eq!(m.records[0].sha256, sha256_hex(b"cipher"));
        fs::write(b.path_of(&r), b"tampered").expect("tamper");
        let e = b.verify(&r).expect_err("mismatch").to_string();
        assert!(e.contains("does not match MANIFEST.json"), "{e}");
    }

    #[test]
    fn a_record_that_does_not_match_the_server_digest_is_not_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = Receipt::random();
        let mut b = Bundle::open(dir.path()).expect("open");
        assert!(
            b.add(&r, b"cipher", Some(&sha256_hex(b"other")), "d", &[])
                .is_err()
        );
        assert!(!b.path_of(&r).exists());
        assert!(!b.has_verified(&r));
    }
}
