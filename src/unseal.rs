//! Opening a sealed record on the offline machine: decryption with staff
//! secret keys, bounded in what it reads, into the plaintext envelope that
//! [`crate::mime::parse`] takes apart.
//!
//! The record is hostile input: anyone holding a recipient's public
//! certificate can seal anything. A record is refused before it is read when
//! larger than any record sealform writes, and while it is read when it holds
//! a compressed packet or more than [`MAX_PLAINTEXT`] bytes; the plaintext is
//! handed out only after the MDC was checked. This module reads no network
//! and writes nothing, and no error carries a byte of plaintext. Secret keys
//! exist here only as unlocked key pairs for the run, dropped with
//! [`SecretKeys`].

use std::cell::Cell;
use std::io::Read;
use std::path::Path;

use sequoia_openpgp as openpgp;
use zeroize::Zeroizing;

use openpgp::cert::prelude::*;
use openpgp::crypto::{KeyPair, Password, S2K, SessionKey};
use openpgp::packet::key::{SecretKeyMaterial, SecretParts, UnspecifiedRole};
use openpgp::packet::{Key, PKESK, SKESK, Tag};
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageStructure, VerificationHelper,
};
use openpgp::parse::{PacketParser, Parse};
use openpgp::policy::StandardPolicy;
use openpgp::types::SymmetricAlgorithm;
use openpgp::{Fingerprint, KeyHandle};

/// Largest plaintext read from one record. This bounds what `decrypt` holds
/// in memory (the plaintext, then its decoded parts beside it) whatever a
/// crafted file claims.
///
/// It must still admit every record the server writes with the default
/// upload limits: `max_total_bytes` = 2 GiB of files become at most
/// 2 GiB × 78/57 ≈ 2.74 GiB of base64 lines (57 bytes → 76 characters and
/// CRLF), plus part headers and the text and JSON parts, and Padmé adds at
/// most 64 MiB at that size ([`crate::mime::padded_len`]). 4 GiB leaves
/// more than 1 GiB for text fields and headers. A form configured above the
/// default limits can write larger records: open those with `gpg -d`.
pub const MAX_PLAINTEXT: u64 = 4 << 30;

/// Largest record file `decrypt` opens, checked before anything is read.
///
/// A record is one OpenPGP message: PKESK packets (about 100 bytes for
/// cv25519, about 530 for RSA-4096, so 1 MiB admits well over a thousand
/// recipients), then a SEIPDv1 packet holding 18 bytes of prefix, the
/// literal data packet (a few header bytes, then the plaintext) and a
/// 22-byte MDC packet. No compression: the plaintext is as long as it
/// appears in the file. The SEIPD and literal packets are written with
/// partial body lengths, one header byte per chunk, and Sequoia's chunks are
/// powers of two of at least 512 bytes; two such layers cost at most one
/// byte per 256 of plaintext. So a record of [`MAX_PLAINTEXT`] bytes of
/// plaintext is always smaller than this bound.
pub const MAX_RECORD_BYTES: u64 = MAX_PLAINTEXT + MAX_PLAINTEXT / 256 + (1 << 20);

/// How much decrypted data Sequoia reads ahead of us. Its default (25 MiB)
/// would do too; the old setting (the whole file) made memory follow the
/// file's size. The plaintext is only handed out after the last byte, and
/// with it the MDC, was read and checked, so this buffer is not what keeps
/// unauthenticated plaintext from the caller.
const DECRYPT_BUFFER: usize = 1 << 20;

