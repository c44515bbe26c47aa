//! Recipient certificates: loading, validation under a policy, and routing
//! to forms.
//!
//! Every certificate in `keys_dir` is parsed and validated under Sequoia's
//! [`StandardPolicy`] *at a given time*; a certificate is usable only if it
//! has at least one alive, unrevoked, encryption-capable key. Problems are
//! collected, each naming the file and the reason, so `sealform check` can
//! report all of them at once and `serve` can refuse to start.
//!
//! This module must never accept secret key material: a file holding any is
//! refused outright, so the server cannot be configured into holding a secret.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sequoia_openpgp as openpgp;

use openpgp::Fingerprint;
use openpgp::cert::prelude::*;
use openpgp::packet::Key;
use openpgp::packet::key::{PublicParts, UnspecifiedRole};
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::SerializeInto;
use openpgp::types::{Features, RevocationStatus};

use crate::config::Config;

mod problems;

pub use problems::{KeyProblem, KeyWarning};

/// File extensions read from `keys_dir`; anything else (a README) is ignored.
pub const CERT_EXTENSIONS: [&str; 3] = ["asc", "pgp", "gpg"];

/// A certificate expiring within this window starts with a loud warning.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

/// A public encryption-capable key and the certificate it belongs to.
#[derive(Clone)]
pub struct EncryptionKey {
    /// The (sub)key messages are encrypted to.
    pub key: Key<PublicParts, UnspecifiedRole>,
    /// The primary fingerprint of its certificate.
    pub cert: Fingerprint,
    /// When the key stops being usable (the earlier of key and certificate
    /// expiry), if ever.
    pub expires: Option<SystemTime>,
    /// The message formats its certificate says its owner reads (SEIPDv1
    /// only when it says nothing, as RFC 9580 asks). Used only without
    /// `server.gnupg_compat`, which makes every record SEIPDv1.
    pub features: Features,
}

/// A validated recipient certificate.
#[derive(Clone)]
pub struct RecipientCert {
    /// The certificate (public parts only; checked at load).
    pub cert: openpgp::Cert,
    /// The file it came from.
    pub source: PathBuf,
    /// Its user IDs, as text.
    pub user_ids: Vec<String>,
    /// The keys a message to this certificate is encrypted to.
    pub encryption_keys: Vec<EncryptionKey>,
    /// The latest moment any encryption key is still usable, if it expires.
    pub expires: Option<SystemTime>,
    /// The armored public certificate, as served on `/keys/{fpr}.asc`.
    pub armored: String,
}

impl RecipientCert {
    /// The primary key fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.cert.fingerprint()
    }

    /// The first user ID, or the fingerprint when there is none.
    pub fn display_name(&self) -> String {
        self.user_ids
            .first()
            .cloned()
            .unwrap_or_else(|| self.fingerprint().to_hex())
    }
}

/// The outcome of reading `keys_dir`: what loaded, what is wrong, what to
/// warn about.
#[derive(Default)]
pub struct KeyReport {
    /// Certificates that passed every check.
    pub certs: Vec<RecipientCert>,
    /// Reasons the keyring cannot be used (empty when all is well).
    pub problems: Vec<KeyProblem>,
    /// Things to say loudly that do not block.
    pub warnings: Vec<KeyWarning>,
}

/// Reads and validates every certificate file in `dir` at time `now`.
pub fn load_dir(dir: &Path, now: SystemTime, gnupg_compat: bool) -> KeyReport {
    let mut report = KeyReport::default();
    let mut files = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_cert_file(p))
            .collect::<Vec<_>>(),
        Err(source) => {
            report.problems.push(KeyProblem::ReadDir {
                dir: dir.to_owned(),
                source,
            });
            return report;
        }
    };
    files.sort();
    let mut seen: HashMap<Fingerprint, PathBuf> = HashMap::new();
    for path in files {
        for loaded in load_file(&path, now, gnupg_compat) {
            match loaded {
                Ok((cert, warning)) => {
                    if let Some(first) = seen.get(&cert.fingerprint()) {
                        report.problems.push(KeyProblem::DuplicateCert {
                            path: path.clone(),
                            fingerprint: cert.fingerprint(),
                            first: first.clone(),
                        });
                        continue;
                    }
                    seen.insert(cert.fingerprint(), path.clone());
                    report.warnings.extend(warning);
                    report.certs.push(cert);
                }
                Err(problem) => report.problems.push(problem),
            }
        }
    }
    if report.certs.is_empty() && report.problems.is_empty() {
        report.problems.push(KeyProblem::NoCerts {
            dir: dir.to_owned(),
        });
    }
    report
}

fn is_cert_file(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    !hidden && path.is_file() && CERT_EXTENSIONS.iter().any(|x| ext.eq_ignore_ascii_case(x))
}

type Loaded = Result<(RecipientCert, Option<KeyWarning>), KeyProblem>;

