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

use std::io::Read;
use std::path::Path;

use base64::Engine as _;
use sequoia_openpgp as openpgp;
use zeroize::Zeroizing;

use openpgp::cert::prelude::*;
use openpgp::crypto::{KeyPair, Password, SessionKey};
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::Parse;
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageStructure, VerificationHelper,
};
use openpgp::policy::StandardPolicy;
use openpgp::types::SymmetricAlgorithm;
use openpgp::{Fingerprint, KeyHandle};

/// Largest plaintext read from one record (records are padded envelopes of
/// at most a few form bodies; this bounds memory on crafted input).
pub const MAX_PLAINTEXT: u64 = 1 << 30;

/// Why a key file or a record could not be used.
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
    /// A key is passphrase-protected and no passphrase unlocked it.
    #[error(
        "the secret key {fingerprint} is passphrase-protected and the passphrase did not unlock it"
    )]
    Locked {
        /// The key's fingerprint.
        fingerprint: Fingerprint,
    },
    /// The given files hold no secret key able to decrypt.
    #[error(
        "no secret encryption key in the given key files (export them with `gpg --export-secret-keys`)"
    )]
    NoSecretKeys,
    /// The record could not be decrypted (no matching key, or damaged).
    #[error("cannot decrypt: {0}")]
    Decrypt(String),
    /// The plaintext is too large.
    #[error("the plaintext is larger than {MAX_PLAINTEXT} bytes")]
    TooLarge,
}

/// Unlocked secret encryption keys for this run.
pub struct SecretKeys {
    keys: Vec<(Fingerprint, KeyPair)>,
}

impl SecretKeys {
    /// Reads every secret key in `paths` (armored or binary, one or many per
    /// file, as `gpg --export-secret-keys` writes them) and unlocks the
    /// encryption-capable ones; `passphrase` is asked for a key's
    /// fingerprint when it is protected and no earlier passphrase opened it.
    pub fn load(
        paths: &[&Path],
        mut passphrase: impl FnMut(&Fingerprint) -> Option<Password>,
    ) -> Result<SecretKeys, RecordError> {
        let mut keys = Vec::new();
        let mut known: Vec<Password> = Vec::new();
        for path in paths {
            let key_err = |message: String| RecordError::KeyFile {
                path: path.to_path_buf(),
                message,
            };
            let parser = CertParser::from_file(path).map_err(|e| key_err(e.to_string()))?;
            for cert in parser {
                let cert = cert.map_err(|e| key_err(e.to_string()))?;
                for ka in cert.keys().secret() {
                    let key = ka.key().clone();
                    if !key.pk_algo().for_encryption() {
                        continue;
                    }
                    let fpr = key.fingerprint();
                    let key = if key.secret().is_encrypted() {
                        let mut unlocked = known
                            .iter()
                            .find_map(|pw| key.clone().decrypt_secret(pw).ok());
                        if unlocked.is_none() {
                            if let Some(pw) = passphrase(&fpr) {
                                unlocked = key.clone().decrypt_secret(&pw).ok();
                                if unlocked.is_some() {
                                    known.push(pw);
                                }
                            }
                        }
                        unlocked.ok_or(RecordError::Locked {
                            fingerprint: fpr.clone(),
                        })?
                    } else {
                        key
                    };
                    let pair = key
                        .parts_into_secret()
                        .and_then(|k| k.into_keypair())
                        .map_err(|e| key_err(e.to_string()))?;
                    keys.push((fpr, pair));
                }
            }
        }
        if keys.is_empty() {
            return Err(RecordError::NoSecretKeys);
        }
        Ok(SecretKeys { keys })
    }

