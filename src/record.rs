//! Opening a sealed record on the offline machine: decryption with staff
//! secret keys, and parsing the decrypted MIME envelope.
//!
//! The decrypted plaintext is hostile input: anyone holding a recipient's
//! public certificate can seal anything, so every header, part and name in
//! it is untrusted. The parser never panics, never indexes past a buffer and
//! never trusts a name: [`safe_file_name`] turns whatever a record calls a
//! file into one plain name that stays inside the output folder. This module
//! reads no network and writes nothing: the `decrypt` command decides where
//! the parts go. Secret keys exist here only as unlocked key pairs for the
//! run, dropped with [`SecretKeys`].

use std::cell::Cell;
use std::io::Read;
use std::path::Path;

use base64::Engine as _;
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
/// most 64 MiB at that size ([`crate::envelope::padded_len`]). 4 GiB leaves
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

/// Most MIME parts a record may have. A form writes one text part (two when
/// text fields follow files), one JSON part and one part per file, and the
/// HTTP layer accepts at most `fields × 2 + max_files` multipart parts; no
/// sensible form comes near this. A crafted plaintext of `--b` lines would
/// otherwise make a part (and an attachment file) for every 4 bytes.
pub const MAX_PARTS: usize = 10_000;

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
    /// The record has more MIME parts than any form can produce.
    #[error(
        "refused: the decrypted record has more than {MAX_PARTS} MIME parts, far more than any \
         form writes; it was not made by sealform"
    )]
    TooManyParts,
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

/// A decrypted record, taken apart. Everything in it is untrusted.
#[derive(Default)]
pub struct Parsed {
    /// `X-Sealform-Receipt`, as written inside the ciphertext.
    pub receipt: Option<String>,
    /// `X-Sealform-Form`, as written inside the ciphertext.
    pub form: Option<String>,
    /// The decoded `text/plain` part.
    pub text: Option<Zeroizing<Vec<u8>>>,
    /// The decoded `application/json` part, if it is JSON.
    pub json: Option<serde_json::Value>,
    /// Attachment parts: the name the record gives (unsafe) and the bytes.
    pub attachments: Vec<(Zeroizing<String>, Zeroizing<Vec<u8>>)>,
    /// Parts that could not be decoded.
    pub damaged_parts: usize,
}

