//! Who gets the digest: each `[[notify.readers]]` entry's certificate, read
//! anew (from `keys_dir` or its own file) and validated at the time of the
//! digest, so a certificate that expired or was removed since the start is
//! noticed; such a reader is skipped with the reason.

use std::path::Path;
use std::time::SystemTime;

use sequoia_openpgp as openpgp;

use openpgp::parse::Parse;

use crate::config::{Config, NotifyConfig};
use crate::keys::{
    KeyProblem, KeyWarning, RecipientCert, canonical_fingerprint, find_cert, load_dir, validate,
};

/// A reader whose certificate is usable now.
pub struct Reader {
    /// Their position in `notify.readers`.
    pub index: usize,
    /// Their address (never logged).
    pub address: String,
    /// The certificate the digest is encrypted to, and only to it.
    pub cert: RecipientCert,
}

/// A reader who gets nothing this time, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Their position in `notify.readers`.
    pub index: usize,
    /// Why, naming the certificate but not the address.
    pub reason: String,
}

/// The readers of `config` at `now`, and the certificates (of `keys_dir`
/// and of the readers) that expire within 30 days, by fingerprint with the
/// days left.
pub struct Resolved {
    /// The readers who get a digest.
    pub readers: Vec<Reader>,
    /// The readers who do not.
    pub skipped: Vec<Skipped>,
    /// Certificates expiring within 30 days: (fingerprint, days left).
    pub expiring: Vec<(String, u64)>,
}

/// Resolves every reader of `notify` at `now`.
pub fn resolve(config: &Config, notify: &NotifyConfig, now: SystemTime) -> Resolved {
    let gnupg_compat = true; // the digest is always SEIPDv1, for GnuPG 2.2
    let report = load_dir(&config.server.keys_dir, now, gnupg_compat);
    let mut expiring: Vec<(String, u64)> =
        report.warnings.iter().filter_map(expires_soon).collect();
    let mut out = Resolved {
        readers: Vec::new(),
        skipped: Vec::new(),
        expiring: Vec::new(),
    };
    for (index, r) in notify.readers.iter().enumerate() {
        let found = match (&r.fingerprint, &r.cert_file) {
            (Some(fpr), _) => from_keys_dir(&report, fpr),
            (None, Some(file)) => from_file(file, now),
            (None, None) => Err("no certificate configured".into()),
        };
        match found {
            Ok((cert, warning)) => {
                let fpr = cert.fingerprint().to_hex();
                if let Some(w) = warning.as_ref().and_then(expires_soon) {
                    if !expiring.iter().any(|(f, _)| *f == fpr) {
                        expiring.push(w);
                    }
                }
                out.readers.push(Reader {
                    index,
                    address: r.address.clone(),
                    cert,
                });
            }
            Err(reason) => out.skipped.push(Skipped { index, reason }),
        }
    }
    out.expiring = expiring;
    out
}

fn expires_soon(w: &KeyWarning) -> Option<(String, u64)> {
    match w {
        KeyWarning::ExpiresSoon {
            fingerprint, days, ..
        } => Some((fingerprint.to_hex(), *days)),
        KeyWarning::Expired { .. } => None,
    }
}

type Found = Result<(RecipientCert, Option<KeyWarning>), String>;

/// The certificate with primary fingerprint `wanted` among those of
/// `keys_dir` that are valid now, or why there is none.
fn from_keys_dir(report: &crate::keys::KeyReport, wanted: &str) -> Found {
    if let Some(c) = find_cert(&report.certs, wanted) {
        return Ok((c.clone(), None));
    }
    let wanted = canonical_fingerprint(wanted);
    let problem = report.problems.iter().find_map(|p| match p {
        KeyProblem::InvalidCert {
            fingerprint,
            reason,
            ..
        } if fingerprint.to_hex() == wanted => Some(reason.clone()),
        _ => None,
    });
    Err(match problem {
        Some(reason) => format!("certificate {wanted} in keys_dir is not usable: {reason}"),
        None => format!("certificate {wanted} is not in keys_dir (removed?)"),
    })
}

/// The certificate in `file`, validated at `now`, or why it is unusable.
fn from_file(file: &Path, now: SystemTime) -> Found {
    let cert = openpgp::Cert::from_file(file)
        .map_err(|e| format!("{}: not a readable certificate: {e}", file.display()))?;
    validate(cert, file, now, true).map_err(|p| match p {
        KeyProblem::InvalidCert {
            fingerprint,
            reason,
            ..
        } => format!(
            "certificate {fingerprint} ({}) is not usable: {reason}",
            file.display()
        ),
        p => p.to_string(),
    })
}

/// What `sealform check` says of each reader: a line each, and the
/// problems (a reader who would get nothing).
pub fn check_lines(config: &Config, now: SystemTime) -> (Vec<String>, Vec<String>) {
    let Some(notify) = &config.notify else {
        return (vec!["digest: off (no [notify] table)".into()], Vec::new());
    };
    let resolved = resolve(config, notify, now);
    let mut lines = vec![format!(
        "digest: daily at {} UTC to {} reader(s){}",
        notify.at,
        notify.readers.len(),
        if notify.webhook_url.is_some() {
            ", and to the webhook"
        } else {
            ""
        }
    )];
    for r in &resolved.readers {
        lines.push(format!(
            "  notify.readers[{}]: encrypted to {}",
            r.index,
            r.cert.fingerprint().to_hex()
        ));
    }
    let problems = resolved
        .skipped
        .iter()
        .map(|s| format!("notify.readers[{}] gets no digest: {}", s.index, s.reason))
        .collect();
    (lines, problems)
}
