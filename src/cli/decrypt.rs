//! `sealform decrypt`: the offline machine's command. Sealed records (bundle
//! folders or `.pgp` files) in, one folder of plaintext per record out.
//!
//! ```text
//! DIR/<receipt>/message.txt          the human-readable part
//! DIR/<receipt>/fields.json          the machine-readable part
//! DIR/<receipt>/message.eml          the whole decrypted MIME message
//! DIR/<receipt>/attachments/<name>   attachment parts, under safe names
//! DIR/<form>.csv                     with --csv: one row per record
//! ```
//!
//! It never opens a network connection (nothing on this path links one).
//! In a bundle (a folder with a `MANIFEST.json`), every file is checked
//! against the manifest first: a file it does not list or whose SHA-256
//! differs is refused, and a record it lists that is missing is reported. A
//! folder without a manifest (the spool itself, loose files) is not checked.
//! A record that is refused, or that no key decrypts, is reported and
//! skipped, and the run ends with exit code 1. Every
//! name that comes from inside a record goes through
//! [`crate::mime::safe_file_name`]. Each record is written into a hidden
//! temporary folder and renamed into place when complete, so an interrupted
//! run leaves no folder that looks finished.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use sequoia_openpgp::crypto::Password;
use zeroize::Zeroizing;

use crate::bundle::{MANIFEST, Manifest, read_manifest, sha256_file};
use crate::durable;
use crate::mime::{Parsed, parse, safe_file_name};
use crate::receipt::Receipt;
use crate::unseal::SecretKeys;

use super::printable;

mod output;

use output::{Row, add_row, reread, write_csv, write_record};

/// Show a progress bar from this many records on (on a terminal).
const PROGRESS_FROM: usize = 10;

/// What `decrypt` was asked to do.
pub struct Options<'a> {
    /// Secret key files.
    pub keys: &'a [PathBuf],
    /// File holding the passphrase of protected keys.
    pub passphrase_file: Option<&'a Path>,
    /// Output folder.
    pub out: &'a Path,
    /// Bundle folders or `.pgp` files.
    pub inputs: &'a [PathBuf],
    /// Also write one CSV per form.
    pub csv: bool,
    /// Lock all memory (`mlockall`), so no page reaches swap.
    pub mlock: bool,
}

/// One record to open, and what its file is checked against first.
struct Job {
    path: PathBuf,
    check: Check,
}

/// What a record's file is checked against before it is opened.
enum Check {
    /// Its bundle's manifest lists it with this SHA-256.
    Listed(String),
    /// Its folder has a manifest that does not list it.
    Unlisted,
    /// Its folder has no manifest (a spool folder, loose files).
    NoManifest,
}

/// The records named by the inputs, and what their manifests list that is
/// not there.
struct Collected {
    jobs: Vec<Job>,
    /// `(path, why)` for each record a manifest lists whose file is missing.
    missing: Vec<(String, String)>,
}

/// Runs `decrypt`. Its error, like every line it prints, goes through
/// [`printable`]: a path or a cause can quote a file name from the transfer
/// medium.
pub fn run(opts: &Options<'_>) -> anyhow::Result<ExitCode> {
    decrypt_all(opts).map_err(|e| anyhow::anyhow!(printable(&super::describe(&e))))
}

/// Hardens the process, then unlocks the secret keys (a passphrase from
/// `--passphrase-file` or asked for each key).
fn load_keys(opts: &Options<'_>) -> anyhow::Result<SecretKeys> {
    // Unlocked secret keys, the passphrase and plaintext live in this
    // process: no core dump, no ptrace by other processes of the user.
    crate::harden::harden_process(opts.mlock).context("while hardening the process")?;
    let passphrase = match opts.passphrase_file {
        Some(p) => Some(Password::from(super::read_passphrase_file(p)?.as_str())),
        None => None,
    };
    let key_paths: Vec<&Path> = opts.keys.iter().map(PathBuf::as_path).collect();
    if key_paths.is_empty() {
        bail!(
            "give at least one --key (a secret key exported with `gpg --export-secret-keys --armor`)"
        );
    }
    let keys = SecretKeys::load(&key_paths, |fpr| match &passphrase {
        Some(p) => Some(p.clone()),
        None => rpassword::prompt_password(format!("Passphrase for key {fpr}: "))
            .ok()
            .map(|s| Password::from(Zeroizing::new(s).as_str())),
    })?;
    drop(passphrase);
    for skipped in keys.skipped() {
        eprintln!(
            "{}",
            printable(&format!("note: skipped secret key {skipped}"))
        );
    }
    Ok(keys)
}