/// Takes a decrypted envelope apart. What cannot be read is counted in
/// [`Parsed::damaged_parts`] or left out; the only failure is a record with
/// more than [`MAX_PARTS`] parts ([`RecordError::TooManyParts`]), refused
/// before any part is decoded.
pub fn parse(plain: &[u8]) -> Result<Parsed, RecordError> {
    let mut out = Parsed::default();
    let (head, body) = split_head(plain);
    let headers = parse_headers(head);
    out.receipt = header(&headers, "x-sealform-receipt").map(str::to_owned);
    out.form = header(&headers, "x-sealform-form").map(str::to_owned);
    let boundary = header(&headers, "content-type").and_then(|ct| param(ct, "boundary"));
    let Some(boundary) = boundary.filter(|b| !b.is_empty() && b.len() <= 200) else {
        out.text = Some(Zeroizing::new(body.to_vec()));
        return Ok(out);
    };
    let parts = split_parts(body, boundary.as_bytes()).ok_or(RecordError::TooManyParts)?;
    let mut texts: Vec<Zeroizing<Vec<u8>>> = Vec::new();
    for (i, part) in parts.into_iter().enumerate() {
        let (phead, pbody) = split_head(part);
        let ph = parse_headers(phead);
        let cte = header(&ph, "content-transfer-encoding")
            .unwrap_or("7bit")
            .trim()
            .to_ascii_lowercase();
        let decoded = match cte.as_str() {
            "base64" => decode_base64(pbody),
            "quoted-printable" => Some(decode_qp(pbody)),
            _ => Some(Zeroizing::new(pbody.to_vec())),
        };
        let Some(decoded) = decoded else {
            out.damaged_parts += 1;
            continue;
        };
        let ctype = header(&ph, "content-type")
            .and_then(|c| c.split(';').next())
            .unwrap_or("text/plain")
            .trim()
            .to_ascii_lowercase();
        let disposition = header(&ph, "content-disposition").unwrap_or("");
        let is_attachment = disposition
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("attachment");
        if !is_attachment && ctype == "text/plain" {
            // An upload writes the fields sent after its files in a second
            // text part ("(continued)"): all of them are the message.
            texts.push(decoded);
        } else if !is_attachment && ctype == "application/json" && out.json.is_none() {
            match shaped_like_ours(&decoded)
                .then(|| serde_json::from_slice(&decoded).ok())
                .flatten()
            {
                Some(v) => out.json = Some(v),
                None => out.damaged_parts += 1,
            }
        } else {
            let name = disposition_filename(disposition)
                .unwrap_or_else(|| Zeroizing::new(format!("part-{}", i + 1)));
            out.attachments.push((name, decoded));
        }
    }
    out.text = match texts.len() {
        0 => None,
        1 => texts.pop(),
        // Joined once, into a buffer of the final size (no copy left behind).
        n => {
            let len = texts.iter().map(|t| t.len()).sum::<usize>() + 2 * (n - 1);
            let mut all = Zeroizing::new(Vec::with_capacity(len));
            for (i, t) in texts.iter().enumerate() {
                if i > 0 {
                    all.extend_from_slice(b"\n\n");
                }
                all.extend_from_slice(t);
            }
            Some(all)
        }
    };
    Ok(out)
}

/// Nesting and separators (`,` `:`) allowed in a record's JSON part. Ours
/// nests 3 deep and has a few per field and attachment (at most 256 fields
/// and 1000 files). A parsed value takes about 80 bytes and pretty-printing
/// puts each on its own indented line, so a hostile `[[[…0,0,0…]]]` would
/// take 40 to 130 times its size in memory and in `fields.json`.
const MAX_JSON_DEPTH: usize = 8;
const MAX_JSON_SEPARATORS: usize = 100_000;

