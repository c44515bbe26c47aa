//! Command-line interface: clap definitions and dispatch to one module per
//! command.

mod ack;
mod check;
mod decrypt;
mod demo;
pub mod keygen;
mod local_store;
mod notify;
mod outbox;
mod pull;
mod purge;
mod push;
mod readers;
mod reply;
mod serve;
mod staff_client;
mod store_copy;
mod token;
mod transfer;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use zeroize::Zeroizing;

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
    /// Mint a staff API token and print the line for the config.
    Token {
        /// Write the token to this new file (mode 0600) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// (Online machine) Fetch records over the staff API into a bundle
    /// folder: `DIR/<receipt>.pgp` and `DIR/MANIFEST.json`.
    Pull {
        /// Base URL of the staff API, e.g. http://127.0.0.1:8081.
        #[arg(long)]
        url: String,
        /// File holding the staff token.
        #[arg(long)]
        token_file: PathBuf,
        /// The bundle folder.
        #[arg(long)]
        out: PathBuf,
        /// Fetch every stored record, not only new ones.
        #[arg(long)]
        all: bool,
        /// Acknowledge each record (deleting it on the server) once its copy
        /// is verified against the manifest; needs --for or --all-readers.
        #[arg(long)]
        ack_after_verify: bool,
        /// Acknowledge only records sealed to this key: a fingerprint, a key
        /// ID or a certificate file; repeat for more. Others are left for
        /// their readers.
        #[arg(long = "for", value_name = "KEY", requires = "ack_after_verify")]
        for_keys: Vec<String>,
        /// Acknowledge every verified record, also those only other
        /// readers' keys open.
        #[arg(long, requires = "ack_after_verify", conflicts_with = "for_keys")]
        all_readers: bool,
        /// Lock all memory (mlockall), so the token never reaches swap.
        #[arg(long)]
        mlock: bool,
        /// A backup: fetch every record (as --all) and change no state (a
        /// later pull still fetches the new ones).
        #[arg(long, conflicts_with = "ack_after_verify")]
        backup: bool,
        /// Seconds without an answer or without new bytes of a record after
        /// which the server is taken to be gone and the run stops.
        #[arg(long, default_value_t = 300,
              value_parser = clap::value_parser!(u64).range(1..=86_400))]
        stall_secs: u64,
    },
    /// (Shell on the server, `serve` stopped) Copy records from the store
    /// into a bundle folder, like `pull`.
    Export {
        /// The bundle folder.
        #[arg(long)]
        out: PathBuf,
        /// Export every stored record, not only new ones.
        #[arg(long)]
        all: bool,
        /// A backup: copy every record (as --all) and change no state (a
        /// later pull still fetches the new ones).
        #[arg(long)]
        backup: bool,
    },
    /// Acknowledge the records of a bundle whose files match its manifest:
    /// over the staff API (--url, --token-file) or in the store (--config).
    Ack {
        /// Base URL of the staff API.
        #[arg(long, requires = "token_file")]
        url: Option<String>,
        /// File holding the staff token.
        #[arg(long, requires = "url")]
        token_file: Option<PathBuf>,
        /// The bundle folder.
        bundle: PathBuf,
        /// Acknowledge only records sealed to this key: a fingerprint, a key
        /// ID or a certificate file; repeat for more. Others are left for
        /// their readers.
        #[arg(long = "for", value_name = "KEY")]
        for_keys: Vec<String>,
        /// Acknowledge every verified record, also those only other
        /// readers' keys open.
        #[arg(long, conflicts_with = "for_keys")]
        all_readers: bool,
        /// Lock all memory (mlockall), so the token never reaches swap.
        #[arg(long)]
        mlock: bool,
    },
    /// (Offline machine) Decrypt records: bundle folders or .pgp files.
    Decrypt {
        /// A secret key file (`gpg --export-secret-keys --armor`); repeat for more.
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// File with the passphrase of protected keys (else you are asked).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Output folder (one folder per record).
        #[arg(long)]
        out: PathBuf,
        /// Also write one CSV per form (a row per record, a column per field).
        #[arg(long)]
        csv: bool,
        /// Bundle folders or .pgp files.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Lock all memory (mlockall), so no plaintext or key reaches swap.
        #[arg(long)]
        mlock: bool,
    },
    /// Apply the `[retention]` settings now (`serve` does it daily) and
    /// delete answers to tipsters older than `[replies] keep_days`.
    Purge,
    /// (Offline machine) Answer a tipster: encrypt a message to the reply
    /// certificate of a decrypted record and write it into an outbox
    /// folder (`OUTBOX/<mailbox>/<id>.pgp`) for `push`.
    Reply {
        /// The record's folder, as `sealform decrypt` wrote it
        /// (`DIR/<receipt>`).
        #[arg(long)]
        record: PathBuf,
        /// File holding the answer (UTF-8 text).
        #[arg(long)]
        message: PathBuf,
        /// The status the tipster sees.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(
            ["received", "in-progress", "answered", "closed"]))]
        status: Option<String>,
        /// A certificate to encrypt the answer to as well (your own, for
        /// your records); repeat for more.
        #[arg(long = "key", value_name = "CERT")]
        keys: Vec<PathBuf>,
        /// The outbox folder.
        #[arg(long)]
        out: PathBuf,
        /// Lock all memory (mlockall), so the answer never reaches swap.
        #[arg(long)]
        mlock: bool,
    },
    /// (Online machine) Upload the answers of an outbox folder that were
    /// not uploaded yet over the staff API.
    Push {
        /// Base URL of the staff API, e.g. http://127.0.0.1:8081.
        #[arg(long)]
        url: String,
        /// File holding the staff token.
        #[arg(long)]
        token_file: PathBuf,
        /// The outbox folder.
        outbox: PathBuf,
        /// Lock all memory (mlockall), so the token never reaches swap.
        #[arg(long)]
        mlock: bool,
    },
    /// Work on a store as a whole, with the servers using it stopped.
    Store {
        /// What to do.
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Send the daily digest of `[notify]` now, to every reader (for
    /// setting up; `serve` sends it daily). Exits 1 saying why when a
    /// reader got nothing.
    Notify {
        /// Send it now (the only mode; `serve` keeps the daily time).
        #[arg(long)]
        now: bool,
    },
    /// (Offline machine) Make a staff key: a GnuPG-compatible v4 cert
    /// (ed25519 + cv25519, two years), the secret key passphrase-protected.
    Keygen {
        /// User ID, e.g. "Jane Doe <jane@example.org>".
        #[arg(long)]
        name: String,
        /// Where to write the secret key and the public certificate.
        #[arg(long)]
        out: PathBuf,
        /// File with the passphrase (else you are asked twice).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Lock all memory (mlockall), so no secret key reaches swap.
        #[arg(long)]
        mlock: bool,
    },
}

/// The commands of `sealform store`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy every record, with its state, from the store config FROM names to
    /// the one config TO names (e.g. from the embedded store to PostgreSQL),
    /// checking each record's sha256; run it again to finish a copy that
    /// was stopped.
    Copy {
        /// The configuration of the store to copy from.
        #[arg(long)]
        from: PathBuf,
        /// The configuration of the store to copy into.
        #[arg(long)]
        to: PathBuf,
    },
}