fn decrypt_all(opts: &Options<'_>) -> anyhow::Result<ExitCode> {
    let mut keys = load_keys(opts)?;
    let Collected { jobs, missing } = collect(opts.inputs)?;
    durable::create_private_dir_all(opts.out)
        .with_context(|| format!("while creating {}", opts.out.display()))?;
    remove_unfinished(opts.out);

    let mut decrypted = 0usize;
    let mut skipped: Vec<(String, String)> = Vec::new();
    let mut failed: Vec<(String, String)> = missing;
    let mut rows: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    let progress = jobs.len() >= PROGRESS_FROM && std::io::stderr().is_terminal();
    for (i, job) in jobs.iter().enumerate() {
        if progress {
            draw_progress(i, jobs.len());
        }
        let shown = printable(&job.path.display().to_string());
        match open_one(&mut keys, job, opts.out) {
            Ok(Outcome::Written(dir, parsed)) => {
                decrypted += 1;
                if opts.csv {
                    add_row(&mut rows, &dir, &parsed);
                }
            }
            Ok(Outcome::AlreadyThere(dir)) => {
                skipped.push((shown, format!("already decrypted in {}", dir.display())));
                if opts.csv {
                    if let Some(parsed) = reread(&dir) {
                        add_row(&mut rows, &dir, &parsed);
                    }
                }
            }
            Err(why) => failed.push((shown, super::describe(&why))),
        }
    }
    if progress {
        draw_progress(jobs.len(), jobs.len());
        eprintln!();
    }
    if opts.csv {
        for (form, rows) in &rows {
            write_csv(opts.out, form, rows)?;
        }
    }
    report(decrypted, &skipped, &failed, opts.out);
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The closing summary: counts, then a line per skipped or failed record.
fn report(decrypted: usize, skipped: &[(String, String)], failed: &[(String, String)], out: &Path) {
    println!(
        "decrypted {decrypted}, skipped {}, failed {} (into {})",
        skipped.len(),
        failed.len(),
        printable(&out.display().to_string())
    );
    for (path, why) in skipped {
        println!("  skipped {}", printable(&format!("{path}: {why}")));
    }
    for (path, why) in failed {
        println!("  FAILED  {}", printable(&format!("{path}: {why}")));
    }
}

/// The records named by the inputs, each with its manifest check.
///
/// A folder or file next to a `MANIFEST.json` is a bundle: each file must be
/// listed there, and each listed record must be there. A manifest that
/// cannot be read is an error, not a reason to skip the checks.
fn collect(inputs: &[PathBuf]) -> anyhow::Result<Collected> {
    let mut jobs = Vec::new();
    let mut missing = Vec::new();
    let check = |m: &Option<Manifest>, path: &Path| -> Check {
        let Some(m) = m else {
            return Check::NoManifest;
        };
        let stem = path.file_stem().and_then(|s| s.to_str());
        match m.records.iter().find(|e| Some(e.receipt.as_str()) == stem) {
            Some(e) => Check::Listed(e.sha256.clone()),
            None => Check::Unlisted,
        }
    };
    for input in inputs {
        if input.is_dir() {
            let manifest = read_manifest(input)?;
            let mut files: Vec<PathBuf> = fs::read_dir(input)
                .with_context(|| format!("while listing {}", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().is_some_and(|e| e == "pgp")
                        && p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| !n.starts_with('.'))
                })
                .collect();
            files.sort();
            if let Some(m) = &manifest {
                let present: HashSet<&str> = files
                    .iter()
                    .filter_map(|p| p.file_stem()?.to_str())
                    .collect();
                for entry in m
                    .records
                    .iter()
                    .filter(|e| !present.contains(e.receipt.as_str()))
                {
                    missing.push((
                        input
                            .join(format!("{}.pgp", entry.receipt.escape_default()))
                            .display()
                            .to_string(),
                        format!(
                            "listed in {MANIFEST} but missing from the folder; \
                             copy it again from where the bundle was made"
                        ),
                    ));
                }
            }
            for path in files {
                let check = check(&manifest, &path);
                jobs.push(Job { path, check });
            }
        } else if input.is_file() {
            let manifest = match input.parent() {
                Some(dir) => read_manifest(dir)?,
                None => None,
            };
            jobs.push(Job {
                check: check(&manifest, input),
                path: input.clone(),
            });
        } else {
            bail!("{} is neither a folder nor a file", input.display());
        }
    }
    Ok(Collected { jobs, missing })
}

enum Outcome {
    Written(PathBuf, Box<Parsed>),
    AlreadyThere(PathBuf),
}

