//! Prints what a stopped server's store holds, for `scripts/crash-test`.
//!
//! Usage: `cargo run --example index-dump -- DATA_DIR`
//!
//! Opens the store with [`sealform::store::Store`] (the server must be
//! stopped: the store admits one process), then prints one line per indexed record,
//! `index <receipt> <state> <size>`, one line per spool file,
//! `spool <receipt> <size>`, and what opening it had to repair,
//! `recovery <removed_partial> <reindexed> <finished_acks>`. A store the
//! server left consistent needs no repair, so the harness expects
//! `recovery 0 0 0` and the two listings to agree.
//!
//! It reads ciphertext metadata only and never decrypts anything.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use sealform::store::{RecordState, Store};

fn main() -> anyhow::Result<ExitCode> {
    let Some(data_dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: index-dump DATA_DIR");
        return Ok(ExitCode::from(2));
    };
    let (store, recovery) =
        Store::open(&data_dir, 16 << 20, |_| Vec::new()).context("while opening the store")?;
    println!(
        "recovery {} {} {}",
        recovery.removed_partial, recovery.reindexed, recovery.finished_acks
    );
    for (receipt, entry) in store.list().context("while listing the index")? {
        let state = match entry.state {
            RecordState::New => "new",
            RecordState::Exported => "exported",
            RecordState::Acked => "acked",
        };
        println!("index {receipt} {state} {}", entry.size);
    }
    let spool = data_dir.join("spool");
    for dirent in std::fs::read_dir(&spool).context("while listing the spool")? {
        let dirent = dirent?;
        let name = dirent.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".pgp")) else {
            continue;
        };
        println!("spool {stem} {}", dirent.metadata()?.len());
    }
    Ok(ExitCode::SUCCESS)
}