fn load_file(path: &Path, now: SystemTime, gnupg_compat: bool) -> Vec<Loaded> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(source) => {
            return vec![Err(KeyProblem::Read {
                path: path.to_owned(),
                source,
            })];
        }
    };
    let unparseable = |reason: String| {
        vec![Err(KeyProblem::Unparseable {
            path: path.to_owned(),
            reason,
        })]
    };
    let parser = match CertParser::from_bytes(&bytes) {
        Ok(p) => p,
        Err(e) => return unparseable(e.to_string()),
    };
    let mut out = Vec::new();
    for cert in parser {
        match cert {
            Ok(cert) => out.push(validate(cert, path, now, gnupg_compat)),
            // What was found before still counts: a secret key there must
            // still be reported as exposed.
            Err(e) => {
                out.extend(unparseable(e.to_string()));
                return out;
            }
        }
    }
    if out.is_empty() {
        return unparseable("the file holds no certificate".into());
    }
    out
}

/// Checks one certificate read from `path` at time `now`.
pub fn validate(cert: openpgp::Cert, path: &Path, now: SystemTime, gnupg_compat: bool) -> Loaded {
    let fingerprint = cert.fingerprint();
    if cert.is_tsk() {
        return Err(KeyProblem::SecretKeyMaterial {
            path: path.to_owned(),
            fingerprint,
        });
    }
    if gnupg_compat && cert.primary_key().key().version() != 4 {
        return Err(KeyProblem::V6Cert {
            path: path.to_owned(),
            fingerprint,
        });
    }
    let policy = StandardPolicy::new();
    let invalid = |reason: String| KeyProblem::InvalidCert {
        path: path.to_owned(),
        fingerprint: fingerprint.clone(),
        reason,
    };
    let vc = cert
        .with_policy(&policy, now)
        .map_err(|e| invalid(error_chain(&e)))?;
    vc.alive().map_err(|e| invalid(error_chain(&e)))?;
    if let RevocationStatus::Revoked(_) = vc.revocation_status() {
        return Err(invalid("the certificate is revoked".into()));
    }
    let primary_expires = vc.primary_key().key_expiration_time();
    let features = vc.features().unwrap_or_else(gnupg_features);
    let mut encryption_keys = Vec::new();
    for ka in vc
        .keys()
        .supported()
        .alive()
        .revoked(false)
        .for_storage_encryption()
        .for_transport_encryption()
    {
        let expires = match (ka.key_expiration_time(), primary_expires) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        encryption_keys.push(EncryptionKey {
            key: ka.key().clone().role_into_unspecified(),
            cert: fingerprint.clone(),
            expires,
            features: features.clone(),
        });
    }
    if encryption_keys.is_empty() {
        return Err(KeyProblem::NoEncryptionSubkey {
            path: path.to_owned(),
            fingerprint,
        });
    }
    let expires = if encryption_keys.iter().any(|k| k.expires.is_none()) {
        None
    } else {
        encryption_keys.iter().filter_map(|k| k.expires).max()
    };
    let warning = expires.and_then(|t| expiry_warning(path, &fingerprint, t, now));
    let user_ids = vc
        .userids()
        .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
        .collect();
    let armored = cert
        .armored()
        .export_to_vec()
        .map_err(|e| invalid(error_chain(&e)))?;
    let armored = String::from_utf8(armored).map_err(|e| invalid(e.to_string()))?;
    let cert = RecipientCert {
        cert,
        source: path.to_owned(),
        user_ids,
        encryption_keys,
        expires,
        armored,
    };
    Ok((cert, warning))
}

/// What to say at `now` of a certificate whose last encryption key is
/// usable until `expires`: nothing while more than [`EXPIRY_WARNING`] is left.
fn expiry_warning(
    path: &Path,
    fingerprint: &Fingerprint,
    expires: SystemTime,
    now: SystemTime,
) -> Option<KeyWarning> {
    match expires.duration_since(now) {
        Ok(left) if !left.is_zero() => (left < EXPIRY_WARNING).then(|| KeyWarning::ExpiresSoon {
            path: path.to_owned(),
            fingerprint: fingerprint.clone(),
            days: left.as_secs() / 86_400,
        }),
        _ => Some(KeyWarning::Expired {
            path: path.to_owned(),
            fingerprint: fingerprint.clone(),
        }),
    }
}