/// Parses `std::env::args` and runs the command.
pub fn run() -> anyhow::Result<ExitCode> {
    install_panic_hook();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { listen } => serve::run(&cli.config, listen),
        Command::Check => check::run(&cli.config),
        Command::Demo { dir, listen, fresh } => demo::run(&dir, listen, fresh),
        Command::Token { out } => token::run(out.as_deref()),
        Command::Pull {
            url,
            token_file,
            out,
            all,
            ack_after_verify,
            for_keys,
            all_readers,
            mlock,
            backup,
            stall_secs,
        } => pull::pull(&pull::PullOptions {
            url: &url,
            token_file: &token_file,
            out: &out,
            all,
            ack_after_verify,
            backup,
            for_keys: &for_keys,
            all_readers,
            stall: Duration::from_secs(stall_secs),
            mlock,
        }),
        Command::Export { out, all, backup } => pull::export(&cli.config, &out, all, backup),
        Command::Ack {
            url,
            token_file,
            bundle,
            for_keys,
            all_readers,
            mlock,
        } => {
            let remote = url.as_deref().zip(token_file.as_deref());
            ack::run(
                &bundle,
                remote,
                &cli.config,
                (&for_keys, all_readers),
                mlock,
            )
        }
        Command::Decrypt {
            keys,
            passphrase_file,
            out,
            csv,
            inputs,
            mlock,
        } => decrypt::run(&decrypt::Options {
            keys: &keys,
            passphrase_file: passphrase_file.as_deref(),
            out: &out,
            inputs: &inputs,
            csv,
            mlock,
        }),
        Command::Purge => purge::run(&cli.config),
        Command::Reply {
            record,
            message,
            status,
            keys,
            out,
            mlock,
        } => reply::run(&reply::Options {
            record: &record,
            message: &message,
            status: status
                .map(|s| s.parse())
                .transpose()
                .map_err(anyhow::Error::msg)?,
            keys: &keys,
            out: &out,
            mlock,
        }),
        Command::Push {
            url,
            token_file,
            outbox,
            mlock,
        } => push::run(&url, &token_file, &outbox, mlock),
        Command::Store {
            command: StoreCommand::Copy { from, to },
        } => store_copy::run(&from, &to),
        Command::Keygen {
            name,
            out,
            passphrase_file,
            mlock,
        } => keygen::run(&name, &out, passphrase_file.as_deref(), mlock),
        Command::Notify { now } => notify::run(&cli.config, now),
    }
}

