//! `sealform demo`: a working server in one command, for trying only.
//!
//! Makes a throwaway key pair and a config from `config.example.toml` under a
//! demo directory, prints the URL and the exact GnuPG commands that decrypt
//! what is submitted, then serves. The secret key is written *outside* the
//! keys directory, unprotected, and labelled as a demo key.

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use sequoia_openpgp::serialize::SerializeInto;

use crate::durable;

const EXAMPLE_CONFIG: &str = include_str!("../../config.example.toml");

/// How the config of a demo folder starts. Only such a folder is reused or,
/// with `--fresh`, deleted.
const DEMO_MARKER: &str = "# Written by `sealform demo`";

/// Whether `dir` holds a demo: its `config.toml` starts with [`DEMO_MARKER`].
fn is_demo(dir: &Path) -> bool {
    fs::read_to_string(dir.join("config.toml")).is_ok_and(|c| c.starts_with(DEMO_MARKER))
}

/// Sets up `dir` (unless it already holds a demo) and serves it on `listen`.
pub fn run(dir: &Path, listen: SocketAddr, fresh: bool) -> anyhow::Result<ExitCode> {
    let config_path = dir.join("config.toml");
    let is_empty_dir = |d: &Path| fs::read_dir(d).is_ok_and(|mut e| e.next().is_none());
    if dir.exists() && !is_demo(dir) && !is_empty_dir(dir) {
        let why = if config_path.exists() {
            format!("its config.toml does not start with {DEMO_MARKER:?}")
        } else {
            "it is not empty and has no config.toml".to_owned()
        };
        anyhow::bail!(
            "{} is not a folder `sealform demo` made ({why}); nothing was changed. Give an \
             empty or new folder with --dir",
            dir.display()
        );
    }
    if fresh && is_demo(dir) {
        // Its contents, not the folder: it may be the working directory or
        // a mount point.
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let removed = if path.is_dir() && !path.is_symlink() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.with_context(|| format!("while removing {}", path.display()))?;
        }
    }
    if !config_path.exists() {
        create(dir).with_context(|| format!("while creating the demo in {}", dir.display()))?;
    }
    let dir = dir.canonicalize()?;
    let secret = dir.join("staff-secret.asc");
    let gnupg = dir.join("gnupg");
    let spool = dir.join("data/spool");
    println!(
        "\n\
         sealform demo: FOR TRYING ONLY\n\
         ==============================\n\
         The throwaway secret key {secret} is unprotected.\n\
         Never use it for real submissions; for real use, make keys on an offline machine.\n\
         \n\
         1. Open http://{listen}/ and send a form.\n\
         2. Decrypt what you sent (in another terminal):\n\
         \n\
         \x20  gpg --homedir {gnupg} --batch --import {secret}\n\
         \x20  for f in {spool}/*.pgp; do gpg --homedir {gnupg} --batch --decrypt \"$f\"; done\n\
         \n\
         \x20  or, with sealform's own offline decryptor (a folder per record, a CSV per form):\n\
         \n\
         \x20  {exe} decrypt --key {secret} --csv --out {out} {spool}\n\
         \n\
         Each record is a MIME message (save one as .eml to open it in a mail client).\n\
         The staff API is served next to the forms (staff.on_public_listener): once a token\n\
         is added (README, \"Reading submissions\"), `sealform pull --url http://{listen}`.\n\
         Stop the server with Ctrl-C. To start over: {exe} demo --fresh\n",
        secret = secret.display(),
        gnupg = gnupg.display(),
        spool = spool.display(),
        out = dir.join("decrypted").display(),
        exe =
            std::env::current_exe().map_or_else(|_| "sealform".into(), |p| p.display().to_string()),
    );
    super::serve::run(&dir.join("config.toml"), Some(listen))
}

