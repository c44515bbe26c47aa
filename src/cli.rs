//! Command-line interface: clap definitions and dispatch to one module per
//! command.

mod check;
mod demo;
pub mod keygen;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// sealform: encrypt web-form submissions to OpenPGP keys on arrival and keep
/// only ciphertext.
#[derive(Debug, Parser)]
#[command(name = "sealform", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, short, global = true, env = "SEALFORM_CONFIG", default_value = crate::config::DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve {
        /// Listen here instead of `server.listen` (port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Validate the configuration and every certificate in keys_dir, and
    /// print what was found. Exits 1 when anything would stop `serve`.
    Check,
    /// Try sealform: make a throwaway key and config under DIR, then serve
    /// the example forms and print how to decrypt what you submit.
    Demo {
        /// Where the demo keeps its key, config and data.
        #[arg(long, default_value = "demo")]
        dir: PathBuf,
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Throw away an existing demo directory's key and data first.
        #[arg(long)]
        fresh: bool,
    },
}

/// Parses `std::env::args` and runs the command.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { listen } => serve::run(&cli.config, listen),
        Command::Check => check::run(&cli.config),
        Command::Demo { dir, listen, fresh } => demo::run(&dir, listen, fresh),
    }
}

/// Logs to stderr, `info` unless `RUST_LOG` says otherwise.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