    /// How many encryption keys are unlocked.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// No key is loaded (never true after a successful [`SecretKeys::load`]).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Decrypts the record at `path`. The whole message is authenticated
    /// (MDC) before the plaintext is returned.
    pub fn decrypt(&mut self, path: &Path) -> Result<Zeroizing<Vec<u8>>, RecordError> {
        let policy = StandardPolicy::new();
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let helper = Helper {
            keys: &mut self.keys,
        };
        let mut d = DecryptorBuilder::from_file(path)
            .map_err(|e| RecordError::Decrypt(e.to_string()))?
            // Hold the whole message back until it is authenticated.
            .buffer_size(usize::try_from(size.saturating_add(4096)).unwrap_or(usize::MAX))
            .with_policy(&policy, None, helper)
            .map_err(|e| RecordError::Decrypt(e.to_string()))?;
        let mut out = Zeroizing::new(Vec::with_capacity(
            usize::try_from(size).unwrap_or(0).min(64 << 20),
        ));
        (&mut d)
            .take(MAX_PLAINTEXT + 1)
            .read_to_end(&mut out)
            .map_err(|e| RecordError::Decrypt(e.to_string()))?;
        if out.len() as u64 > MAX_PLAINTEXT {
            return Err(RecordError::TooLarge);
        }
        if !d.message_processed() {
            return Err(RecordError::Decrypt("the message is incomplete".into()));
        }
        Ok(out)
    }
}

struct Helper<'a> {
    keys: &'a mut Vec<(Fingerprint, KeyPair)>,
}

impl VerificationHelper for Helper<'_> {
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

/// Takes a decrypted envelope apart. Never fails: what cannot be read is
/// counted in [`Parsed::damaged_parts`] or left out.
pub fn parse(plain: &[u8]) -> Parsed {
    let mut out = Parsed::default();
    let (head, body) = split_head(plain);
    let headers = parse_headers(head);
    out.receipt = header(&headers, "x-sealform-receipt").map(str::to_owned);
    out.form = header(&headers, "x-sealform-form").map(str::to_owned);
    let boundary = header(&headers, "content-type").and_then(|ct| param(ct, "boundary"));
    let Some(boundary) = boundary.filter(|b| !b.is_empty() && b.len() <= 200) else {
        out.text = Some(Zeroizing::new(body.to_vec()));
        return out;
    };
    for (i, part) in split_parts(body, boundary.as_bytes())
        .into_iter()
        .enumerate()
    {
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
        if !is_attachment && ctype == "text/plain" && out.text.is_none() {
            out.text = Some(decoded);
        } else if !is_attachment && ctype == "application/json" && out.json.is_none() {
            match serde_json::from_slice(&decoded) {
                Ok(v) => out.json = Some(v),
                Err(_) => out.damaged_parts += 1,
            }
        } else {
            let name = disposition_filename(disposition)
                .unwrap_or_else(|| Zeroizing::new(format!("part-{}", i + 1)));
            out.attachments.push((name, decoded));
        }
    }
    out
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

/// Unfolded headers, names lowercased. Non-UTF-8 bytes are replaced.
fn parse_headers(head: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(head);
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

/// The parts between `--boundary` lines, up to `--boundary--`.
fn split_parts<'a>(body: &'a [u8], boundary: &[u8]) -> Vec<&'a [u8]> {
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
                    parts.push(&body[s..e.max(s)]);
                }
                if rest_trimmed == b"--" {
                    return parts;
                }
                start = Some((end + 1).min(body.len()));
            }
        }
        pos = end + 1;
    }
    // No closing delimiter: keep what was opened.
    if let Some(s) = start {
        parts.push(&body[s..]);
    }
    parts
}

fn decode_base64(body: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let clean: Zeroizing<Vec<u8>> = Zeroizing::new(
        body.iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect(),
    );
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

    #[test]
    fn a_written_envelope_parses_back_into_text_json_and_attachments() {
        use crate::envelope::{EnvelopeField, EnvelopeWriter, FieldValue, Head};
        use std::io::Write;
        let head = Head {
            form: "tip",
            title: "Send a tip",
            receipt: "abcdefghijklmnopqrstuvwxyz",
            received_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
        };
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
        let p = parse(&plain);
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
            let _ = parse(c);
        }
    }
}
