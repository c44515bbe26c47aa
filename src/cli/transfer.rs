//! `sealform pull`, `sealform export` and `sealform ack`: moving ciphertext
//! from the server into a bundle, and acknowledging what arrived intact.
//!
//! `pull` talks to the staff API over HTTP (from an online machine);
//! `export` opens the store directly (a shell on the server, with `serve`
//! stopped: the sled index admits one process). Both write the same bundle
//! (see [`crate::bundle`]) and mark each record exported only once its file
//! is durably in place. Nothing here decrypts, and acknowledging a record
//! (which deletes it on the server) happens only after its bundle copy has
//! been checked against the manifest.
//!
//! Acknowledging is for those who can read what they acknowledge: `pull
//! --ack-after-verify` and `ack` take `--for KEY` (repeatable), and then
//! acknowledge only records whose downloaded copy is sealed to one of those
//! keys, counting the rest as left for other readers; or `--all-readers`,
//! said explicitly, to acknowledge every verified record. They refuse to
//! guess when given neither. Both harden the process first (the token is a
//! secret).
//!
//! The HTTP client is reqwest's blocking client without TLS (the crate was
//! already in the build for the tests, so it adds no new dependency tree):
//! the staff API is meant to be reached over loopback, an SSH tunnel, a VPN
//! or an authenticated onion service, never directly over the open internet. It
//! ignores proxy settings from the environment, so the token goes only to
//! `--url`. Records are streamed into the bundle, never held in memory.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use serde::Deserialize;
use zeroize::Zeroizing;

use sequoia_openpgp::KeyHandle;

use crate::bundle::{Bundle, Expected, ManifestEntry};
use crate::config::Config;
use crate::receipt::Receipt;
use crate::store::{RecordState, Store};
use crate::unseal::MAX_RECORD_BYTES;

/// One record as a source lists it.
#[derive(Debug, Deserialize)]
struct Listed {
    receipt: String,
    #[serde(default)]
    size: u64,
    day: String,
    state: RecordState,
    #[serde(default)]
    recipients: Vec<String>,
}

/// Where records come from: the staff API or the store itself.
enum Source {
    Remote {
        client: reqwest::blocking::Client,
        base: String,
        token: Zeroizing<String>,
    },
    Local(Store),
}

