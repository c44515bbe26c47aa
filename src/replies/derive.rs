//! What a reply code derives, with HKDF-SHA256 and one label per output:
//! the mailbox address ([`MailboxId`]) and a deterministic OpenPGP v4
//! certificate, an Ed25519 primary key (certification only) and a cv25519
//! encryption subkey, both created at a fixed time and bound by signatures
//! made at that time, so one code always gives the same certificate, byte
//! for byte.
//!
//! Sequoia's `SignatureBuilder` adds a random salt notation to every v4
//! signature it makes; the signatures here are hashed and signed directly
//! (Ed25519 is deterministic) over a hashed area that holds a salt derived
//! from the code instead. The certificate advertises SEIPDv1 only and no
//! compression, so GnuPG 2.2 and 2.4 encrypt to it in a form the server
//! opens without a decompressor.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hkdf::Hkdf;
use sequoia_openpgp as openpgp;
use sha2::Sha256;
use zeroize::Zeroizing;

use openpgp::cert::Cert;
use openpgp::crypto::hash::Context;
use openpgp::crypto::{KeyPair, Signer, mpi};
use openpgp::packet::key::{Key4, PrimaryRole, PublicParts, SecretParts, SubordinateRole};
use openpgp::packet::signature::{Signature4, SignatureBuilder};
use openpgp::packet::{Key, Packet, Signature, UserID};
use openpgp::serialize::SerializeInto;
use openpgp::types::{
    CompressionAlgorithm, Features, HashAlgorithm, KeyFlags, PublicKeyAlgorithm, SignatureType,
    SymmetricAlgorithm,
};

use super::ReplyError;
use super::code::ENTROPY_BYTES;

const MAILBOX_LABEL: &[u8] = b"sealform reply mailbox v1";
const PRIMARY_LABEL: &[u8] = b"sealform reply certification key v1";
const SUBKEY_LABEL: &[u8] = b"sealform reply encryption key v1";
const SALT_LABEL: &[u8] = b"sealform reply signature salt v1";

/// The certificate's only user ID: the same for every code, so it names
/// nobody.
const USER_ID: &str = "sealform reply";

/// The keys' and signatures' creation time: 2020-01-01T00:00:00Z.
const CREATED_SECS: u64 = 1_577_836_800;

/// Bytes of a mailbox address (160 bits, 32 base32 characters).
const MAILBOX_BYTES: usize = 20;

/// The address of a mailbox in the reply store: 32 lowercase base32
/// characters. Its `Debug` form says nothing: it must not reach a log.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxId([u8; MAILBOX_BYTES]);

impl fmt::Display for MailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            &data_encoding::BASE32_NOPAD
                .encode(&self.0)
                .to_ascii_lowercase(),
        )
    }
}

impl fmt::Debug for MailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MailboxId(..)")
    }
}

/// A string that is not a mailbox address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a mailbox address (32 base32 characters)")]
pub struct BadMailbox;

impl FromStr for MailboxId {
    type Err = BadMailbox;

    /// The 32-character lowercase form only: it names a folder, so
    /// exactly one spelling is accepted.
    fn from_str(s: &str) -> Result<MailboxId, BadMailbox> {
        super::from_base32(s).map(MailboxId).ok_or(BadMailbox)
    }
}

/// What a code derives: the mailbox address, the public certificate and
/// the secret encryption key (zeroized on drop, inside Sequoia's key pair).
pub struct Derived {
    /// The mailbox the answers to this code are stored under.
    pub mailbox: MailboxId,
    cert: Cert,
    decryptor: KeyPair,
}

impl fmt::Debug for Derived {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Derived(..)")
    }
}

impl Derived {
    /// Derives everything from a code's bits.
    pub(super) fn from_entropy(entropy: &[u8; ENTROPY_BYTES]) -> Result<Derived, ReplyError> {
        // Known gap: `Hkdf` (hkdf 0.12, sha2 0.10) keeps the PRK in an HMAC
        // state that is not zeroized on drop; it lives only for this call.
        // Every output is zeroized.
        let hk = Hkdf::<Sha256>::new(None, entropy);
        let expand = |label: &[u8]| -> Result<Zeroizing<[u8; 32]>, ReplyError> {
            let mut out = Zeroizing::new([0u8; 32]);
            hk.expand(label, &mut out[..])
                .map_err(|_| ReplyError::OpenPgp("HKDF output length".into()))?;
            Ok(out)
        };
        let mailbox = expand(MAILBOX_LABEL)?;
        let mut id = [0u8; MAILBOX_BYTES];
        id.copy_from_slice(&mailbox[..MAILBOX_BYTES]);
        let (cert, decryptor) = certificate(
            &*expand(PRIMARY_LABEL)?,
            &*expand(SUBKEY_LABEL)?,
            &*expand(SALT_LABEL)?,
        )?;
        Ok(Derived {
            mailbox: MailboxId(id),
            cert,
            decryptor,
        })
    }

    /// The public certificate (no secret in it).
    pub fn cert(&self) -> &Cert {
        &self.cert
    }

    /// The certificate, ASCII-armored: the `reply-key.asc` part of a record.
    pub fn cert_armored(&self) -> String {
        // Serializing a certificate held in memory into a Vec cannot fail
        // and armor is ASCII; an empty string would be refused by every
        // reader rather than mislead one.
        self.cert
            .armored()
            .to_vec()
            .ok()
            .and_then(|v| String::from_utf8(v).ok())
            .unwrap_or_default()
    }

    /// The secret encryption key, for [`Derived::open`].
    pub(super) fn decryptor(&self) -> &KeyPair {
        &self.decryptor
    }
}

/// The creation time of every key and signature.
fn created() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(CREATED_SECS)
}

