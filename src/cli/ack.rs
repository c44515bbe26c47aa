//! `sealform ack`: acknowledging the records of a bundle whose copies
//! verify against its manifest and that the readers given can open
//! (`cli/readers.rs`), over the staff API or in the store itself. The server
//! deletes what is acknowledged, so nothing unverified is.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use super::readers::{Left, Readers, may_ack, say_left};
use super::staff_client::{STALL, StaffClient, server_gone};
use super::transfer::{Source, escaped, harden, told};
use crate::bundle::Bundle;
use crate::receipt::Receipt;

/// `sealform ack`: acknowledge every record of the bundle at `dir` whose
/// file matches the manifest and that the readers named by `(for_keys,
/// all_readers)` can open, over the staff API (`url` + `token_file`) or
/// directly in the store (`config`).
pub fn run(
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
        Some((url, token_file)) => Source::Remote(StaffClient::new(url, token_file, STALL)?),
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
    let mut left = Left::default();
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