/// Why a key file or a record could not be used. No variant carries a byte
/// of plaintext.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A key file could not be read or parsed.
    #[error("{}: {message}", path.display())]
    KeyFile {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The given files hold no secret encryption key that could be used.
    #[error(
        "no usable secret encryption key in the given key files{}; give a file with the secret \
         encryption subkey (`gpg --export-secret-keys --armor KEY` or \
         `gpg --export-secret-subkeys --armor KEY`) and, for a protected key, its passphrase",
        list_skipped(skipped)
    )]
    NoSecretKeys {
        /// The encryption keys found but not usable, and why.
        skipped: Vec<SkippedKey>,
    },
    /// The record file is larger than any record sealform writes.
    #[error(
        "the file is {size} bytes, larger than any record sealform writes ({MAX_RECORD_BYTES} \
         bytes at most); it was not made by sealform or is damaged (for a record of a form with \
         limits above the defaults, use `gpg --decrypt`)"
    )]
    RecordTooLarge {
        /// The file's size.
        size: u64,
    },
    /// The record holds a compressed data packet, which sealform never
    /// writes.
    #[error(
        "refused: the record contains a compressed data packet, which sealform never writes; \
         it was not made by sealform"
    )]
    Compressed,
    /// The record could not be decrypted (no matching key, or damaged).
    #[error("cannot decrypt: {0}")]
    Decrypt(String),
    /// The plaintext is too large.
    #[error(
        "the plaintext is larger than {MAX_PLAINTEXT} bytes (for a record of a form with limits \
         above the defaults, use `gpg --decrypt`)"
    )]
    TooLarge,
}

/// An encryption key from the key files that [`SecretKeys::load`] could not
/// use.
#[derive(Debug, Clone)]
pub struct SkippedKey {
    /// The key's fingerprint.
    pub fingerprint: Fingerprint,
    /// Why it was skipped.
    pub reason: SkipReason,
}

/// Why a secret encryption key was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The file holds no secret for it: a stub (`gpg --export-secret-subkeys`
    /// or a key on a smartcard).
    Stub,
    /// It is passphrase-protected and no passphrase unlocked it.
    Locked,
    /// Its secret could not be turned into a key pair (unsupported).
    Unusable,
}

impl std::fmt::Display for SkippedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fpr = &self.fingerprint;
        match self.reason {
            SkipReason::Stub => write!(
                f,
                "{fpr} has no secret in the file (a stub: the key lives on a smartcard)"
            ),
            SkipReason::Locked => write!(
                f,
                "{fpr} is passphrase-protected and the passphrase did not unlock it"
            ),
            SkipReason::Unusable => write!(f, "{fpr} uses an algorithm this build cannot use"),
        }
    }
}

fn list_skipped(skipped: &[SkippedKey]) -> String {
    let list: Vec<String> = skipped.iter().map(ToString::to_string).collect();
    if list.is_empty() {
        String::new()
    } else {
        format!(" ({})", list.join("; "))
    }
}

/// A secret key of any role (primary or subkey).
type SecretKey = Key<SecretParts, UnspecifiedRole>;

/// Unlocked secret encryption keys for this run.
pub struct SecretKeys {
    keys: Vec<(Fingerprint, KeyPair)>,
    skipped: Vec<SkippedKey>,
}

impl SecretKeys {
    /// Reads every secret key in `paths` (armored or binary, one or many per
    /// file, as `gpg --export-secret-keys` or `--export-secret-subkeys`
    /// writes them) and unlocks the keys that are for encryption under the
    /// standard policy; `passphrase` is asked for a key's fingerprint when
    /// it is protected and no earlier passphrase opened it.
    ///
    /// Stubs (no secret in the file), keys no passphrase unlocks and keys
    /// of an unusable algorithm are skipped and listed in
    /// [`SecretKeys::skipped`]; it fails only when no key is left.
    pub fn load(
        paths: &[&Path],
        passphrase: impl FnMut(&Fingerprint) -> Option<Password>,
    ) -> Result<SecretKeys, RecordError> {
        let policy = StandardPolicy::new();
        let mut unlocker = Unlocker {
            known: Vec::new(),
            ask: passphrase,
        };
        let mut keys: Vec<(Fingerprint, KeyPair)> = Vec::new();
        let mut skipped: Vec<SkippedKey> = Vec::new();
        for path in paths {
            for cert in read_certs(path)? {
                for key in encryption_secrets(&cert, &policy) {
                    let fingerprint = key.fingerprint();
                    if keys.iter().any(|(f, _)| *f == fingerprint) {
                        continue;
                    }
                    match unlocker.unlock(key) {
                        Ok(pair) => keys.push((fingerprint, pair)),
                        Err(reason) => skipped.push(SkippedKey {
                            fingerprint,
                            reason,
                        }),
                    }
                }
            }
        }
        // A key skipped in one file may have been unlocked from another.
        skipped.retain(|s| !keys.iter().any(|(f, _)| *f == s.fingerprint));
        if keys.is_empty() {
            return Err(RecordError::NoSecretKeys { skipped });
        }
        Ok(SecretKeys { keys, skipped })
    }

