//! Making a GnuPG-compatible recipient key: `sealform keygen` on the
//! offline machine, and `sealform demo`.
//!
//! This is one of the two places a secret key exists in sealform (the other
//! is offline decryption). The secret is returned to the caller to write to
//! the path the operator chose, never kept or logged.

use std::time::Duration;

use sequoia_openpgp as openpgp;

use openpgp::cert::prelude::*;
use openpgp::crypto::Password;
use openpgp::types::KeyFlags;

use crate::durable;

/// Makes a v4 certificate GnuPG 2.2 can use: an ed25519 primary key that
/// certifies and signs, a cv25519 subkey for storage and transport
/// encryption, features saying SEIPDv1 only (so no sender picks a format
/// GnuPG cannot read), valid for `validity` (or forever).
pub fn generate(
    user_id: &str,
    validity: Option<Duration>,
    password: Option<Password>,
) -> openpgp::Result<openpgp::Cert> {
    let (cert, _revocation) = CertBuilder::new()
        .set_cipher_suite(CipherSuite::Cv25519)
        .set_features(crate::keys::gnupg_features())?
        .set_primary_key_flags(KeyFlags::empty().set_certification().set_signing())
        .add_userid(user_id)
        .add_subkey(
            KeyFlags::empty()
                .set_storage_encryption()
                .set_transport_encryption(),
            None,
            None,
        )
        .set_validity_period(validity)
        .set_password(password)
        .generate()?;
    Ok(cert)
}

/// How long a key made by `sealform keygen` is valid: two years, so a lost
/// key stops being used by itself.
pub const KEYGEN_VALIDITY: Duration = Duration::from_secs(2 * 365 * 24 * 60 * 60);

/// `sealform keygen`: makes a staff key on the offline machine. Writes
/// `DIR/<fingerprint>-secret.asc` (passphrase-protected, mode 0600) and
/// `DIR/<fingerprint>-public.asc` (for the server's keys_dir), and prints
/// the fingerprint. With `mlock`, all its memory is locked.
pub fn run(
    name: &str,
    out: &std::path::Path,
    passphrase_file: Option<&std::path::Path>,
    mlock: bool,
) -> anyhow::Result<std::process::ExitCode> {
    use anyhow::{Context as _, bail};
    use openpgp::serialize::SerializeInto;
    use zeroize::Zeroizing;

    // The passphrase and the unlocked secret key live in this process: no
    // core dump, no ptrace by other processes of the user.
    crate::harden::harden_process(mlock).context("while hardening the process")?;

    if name.trim().is_empty() {
        bail!("--name must not be empty (e.g. \"Jane Doe <jane@example.org>\")");
    }
    let passphrase = match passphrase_file {
        Some(p) => super::read_passphrase_file(p)?,
        None => {
            let a = Zeroizing::new(
                rpassword::prompt_password("Passphrase for the new secret key: ")
                    .context("while reading the passphrase (or give --passphrase-file)")?,
            );
            let b = Zeroizing::new(
                rpassword::prompt_password("Repeat the passphrase: ")
                    .context("while reading the passphrase")?,
            );
            if a != b {
                bail!("the passphrases differ");
            }
            a
        }
    };
    if passphrase.chars().count() < 8 {
        bail!("the passphrase must have at least 8 characters");
    }
    let cert = generate(
        name,
        Some(KEYGEN_VALIDITY),
        Some(Password::from(passphrase.as_str())),
    )?;
    drop(passphrase);
    durable::create_private_dir_all(out)
        .with_context(|| format!("while creating {}", out.display()))?;
    let fpr = cert.fingerprint().to_hex();
    let secret_path = out.join(format!("{fpr}-secret.asc"));
    let public_path = out.join(format!("{fpr}-public.asc"));
    let secret = Zeroizing::new(cert.as_tsk().armored().to_vec()?);
    write_new(&secret_path, &secret, 0o600)?;
    write_new(&public_path, &cert.armored().to_vec()?, 0o644).inspect_err(|_| {
        // Both or neither: a secret key without its certificate is no use.
        let _ = std::fs::remove_file(&secret_path);
    })?;
    durable::sync_path(out).with_context(|| format!("while syncing {}", out.display()))?;
    println!("fingerprint: {fpr}");
    println!(
        "secret key (stays on this machine, passphrase-protected): {}",
        secret_path.display()
    );
    println!(
        "public certificate (copy into the server's keys_dir): {}",
        public_path.display()
    );
    println!("valid for two years; make a new one before it expires");
    Ok(std::process::ExitCode::SUCCESS)
}

/// Writes `bytes` to a new file (never over an existing one) and fsyncs it;
/// on any failure (a full disk, say) the partial file is removed, so no
/// truncated key is left under its final name.
fn write_new(path: &std::path::Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::io::Write as _;

    let mut f = durable::create_new_file(path, mode)
        .with_context(|| format!("while creating {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .inspect_err(|_| {
            let _ = std::fs::remove_file(path);
        })
        .with_context(|| format!("while writing {}", path.display()))
}
