//! `sealform check`: the start-up validation of `serve`, with a report of
//! every certificate and every form's recipients.

use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use crate::config::Config;
use crate::http::form_tokens::TokenKey;
use crate::keys::{Keyring, RecipientCert, load_dir};

/// Validates the config at `config_path` and its keys; prints what it found.
pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            let lines = e.lines();
            for line in &lines {
                eprintln!("sealform: error: {line}");
            }
            if lines.len() > 1 {
                eprintln!(
                    "sealform: {} problem(s) in the config; `sealform serve` would refuse to start",
                    lines.len()
                );
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    println!("config: {} (ok)", config.path.display());
    println!("keys:   {}", config.server.keys_dir.display());
    println!("staff API: {}", config.staff.placement().explain());
    println!(
        "access log: {}",
        if config.abuse.access_log {
            "on (abuse.access_log = true): a line per request, which the logger dates to the second"
        } else {
            "off (abuse.access_log = false): start, stop and failures only"
        }
    );
    let token_key = TokenKey::for_config(&config.abuse).map(|key| {
        println!(
            "form tokens: {}",
            if key.is_shared() {
                "signed with the key of abuse.form_token_secret_file (shared by the nodes)"
            } else {
                "signed with a random key per process (one node)"
            }
        );
    });
    let now = SystemTime::now();
    let report = load_dir(&config.server.keys_dir, now, config.server.gnupg_compat);
    print_certs(&report.certs);
    let mut problems = report.problems;
    if problems.is_empty() {
        match Keyring::route(&config, report.certs) {
            Ok(keyring) => print_routes(&config, &keyring),
            Err(p) => problems = p,
        }
    }
    let (digest, readers) = crate::notify::check_lines(&config, now);
    println!();
    for line in digest {
        println!("{line}");
    }
    for w in report
        .warnings
        .iter()
        .map(ToString::to_string)
        .chain(config.warnings())
        .chain(readers)
    {
        eprintln!("sealform: WARNING: {w}");
    }
    if let Err(e) = &token_key {
        eprintln!("sealform: error: {e}");
    }
    if problems.is_empty() && token_key.is_ok() {
        println!("\nall good: `sealform serve` would start");
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            eprintln!("sealform: error: {p}");
        }
        eprintln!(
            "sealform: {} problem(s); `sealform serve` would refuse to start",
            problems.len() + usize::from(token_key.is_err())
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Each loaded certificate: file, user IDs, encryption keys, expiry.
fn print_certs(certs: &[RecipientCert]) {
    for cert in certs {
        println!();
        println!("certificate {}", cert.fingerprint().to_hex());
        println!("  file:     {}", cert.source.display());
        for uid in &cert.user_ids {
            println!("  user ID:  {uid}");
        }
        for k in &cert.encryption_keys {
            println!(
                "  encrypts: {} {} (expires {})",
                k.key.fingerprint().to_hex(),
                k.key.pk_algo(),
                expiry(k.expires)
            );
        }
        println!("  expires:  {}", expiry(cert.expires));
    }
}

/// Each form's recipients, as the keyring routes them, and whether it gives
/// reply codes.
fn print_routes(config: &Config, keyring: &Keyring) {
    println!();
    for form in &config.forms {
        let r = keyring.for_form(&form.id);
        let certs: Vec<String> = r
            .iter()
            .flat_map(|r| r.certs.iter().map(|c| c.to_hex()))
            .collect();
        let hidden = if form.hide_recipients {
            " (hidden)"
        } else {
            ""
        };
        let replies = if form.replies { ", reply codes on" } else { "" };
        println!(
            "form {}: {} recipient(s){hidden}{replies}: {}",
            form.id,
            certs.len(),
            certs.join(", ")
        );
    }
}

fn expiry(t: Option<SystemTime>) -> String {
    match t {
        None => "never".into(),
        Some(t) => chrono::DateTime::<chrono::Utc>::from(t)
            .format("%Y-%m-%d %H:%M UTC")
            .to_string(),
    }
}