    /// How many encryption keys are unlocked.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// No key is loaded (never true after a successful [`SecretKeys::load`]).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Encryption keys found in the key files but not usable, and why.
    pub fn skipped(&self) -> &[SkippedKey] {
        &self.skipped
    }

    /// Decrypts the record at `path`. The whole message is authenticated
    /// (MDC) before the plaintext is returned.
    ///
    /// Memory is bounded by the plaintext, never by the file: a file larger
    /// than [`MAX_RECORD_BYTES`] is refused before it is read, Sequoia reads
    /// ahead at most `DECRYPT_BUFFER` (1 MiB), and the plaintext goes into one
    /// buffer allocated once, so no unzeroized copy is left behind by a
    /// reallocation.
    pub fn decrypt(&mut self, path: &Path) -> Result<Zeroizing<Vec<u8>>, RecordError> {
        let size = std::fs::metadata(path)
            .map_err(|e| RecordError::Decrypt(e.to_string()))?
            .len();
        if size > MAX_RECORD_BYTES {
            return Err(RecordError::RecordTooLarge { size });
        }
        let policy = StandardPolicy::new();
        let compressed = Cell::new(false);
        let helper = Helper {
            keys: &mut self.keys,
            compressed: &compressed,
        };
        let refused = |e: anyhow::Error| {
            if compressed.get() {
                RecordError::Compressed
            } else {
                RecordError::Decrypt(e.to_string())
            }
        };
        let mut d = DecryptorBuilder::from_file(path)
            .map_err(|e| RecordError::Decrypt(e.to_string()))?
            .buffer_size(DECRYPT_BUFFER)
            .with_policy(&policy, None, helper)
            .map_err(refused)?;
        // Without compression the plaintext is shorter than the file.
        let capacity = size.min(MAX_PLAINTEXT);
        let out =
            read_bounded(&mut d, capacity).map_err(|e| RecordError::Decrypt(e.to_string()))?;
        let Some(out) = out else {
            return Err(if capacity == MAX_PLAINTEXT {
                RecordError::TooLarge
            } else {
                RecordError::Decrypt("the record holds more plaintext than its size allows".into())
            });
        };
        if !d.message_processed() {
            return Err(RecordError::Decrypt("the message is incomplete".into()));
        }
        Ok(out)
    }
}

