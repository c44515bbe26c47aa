//! What can be wrong with the recipient certificates: the problems that stop
//! the keyring or the form routing from being usable ([`KeyProblem`]), and
//! the warnings said loudly that do not ([`KeyWarning`]). Each names the
//! file and the certificate, never anything of a submission.

use std::fmt;
use std::path::PathBuf;

use sequoia_openpgp::Fingerprint;

/// Something that stops the keyring or the form routing from being usable.
#[derive(Debug, thiserror::Error)]
pub enum KeyProblem {
    /// `keys_dir` could not be listed.
    #[error("cannot read keys directory {}: {source}", dir.display())]
    ReadDir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A certificate file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not OpenPGP certificate data.
    #[error("{}: not a readable OpenPGP certificate: {reason}", path.display())]
    Unparseable {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The file holds secret key material.
    #[error(
        "{}: contains SECRET key material ({fingerprint}); only public certificates belong in keys_dir. \
         Remove the file, and treat that secret key as exposed",
        path.display()
    )]
    SecretKeyMaterial {
        /// The file.
        path: PathBuf,
        /// The certificate holding a secret.
        fingerprint: Fingerprint,
    },
    /// A version 6 certificate while GnuPG compatibility is on.
    #[error(
        "{}: certificate {fingerprint} is OpenPGP v6, which GnuPG 2.2 cannot decrypt; \
         use a v4 key or set server.gnupg_compat = false",
        path.display()
    )]
    V6Cert {
        /// The file.
        path: PathBuf,
        /// The certificate.
        fingerprint: Fingerprint,
    },
    /// The certificate itself is not valid now (expired, revoked, weak).
    #[error("{}: certificate {fingerprint} is not usable: {reason}", path.display())]
    InvalidCert {
        /// The file.
        path: PathBuf,
        /// The certificate.
        fingerprint: Fingerprint,
        /// Why, in the policy's words.
        reason: String,
    },
    /// No alive, unrevoked, encryption-capable key under the policy.
    #[error(
        "{}: certificate {fingerprint} has no alive, unrevoked, encryption-capable subkey \
         acceptable under the standard policy",
        path.display()
    )]
    NoEncryptionSubkey {
        /// The file.
        path: PathBuf,
        /// The certificate.
        fingerprint: Fingerprint,
    },
    /// The same certificate appears in two files.
    #[error("{}: certificate {fingerprint} is also in {}; keep one copy", path.display(), first.display())]
    DuplicateCert {
        /// The second file.
        path: PathBuf,
        /// The certificate.
        fingerprint: Fingerprint,
        /// The first file.
        first: PathBuf,
    },
    /// `keys_dir` holds no certificate at all.
    #[error("{}: no certificate found (looked for *.asc, *.pgp, *.gpg)", dir.display())]
    NoCerts {
        /// The directory.
        dir: PathBuf,
    },
    /// A form names a fingerprint that no loaded certificate has.
    #[error(
        "{}: form {form:?} lists recipient {fingerprint:?}, which is not the primary fingerprint \
         of any usable certificate in keys_dir",
        config.display()
    )]
    UnknownRecipient {
        /// The config file.
        config: PathBuf,
        /// The form id.
        form: String,
        /// The fingerprint as written.
        fingerprint: String,
    },
    /// A form ends up with no recipient.
    #[error("{}: form {form:?} has no usable recipient", config.display())]
    NoRecipients {
        /// The config file.
        config: PathBuf,
        /// The form id.
        form: String,
    },
}

/// Something worth saying loudly that does not stop the server.
#[derive(Debug)]
pub enum KeyWarning {
    /// An encryption key expires soon.
    ExpiresSoon {
        /// The file.
        path: PathBuf,
        /// The certificate.
        fingerprint: Fingerprint,
        /// Whole days left.
        days: u64,
    },
    /// Every encryption key of a certificate has expired since the server
    /// started. Submissions are still sealed to it (GnuPG decrypts them with
    /// the secret key as before), but the next start refuses it.
    Expired {
        /// The file.
        path: PathBuf,
        /// The certificate.
        fingerprint: Fingerprint,
    },
}

impl fmt::Display for KeyWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyWarning::ExpiresSoon {
                path,
                fingerprint,
                days,
            } => write!(
                f,
                "{}: certificate {fingerprint} can be encrypted to for only {days} more day(s); \
                 extend its expiry or replace it before then: sealform refuses to start with an \
                 expired certificate",
                path.display()
            ),
            KeyWarning::Expired { path, fingerprint } => write!(
                f,
                "{}: certificate {fingerprint} has expired; this server still seals to it, but \
                 will refuse it at its next start: put a certificate with a later expiry (or a \
                 new one) in keys_dir and restart",
                path.display()
            ),
        }
    }
}
