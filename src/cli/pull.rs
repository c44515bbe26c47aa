//! `sealform pull` and `sealform export`: copying records into a bundle
//! folder ([`crate::bundle`]), from the staff API or from the store itself,
//! and marking each exported once the manifest that lists it is durable.
//! `pull --ack-after-verify` then acknowledges each copy that verifies and
//! that the readers given can open (`cli/readers.rs`); acknowledging (which
//! deletes the record on the server) happens only after its bundle copy has
//! been checked against the manifest and the server's digest.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use super::readers::{Left, Readers, may_ack, say_left};
use super::staff_client::{StaffClient, server_gone};
use super::transfer::{Source, escaped, harden, told};
use crate::api::staff::StaffRecord;
use crate::bundle::{Bundle, Expected};
use crate::receipt::Receipt;
use crate::store::RecordState;
use crate::unseal::MAX_RECORD_BYTES;

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

/// `sealform pull`: fetch new (or `all`) records over the staff API into
/// the bundle at `out`; with `ack_after_verify`, acknowledge each one its
/// readers can open once its copy is verified. `stall` bounds each wait for
/// the server.
pub fn pull(opts: &PullOptions<'_>) -> anyhow::Result<ExitCode> {
    escaped(pull_into_bundle(opts))
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
    let source = Source::Remote(StaffClient::new(opts.url, opts.token_file, opts.stall)?);
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
    /// Verified, and left for other readers.
    left: Left,
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
        say_left(readers, &t.left);
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
    item: &StaffRecord,
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
            .and_then(|()| may_ack(readers, bundle, &receipt, &mut t.left))
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