/// Reads `reader` to its end into a buffer allocated once for `capacity`
/// bytes; `None` when there is more than that. The buffer never
/// reallocates, so the plaintext exists in one zeroized place only.
fn read_bounded(
    reader: &mut impl Read,
    capacity: u64,
) -> std::io::Result<Option<Zeroizing<Vec<u8>>>> {
    /// Bytes zero-filled and read per step, so memory is touched as the
    /// plaintext arrives rather than all at once.
    const STEP: usize = 1 << 20;
    let capacity = usize::try_from(capacity)
        .map_err(|_| std::io::Error::other("the record does not fit in memory"))?;
    let mut out = Zeroizing::new(Vec::with_capacity(capacity));
    loop {
        let filled = out.len();
        if filled == capacity {
            let mut probe = Zeroizing::new([0u8; 1]);
            return Ok(match reader.read(&mut probe[..])? {
                0 => Some(out),
                _ => None,
            });
        }
        out.resize(capacity.min(filled.saturating_add(STEP)), 0);
        match reader.read(&mut out[filled..]) {
            Ok(n) => {
                out.truncate(filled + n);
                if n == 0 {
                    return Ok(Some(out));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => out.truncate(filled),
            Err(e) => return Err(e),
        }
    }
}

/// The certificates in one key file.
fn read_certs(path: &Path) -> Result<Vec<Cert>, RecordError> {
    let key_err = |message: String| RecordError::KeyFile {
        path: path.to_path_buf(),
        message,
    };
    CertParser::from_file(path)
        .map_err(|e| key_err(e.to_string()))?
        .map(|c| c.map_err(|e| key_err(e.to_string())))
        .collect()
}

/// The secret keys of `cert` that are for encryption (key flags) under
/// `policy`, supported by this build. Expired and revoked keys are kept:
/// records sealed before that must still open.
fn encryption_secrets(cert: &Cert, policy: &StandardPolicy<'_>) -> Vec<SecretKey> {
    cert.keys()
        .with_policy(policy, None)
        .supported()
        .secret()
        .for_transport_encryption()
        .for_storage_encryption()
        .map(|ka| ka.key().clone().role_into_unspecified())
        .collect()
}

/// Whether `key` carries no secret: GnuPG writes a private S2K (101,
/// "gnu-dummy" or "divert-to-card") in place of the secret for the primary
/// of `--export-secret-subkeys` and for keys on a smartcard. Sequoia parses
/// it as an encrypted secret no passphrase opens.
fn is_stub(key: &SecretKey) -> bool {
    match key.secret() {
        SecretKeyMaterial::Encrypted(e) => {
            matches!(e.s2k(), S2K::Private { .. } | S2K::Unknown { .. })
        }
        SecretKeyMaterial::Unencrypted(_) => false,
    }
}

/// Opens protected keys, trying the passphrases that opened earlier keys
/// before asking.
struct Unlocker<F> {
    known: Vec<Password>,
    ask: F,
}

impl<F: FnMut(&Fingerprint) -> Option<Password>> Unlocker<F> {
    /// The key as a key pair, or why it cannot be one.
    fn unlock(&mut self, key: SecretKey) -> Result<KeyPair, SkipReason> {
        if is_stub(&key) {
            return Err(SkipReason::Stub);
        }
        let key = if key.secret().is_encrypted() {
            self.open(key)?
        } else {
            key
        };
        key.into_keypair().map_err(|_| SkipReason::Unusable)
    }

    fn open(&mut self, key: SecretKey) -> Result<SecretKey, SkipReason> {
        if let Some(k) = self
            .known
            .iter()
            .find_map(|pw| key.clone().decrypt_secret(pw).ok())
        {
            return Ok(k);
        }
        let pw = (self.ask)(&key.fingerprint()).ok_or(SkipReason::Locked)?;
        let k = key.decrypt_secret(&pw).map_err(|_| SkipReason::Locked)?;
        self.known.push(pw);
        Ok(k)
    }
}

struct Helper<'a> {
    keys: &'a mut Vec<(Fingerprint, KeyPair)>,
    /// Set when a compressed data packet was seen (and refused).
    compressed: &'a Cell<bool>,
}

impl VerificationHelper for Helper<'_> {
    fn inspect(&mut self, pp: &PacketParser<'_>) -> openpgp::Result<()> {
        // Refused before its body is read: sealform never compresses, and
        // decompression would let a small file expand without bound.
        if pp.packet.tag() == Tag::CompressedData {
            self.compressed.set(true);
            return Err(anyhow::anyhow!("compressed data packet"));
        }
        Ok(())
    }
    fn get_certs(&mut self, _: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(Vec::new())
    }
    fn check(&mut self, _: MessageStructure<'_>) -> openpgp::Result<()> {
        // Records are not signed; integrity comes from the MDC.
        Ok(())
    }
}

