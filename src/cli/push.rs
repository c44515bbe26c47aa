//! `sealform push` (online machine): uploads the answers of an outbox
//! (`cli/outbox.rs`) that were not uploaded yet, each with
//! `PUT /api/v1/staff/mailboxes/{mailbox}/replies/{id}`
//! (`http/staff_replies.rs`), and records in the outbox's manifest which
//! were. Pushing again is harmless: the server answers 200 for an answer it
//! holds already.
//!
//! A file is uploaded only if it is an encrypted OpenPGP message
//! ([`crate::replies::check_encrypted`]): a plaintext dropped into the
//! outbox by mistake never leaves the machine.

use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;

use super::outbox::Outbox;
use super::staff_client::{STALL, StaffClient};
use crate::api::staff::PushOutcome;
use crate::replies::check_encrypted;
use crate::store::day_string;

/// Runs `push`.
pub fn run(url: &str, token_file: &Path, outbox: &Path, mlock: bool) -> anyhow::Result<ExitCode> {
    crate::harden::harden_process(mlock).context("while hardening the process")?;
    let client = StaffClient::new(url, token_file, STALL)?;
    let mut outbox = Outbox::open(outbox)?;
    let (pending, skipped) = outbox.pending()?;
    for path in skipped {
        eprintln!(
            "skipped {}: not a mailbox folder (the folders of an outbox are named by the \
             Reply-Mailbox of a record)",
            path.display()
        );
    }
    let (mut stored, mut again, mut failed) = (0, 0, 0);
    for answer in pending {
        let bytes = std::fs::read(&answer.path)
            .with_context(|| format!("while reading {}", answer.path.display()))?;
        if let Err(e) = check_encrypted(&bytes) {
            eprintln!("not pushed {}: {e}", answer.path.display());
            failed += 1;
            continue;
        }
        match client.put_answer(&answer.mailbox, &answer.id, bytes) {
            Ok(outcome) => {
                outbox.mark_pushed(&answer.id, &day_string(SystemTime::now()))?;
                match outcome {
                    PushOutcome::Stored => stored += 1,
                    PushOutcome::AlreadyStored => again += 1,
                }
            }
            Err(e) if super::staff_client::server_gone(&e) => return Err(e),
            Err(e) => {
                eprintln!(
                    "not pushed {}: {}",
                    answer.path.display(),
                    super::describe(&e)
                );
                failed += 1;
            }
        }
    }
    println!("pushed {stored} answer(s); {again} already on the server; {failed} not pushed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