impl Source {
    fn remote(url: &str, token_file: &Path, stall: Duration) -> anyhow::Result<Source> {
        if !url.to_ascii_lowercase().starts_with("http://") {
            bail!(
                "--url must start with http:// (got {url:?}): pull and ack speak plain HTTP, and \
                 the staff API is reached over loopback, an SSH tunnel, a VPN or an onion \
                 service, which do the encrypting (README, \"Once: a token for the staff API\")"
            );
        }
        let token = Zeroizing::new(
            std::fs::read_to_string(token_file)
                .with_context(|| format!("while reading {}", token_file.display()))?,
        );
        let token = Zeroizing::new(token.trim().to_owned());
        if token.is_empty() {
            bail!(
                "{} is empty; put the staff token in it",
                token_file.display()
            );
        }
        // The timeout bounds each wait (for an answer, each read of a body),
        // not a whole download: a 2.8 GiB record over an onion service takes
        // far longer than any total limit would allow. No proxy from the
        // environment: the token must go only where --url says (for an
        // onion service, run the command under `torsocks`).
        let client = reqwest::blocking::Client::builder()
            .timeout(stall)
            .connect_timeout(CONNECT)
            .no_proxy()
            .build()
            .context("while setting up the HTTP client")?;
        Ok(Source::Remote {
            client,
            base: url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    fn local(config_path: &Path) -> anyhow::Result<Source> {
        let config = Config::load(config_path)?;
        let (store, _) = Store::open(
            &config.server.data_dir,
            config.server.index_cache_bytes,
            crate::intake::reindex_recipients(&config),
        )
        .context(
            "while opening the store (is `sealform serve` running? The index admits one \
             process: stop the server, or use `sealform pull` against its staff API)",
        )?;
        Ok(Source::Local(store))
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> anyhow::Result<reqwest::blocking::Response> {
        let Source::Remote {
            client,
            base,
            token,
        } = self
        else {
            bail!("not a remote source");
        };
        let res = client
            .request(method, format!("{base}/api/v1/staff/{path}"))
            .bearer_auth(token.as_str())
            .send()
            .context("while contacting the staff API")?;
        match res.status().as_u16() {
            200..=299 => Ok(res),
            401 => bail!(
                "the server refused the token (401): check --token-file and the server's staff.tokens"
            ),
            403 => bail!(
                "the token may not do this (403): its scope in the server's staff.tokens (can) \
                 leaves it out"
            ),
            404 if path == "submissions" || path.starts_with("submissions?") => {
                bail!(
                    "there is no staff API at this URL (404): `sealform check` on the server says where it is \
                     served (staff.listen, or staff.on_public_listener = true for server.listen), if at all"
                )
            }
            429 => bail!("too many failed token attempts (429): wait a minute and try again"),
            s => bail!("the staff API answered {s}"),
        }
    }

    fn list(&self, all: bool) -> anyhow::Result<Vec<Listed>> {
        match self {
            Source::Remote { .. } => {
                #[derive(Deserialize)]
                struct Listing {
                    submissions: Vec<Listed>,
                }
                let state = if all { "all" } else { "new" };
                let res =
                    self.request(reqwest::Method::GET, &format!("submissions?state={state}"))?;
                let mut body = Vec::new();
                res.take(MAX_LISTING_BYTES + 1)
                    .read_to_end(&mut body)
                    .context("while reading the listing")?;
                if body.len() as u64 > MAX_LISTING_BYTES {
                    bail!(
                        "the listing is larger than {MAX_LISTING_BYTES} bytes; is --url a sealform staff API?"
                    );
                }
                let listing: Listing =
                    serde_json::from_slice(&body).context("while reading the listing")?;
                Ok(listing.submissions)
            }
            Source::Local(store) => Ok(store
                .list()?
                .into_iter()
                .filter(|(_, e)| all || e.state == RecordState::New)
                .map(|(r, e)| Listed {
                    receipt: r.to_string(),
                    size: e.size,
                    day: e.day,
                    state: e.state,
                    recipients: e.recipients,
                })
                .collect()),
        }
    }

    /// The record's bytes, as a stream, and, from the server, their
    /// SHA-256.
    fn fetch(&self, receipt: &Receipt) -> anyhow::Result<(Box<dyn Read>, Option<String>)> {
        match self {
            Source::Remote { .. } => {
                let res = self.request(reqwest::Method::GET, &format!("submissions/{receipt}"))?;
                let sha = res
                    .headers()
                    .get("x-sealform-sha256")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                Ok((Box::new(res), sha))
            }
            Source::Local(store) => {
                let file = store
                    .open_record(receipt)
                    .context("while reading a spool file")?;
                Ok((Box::new(file), None))
            }
        }
    }

    fn mark_exported(&self, receipt: &Receipt) -> anyhow::Result<()> {
        match self {
            Source::Remote { .. } => {
                self.request(
                    reqwest::Method::POST,
                    &format!("submissions/{receipt}/exported"),
                )?;
            }
            Source::Local(store) => {
                store.mark_exported(receipt)?;
            }
        }
        Ok(())
    }

    fn ack(&self, receipt: &Receipt) -> anyhow::Result<()> {
        match self {
            Source::Remote { .. } => {
                self.request(reqwest::Method::POST, &format!("submissions/{receipt}/ack"))?;
            }
            Source::Local(store) => {
                if store.ack(receipt, SystemTime::now())?.is_none() {
                    bail!("the store does not know this record (purged already?)");
                }
            }
        }
        Ok(())
    }
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
fn may_ack(
    readers: &Readers,
    bundle: &Bundle,
    receipt: &Receipt,
    t: &mut Tally,
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
fn say_left(readers: &Readers, t: &Tally) {
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

/// What a run does to the state of the records it copies.
#[derive(Clone, Copy)]
pub enum Handover<'a> {
    /// Marks each one exported: staff take them over.
    Export,
    /// Marks each one exported and acknowledges each one these readers can
    /// open once its copy verifies.
    ExportAndAck(&'a Readers),
    /// Copies every record and changes no state: a backup, after which a
    /// plain `pull` still fetches the new records.
    Backup,
}

/// What `pull` was asked to do.
pub struct PullOptions<'a> {
    /// Base URL of the staff API.
    pub url: &'a str,
    /// File holding the staff token.
    pub token_file: &'a Path,
    /// The bundle folder.
    pub out: &'a Path,
    /// Every stored record, not only new ones.
    pub all: bool,
    /// Acknowledge verified records (whose: `for_keys`, `all_readers`).
    pub ack_after_verify: bool,
    /// A backup: every record, no state changed.
    pub backup: bool,
    /// `--for`: fingerprints, key IDs or certificate files.
    pub for_keys: &'a [String],
    /// `--all-readers`.
    pub all_readers: bool,
    /// The longest wait for the server.
    pub stall: Duration,
    /// Lock all memory (`mlockall`).
    pub mlock: bool,
}

/// No core dump and no ptrace for a process that holds the staff token;
/// with `mlock`, no page of it in swap.
fn harden(mlock: bool) -> anyhow::Result<()> {
    crate::harden::harden_process(mlock).context("while hardening the process")
}

/// `sealform pull`: fetch new (or `all`) records over the staff API into
/// the bundle at `out`; with `ack_after_verify`, acknowledge each one its
/// readers can open once its copy is verified. `stall` bounds each wait for
/// the server.
pub fn pull(opts: &PullOptions<'_>) -> anyhow::Result<ExitCode> {
    escaped(pull_into_bundle(opts))
}

/// `e` on one line for the terminal: a cause can quote what the server
/// sent (a listing that does not parse names the value it choked on) or a
/// manifest on the transfer medium, so control characters are escaped.
fn told(e: &anyhow::Error) -> String {
    super::printable(&super::describe(e))
}

/// `r` with its error as [`told`] says it (`main` prints it as it is).
fn escaped<T>(r: anyhow::Result<T>) -> anyhow::Result<T> {
    r.map_err(|e| anyhow::anyhow!(told(&e)))
}

fn pull_into_bundle(opts: &PullOptions<'_>) -> anyhow::Result<ExitCode> {
    harden(opts.mlock)?;
    // After hardening: a `--for` file may be a secret key.
    let readers = if opts.ack_after_verify {
        Some(Readers::from_args(opts.for_keys, opts.all_readers)?)
    } else {
        None
    };
    let handover = match &readers {
        _ if opts.backup => Handover::Backup,
        Some(readers) => Handover::ExportAndAck(readers),
        None => Handover::Export,
    };
    let source = Source::remote(opts.url, opts.token_file, opts.stall)?;
    fetch_into(&source, opts.out, opts.all, handover)
}

/// `sealform export`: the same as `pull`, reading the store directly.
pub fn export(config: &Path, out: &Path, all: bool, backup: bool) -> anyhow::Result<ExitCode> {
    let source = Source::local(config)?;
    let handover = if backup {
        Handover::Backup
    } else {
        Handover::Export
    };
    fetch_into(&source, out, all, handover)
}

/// The longest wait for the staff API, for an answer or for the next bytes
/// of a body, unless `pull --stall-secs` says otherwise.
const STALL: Duration = Duration::from_secs(300);

/// The longest wait to connect (an onion service can take a minute to
/// reach; a server that is down should not cost five).
const CONNECT: Duration = Duration::from_secs(90);

/// Whether `e` is a failure of the connection to the staff API (refused,
/// timed out, reset, cut off mid-answer, or no bytes for the stall time)
/// rather than the server refusing one record, which it does with a status
/// code: then the run stops instead of trying every record in turn. A body
/// read error reaches us as an `io::Error` that wraps reqwest's error, which
/// the error chain does not show, so that is looked into too.
fn server_gone(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        let wrapped = cause
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<reqwest::Error>());
        cause
            .downcast_ref::<reqwest::Error>()
            .or(wrapped)
            .is_some_and(|r| r.status().is_none())
    })
}

/// A larger listing is refused rather than read into memory (a listing
/// entry takes about 200 bytes: this is some 300,000 records).
const MAX_LISTING_BYTES: u64 = 64 << 20;

/// Records written between two manifest saves. The manifest is rewritten
/// whole, so saving after every record would cost O(n²) for big bundles.
const SAVE_EVERY: usize = 64;

/// What a run did.
#[derive(Default)]
struct Tally {
    fetched: usize,
    present: usize,
    acked: usize,
    failed: usize,
    /// Verified, sealed only to keys not given with `--for`.
    others: usize,
    /// Verified, with hidden recipients and no key given named.
    hidden: usize,
}

fn fetch_into(
    source: &Source,
    out: &Path,
    all: bool,
    handover: Handover<'_>,
) -> anyhow::Result<ExitCode> {
    let mut bundle = Bundle::open(out)?;
    let listed = source.list(all || matches!(handover, Handover::Backup))?;
    let mut t = Tally::default();
    // Written but not yet in the saved manifest: marked exported (and
    // acknowledged) only after the manifest that lists them is durable, so
    // an interrupted run never leaves a record exported but unlisted.
    let mut pending: Vec<Receipt> = Vec::new();
    for item in listed.iter().filter(|l| l.state != RecordState::Acked) {
        let Some(receipt) = Receipt::parse(&item.receipt) else {
            eprintln!("skipping a listing entry that is not a receipt");
            t.failed += 1;
            continue;
        };
        if bundle.has_verified(&receipt) {
            t.present += 1;
        } else {
            // One record that cannot be read (its file is gone, or another
            // staff member acknowledged it since the listing) must not stop
            // the records after it from being saved; a failed connection
            // ends the run.
            match fetch_one(source, &mut bundle, item, &receipt) {
                Ok(()) => t.fetched += 1,
                Err(e) if server_gone(&e) => {
                    settle(source, &bundle, &mut pending, handover, &mut t)?;
                    return Err(e.context(stopped(out, &t, handover)));
                }
                Err(e) => {
                    eprintln!("{receipt}: {}; not written", told(&e));
                    t.failed += 1;
                    continue;
                }
            }
        }
        pending.push(receipt);
        if pending.len() >= SAVE_EVERY {
            settle(source, &bundle, &mut pending, handover, &mut t)?;
        }
    }
    settle(source, &bundle, &mut pending, handover, &mut t)?;
    println!(
        "{}: {} fetched, {} already in the bundle, {} acknowledged, {} failed",
        out.display(),
        t.fetched,
        t.present,
        t.acked,
        t.failed
    );
    if let Handover::ExportAndAck(readers) = handover {
        say_left(readers, &t);
    }
    Ok(if t.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Fetches one listed record into the bundle.
fn fetch_one(
    source: &Source,
    bundle: &mut Bundle,
    item: &Listed,
    receipt: &Receipt,
) -> anyhow::Result<()> {
    let (mut body, sha) = source.fetch(receipt)?;
    let expected = Expected {
        size: (item.size != 0).then_some(item.size),
        sha256: sha.as_deref(),
    };
    bundle.add(
        receipt,
        &mut body,
        expected,
        MAX_RECORD_BYTES,
        &item.day,
        &item.recipients,
    )?;
    Ok(())
}

/// What to say when a run stops because the connection to the server
/// failed.
fn stopped(out: &Path, t: &Tally, handover: Handover<'_>) -> String {
    // Records marked exported before the stop are no longer "new": only
    // --all fetches (and so acknowledges) them on the next run.
    let again = if matches!(handover, Handover::ExportAndAck(_)) {
        "run the same command again with --all to go on"
    } else {
        "run the same command again to go on"
    };
    format!(
        "the connection to the staff API failed ({}: {} fetched, {} already in the bundle, {} \
         acknowledged, {} failed so far; the manifest lists what was fetched): {again}",
        out.display(),
        t.fetched,
        t.present,
        t.acked,
        t.failed
    )
}

/// Saves the manifest, then marks `pending` exported on the source (and,
/// with [`Handover::ExportAndAck`], acknowledges each one whose copy
/// verifies, was checked against the server's digest and is sealed to the
/// readers; a [`Handover::Backup`] does neither). A record the source refuses (another staff
/// member acknowledged it meanwhile, say) is counted as failed and the
/// others go on; a manifest that cannot be saved, or a server that can no
/// longer be reached, stops the run.
fn settle(
    source: &Source,
    bundle: &Bundle,
    pending: &mut Vec<Receipt>,
    handover: Handover<'_>,
    t: &mut Tally,
) -> anyhow::Result<()> {
    bundle.save()?;
    if let Handover::Backup = handover {
        pending.clear();
        return Ok(());
    }
    for receipt in pending.drain(..) {
        if let Err(e) = source.mark_exported(&receipt) {
            if server_gone(&e) {
                return Err(e.context(stopped(bundle.dir(), t, handover)));
            }
            eprintln!("{receipt}: not marked exported: {}", told(&e));
            t.failed += 1;
            continue;
        }
        let Handover::ExportAndAck(readers) = handover else {
            continue;
        };
        if !bundle.source_checked(&receipt) {
            eprintln!(
                "{receipt}: not acknowledged: the bundle does not record that its copy was \
                 checked against the server's sha256 (the server, or a proxy in between, sent \
                 none when it was fetched, or an older sealform wrote the bundle); check the \
                 copy, then `sealform ack`"
            );
            t.failed += 1;
            continue;
        }
        let verified = bundle.verify(&receipt).map_err(anyhow::Error::from);
        match verified
            .and_then(|()| may_ack(readers, bundle, &receipt, t))
            .and_then(|ours| {
                if ours {
                    source.ack(&receipt).map(|()| true)
                } else {
                    Ok(false)
                }
            }) {
            Ok(true) => t.acked += 1,
            Ok(false) => {}
            Err(e) if server_gone(&e) => {
                return Err(e.context(stopped(bundle.dir(), t, handover)));
            }
            Err(e) => {
                eprintln!("{receipt}: not acknowledged: {}", told(&e));
                t.failed += 1;
            }
        }
    }
    Ok(())
}

/// `sealform ack`: acknowledge every record of the bundle at `dir` whose
/// file matches the manifest and that the readers named by `(for_keys,
/// all_readers)` can open, over the staff API (`url` + `token_file`) or
/// directly in the store (`config`).
pub fn ack(
    dir: &Path,
    remote: Option<(&str, &Path)>,
    config: &Path,
    readers: (&[String], bool),
    mlock: bool,
) -> anyhow::Result<ExitCode> {
    escaped(ack_bundle(dir, remote, config, readers, mlock))
}

fn ack_bundle(
    dir: &Path,
    remote: Option<(&str, &Path)>,
    config: &Path,
    (for_keys, all_readers): (&[String], bool),
    mlock: bool,
) -> anyhow::Result<ExitCode> {
    harden(mlock)?;
    // After hardening: a `--for` file may be a secret key.
    let readers = &Readers::from_args(for_keys, all_readers)?;
    let source = match remote {
        Some((url, token_file)) => Source::remote(url, token_file, STALL)?,
        None => Source::local(config).context(
            "with no --url, ack opens the store itself, on the server (from another machine, \
             give --url and --token-file)",
        )?,
    };
    if crate::bundle::read_manifest(dir)?.is_none() {
        bail!(
            "{} has no {}: nothing can be verified, nothing acknowledged",
            dir.display(),
            crate::bundle::MANIFEST
        );
    }
    let bundle = Bundle::open(dir)?;
    let (mut acked, mut refused) = (0usize, 0usize);
    let mut left = Tally::default();
    for entry in bundle.entries() {
        let Some(receipt) = Receipt::parse(&entry.receipt) else {
            eprintln!("skipping a manifest entry that is not a receipt");
            refused += 1;
            continue;
        };
        let verified = bundle
            .verify(&receipt)
            .map_err(anyhow::Error::from)
            .and_then(|()| may_ack(readers, &bundle, &receipt, &mut left));
        match verified {
            Ok(false) => {}
            Ok(true) => match source.ack(&receipt) {
                Ok(()) => acked += 1,
                Err(e) if server_gone(&e) => {
                    return Err(e.context(format!(
                        "the connection to the staff API failed after {acked} acknowledged, \
                         {refused} refused: run the same command again to go on"
                    )));
                }
                // E.g. already purged on the server: say so, go on.
                Err(e) => {
                    eprintln!("{receipt}: not acknowledged: {}", told(&e));
                    refused += 1;
                }
            },
            Err(e) => {
                eprintln!("not acknowledged: {}", told(&e));
                refused += 1;
            }
        }
    }
    println!("{acked} acknowledged, {refused} refused");
    say_left(readers, &left);
    Ok(if refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
