//! `sealform serve`: validate everything, open the store, serve until
//! SIGTERM/SIGINT; keep the store's daily upkeep (retention, the index
//! rebuilt without its history).

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;

use crate::config::{Config, ConfigError, StaffPlacement};
use crate::http::form_tokens::TokenKey;
use crate::http::{self, AppState, join_failure};
use crate::intake::{Intake, OpenError};
use crate::keys::{KeyProblem, KeyWarning};

/// Runs the server with the config at `config_path`.
pub fn run(config_path: &Path, listen: Option<SocketAddr>) -> anyhow::Result<ExitCode> {
    super::init_logging();
    let config = Config::load(config_path).map_err(config_problems)?;
    for w in config.warnings() {
        tracing::warn!("WARNING: {w}");
    }
    crate::harden::harden_process(config.abuse.mlockall).context("while hardening the process")?;
    let token_key = TokenKey::for_config(&config.abuse)?;
    let (intake, warnings) = Intake::open(config, SystemTime::now()).map_err(|e| match e {
        OpenError::Keys(list) => problems(list),
        OpenError::Store(e) if e.is_locked() => anyhow::Error::new(e).context(
            "while opening the store (another sealform process, a `serve` most likely, \
             is using this data_dir: the index admits one at a time)",
        ),
        OpenError::Store(e) => anyhow::Error::new(e).context("while opening the store"),
        OpenError::Workers(e) => {
            anyhow::Error::new(e).context("while starting the sealing threads")
        }
        OpenError::Replies(e) => anyhow::Error::new(e).context("while opening the reply store"),
    })?;
    for w in &warnings {
        tracing::warn!("WARNING: {w}");
    }
    let addr = listen.unwrap_or(intake.config.server.listen);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("while starting the async runtime")?;
    let (code, state) = runtime.block_on(async move {
        // Before "listening on": a SIGTERM from then on must stop gracefully.
        let shutdown = http::shutdown_signal();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("while binding {addr}"))?;
        let local = listener.local_addr()?;
        // This line first: scripts (and the tests) read the address from it.
        tracing::info!("listening on http://{local}/");
        let state = AppState::new(intake, token_key);
        let staff = &state.intake().config.staff;
        let staff_listener = match staff.placement() {
            StaffPlacement::OwnListener(staff_addr) => {
                let l = tokio::net::TcpListener::bind(staff_addr)
                    .await
                    .with_context(|| format!("while binding the staff API to {staff_addr}"))?;
                tracing::info!("staff API on http://{}/", l.local_addr()?);
                Some(l)
            }
            placement => {
                tracing::info!("staff API: {}", placement.explain());
                None
            }
        };
        spawn_daily_upkeep(&state);
        spawn_daily_key_check(&state);
        if let Some(ledger) = state.digest_ledger() {
            crate::notify::spawn(state.intake_arc(), ledger);
        }
        let kept = state.clone();
        http::serve(state, listener, staff_listener, shutdown).await?;
        tracing::info!("stopped");
        anyhow::Ok((ExitCode::SUCCESS, kept))
    })?;
    // The state (and the store's database connections, whose blocking
    // client must not be dropped on a thread of a runtime) goes last, once
    // the runtime and every task holding a copy of it are gone.
    drop(runtime);
    drop(state);
    Ok(code)
}

