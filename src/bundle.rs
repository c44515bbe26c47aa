//! Export bundles: the folder staff carry from the server to the offline
//! machine.
//!
//! ```text
//! DIR/<receipt>.pgp     one sealed record, byte for byte as stored
//! DIR/MANIFEST.json     {"version": 1, "records": [{receipt, sha256, size, day, recipients,
//!                                                  source_checked}]}
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
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::durable;
use crate::receipt::Receipt;

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
    /// Whether the source sent its own SHA-256 of the record and the file
    /// matched it when it was written (a pull from a server that gave one).
    /// Only such a record is acknowledged by `pull --ack-after-verify`: the
    /// manifest's digest alone is of what arrived, which a proxy in between
    /// could have altered. Absent (false) in manifests of older versions.
    #[serde(default)]
    pub source_checked: bool,
}

/// What the source says about a record before it is read; either may be
/// unknown.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expected<'a> {
    /// Its length in bytes.
    pub size: Option<u64>,
    /// Its SHA-256, hex.
    pub sha256: Option<&'a str>,
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
    /// A record's length is not what its source said it would be.
    #[error("{}: the record {problem}", path.display())]
    Size {
        /// The record's file in the bundle.
        path: PathBuf,
        /// What was wrong.
        problem: String,
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
    data_encoding::HEXLOWER.encode(&Sha256::digest(bytes))
}

/// SHA-256 of a file, lowercase hex, streamed.
pub fn sha256_file(path: &Path) -> Result<String, BundleError> {
    let mut f = File::open(path).map_err(io_err("reading", path))?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h).map_err(io_err("reading", path))?;
    Ok(data_encoding::HEXLOWER.encode(&h.finalize()))
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

/// Whether `name` is a file an interrupted run of ours leaves behind: a
/// `.<receipt>.pgp.part` or the manifest's `.MANIFEST.json.tmp`. Nothing
/// else in the folder is ever removed (it may be a home folder).
fn is_leftover(name: &str) -> bool {
    name == MANIFEST_TMP
        || name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".pgp.part"))
            .and_then(Receipt::parse)
            .is_some()
}

/// The largest size a listing may give for one record (1 TiB, far beyond
/// any form's limits): a larger one is refused before anything is read. A
/// record whose size is not listed is bounded by the caller's limit instead.
pub const MAX_LISTED_BYTES: u64 = 1 << 40;

/// The manifest while it is written, before it replaces [`MANIFEST`].
const MANIFEST_TMP: &str = ".MANIFEST.json.tmp";

/// A bundle folder being written.
pub struct Bundle {
    dir: PathBuf,
    records: BTreeMap<String, ManifestEntry>,
}