/// An error and its causes on one line, `outer: inner: root`, as anyhow's
/// `{:#}` prints them, but without saying a cause twice: many of our errors
/// already end with their source's text (`cannot read config file x: No such
/// file or directory`), which `{:#}` would then repeat.
pub fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

/// `s` with control characters escaped (`\u{1b}`), for the terminal: a file
/// name or a manifest on the transfer medium, or an answer from a server,
/// may hold escape sequences.
pub(crate) fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The passphrase in a `--passphrase-file`: its first line, without the line
/// ending, as `gpg --passphrase-file` reads it. `keygen` and `decrypt` read
/// it the same way, so a file that made a key opens it.
pub(crate) fn read_passphrase_file(path: &Path) -> anyhow::Result<Zeroizing<String>> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("while reading {}", path.display()))?,
    );
    let line = text.split('\n').next().unwrap_or("");
    Ok(Zeroizing::new(
        line.strip_suffix('\r').unwrap_or(line).to_owned(),
    ))
}

/// Reports a panic by its place only. Rust's default hook writes the panic's
/// message to stderr (the server's log): a message can quote what the code
/// was handling, such as a submitted value or a decrypted field in
/// `decrypt`, and plaintext must never reach a log. No backtrace either,
/// whatever `RUST_BACKTRACE` says: its frames are code locations, but it is
/// not needed to find the place, which is printed.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        let place = info.location().map_or_else(
            || "an unknown place".to_owned(),
            |l| format!("{}:{}:{}", l.file(), l.line(), l.column()),
        );
        eprintln!(
            "sealform: thread '{thread}' panicked at {place} (its message is not shown: it could quote data)"
        );
    }));
}

/// Logs to stderr, `info` unless `RUST_LOG` says otherwise.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // The digest counts the failures logged (see src/notify/census.rs).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .finish()
        .with(crate::notify::FailureCounter)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_described_with_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = anyhow::Error::new(crate::config::ConfigError::Read {
            path: "c.toml".into(),
            source: io,
        })
        .context("while starting");
        assert_eq!(
            describe(&e),
            "while starting: cannot read config file c.toml: No such file"
        );
        assert_eq!(
            format!("{e:#}"),
            "while starting: cannot read config file c.toml: No such file: No such file",
            "anyhow's own form repeats it (if this changes, describe can go)"
        );
    }

    #[test]
    fn a_passphrase_file_gives_its_first_line_without_the_line_ending() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pw");
        for (text, want) in [
            ("correct horse\n", "correct horse"),
            ("correct horse\n\n", "correct horse"),
            ("correct horse\r\nsecond line\n", "correct horse"),
            ("correct horse", "correct horse"),
            (" spaced \n", " spaced "),
        ] {
            std::fs::write(&path, text).expect("write");
            let got = read_passphrase_file(&path).expect("read");
            assert_eq!(got.as_str(), want, "{text:?}");
        }
    }

    const CHILD: &str = "SEALFORM_PANIC_HOOK_CHILD";
    const CANARY: &str = "CANARY-7f3a-plaintext";

    #[test]
    fn a_panic_is_reported_by_its_place_never_by_its_message() {
        if std::env::var_os(CHILD).is_some() {
            install_panic_hook();
            let value = CANARY.to_owned();
            panic!("could not handle {value}");
        }
        // The hook is process-wide, so the panic happens in a child: this
        // same test binary, running only this test, with the variable set.
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "cli::tests::a_panic_is_reported_by_its_place_never_by_its_message",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env("RUST_BACKTRACE", "full")
            .output()
            .expect("child runs");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "the child did not panic: {all}");
        assert!(
            all.contains("panicked at src/cli.rs:"),
            "no place in the report: {all}"
        );
        assert!(!all.contains(CANARY), "the message was printed: {all}");
        assert!(
            !all.contains("stack backtrace"),
            "a backtrace was printed: {all}"
        );
    }
}
