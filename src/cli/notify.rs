//! `sealform notify --now`: one digest now, to every reader, for setting
//! up the relay and the readers' mail clients. The store must not be in
//! use by `serve` (which sends the daily digest itself).

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;

use crate::config::Config;
use crate::intake::reindex_recipients;
use crate::notify::{Channel, Failures, Since, attempt, deliveries, last_slot, prepare};
use crate::store::{RecordStore, day_string};

/// Sends one digest of the store of the config at `config_path` now, dated
/// at the last slot. Exits 1, saying why, when any reader got nothing.
pub fn run(config_path: &Path, now: bool) -> anyhow::Result<ExitCode> {
    if !now {
        anyhow::bail!(
            "nothing to do: `sealform serve` sends the digest daily at notify.at; pass --now \
             to send one now"
        );
    }
    super::init_logging();
    let config = Config::load(config_path).map_err(|e| anyhow::anyhow!(e.lines().join("\n")))?;
    let Some(notify) = config.notify.clone() else {
        anyhow::bail!(
            "{} has no [notify] table: nothing to send",
            config.path.display()
        );
    };
    let slot_secs = notify.slot_secs().map_err(|e| anyhow::anyhow!(e))?;
    let store = open_store(&config)?;
    let slot = last_slot(SystemTime::now(), slot_secs);
    let previous = day_string(slot - Duration::from_secs(86_400));
    let round = prepare(
        &config,
        &notify,
        &store,
        &Since::Day(previous),
        Failures::default(),
        slot,
    )
    .map_err(|e| anyhow::anyhow!(e))
    .context("while preparing the digest")?;
    drop(store);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("while starting the async runtime")?;
    let failed = runtime.block_on(attempt(&notify, &round, &deliveries(&notify, &round)));
    let mut ok = true;
    for s in &round.skipped {
        eprintln!(
            "sealform: notify.readers[{}] gets nothing: {}",
            s.index, s.reason
        );
        ok = false;
    }
    for (i, channel, error) in &failed {
        eprintln!(
            "sealform: {} to notify.readers[{}] failed: {error}",
            channel.name(),
            round.letters[*i].reader
        );
        ok = false;
    }
    let sent = round.letters.len() - failed.iter().filter(|f| f.1 == Channel::Mail).count();
    println!(
        "digest sent to {sent} of {} reader(s)",
        notify.readers.len()
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The store of `config`, or why not (a running `serve` holds it).
fn open_store(config: &Config) -> anyhow::Result<RecordStore> {
    let (store, _) = RecordStore::open(config, reindex_recipients(config)).map_err(|e| {
        let locked = e.is_locked();
        let e = anyhow::Error::new(e);
        if locked {
            e.context(
                "while opening the store: a running `sealform serve` holds it (it sends the \
                 digest itself, daily at notify.at); stop it to send one now",
            )
        } else {
            e.context("while opening the store")
        }
    })?;
    Ok(store)
}