/// Applies `[retention]` at start, when configured, and just after every
/// 00:00 UTC; at those midnights, with no retention configured, it still
/// rebuilds the index and sets the day on every file ([`Store::refresh`]),
/// so that the index's log holds the arrival order of one day's records at
/// most. Each run first deletes the answers to tipsters older than
/// `[replies] keep_days` (`Mailboxes::purge` in `src/replies/mailboxes.rs`).
///
/// [`Store::refresh`]: crate::store::Store::refresh
fn spawn_daily_upkeep(state: &AppState) {
    let retention = state.intake().config.retention.clone();
    let keep_days = state.intake().config.replies.keep_days;
    let purging = retention.acked_days.is_some() || retention.unacked_days.is_some();
    let intake = state.intake_arc();
    tokio::spawn(async move {
        let mut first = true;
        loop {
            if !first {
                tokio::time::sleep(until_next_midnight(SystemTime::now())).await;
            }
            // At start the store was refreshed by `Store::open` already.
            let refresh = !first;
            first = false;
            let intake = std::sync::Arc::clone(&intake);
            let (acked, unacked) = (retention.acked_days, retention.unacked_days);
            let done = tokio::task::spawn_blocking(move || {
                let now = SystemTime::now();
                let answers = intake.mailboxes.purge(keep_days, now);
                let store = if purging {
                    intake.store.purge(acked, unacked, now).map(Some)
                } else if refresh {
                    intake.store.refresh(now).map(|()| None)
                } else {
                    Ok(None)
                };
                (answers, store)
            })
            .await;
            let failed = |e: &dyn std::fmt::Display| tracing::error!(error = %e, "daily upkeep of the store failed");
            match done {
                Ok((answers, store)) => {
                    match answers {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(answers = n, "expired answers deleted"),
                        Err(e) => failed(&e),
                    }
                    match store {
                        Ok(Some(p)) => {
                            tracing::info!(
                                acked = p.acked,
                                unacked = p.unacked,
                                "retention applied"
                            )
                        }
                        Ok(None) => {}
                        Err(e) => failed(&e),
                    }
                }
                Err(e) => failed(&join_failure(&e)),
            }
        }
    });
}

/// From `now` to one second after the next 00:00 UTC.
fn until_next_midnight(now: SystemTime) -> Duration {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Duration::from_secs(DAY - secs % DAY + 1)
}

/// Seconds in a day.
const DAY: u64 = 24 * 60 * 60;

/// Says once a day which certificates have expired since the start, or
/// will within 30 days (the start itself said so for the first day). The
/// keys stay in use: a record sealed to an expired key still decrypts.
fn spawn_daily_key_check(state: &AppState) {
    let intake = state.intake_arc();
    tokio::spawn(async move {
        let day = std::time::Duration::from_secs(24 * 60 * 60);
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + day, day);
        loop {
            every.tick().await;
            for w in intake.keyring.expiry_warnings(SystemTime::now()) {
                match w {
                    KeyWarning::ExpiresSoon { .. } => tracing::warn!("WARNING: {w}"),
                    KeyWarning::Expired { .. } => tracing::error!("{w}"),
                }
            }
        }
    });
}

/// A refused config as the error `serve` stops with: one problem as
/// itself, several a line each, as [`problems`] lists the keys'.
fn config_problems(e: ConfigError) -> anyhow::Error {
    let lines = e.lines();
    if lines.len() == 1 {
        return anyhow::Error::new(e);
    }
    let lines: Vec<String> = lines.iter().map(|l| format!("  - {l}")).collect();
    anyhow::anyhow!(
        "refusing to start: {} config problem(s):\n{}",
        lines.len(),
        lines.join("\n")
    )
}

/// One error listing every problem, each on its own line.
pub fn problems(list: Vec<KeyProblem>) -> anyhow::Error {
    let lines: Vec<String> = list.iter().map(|p| format!("  - {p}")).collect();
    anyhow::anyhow!(
        "refusing to start: {} key problem(s):\n{}",
        list.len(),
        lines.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daily_upkeep_runs_one_second_after_the_next_midnight_utc() {
        let midnight = UNIX_EPOCH + Duration::from_secs(20_000 * DAY);
        for (after, wait) in [(0, DAY + 1), (1, DAY), (DAY - 1, 2), (3_600, DAY - 3_599)] {
            let now = midnight + Duration::from_secs(after);
            assert_eq!(
                until_next_midnight(now),
                Duration::from_secs(wait),
                "{after}"
            );
        }
    }
}