fn open_one(keys: &mut SecretKeys, job: &Job, out: &Path) -> anyhow::Result<Outcome> {
    match &job.check {
        Check::Listed(expected) => {
            let found = sha256_file(&job.path)?;
            if &found != expected {
                let expected = printable(expected);
                bail!(
                    "refused: its sha256 does not match {MANIFEST} (expected {expected}, found {found}); \
                     the file was altered or damaged in transit; fetch it again"
                );
            }
        }
        Check::Unlisted => bail!(
            "refused: it is not listed in its folder's {MANIFEST}, so it cannot be checked; \
             an interrupted pull or export lists it when run again (to open it anyway, \
             move it out of the bundle folder)"
        ),
        Check::NoManifest => {}
    }
    let file_receipt = job
        .path
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(Receipt::parse);
    if let Some(r) = file_receipt {
        let dir = out.join(r.to_string());
        if dir.exists() {
            return Ok(Outcome::AlreadyThere(dir));
        }
    }
    let plain = keys.decrypt(&job.path)?;
    let parsed = parse(&plain)?;
    // The file name is ours (from the bundle); the header comes from inside
    // the ciphertext and is only used, after checking, when there is none.
    let name = match file_receipt {
        Some(r) => r.to_string(),
        None => match parsed.receipt.as_deref().and_then(Receipt::parse) {
            Some(r) => r.to_string(),
            None => {
                let stem = job
                    .path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                safe_file_name(&stem, "record")
            }
        },
    };
    let dir = out.join(&name);
    if dir.exists() {
        return Ok(Outcome::AlreadyThere(dir));
    }
    let tmp = out.join(format!(
        ".{name}.partial-{}",
        data_encoding::HEXLOWER.encode(&rand::random::<[u8; 4]>())
    ));
    write_record(&tmp, &plain, &parsed).inspect_err(|_| {
        let _ = fs::remove_dir_all(&tmp);
    })?;
    fs::rename(&tmp, &dir).with_context(|| format!("while moving {} into place", dir.display()))?;
    Ok(Outcome::Written(dir, Box::new(parsed)))
}

/// Whether `name` is one of [`open_one`]'s folders in the making:
/// `.<name>.partial-<8 hex digits>`.
fn is_unfinished(name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|n| n.rsplit_once(".partial-"))
        .is_some_and(|(stem, tag)| {
            !stem.is_empty() && tag.len() == 8 && tag.bytes().all(|b| b.is_ascii_hexdigit())
        })
}

/// Removes the folders in the making that an interrupted earlier run left
/// in `out` (hidden, and holding plaintext); their records are decrypted
/// again by this run.
fn remove_unfinished(out: &Path) {
    let Ok(entries) = fs::read_dir(out) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && name.to_str().is_some_and(is_unfinished) {
            let line = match fs::remove_dir_all(e.path()) {
                Ok(()) => format!(
                    "note: removed {}, left half-written by an interrupted run",
                    e.path().display()
                ),
                Err(err) => format!(
                    "warning: could not remove {}, left half-written by an interrupted run: {err}",
                    e.path().display()
                ),
            };
            eprintln!("{}", printable(&line));
        }
    }
}

fn draw_progress(done: usize, total: usize) {
    const WIDTH: usize = 30;
    let filled = (done * WIDTH)
        .checked_div(total)
        .unwrap_or(WIDTH)
        .min(WIDTH);
    eprint!(
        "\r[{}{}] {done}/{total}",
        "#".repeat(filled),
        " ".repeat(WIDTH - filled)
    );
    let _ = std::io::stderr().flush();
}

#[cfg(test)]
mod tests {
    use super::{is_unfinished, printable};

    #[test]
    fn only_our_folders_in_the_making_count_as_unfinished() {
        for (name, want) in [
            (".01ARZ3NDEKTSV4RRFFQ69G5FAV.partial-0a1b2c3d", true),
            (".record.partial-DEADBEEF", true),
            (".partial-0a1b2c3d", false),
            ("x.partial-0a1b2c3d", false),
            (".x.partial-0a1b2c3", false),
            (".x.partial-0a1b2c3g", false),
            (".x.partial-0a1b2c3d.old", false),
        ] {
            assert_eq!(is_unfinished(name), want, "{name}");
        }
    }

    #[test]
    fn what_reaches_the_terminal_has_no_control_characters() {
        assert_eq!(
            printable("bundle/\u{1b}]0;pwned\u{7}é.pgp"),
            "bundle/\\u{1b}]0;pwned\\u{7}é.pgp"
        );
    }
}
