//! `sealform purge`: apply the `[retention]` settings now (`serve` does the
//! same once a day). Deletion unlinks the file and removes the index entry,
//! and the index is then rebuilt without its log, so nothing else under
//! `data_dir` keeps the record. Answers to tipsters older than
//! `[replies] keep_days` are deleted too.

use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;

use crate::config::Config;
use crate::replies::Mailboxes;

/// Runs `purge` with the config at `config_path`.
pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let store = super::local_store::open(
        &config,
        "It applies retention daily itself; stop it to purge by hand",
    )?;
    let mailboxes = Mailboxes::open(
        &store,
        &config.server.data_dir,
        config.replies.max_per_mailbox,
    )
    .context("while opening the reply store")?;
    let answers = mailboxes
        .purge(config.replies.keep_days, SystemTime::now())
        .context("while deleting expired answers")?;
    println!("deleted {answers} expired answer(s) to tipsters");
    let r = &config.retention;
    if r.acked_days.is_none() && r.unacked_days.is_none() {
        println!(
            "retention is not configured ([retention] acked_days / unacked_days): nothing to do"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let purged = store.purge(r.acked_days, r.unacked_days, SystemTime::now())?;
    println!(
        "purged {} acknowledged and {} unacknowledged record(s)",
        purged.acked, purged.unacked
    );
    Ok(ExitCode::SUCCESS)
}