impl Bundle {
    /// Opens (creating, mode 0700) the bundle at `dir`, removes leftovers of
    /// an interrupted run and reads the manifest.
    pub fn open(dir: &Path) -> Result<Bundle, BundleError> {
        durable::create_private_dir_all(dir).map_err(io_err("creating", dir))?;
        for entry in fs::read_dir(dir).map_err(io_err("listing", dir))? {
            let path = entry.map_err(io_err("listing", dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if is_leftover(name) {
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

    /// Whether the record was checked against the source's own digest when
    /// it was written (see [`ManifestEntry::source_checked`]).
    pub fn source_checked(&self, receipt: &Receipt) -> bool {
        self.records
            .get(&receipt.to_string())
            .is_some_and(|e| e.source_checked)
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

    /// Adds a record: streams `body` into a hidden `.part` file, checks its
    /// length and digest against what the source said (`expected`), fsyncs
    /// it and only then moves it under its final name. At most the expected
    /// size is read, or `limit` when the size is not known: the record is
    /// never held in memory, and a source that sends more than it said (or
    /// an endless body) is cut off. A listed size above [`MAX_LISTED_BYTES`]
    /// is refused before anything is read. The record is listed in the
    /// manifest at the next [`Bundle::save`]; until then a later run
    /// fetches it again.
    pub fn add(
        &mut self,
        receipt: &Receipt,
        body: &mut dyn Read,
        expected: Expected<'_>,
        limit: u64,
        day: &str,
        recipients: &[String],
    ) -> Result<(), BundleError> {
        let final_path = self.path_of(receipt);
        if let Some(size) = expected.size.filter(|&s| s > MAX_LISTED_BYTES) {
            return Err(BundleError::Size {
                path: final_path,
                problem: format!(
                    "is listed at {size} bytes, more than the {MAX_LISTED_BYTES} (1 TiB) a \
                     listing may give"
                ),
            });
        }
        let part = self.dir.join(format!(".{receipt}.pgp.part"));
        let written = write_part(&part, &final_path, body, expected.size.unwrap_or(limit))
            .and_then(|(len, sha256)| {
                if let Some(size) = expected.size.filter(|&s| s != len) {
                    return Err(BundleError::Size {
                        path: final_path.clone(),
                        problem: format!("has {len} bytes where the source said {size}"),
                    });
                }
                if let Some(theirs) = expected.sha256 {
                    if !theirs.eq_ignore_ascii_case(&sha256) {
                        return Err(BundleError::Mismatch {
                            path: final_path.clone(),
                            what: "the server's sha256",
                            expected: theirs.to_owned(),
                            found: sha256,
                        });
                    }
                }
                Ok((len, sha256))
            });
        let (len, sha256) = written.inspect_err(|_| {
            let _ = fs::remove_file(&part);
        })?;
        fs::rename(&part, &final_path).map_err(io_err("moving into place", &final_path))?;
        sync_dir(&self.dir)?;
        self.records.insert(
            receipt.to_string(),
            ManifestEntry {
                receipt: receipt.to_string(),
                sha256,
                size: len,
                day: day.to_owned(),
                recipients: recipients.to_vec(),
                source_checked: expected.sha256.is_some(),
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
        let tmp = self.dir.join(MANIFEST_TMP);
        write_synced(&tmp, &text)?;
        let path = self.dir.join(MANIFEST);
        fs::rename(&tmp, &path).map_err(io_err("moving into place", &path))?;
        sync_dir(&self.dir)
    }
}

/// Creates (or truncates) a file only its owner can read.
fn create_private(path: &Path) -> Result<File, BundleError> {
    durable::replace_private_file(path).map_err(io_err("creating", path))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    let mut f = create_private(path)?;
    f.write_all(bytes).map_err(io_err("writing", path))?;
    f.sync_all().map_err(io_err("syncing", path))
}

/// Copies at most `max` bytes of `body` into a new file at `path` (replacing
/// a leftover), hashing as it goes, and fsyncs it; its length and SHA-256.
/// More than `max` bytes is an error, which names the `record` being written
/// (the `.part` file is removed by the caller).
fn write_part(
    path: &Path,
    record: &Path,
    body: &mut dyn Read,
    max: u64,
) -> Result<(u64, String), BundleError> {
    let mut f = create_private(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut len = 0u64;
    let mut body = body.take(max.saturating_add(1));
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("downloading into", path)(e)),
        };
        len += n as u64;
        if len > max {
            return Err(BundleError::Size {
                path: record.to_owned(),
                problem: format!("is longer than the {max} bytes expected"),
            });
        }
        hasher.update(&buf[..n]);
        f.write_all(&buf[..n]).map_err(io_err("writing", path))?;
    }
    f.sync_all().map_err(io_err("syncing", path))?;
    Ok((len, data_encoding::HEXLOWER.encode(&hasher.finalize())))
}

fn sync_dir(dir: &Path) -> Result<(), BundleError> {
    durable::sync_path(dir).map_err(io_err("syncing", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_added_to_a_bundle_is_listed_verified_and_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = Receipt::random();
        let mut b = Bundle::open(dir.path()).expect("open");
        let digest = sha256_hex(b"cipher");
        let listed = Expected {
            size: Some(6),
            sha256: Some(digest.as_str()),
        };
        b.add(
            &r,
            &mut &b"cipher"[..],
            listed,
            100,
            "2027-01-15",
            &["FPR".into()],
        )
        .expect("add");
        b.save().expect("save");
        let leftover = dir.path().join(format!(".{}.pgp.part", Receipt::random()));
        fs::write(&leftover, b"half").expect("leftover");
        fs::write(dir.path().join(MANIFEST_TMP), b"{").expect("leftover");
        // Not ours: the folder may be a home folder.
        let foreign = [".bashrc.tmp", ".x.pgp.part", ".notes.part"];
        for f in foreign {
            fs::write(dir.path().join(f), b"keep").expect("foreign");
        }
        let b = Bundle::open(dir.path()).expect("reopen");
        assert!(b.has_verified(&r));
        assert!(b.source_checked(&r), "the server's digest was checked");
        assert!(!leftover.exists());
        assert!(!dir.path().join(MANIFEST_TMP).exists());
        for f in foreign {
            assert!(dir.path().join(f).exists(), "{f}");
        }
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
        let other = sha256_hex(b"other");
        let named = format!("{}: the record ", b.path_of(&r).display());
        let mut add = |body: &[u8], size, limit, sha256| {
            let expected = Expected { size, sha256 };
            let e = b.add(&r, &mut &body[..], expected, limit, "d", &[]);
            e.expect_err("refused").to_string()
        };
        let e = add(b"cipher", None, 100, Some(other.as_str()));
        assert!(e.contains("does not match the server's sha256"), "{e}");
        let e = add(b"cipher", Some(5), 100, None);
        assert!(
            e.starts_with(&named),
            "names the record, not the .part: {e}"
        );
        assert!(e.contains("is longer than the 5 bytes expected"), "{e}");
        let e = add(b"cipher", Some(7), 100, None);
        assert!(e.contains("has 6 bytes where the source said 7"), "{e}");
        let e = add(b"cipher", None, 4, None);
        assert!(e.contains("is longer than the 4 bytes expected"), "{e}");
        let e = add(b"cipher", Some(MAX_LISTED_BYTES + 1), 100, None);
        assert!(
            e.contains("more than the 1099511627776 (1 TiB) a listing"),
            "{e}"
        );
        // The listing's size, not the limit, bounds a record whose size is
        // known (a form with raised limits makes larger records).
        let listed = Expected {
            size: Some(6),
            sha256: None,
        };
        b.add(&r, &mut &b"cipher"[..], listed, 4, "d", &[])
            .expect("a listed size above the limit is fetched");
        assert!(!b.source_checked(&r), "no server digest was given");
        fs::remove_file(b.path_of(&r)).expect("remove");
        b.records.clear();
        assert!(!b.path_of(&r).exists());
        assert!(!b.has_verified(&r));
        let left: Vec<_> = fs::read_dir(dir.path()).expect("list").collect();
        assert!(left.is_empty(), "no .part file is left: {left:?}");
    }
}
