//! `sealform serve`: validate everything, open the store, serve until
//! SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;

use crate::config::Config;
use crate::http::{self, AppState};
use crate::intake::Intake;
use crate::keys::{KeyProblem, Keyring};
use crate::store::Store;

/// Runs the server with the config at `config_path`.
pub fn run(config_path: &Path, listen: Option<SocketAddr>) -> anyhow::Result<ExitCode> {
    super::init_logging();
    let config = Config::load(config_path)?;
    let intake = open(config)?;
    let addr = listen.unwrap_or(intake.config.server.listen);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("while starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("while binding {addr}"))?;
        let local = listener.local_addr()?;
        tracing::info!("listening on http://{local}/");
        http::serve(AppState::new(intake), listener, http::shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Loads and validates keys, opens the store: everything `serve` needs
/// before it listens. Warnings are logged; problems are returned together.
pub fn open(config: Config) -> anyhow::Result<Intake> {
    let (keyring, warnings) = Keyring::load(&config, SystemTime::now()).map_err(problems)?;
    for w in &warnings {
        tracing::warn!("WARNING: {w}");
    }
    let (store, recovery) = Store::open(
        &config.server.data_dir,
        config.server.index_cache_bytes,
        |path| record_recipients(&keyring, path),
    )
    .context("while opening the store")?;
    if recovery.removed_partial > 0 || recovery.reindexed > 0 || recovery.finished_acks > 0 {
        tracing::info!(
            removed_partial = recovery.removed_partial,
            reindexed = recovery.reindexed,
            finished_acks = recovery.finished_acks,
            "store recovered after an unclean stop"
        );
    }
    Ok(Intake {
        config,
        keyring,
        store,
    })
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

/// Names the recipients of a spool file from its PKESK packets: certificate
/// fingerprints where the key is known, key IDs otherwise.
fn record_recipients(keyring: &Keyring, path: &Path) -> Vec<String> {
    let Ok(handles) = crate::seal::record_recipients(path) else {
        return Vec::new();
    };
    let mut out: Vec<String> = handles
        .into_iter()
        .flatten()
        .map(|h| {
            let id = openpgp_keyid(&h);
            keyring
                .cert_for_key_id(&id)
                .map_or_else(|| id.to_hex(), |c| c.fingerprint().to_hex())
        })
        .collect();
    out.dedup();
    out
}

fn openpgp_keyid(h: &sequoia_openpgp::KeyHandle) -> sequoia_openpgp::KeyID {
    sequoia_openpgp::KeyID::from(h)
}
