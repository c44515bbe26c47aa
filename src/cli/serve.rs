//! `sealform serve`: validate everything, open the store, serve until
//! SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;

use crate::config::Config;
use crate::http::{self, AppState};
use crate::intake::{Intake, OpenError};
use crate::keys::KeyProblem;

/// Runs the server with the config at `config_path`.
pub fn run(config_path: &Path, listen: Option<SocketAddr>) -> anyhow::Result<ExitCode> {
    super::init_logging();
    let config = Config::load(config_path)?;
    crate::harden::harden_process(config.abuse.mlockall).context("while hardening the process")?;
    let (intake, warnings) = Intake::open(config, SystemTime::now()).map_err(|e| match e {
        OpenError::Keys(list) => problems(list),
        OpenError::Store(e) => anyhow::Error::new(e).context("while opening the store"),
    })?;
    for w in &warnings {
        tracing::warn!("WARNING: {w}");
    }
    let addr = listen.unwrap_or(intake.config.server.listen);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("while starting the async runtime")?;
    runtime.block_on(async move {
        // Before "listening on": a SIGTERM from then on must stop gracefully.
        let shutdown = http::shutdown_signal();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("while binding {addr}"))?;
        let local = listener.local_addr()?;
        tracing::info!("listening on http://{local}/");
        http::serve(AppState::new(intake), listener, shutdown).await?;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
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