impl DecryptionHelper for Helper<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        _: &[SKESK],
        sym: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        for pkesk in pkesks {
            for (fpr, pair) in self.keys.iter_mut() {
                let addressed = match pkesk.recipient() {
                    None => true, // wildcard (hidden recipients): try every key
                    Some(h) => h.aliases(KeyHandle::from(fpr.clone())),
                };
                if !addressed {
                    continue;
                }
                if let Some((algo, sk)) = pkesk.decrypt(pair, sym) {
                    if decrypt(algo, &sk) {
                        return Ok(None);
                    }
                }
            }
        }
        Err(anyhow::anyhow!(
            "none of the given secret keys can decrypt it"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A committed test-only key under `tests/data/`.
    fn test_data(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name)
    }

    fn ed25519_secret() -> SecretKeys {
        let path = test_data("test-only-ed25519-secret.asc");
        SecretKeys::load(&[path.as_path()], |_| None).expect("load")
    }

    /// `plain` sealed (SEIPDv1, as gpg-made certs ask) to the test-only
    /// ed25519 cert, optionally inside a compressed data packet (algorithm
    /// "uncompressed": the only one this build has, and enough to test the
    /// refusal).
    fn seal_raw(plain: &[u8], compressed: bool) -> Vec<u8> {
        use openpgp::serialize::stream::{Compressor, Encryptor, LiteralWriter, Message};
        use openpgp::types::CompressionAlgorithm;
        use std::io::Write;
        let cert = Cert::from_file(test_data("test-only-ed25519-public.asc")).expect("cert");
        let policy = StandardPolicy::new();
        let recipients = cert
            .keys()
            .with_policy(&policy, None)
            .for_transport_encryption();
        let mut sink = Vec::new();
        let message = Message::new(&mut sink);
        let mut message = Encryptor::for_recipients(message, recipients)
            .symmetric_algo(SymmetricAlgorithm::AES256)
            .build()
            .expect("encryptor");
        if compressed {
            message = Compressor::new(message)
                .algo(CompressionAlgorithm::Uncompressed)
                .build()
                .expect("compressor");
        }
        let mut literal = LiteralWriter::new(message).build().expect("literal");
        literal.write_all(plain).expect("write");
        literal.finalize().expect("finalize");
        sink
    }

    fn write_record(dir: &Path, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join("record.pgp");
        std::fs::write(&path, bytes).expect("write record");
        path
    }

    #[test]
    fn a_record_larger_than_one_read_ahead_buffer_decrypts_and_a_changed_byte_is_refused() {
        let plain: Vec<u8> = (0..3 * DECRYPT_BUFFER + 17)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut record = seal_raw(&plain, false);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut keys = ed25519_secret();
        let got = keys
            .decrypt(&write_record(dir.path(), &record))
            .expect("decrypt");
        assert_eq!(&got[..], &plain[..]);
        // A byte near the end (after most of the plaintext was read) fails
        // the MDC: nothing is returned.
        let at = record.len() - 30;
        record[at] ^= 1;
        let path = dir.path().join("changed.pgp");
        std::fs::write(&path, &record).expect("write");
        assert!(matches!(keys.decrypt(&path), Err(RecordError::Decrypt(_))));
    }

    #[test]
    fn a_file_larger_than_any_record_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("huge.pgp");
        // Sparse: no disk space, and reading it would take minutes.
        let f = std::fs::File::create(&path).expect("create");
        f.set_len(MAX_RECORD_BYTES + 1).expect("set_len");
        drop(f);
        let started = std::time::Instant::now();
        let err = ed25519_secret().decrypt(&path).expect_err("refused");
        assert!(
            matches!(err, RecordError::RecordTooLarge { size } if size == MAX_RECORD_BYTES + 1),
            "{err}"
        );
        assert!(err.to_string().contains("larger than any record"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn the_envelope_of_the_default_upload_limit_fits_the_largest_plaintext() {
        // The default 2 GiB of files, as base64 lines, with 64 MiB of parts
        // and padding on top, still leaves 512 MiB for text fields.
        let files: u64 = 2 << 30;
        let base64_lines = files.div_ceil(57) * 78;
        let padded = crate::mime::padded_len(base64_lines + (64 << 20));
        assert!(padded + (512 << 20) < MAX_PLAINTEXT, "{padded}");
    }

    #[test]
    fn a_record_with_a_compressed_data_packet_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = b"Content-Type: text/plain\r\n\r\nsecret words";
        let mut keys = ed25519_secret();
        let plain_record = write_record(dir.path(), &seal_raw(plain, false));
        assert_eq!(&keys.decrypt(&plain_record).expect("plain")[..], plain);
        let path = dir.path().join("compressed.pgp");
        std::fs::write(&path, seal_raw(plain, true)).expect("write");
        let err = keys.decrypt(&path).expect_err("refused");
        assert!(matches!(err, RecordError::Compressed), "{err}");
        assert!(!err.to_string().contains("secret words"), "{err}");
    }
}
