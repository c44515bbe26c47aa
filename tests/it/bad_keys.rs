//! Acceptance of start-up key validation (issue 2, point 5): every unusable
//! `keys_dir` makes BOTH `sealform serve` and `sealform check` exit non-zero
//! with a message naming the offending file; a certificate that expires
//! soon only warns.
//!
//! Certificates that depend on the current time (expired, expiring, revoked)
//! or that gpg cannot make (v6) are generated here with Sequoia's
//! `CertBuilder` (Cv25519, fast).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use sequoia_openpgp as openpgp;

use openpgp::Profile;
use openpgp::cert::prelude::*;
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::SerializeInto;
use openpgp::types::ReasonForRevocation;

use crate::support::*;

const DAY: Duration = Duration::from_secs(86_400);

fn public_armor(cert: &openpgp::Cert) -> Vec<u8> {
    cert.armored().to_vec().expect("armor")
}

fn signing_only() -> Vec<u8> {
    let (cert, _) = CertBuilder::new()
        .add_userid("Signs only <sign@example.org>")
        .add_signing_subkey()
        .generate()
        .expect("generate");
    public_armor(&cert)
}

fn expired() -> Vec<u8> {
    let (cert, _) = CertBuilder::new()
        .add_userid("Expired <expired@example.org>")
        .add_transport_encryption_subkey()
        .set_creation_time(SystemTime::now() - 20 * DAY)
        .set_validity_period(Some(DAY))
        .generate()
        .expect("generate");
    public_armor(&cert)
}

fn revoked_encryption_subkey() -> Vec<u8> {
    let (cert, _) = CertBuilder::general_purpose(Some("Revoked subkey <rev@example.org>"))
        .set_creation_time(SystemTime::now() - DAY)
        .generate()
        .expect("generate");
    let p = StandardPolicy::new();
    let mut signer = cert
        .primary_key()
        .key()
        .clone()
        .parts_into_secret()
        .expect("secret primary")
        .into_keypair()
        .expect("keypair");
    let vc = cert.with_policy(&p, None).expect("valid");
    let subkey = vc
        .keys()
        .subkeys()
        .for_transport_encryption()
        .next()
        .expect("encryption subkey");
    let rev = SubkeyRevocationBuilder::new()
        .set_reason_for_revocation(ReasonForRevocation::KeyCompromised, b"test")
        .expect("reason")
        .build(&mut signer, &cert, subkey.key(), None)
        .expect("revocation");
    let (cert, _) = cert.insert_packets(rev).expect("insert");
    let cert = cert.strip_secret_key_material();
    public_armor(&cert)
}

fn v6() -> Vec<u8> {
    let (cert, _) = CertBuilder::new()
        .set_profile(Profile::RFC9580)
        .expect("profile")
        .add_userid("Version six <v6@example.org>")
        .add_transport_encryption_subkey()
        .generate()
        .expect("generate");
    public_armor(&cert)
}

fn expiring_in_ten_days() -> Vec<u8> {
    let (cert, _) = CertBuilder::new()
        .add_userid("Expiring <soon@example.org>")
        .add_transport_encryption_subkey()
        .set_creation_time(SystemTime::now())
        .set_validity_period(Some(10 * DAY))
        .generate()
        .expect("generate");
    public_armor(&cert)
}

/// `sealform serve` that must fail before it listens: (exit code, stderr).
/// A server that starts anyway is killed after 30 s and fails the test.
fn serve_must_refuse(fx: &Fixture) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sealform"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(fx.config_path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sealform");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "serve started although it must refuse:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    (out.status.code().unwrap_or(-1), text)
}

fn check(fx: &Fixture) -> (i32, String, String) {
    let config = fx.config_path();
    sealform(&["check", "--config", config.to_str().expect("utf-8 path")])
}

/// The test-only secret key, binary, followed by bytes that are no packet.
fn secret_then_garbage() -> Vec<u8> {
    let tsk = openpgp::Cert::from_file(TestKey::Ed25519.secret()).expect("secret key");
    let mut bytes = tsk.as_tsk().to_vec().expect("serialize");
    bytes.extend_from_slice(&[0xff; 64]);
    bytes
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("write key file");
}

