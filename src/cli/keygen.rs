//! Making a GnuPG-compatible recipient key (used by `sealform demo`).
//!
//! This is one of the two places a secret key exists in sealform (the other
//! is offline decryption). The secret is returned to the caller to write to
//! the path the operator chose, never kept or logged.

use std::time::Duration;

use sequoia_openpgp as openpgp;

use openpgp::cert::prelude::*;
use openpgp::crypto::Password;
use openpgp::types::KeyFlags;

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
