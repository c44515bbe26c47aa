//! Whose records `pull --ack-after-verify` and `ack` may acknowledge: the
//! readers named with `--for` (fingerprints, key IDs or certificate files)
//! or `--all-readers`, matched against the PKESK packets of each record's
//! bundle copy. Acknowledging deletes the server's copy, so only records
//! one of the named keys can open are acknowledged; the rest are counted
//! as left for other readers.

use std::path::Path;

use anyhow::{Context as _, bail};
use sequoia_openpgp::KeyHandle;

use crate::bundle::{Bundle, ManifestEntry};
use crate::receipt::Receipt;

/// Verified records that were left unacknowledged, and why.
#[derive(Default)]
pub(super) struct Left {
    /// Verified, sealed only to keys not given with `--for`.
    pub(super) others: usize,
    /// Verified, with hidden recipients and no key given named.
    pub(super) hidden: usize,
}

/// Whose records may be acknowledged: `--for` or `--all-readers`.
pub enum Readers {
    /// `--all-readers`: every verified record.
    All,
    /// `--for`: only records whose copy is sealed to one of these keys.
    Keys(Vec<Reader>),
}

/// One `--for` value.
pub struct Reader {
    /// The keys that count as this reader's: the one named, or every key
    /// of the certificates in the file named.
    handles: Vec<KeyHandle>,
}

impl Readers {
    /// From the command line: `--for` values (fingerprints, key IDs or
    /// certificate files) or `--all-readers`; neither is refused.
    pub fn from_args(for_keys: &[String], all_readers: bool) -> anyhow::Result<Readers> {
        if all_readers {
            return Ok(Readers::All);
        }
        if for_keys.is_empty() {
            bail!(
                "say whose records to acknowledge: --for FINGERPRINT (repeatable; the keys you \
                 decrypt with, or their certificate files) acknowledges only records sealed to \
                 them and leaves the rest for other readers; --all-readers acknowledges every \
                 verified record, those only others can open included"
            );
        }
        for_keys
            .iter()
            .map(|k| Reader::parse(k))
            .collect::<anyhow::Result<_>>()
            .map(Readers::Keys)
    }
}

impl Reader {
    /// A fingerprint or key ID in hex (spaces allowed), or the path of a
    /// file of certificates (public or secret, armored or not; a pipe too,
    /// as in `--for <(gpg --export KEY)`).
    fn parse(value: &str) -> anyhow::Result<Reader> {
        let path = Path::new(value);
        if std::fs::metadata(path).is_ok_and(|m| !m.is_dir()) {
            use sequoia_openpgp::parse::Parse;
            let mut handles = Vec::new();
            for cert in sequoia_openpgp::cert::CertParser::from_file(path)
                .with_context(|| format!("while reading --for {}", path.display()))?
            {
                let cert =
                    cert.with_context(|| format!("while reading --for {}", path.display()))?;
                handles.extend(
                    cert.keys()
                        .map(|ka| KeyHandle::from(ka.key().fingerprint())),
                );
            }
            if handles.is_empty() {
                bail!("--for {}: the file holds no certificate", path.display());
            }
            return Ok(Reader { handles });
        }
        let hex: String = value.chars().filter(|c| !c.is_whitespace()).collect();
        let handle = match hex.len() {
            16 | 40 | 64 if hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                hex.parse::<KeyHandle>().ok()
            }
            _ => None,
        };
        let Some(handle) = handle else {
            bail!(
                "--for {value:?} is neither a fingerprint (40 or 64 hex digits), a key ID (16) \
                 nor a certificate file"
            );
        };
        Ok(Reader {
            handles: vec![handle],
        })
    }
}

/// Whom a verified copy in the bundle is sealed to, as far as `--for` goes.
#[derive(Debug, PartialEq, Eq)]
enum SealedTo {
    /// One of the keys given.
    Us,
    /// Only keys that were not given.
    Others,
    /// No key given is named, and some recipients are hidden (wildcard key
    /// IDs, `hide_recipients`): it may be ours, but nothing says so.
    Hidden,
}

/// Reads the PKESK packets of the bundle's copy of `receipt` (what was
/// downloaded, not what the server lists) and matches them against the
/// keys given. The packets name the encryption subkey, so a key given also
/// matches the record's manifest entry, whose recipients the server named
/// by primary fingerprint from the same packets: by that fingerprint, or
/// by its key ID.
fn sealed_to(
    readers: &[Reader],
    bundle: &Bundle,
    receipt: &Receipt,
    entry: Option<&ManifestEntry>,
) -> anyhow::Result<SealedTo> {
    let handles = crate::seal::record_recipients(&bundle.path_of(receipt))
        .context("while reading whom the record is sealed to")?;
    let ours = |h: &KeyHandle| {
        readers
            .iter()
            .any(|r| r.handles.iter().any(|k| k.aliases(h)))
    };
    if handles.iter().flatten().any(ours) {
        return Ok(SealedTo::Us);
    }
    let listed = entry.is_some_and(|e| {
        e.recipients
            .iter()
            .filter_map(|fpr| fpr.parse::<sequoia_openpgp::Fingerprint>().ok())
            .any(|fpr| ours(&KeyHandle::from(fpr)))
    });
    if listed && handles.iter().any(Option::is_some) {
        return Ok(SealedTo::Us);
    }
    Ok(if handles.iter().any(Option::is_none) {
        SealedTo::Hidden
    } else {
        SealedTo::Others
    })
}

/// Whether `readers` may acknowledge the bundle's verified copy of
/// `receipt`; counts it in `t` when not.
pub(super) fn may_ack(
    readers: &Readers,
    bundle: &Bundle,
    receipt: &Receipt,
    t: &mut Left,
) -> anyhow::Result<bool> {
    let Readers::Keys(keys) = readers else {
        return Ok(true);
    };
    let entry = bundle.entries().find(|e| e.receipt == receipt.to_string());
    Ok(match sealed_to(keys, bundle, receipt, entry)? {
        SealedTo::Us => true,
        SealedTo::Others => {
            t.others += 1;
            false
        }
        SealedTo::Hidden => {
            t.hidden += 1;
            false
        }
    })
}

/// With `--for`, what was left unacknowledged and why.
pub(super) fn say_left(readers: &Readers, t: &Left) {
    if let Readers::Keys(_) = readers {
        println!(
            "{} left for other readers (sealed to none of the keys given with --for)",
            t.others + t.hidden
        );
        if t.hidden > 0 {
            println!(
                "  {} of them have hidden recipients (hide_recipients: the key IDs are \
                 wildcards, so --for cannot tell whose they are); decrypt them, then \
                 `sealform ack --all-readers` their bundle",
                t.hidden
            );
        }
    }
}