/// Whether `json` stays within [`MAX_JSON_DEPTH`] and
/// [`MAX_JSON_SEPARATORS`] (a scan of its bytes, before anything is parsed).
fn shaped_like_ours(json: &[u8]) -> bool {
    let (mut depth, mut separators) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' | b':' => {
                separators += 1;
                if separators > MAX_JSON_SEPARATORS {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

/// Splits at the first empty line (CRLF or LF).
fn split_head(msg: &[u8]) -> (&[u8], &[u8]) {
    let crlf = find(msg, b"\r\n\r\n").map(|i| (i, i + 4));
    let lf = find(msg, b"\n\n").map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => {
            let (h, b) = if a.0 <= b.0 { a } else { b };
            (&msg[..h], &msg[b..])
        }
        (Some((h, b)), None) | (None, Some((h, b))) => (&msg[..h], &msg[b..]),
        (None, None) => (msg, &[]),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Most bytes of a header block read (ours are under 4 KiB; a part with no
/// empty line is all header).
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Unfolded headers, names lowercased, from the first [`MAX_HEADER_BYTES`].
/// Non-UTF-8 bytes are replaced.
fn parse_headers(head: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(&head[..head.len().min(MAX_HEADER_BYTES)]);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            if out.len() < 200 {
                out.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
    }
    out
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A `name=value` or `name="value"` parameter of a header value.
fn param(value: &str, name: &str) -> Option<String> {
    for p in value.split(';').skip(1) {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        if k.trim().eq_ignore_ascii_case(name) {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            return Some(v.to_owned());
        }
    }
    None
}

/// The parts between `--boundary` lines, up to `--boundary--`; `None` as
/// soon as there are more than [`MAX_PARTS`].
fn split_parts<'a>(body: &'a [u8], boundary: &[u8]) -> Option<Vec<&'a [u8]>> {
    let mut delim = b"--".to_vec();
    delim.extend_from_slice(boundary);
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut pos = 0;
    while pos < body.len() {
        let end = body[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |i| pos + i);
        let line = &body[pos..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(delim.as_slice()) {
            let rest_trimmed = rest.trim_ascii_end();
            if rest_trimmed.is_empty() || rest_trimmed == b"--" {
                if let Some(s) = start {
                    // The CRLF before a delimiter belongs to the delimiter.
                    let mut e = pos;
                    if e > s && body[e - 1] == b'\n' {
                        e -= 1;
                    }
                    if e > s && body[e - 1] == b'\r' {
                        e -= 1;
                    }
                    if parts.len() == MAX_PARTS {
                        return None;
                    }
                    parts.push(&body[s..e.max(s)]);
                }
                if rest_trimmed == b"--" {
                    return Some(parts);
                }
                start = Some((end + 1).min(body.len()));
            }
        }
        pos = end + 1;
    }
    // No closing delimiter: keep what was opened.
    if let Some(s) = start {
        if parts.len() == MAX_PARTS {
            return None;
        }
        parts.push(&body[s..]);
    }
    Some(parts)
}

fn decode_base64(body: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    // Sized up front: a collected `filter` grows by reallocation and would
    // leave unzeroized copies behind.
    let mut clean = Zeroizing::new(Vec::with_capacity(body.len()));
    clean.extend(body.iter().copied().filter(|b| !b.is_ascii_whitespace()));
    base64::engine::general_purpose::STANDARD
        .decode(&clean[..])
        .ok()
        .map(Zeroizing::new)
}

fn decode_qp(body: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(body.len()));
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if b == b'=' {
            match (body.get(i + 1), body.get(i + 2)) {
                (Some(b'\r'), Some(b'\n')) => i += 3,
                (Some(b'\n'), _) => i += 2,
                (Some(&h), Some(&l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                    let v = hex_val(h) * 16 + hex_val(l);
                    out.push(v);
                    i += 3;
                }
                _ => {
                    out.push(b);
                    i += 1;
                }
            }
        } else if b == b'\r' && body.get(i + 1) == Some(&b'\n') {
            out.push(b'\n');
            i += 2;
        } else {
            out.push(b);
            i += 1;
        }
    }
    out
}

fn hex_val(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

/// The file name of a `Content-Disposition`: `filename*=utf-8''…`
/// (RFC 5987) first, then `filename=`. Still unsafe: see
/// [`safe_file_name`].
fn disposition_filename(disposition: &str) -> Option<Zeroizing<String>> {
    if let Some(v) = param(disposition, "filename*") {
        let encoded = v.split_once("''").map_or(v.as_str(), |(_, e)| e);
        let bytes = percent_encoding::percent_decode_str(encoded).collect::<Vec<u8>>();
        return Some(Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned()));
    }
    param(disposition, "filename").map(Zeroizing::new)
}

/// Longest file name written, in bytes (ext4 allows 255).
const MAX_NAME: usize = 120;

/// Turns an untrusted name into one plain file name that stays inside the
/// folder it is joined to: no separators, no `.`/`..`, no leading dot, no
/// control, bidi or zero-width characters, no characters Windows refuses,
/// no reserved device names (`con`, `nul`, `com1`…), at most 120 bytes.
/// Empty results become `fallback`.
pub fn safe_file_name(raw: &str, fallback: &str) -> String {
    let mapped: String = raw
        .chars()
        .map(|c| {
            let bad = c.is_control()
                || matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|')
                || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}');
            if bad { '_' } else { c }
        })
        .collect();
    let trimmed = mapped.trim_matches(|c: char| c == '.' || c.is_whitespace());
    let mut name = String::new();
    for c in trimmed.chars() {
        if name.len() + c.len_utf8() > MAX_NAME {
            break;
        }
        name.push(c);
    }
    let name = name.trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    if name.is_empty() {
        return fallback.to_owned();
    }
    let stem = name
        .split('.')
        .next()
        .unwrap_or("")
        .trim_end()
        .to_ascii_uppercase();
    let reserved = matches!(
        stem.as_str(),
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$"
    ) || (stem.len() == 4
        && (stem.starts_with("COM") || stem.starts_with("LPT"))
        && stem.as_bytes()[3].is_ascii_digit());
    if reserved {
        format!("_{name}")
    } else {
        name.to_owned()
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
        let padded = crate::envelope::padded_len(base64_lines + (64 << 20));
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

    #[test]
    fn a_record_with_more_parts_than_any_form_writes_is_refused_quickly() {
        let head = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n";
        let hostile: Vec<u8> = head
            .iter()
            .copied()
            .chain(b"--b\n".repeat(4 << 20))
            .collect();
        let started = std::time::Instant::now();
        let err = parse(&hostile).err().expect("refused");
        assert!(matches!(err, RecordError::TooManyParts), "{err}");
        assert!(err.to_string().contains("MIME parts"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        // Exactly the cap is still read.
        let mut at_cap: Vec<u8> = head.to_vec();
        at_cap.extend(b"--b\nContent-Disposition: attachment\n\nx\n".repeat(MAX_PARTS));
        at_cap.extend(b"--b--\n");
        let parsed = parse(&at_cap).expect("at the cap");
        assert_eq!(parsed.attachments.len(), MAX_PARTS);
    }

    #[test]
    fn hostile_names_become_plain_names_inside_the_folder() {
        let cases: &[(&str, &str)] = &[
            ("../../etc/passwd", "_.._etc_passwd"),
            ("/abs", "_abs"),
            ("..", "fallback"),
            (".", "fallback"),
            ("", "fallback"),
            (".hidden", "hidden"),
            ("con", "_con"),
            ("CON.txt", "_CON.txt"),
            ("lpt1", "_lpt1"),
            ("com9.log", "_com9.log"),
            ("console", "console"),
            ("a\0b", "a_b"),
            ("line\nbreak\r.txt", "line_break_.txt"),
            ("C:\\Windows\\x", "C__Windows_x"),
            ("evil\u{202E}gpj.exe", "evil_gpj.exe"),
            ("trailing. ", "trailing"),
            ("report ü.pdf", "report ü.pdf"),
        ];
        for (raw, want) in cases {
            let got = safe_file_name(raw, "fallback");
            assert_eq!(&got, want, "{raw:?}");
            let p = Path::new("/out").join(&got);
            assert_eq!(p.parent(), Some(Path::new("/out")), "{raw:?}");
        }
        let long = "x".repeat(1000);
        assert_eq!(safe_file_name(&long, "f").len(), MAX_NAME);
        let multibyte = "é".repeat(100);
        assert!(safe_file_name(&multibyte, "f").len() <= MAX_NAME);
    }

    fn test_head() -> crate::envelope::Head<'static> {
        crate::envelope::Head {
            form: "tip",
            title: "Send a tip",
            receipt: "abcdefghijklmnopqrstuvwxyz",
            received_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
        }
    }

    #[test]
    fn a_written_envelope_parses_back_into_text_json_and_attachments() {
        use crate::envelope::{EnvelopeField, EnvelopeWriter, FieldValue};
        use std::io::Write;
        let head = test_head();
        let fields = [EnvelopeField {
            name: "message",
            label: "Message",
            value: FieldValue::Text("héllo = world\nsecond line"),
        }];
        let mut w = EnvelopeWriter::start(Vec::new(), &head).expect("start");
        w.text_part(head.title, &fields).expect("text");
        let mut a = w.attachment("file", "../x.txt", "text/plain").expect("att");
        a.write_all(&[0u8, 1, 2, 255]).expect("write");
        a.finish().expect("finish");
        w.json_part(&head, &fields).expect("json");
        let (plain, _) = w.finish().expect("finish");
        let p = parse(&plain).expect("parse");
        assert_eq!(p.receipt.as_deref(), Some("abcdefghijklmnopqrstuvwxyz"));
        assert_eq!(p.form.as_deref(), Some("tip"));
        let text = String::from_utf8(p.text.expect("text").to_vec()).expect("utf8");
        assert!(
            text.contains("Message: héllo = world\n  second line"),
            "{text}"
        );
        let json = p.json.expect("json");
        assert_eq!(json["fields"]["message"], "héllo = world\nsecond line");
        assert_eq!(p.attachments.len(), 1);
        assert_eq!(p.attachments[0].0.as_str(), "../x.txt");
        assert_eq!(&p.attachments[0].1[..], &[0u8, 1, 2, 255]);
        assert_eq!(p.damaged_parts, 0);
    }

    #[test]
    fn both_text_parts_of_an_upload_are_the_message() {
        use crate::envelope::{EnvelopeField, EnvelopeWriter, FieldValue};
        let head = test_head();
        let field = |label, value| EnvelopeField {
            name: label,
            label,
            value: FieldValue::Text(value),
        };
        let mut w = EnvelopeWriter::start(Vec::new(), &head).expect("start");
        w.text_part(head.title, &[field("Contact", "before the file")])
            .expect("text");
        w.attachment("file", "a.bin", "application/octet-stream")
            .expect("att")
            .finish()
            .expect("finish");
        w.text_part(
            "Send a tip (continued)",
            &[field("Message", "after the file")],
        )
        .expect("text");
        w.json_part(&head, &[]).expect("json");
        let (plain, _) = w.finish().expect("finish");
        let p = parse(&plain).expect("parse");
        let text = String::from_utf8(p.text.expect("text").to_vec()).expect("utf8");
        assert!(text.contains("Contact: before the file"), "{text}");
        assert!(text.contains("Message: after the file"), "{text}");
        assert_eq!(
            p.attachments.len(),
            1,
            "the second text part is no attachment"
        );
        assert_eq!(p.attachments[0].0.as_str(), "a.bin");
    }

    #[test]
    fn a_json_part_nested_too_deep_or_with_too_many_values_is_damaged_not_parsed() {
        let envelope = |json: &[u8]| {
            let mut e = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
                Content-Type: application/json\r\n\r\n"
                .to_vec();
            e.extend_from_slice(json);
            e.extend_from_slice(b"\r\n--b--\r\n");
            e
        };
        let deep = format!("{}0{}", "[".repeat(9), "]".repeat(9));
        let wide = format!("[{}0]", "0,".repeat(MAX_JSON_SEPARATORS + 1));
        let fine = format!(
            "{{\"fields\":{{\"a\":\"[[[[[[[[[[,,,:\\\"\"}},\"x\":{}0{}}}",
            "[".repeat(7),
            "]".repeat(7)
        );
        for (json, ok) in [
            (deep.as_str(), false),
            (wide.as_str(), false),
            (fine.as_str(), true),
        ] {
            let p = parse(&envelope(json.as_bytes())).expect("parse");
            assert_eq!(p.json.is_some(), ok, "{}", &json[..json.len().min(80)]);
            assert_eq!(p.damaged_parts, usize::from(!ok));
        }
    }

    #[test]
    fn malformed_envelopes_parse_without_panicking() {
        let cases: &[&[u8]] = &[
            b"",
            b"\r\n\r\n",
            b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n",
            b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Transfer-Encoding: base64\n\n!!!\n--b--",
            b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\nx",
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=\r\n=4\r\n=ZZ--b--",
            b"X-Sealform-Receipt: ../../x\r\n\r\n\xff\xfe",
        ];
        for c in cases {
            let _ = parse(c).expect("few parts");
        }
    }
}