#[test]
fn serve_and_check_refuse_every_unusable_key_naming_the_file() {
    const NOBODY: &str = "0000111122223333444455556666777788889999";
    // (case, file written into keys_dir, its bytes, words the message must hold)
    type Make = fn() -> Vec<u8>;
    let secret: Make = || read(&TestKey::Ed25519.secret());
    let garbage: Make = || b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot a key\n".to_vec();
    let cases: &[(&str, &str, Make, &[&str])] = &[
        (
            "secret key material",
            "leaked-secret.asc",
            secret,
            &["SECRET"],
        ),
        (
            "no encryption subkey",
            "sign-only.asc",
            signing_only,
            &["encryption-capable"],
        ),
        (
            "expired certificate",
            "expired.asc",
            expired,
            &["not usable", "Expired"],
        ),
        (
            "revoked encryption subkey",
            "revoked-subkey.asc",
            revoked_encryption_subkey,
            &["encryption-capable"],
        ),
        ("v6 certificate", "version-six.asc", v6, &["v6"]),
        (
            "unparseable file",
            "garbage.asc",
            garbage,
            &["not a readable OpenPGP"],
        ),
        (
            "binary garbage",
            "noise.pgp",
            || vec![0xff; 64],
            &["not a readable OpenPGP"],
        ),
        // What was read before the garbage is still reported.
        (
            "secret key material, then garbage",
            "leaked-then-noise.pgp",
            secret_then_garbage,
            &["SECRET", "not a readable OpenPGP"],
        ),
    ];
    for (case, file, make, words) in cases {
        // A good key next to the bad one: the bad one alone must stop start.
        let fx = Fixture::new(&[TestKey::Rsa], DEFAULT_FORMS, "");
        write(&fx.keys_dir(), file, &make());
        let (code, stderr) = serve_must_refuse(&fx);
        assert_ne!(code, 0, "{case}: serve exit code");
        assert!(
            stderr.contains(file),
            "{case}: serve names {file}: {stderr}"
        );
        for w in *words {
            assert!(stderr.contains(w), "{case}: serve says {w:?}: {stderr}");
        }
        assert!(fx.records().is_empty());
        let (code, _out, stderr) = check(&fx);
        assert_ne!(code, 0, "{case}: check exit code");
        assert!(
            stderr.contains(file),
            "{case}: check names {file}: {stderr}"
        );
        for w in *words {
            assert!(stderr.contains(w), "{case}: check says {w:?}: {stderr}");
        }
    }

    // A form naming a fingerprint that no certificate has.
    let forms = DEFAULT_FORMS.replacen(
        "description = \"Test form\"",
        &format!("description = \"Test form\"\nrecipients = [\"{NOBODY}\"]"),
        1,
    );
    let fx = Fixture::new(&[TestKey::Rsa, TestKey::Ed25519], &forms, "");
    let (code, stderr) = serve_must_refuse(&fx);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("config.toml") && stderr.contains(NOBODY),
        "serve names the config file and the fingerprint: {stderr}"
    );
    let (code, _out, stderr) = check(&fx);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("config.toml") && stderr.contains(NOBODY),
        "check names the config file and the fingerprint: {stderr}"
    );
}

#[test]
fn a_cert_expiring_within_30_days_starts_with_a_loud_warning() {
    let fx = Fixture::new(&[TestKey::Rsa], DEFAULT_FORMS, "");
    write(&fx.keys_dir(), "expiring.asc", &expiring_in_ten_days());

    let (code, out, stderr) = check(&fx);
    assert_eq!(code, 0, "check passes: {out}{stderr}");
    assert!(
        stderr.contains("WARNING") && stderr.contains("expiring.asc"),
        "check warns naming the file: {stderr}"
    );
    assert!(stderr.contains("9 more day"), "{stderr}");

    // What a server running since then says once a day.
    let config = sealform::config::Config::load(&fx.config_path()).expect("config");
    let (intake, _) = sealform::intake::Intake::open(config, SystemTime::now()).expect("intake");
    let said = |days: u64| -> Vec<String> {
        let at = SystemTime::now() + Duration::from_secs(days * 86_400);
        let w = intake.keyring.expiry_warnings(at);
        w.iter().map(ToString::to_string).collect()
    };
    let soon = said(2);
    assert_eq!(soon.len(), 1, "{soon:?}");
    assert!(
        soon[0].contains("expiring.asc") && soon[0].contains("7 more day"),
        "{soon:?}"
    );
    let gone = said(11);
    assert_eq!(gone.len(), 1, "{gone:?}");
    assert!(
        gone[0].contains("expiring.asc") && gone[0].contains("has expired"),
        "{gone:?}"
    );
    assert!(said(0).iter().all(|w| !w.contains("has expired")));
    drop(intake);

    let server = Server::start(&fx);
    let log = server.log_text();
    assert!(
        log.contains("WARNING") && log.contains("expiring.asc"),
        "serve warns naming the file: {log}"
    );
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_second_serve_on_the_same_data_dir_is_refused_saying_why() {
    let fx = Fixture::standard();
    let server = Server::start(&fx);
    let (code, stderr) = serve_must_refuse(&fx);
    assert_ne!(code, 0);
    assert!(stderr.contains("another sealform process"), "{stderr}");
    assert!(server.terminate().success());
}