/// Makes the demo at `dir`. A folder that does not exist yet is made in a
/// hidden folder beside it and renamed into place once it is whole, so an
/// interrupted start leaves nothing at `dir`; what such a start left beside
/// it (holding an unprotected throwaway key) is removed first. An existing
/// empty folder (perhaps the working directory or a mount point) is filled
/// in place: its config.toml is written first, so a start interrupted there
/// leaves a demo that `--fresh` remakes.
fn create(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        return fill(dir);
    }
    let name = dir
        .file_name()
        .with_context(|| format!("{} does not name a folder", dir.display()))?
        .to_string_lossy()
        .into_owned();
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent)?;
    let prefix = format!(".{name}.partial-");
    for entry in fs::read_dir(parent)? {
        let entry = entry?;
        let stale = entry.path();
        if entry.file_name().to_string_lossy().starts_with(&prefix) && is_demo(&stale) {
            fs::remove_dir_all(&stale)
                .with_context(|| format!("while removing {}", stale.display()))?;
        }
    }
    let partial = parent.join(format!("{prefix}{}", std::process::id()));
    let made = fill(&partial).and_then(|()| Ok(fs::rename(&partial, dir)?));
    if made.is_err() {
        let _ = fs::remove_dir_all(&partial);
    }
    made
}

/// Per-client limits of the example that a person trying the forms reaches
/// within a minute (5 form posts, refused ones included), and the demo's.
const DEMO_LIMITS: [(&str, &str); 2] = [
    (
        "form_client = { burst = 5, per_minute = 2 }",
        "form_client = { burst = 30, per_minute = 30 }  # demo; the default is { burst = 5, per_minute = 2 }",
    ),
    (
        "api_client = { burst = 10, per_minute = 6 }",
        "api_client = { burst = 30, per_minute = 30 }  # demo; the default is { burst = 10, per_minute = 6 }",
    ),
];

/// The demo serves the staff API next to its forms, so that `sealform pull
/// --url` reaches it at the demo's own address once a token is added.
const DEMO_STAFF: (&str, &str) = (
    "on_public_listener = false",
    "on_public_listener = true  # demo; the default is false",
);

/// The demo's config.toml: the example, marked, with [`DEMO_LIMITS`] and
/// [`DEMO_STAFF`].
fn demo_config() -> String {
    let mut config = format!("{DEMO_MARKER} from config.example.toml.\n{EXAMPLE_CONFIG}");
    for (example, demo) in DEMO_LIMITS.into_iter().chain([DEMO_STAFF]) {
        config = config.replacen(example, demo, 1);
    }
    config
}

/// Writes a whole demo into `dir` (new or empty), its config first.
fn fill(dir: &Path) -> anyhow::Result<()> {
    let private = durable::create_private_dir_all;
    private(dir)?;
    fs::write(dir.join("config.toml"), demo_config())?;
    private(&dir.join("keys"))?;
    private(&dir.join("gnupg"))?;
    let cert = super::keygen::generate("sealform demo staff (THROWAWAY, demo only)", None, None)?;
    let mut f = durable::create_private_file(&dir.join("staff-secret.asc"))?;
    f.write_all(&cert.as_tsk().armored().to_vec()?)?;
    fs::write(dir.join("keys/demo-staff.asc"), cert.armored().to_vec()?)?;
    fs::write(
        dir.join("keys/README.md"),
        "Public certificates of the demo recipients. Secret keys never go here.\n",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{DEMO_LIMITS, DEMO_STAFF, demo_config};

    #[test]
    fn the_demo_raises_the_per_client_limits_of_the_example() {
        let config = demo_config();
        for (example, demo) in DEMO_LIMITS {
            assert!(config.contains(demo), "{demo}");
            assert!(!config.contains(&format!("\n{example}\n")), "{example}");
        }
    }

    #[test]
    fn the_demo_serves_the_staff_api_next_to_its_forms() {
        let config = demo_config();
        assert!(config.contains(DEMO_STAFF.1));
        let parsed = crate::config::Config::parse(&config, std::path::Path::new("demo.toml"))
            .expect("the demo config parses");
        assert_eq!(
            parsed.staff.placement(),
            crate::config::StaffPlacement::PublicListener
        );
    }
}