/// Builds the certificate from its secrets; returns it without secrets and
/// the encryption subkey's key pair.
fn certificate(
    primary: &[u8; 32],
    subkey: &[u8; 32],
    salt: &[u8; 32],
) -> Result<(Cert, KeyPair), ReplyError> {
    let primary: Key<SecretParts, PrimaryRole> =
        Key4::<SecretParts, PrimaryRole>::import_secret_ed25519(primary, created())
            .map_err(ReplyError::openpgp)?
            .into();
    let subkey: Key<SecretParts, SubordinateRole> =
        Key4::<SecretParts, SubordinateRole>::import_secret_cv25519(
            subkey,
            HashAlgorithm::SHA256,
            SymmetricAlgorithm::AES128,
            created(),
        )
        .map_err(ReplyError::openpgp)?
        .into();
    let mut signer = primary
        .clone()
        .into_keypair()
        .map_err(ReplyError::openpgp)?;
    let public = primary.parts_as_public().clone();
    let sub_public: Key<PublicParts, SubordinateRole> = subkey.parts_as_public().clone();
    let userid = UserID::from(USER_ID);

    let uid_template = template(SignatureType::PositiveCertification, &public, salt, 1)?
        .set_primary_userid(true)
        .and_then(|b| b.set_key_flags(KeyFlags::empty().set_certification()))
        .and_then(|b| b.set_features(Features::empty().set_seipdv1()))
        .and_then(|b| {
            b.set_preferred_symmetric_algorithms(vec![
                SymmetricAlgorithm::AES256,
                SymmetricAlgorithm::AES128,
            ])
        })
        .and_then(|b| {
            b.set_preferred_hash_algorithms(vec![HashAlgorithm::SHA512, HashAlgorithm::SHA256])
        })
        .and_then(|b| {
            b.set_preferred_compression_algorithms(vec![CompressionAlgorithm::Uncompressed])
        })
        .map_err(ReplyError::openpgp)?;
    let uid_sig = sign(&mut signer, uid_template, |sig, ctx| {
        sig.hash_userid_binding(ctx, &public, &userid)
    })?;
    let sub_template = template(SignatureType::SubkeyBinding, &public, salt, 2)?
        .set_key_flags(
            KeyFlags::empty()
                .set_storage_encryption()
                .set_transport_encryption(),
        )
        .map_err(ReplyError::openpgp)?;
    let sub_sig = sign(&mut signer, sub_template, |sig, ctx| {
        sig.hash_subkey_binding(ctx, &public, &sub_public)
    })?;
    let cert = Cert::from_packets(
        vec![
            Packet::from(public.clone()),
            userid.into(),
            uid_sig.into(),
            sub_public.clone().into(),
            sub_sig.into(),
        ]
        .into_iter(),
    )
    .map_err(ReplyError::openpgp)?
    // `parts_as_public` only relabels the keys: drop their secrets here.
    .strip_secret_key_material();
    let decryptor = subkey.into_keypair().map_err(ReplyError::openpgp)?;
    Ok((cert, decryptor))
}

/// A signature's subpackets: fixed creation time, issuer, and a salt
/// notation derived from the code (`n` tells the signatures apart).
fn template(
    typ: SignatureType,
    issuer: &Key<PublicParts, PrimaryRole>,
    salt: &[u8; 32],
    n: u8,
) -> Result<SignatureBuilder, ReplyError> {
    let hk = Hkdf::<Sha256>::from_prk(salt)
        .map_err(|_| ReplyError::OpenPgp("HKDF key length".into()))?;
    let mut own_salt = [0u8; 32];
    hk.expand(&[n], &mut own_salt)
        .map_err(|_| ReplyError::OpenPgp("HKDF output length".into()))?;
    SignatureBuilder::new(typ)
        .set_hash_algo(HashAlgorithm::SHA512)
        .set_signature_creation_time(created())
        .and_then(|b| b.set_issuer_fingerprint(issuer.fingerprint()))
        .and_then(|b| b.set_issuer(issuer.keyid()))
        .and_then(|b| b.set_notation("salt@notations.sequoia-pgp.org", own_salt, None, false))
        .map_err(ReplyError::openpgp)
}

/// Signs `template` with `signer` (Ed25519, SHA-512) over what `hash`
/// feeds the digest, without Sequoia's random salt.
fn sign(
    signer: &mut KeyPair,
    template: SignatureBuilder,
    hash: impl FnOnce(&Signature, &mut Context) -> openpgp::Result<()>,
) -> Result<Signature, ReplyError> {
    let typ = template.typ();
    let hashed = template.hashed_area().clone();
    let unhashed = template.unhashed_area().clone();
    let algo = PublicKeyAlgorithm::EdDSA;
    let draft: Signature = Signature4::new(
        typ,
        algo,
        HashAlgorithm::SHA512,
        hashed.clone(),
        unhashed.clone(),
        [0, 0],
        mpi::Signature::EdDSA {
            r: mpi::MPI::new(&[]),
            s: mpi::MPI::new(&[]),
        },
    )
    .into();
    let mut ctx = HashAlgorithm::SHA512
        .context()
        .map_err(ReplyError::openpgp)?
        .for_signature(4);
    hash(&draft, &mut ctx).map_err(ReplyError::openpgp)?;
    let digest = ctx.into_digest().map_err(ReplyError::openpgp)?;
    let mpis = signer
        .sign(HashAlgorithm::SHA512, &digest)
        .map_err(ReplyError::openpgp)?;
    let prefix = [
        digest.first().copied().unwrap_or(0),
        digest.get(1).copied().unwrap_or(0),
    ];
    Ok(Signature4::new(
        typ,
        algo,
        HashAlgorithm::SHA512,
        hashed,
        unhashed,
        prefix,
        mpis,
    )
    .into())
}