fn error_chain(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

/// Who one form's submissions are encrypted to.
pub struct Recipients {
    /// The keys written into PKESK packets.
    pub keys: Vec<EncryptionKey>,
    /// The certificates those keys belong to (primary fingerprints).
    pub certs: Vec<Fingerprint>,
    /// Use wildcard key IDs so the record does not say who can read it.
    pub hidden: bool,
    /// Force SEIPDv1 (the only format GnuPG 2.2 decrypts).
    pub seipdv1_only: bool,
}

impl Recipients {
    /// What the index records as a record's recipients: the certificate
    /// fingerprints, or nothing when they are hidden (a store thief must not
    /// learn from the index what the ciphertext hides).
    pub fn index_listing(&self) -> Vec<String> {
        if self.hidden {
            Vec::new()
        } else {
            self.certs.iter().map(|f| f.to_hex()).collect()
        }
    }
}

/// The usable certificates and the recipients of every form.
pub struct Keyring {
    certs: Vec<RecipientCert>,
    routes: HashMap<String, Arc<Recipients>>,
}

impl Keyring {
    /// Loads `keys_dir`, validates it at `now`, and routes every form of
    /// `config`. Returns the keyring and the warnings, or every problem found.
    pub fn load(
        config: &Config,
        now: SystemTime,
    ) -> Result<(Keyring, Vec<KeyWarning>), Vec<KeyProblem>> {
        let report = load_dir(&config.server.keys_dir, now, config.server.gnupg_compat);
        if !report.problems.is_empty() {
            return Err(report.problems);
        }
        let keyring = Keyring::route(config, report.certs)?;
        Ok((keyring, report.warnings))
    }

    /// Routes every form of `config` to its recipients among `certs`.
    pub fn route(config: &Config, certs: Vec<RecipientCert>) -> Result<Keyring, Vec<KeyProblem>> {
        let mut problems = Vec::new();
        let mut routes = HashMap::new();
        for form in &config.forms {
            let chosen: Vec<&RecipientCert> = if form.recipients.is_empty() {
                certs.iter().collect()
            } else {
                let mut chosen: Vec<&RecipientCert> = Vec::new();
                for wanted in &form.recipients {
                    match find_cert(&certs, wanted) {
                        // Named twice (perhaps spelled differently): one
                        // PKESK and one index entry, in first-named order.
                        Some(c) if chosen.iter().any(|k| k.fingerprint() == c.fingerprint()) => {}
                        Some(c) => chosen.push(c),
                        None => problems.push(KeyProblem::UnknownRecipient {
                            config: config.path.clone(),
                            form: form.id.clone(),
                            fingerprint: wanted.clone(),
                        }),
                    }
                }
                chosen
            };
            if chosen.is_empty() {
                problems.push(KeyProblem::NoRecipients {
                    config: config.path.clone(),
                    form: form.id.clone(),
                });
                continue;
            }
            let recipients = Recipients {
                keys: chosen
                    .iter()
                    .flat_map(|c| c.encryption_keys.iter().cloned())
                    .collect(),
                certs: chosen.iter().map(|c| c.fingerprint()).collect(),
                hidden: form.hide_recipients,
                seipdv1_only: config.server.gnupg_compat,
            };
            routes.insert(form.id.clone(), Arc::new(recipients));
        }
        if problems.is_empty() {
            Ok(Keyring { certs, routes })
        } else {
            Err(problems)
        }
    }

    /// The recipients of form `form_id`.
    pub fn for_form(&self, form_id: &str) -> Option<Arc<Recipients>> {
        self.routes.get(form_id).cloned()
    }

    /// What to say about expiry at `now`, for a server that has been
    /// running since the keyring was loaded: each certificate that has
    /// expired meanwhile, or will within [`EXPIRY_WARNING`].
    pub fn expiry_warnings(&self, now: SystemTime) -> Vec<KeyWarning> {
        self.certs
            .iter()
            .filter_map(|c| expiry_warning(&c.source, &c.fingerprint(), c.expires?, now))
            .collect()
    }

    /// Every usable certificate, in file order.
    pub fn certs(&self) -> &[RecipientCert] {
        &self.certs
    }

    /// The certificate with this primary fingerprint (hex, any case, spaces
    /// allowed).
    pub fn cert(&self, fingerprint: &str) -> Option<&RecipientCert> {
        find_cert(&self.certs, fingerprint)
    }

    /// The certificate owning the key with this key ID (as found in a PKESK).
    pub fn cert_for_key_id(&self, keyid: &openpgp::KeyID) -> Option<&RecipientCert> {
        self.certs
            .iter()
            .find(|c| c.encryption_keys.iter().any(|k| &k.key.keyid() == keyid))
    }
}

/// A fingerprint as the configuration may write it (hex, any case, spaces
/// allowed) as [`Fingerprint::to_hex`] writes it: upper case, no spaces.
pub fn canonical_fingerprint(written: &str) -> String {
    written
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase()
}

/// The certificate of `certs` with this primary fingerprint (hex, any
/// case, spaces allowed).
pub fn find_cert<'a>(certs: &'a [RecipientCert], wanted: &str) -> Option<&'a RecipientCert> {
    let wanted = canonical_fingerprint(wanted);
    certs.iter().find(|c| c.fingerprint().to_hex() == wanted)
}

/// The OpenPGP features a certificate should advertise so that every
/// sender picks a format GnuPG 2.2 can read.
pub fn gnupg_features() -> Features {
    Features::empty().set_seipdv1()
}
