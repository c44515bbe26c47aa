//! Offline `decrypt` and `keygen`: gpg-made, `keygen` and subkey-only keys,
//! hidden recipients, keys it cannot unlock, writes it cannot finish, and no
//! network at all.

use super::*;

#[tokio::test]
async fn a_record_no_given_key_opens_is_reported_and_skipped() {
    let fx = Fixture::new(&[TestKey::Rsa], DEFAULT_FORMS, "");
    submit(&fx, 1).await;
    let work = tempfile::tempdir().expect("tempdir");
    let plain = work.path().join("plain");
    let (code, out, _) = sealform(&[
        "decrypt",
        "--key",
        path_str(&TestKey::Ed25519.secret()),
        "--out",
        path_str(&plain),
        path_str(&fx.spool_dir()),
    ]);
    assert_eq!(code, 1);
    assert!(out.contains("decrypted 0, skipped 0, failed 1"), "{out}");
    assert!(out.contains("cannot decrypt"), "{out}");
    assert!(decrypted_dirs(&plain).is_empty());
}

/// A key folder to make and a passphrase file (written) under `work`.
fn keygen_paths(work: &Path) -> (PathBuf, PathBuf) {
    let pass = work.join("pass");
    std::fs::write(&pass, "correct horse battery staple\n").expect("pass");
    (work.join("offline-keys"), pass)
}

/// `sealform keygen` for a test-only key into `keydir`.
fn keygen_args<'a>(keydir: &'a Path, pass: &'a Path) -> [&'a str; 7] {
    [
        "keygen",
        "--name",
        "Test Staff (test only) <staff@example.org>",
        "--out",
        path_str(keydir),
        "--passphrase-file",
        path_str(pass),
    ]
}

#[tokio::test]
async fn decrypt_opens_records_with_a_protected_gpg_key_and_a_keygen_key_and_gpg_reads_keygen_records()
 {
    let work = tempfile::tempdir().expect("tempdir");
    let (keydir, pass) = keygen_paths(work.path());
    let out = run_ok(&keygen_args(&keydir, &pass));
    let fpr = out
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint: "))
        .expect("fingerprint printed")
        .to_owned();
    let secret = keydir.join(format!("{fpr}-secret.asc"));
    let public = keydir.join(format!("{fpr}-public.asc"));
    let armored = String::from_utf8(read(&secret)).expect("armored");
    assert!(armored.contains("PRIVATE KEY"));

    {
        use sequoia_openpgp::cert::Preferences;
        use sequoia_openpgp::parse::Parse;
        use sequoia_openpgp::policy::StandardPolicy;
        let cert = sequoia_openpgp::Cert::from_file(&public).expect("cert");
        assert!(!cert.is_tsk());
        assert_eq!(cert.primary_key().key().version(), 4);
        let p = StandardPolicy::new();
        let valid = cert.with_policy(&p, None).expect("valid now");
        let features = valid.features().expect("features");
        assert!(features.supports_seipdv1() && !features.supports_seipdv2());
        let expiry = valid.primary_key().key_expiration_time().expect("expires");
        let left = expiry
            .duration_since(std::time::SystemTime::now())
            .expect("in the future");
        let days = left.as_secs() / 86_400;
        assert!((728..=730).contains(&days), "{days} days");
        let enc: Vec<_> = valid
            .keys()
            .subkeys()
            .for_storage_encryption()
            .for_transport_encryption()
            .collect();
        assert_eq!(enc.len(), 1);
        let tsk = sequoia_openpgp::Cert::from_file(&secret).expect("tsk");
        assert!(tsk.keys().secret().all(|k| k.key().secret().is_encrypted()));
    }
    let fx = Fixture::new(&[TestKey::Protected], DEFAULT_FORMS, "");
    std::fs::copy(&public, fx.keys_dir().join("keygen.asc")).expect("copy");
    let (code, out, err) = sealform(&["check", "--config", path_str(&fx.config_path())]);
    assert_eq!(code, 0, "a keygen cert is a valid recipient: {out}{err}");
    let receipts = submit(&fx, 1).await;
    let record = fx.record(&receipts[0]);

    // sealform decrypt with each key.
    for (key, passfile) in [
        (
            TestKey::Protected.secret(),
            data_dir().join("test-only-protected-passphrase.txt"),
        ),
        (secret.clone(), pass.clone()),
    ] {
        let plain = tempfile::tempdir().expect("tempdir");
        let out = run_ok(&[
            "decrypt",
            "--key",
            path_str(&key),
            "--passphrase-file",
            path_str(&passfile),
            "--out",
            path_str(plain.path()),
            path_str(&record),
        ]);
        assert!(out.contains("decrypted 1,"), "{out}");
        let fields: Value =
            serde_json::from_slice(&read(&plain.path().join(&receipts[0]).join("fields.json")))
                .expect("json");
        assert_eq!(fields["fields"]["contact"], "signal-contact-0");
    }
    // A wrong passphrase is a clear error, not a crash.
    let plain = tempfile::tempdir().expect("tempdir");
    let (code, _, err) = sealform(&[
        "decrypt",
        "--key",
        path_str(&secret),
        "--passphrase-file",
        path_str(&TestKey::Protected.secret()),
        "--out",
        path_str(plain.path()),
        path_str(&record),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("passphrase-protected"), "{err}");

    // The real gpg reads a record sealed to the keygen key.
    let gpg = Gpg::with_secret_keys(&[]);
    let import = std::process::Command::new("gpg")
        .arg("--homedir")
        .arg(gpg.home.path())
        .args([
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase-file",
        ])
        .arg(&pass)
        .arg("--import")
        .arg(&secret)
        .output()
        .expect("gpg import");
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    let dec = std::process::Command::new("gpg")
        .arg("--homedir")
        .arg(gpg.home.path())
        .args([
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase-file",
        ])
        .arg(&pass)
        .arg("--decrypt")
        .arg(&record)
        .output()
        .expect("gpg decrypt");
    assert!(
        dec.status.success(),
        "{}",
        String::from_utf8_lossy(&dec.stderr)
    );
    assert_eq!(
        json_part(&dec.stdout)["fields"]["contact"],
        "signal-contact-0"
    );
}

/// Runs sealform as on a nearly full disk: `ulimit -f 1` allows files of at
/// most one 512-byte block and, with SIGXFSZ ignored (inherited through
/// exec), a write past it fails with EFBIG ("File too large").
fn sealform_writing_at_most_512_bytes_per_file(args: &[&str]) -> std::process::Output {
    std::process::Command::new("sh")
        .args(["-c", "ulimit -f 1 && trap '' XFSZ && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_sealform"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run sealform")
}

/// A key file keygen cannot finish writing is removed, so no
/// truncated secret key is left under its final name, and the error says
/// which file and why.
#[test]
fn keygen_removes_a_key_file_it_could_not_finish() {
    let work = tempfile::tempdir().expect("tempdir");
    let (keydir, pass) = keygen_paths(work.path());
    let out = sealform_writing_at_most_512_bytes_per_file(&keygen_args(&keydir, &pass));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty(), "nothing reported as made");
    assert!(
        err.contains("while writing") && err.contains("-secret.asc") && err.contains("too large"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(&keydir)
        .expect("the key folder was made")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "no key file is left: {left:?}");
}

#[tokio::test]
async fn decrypt_never_opens_a_socket() {
    let fx = Fixture::new(&[TestKey::Ed25519], DEFAULT_FORMS, "");
    submit(&fx, 2).await;
    let work = tempfile::tempdir().expect("tempdir");
    let trace = work.path().join("trace");
    let status = std::process::Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=%network", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_sealform"))
        .args(["decrypt", "--csv", "--key"])
        .arg(TestKey::Ed25519.secret())
        .arg("--out")
        .arg(work.path().join("plain"))
        .arg(fx.spool_dir())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("strace (scripts/setup installs it)");
    assert!(status.success());
    assert_eq!(decrypted_dirs(&work.path().join("plain")).len(), 2);
    let calls = String::from_utf8(read(&trace)).expect("trace");
    assert!(calls.trim().is_empty(), "network system calls:\n{calls}");
}

#[tokio::test]
async fn records_with_hidden_recipients_decrypt_by_trying_every_key() {
    let forms = DEFAULT_FORMS.replace(
        "description = \"Test form\"",
        "description = \"Test form\"\nhide_recipients = true",
    );
    let fx = Fixture::new(&[TestKey::Ed25519, TestKey::Rsa], &forms, "");
    let receipts = submit(&fx, 1).await;
    let work = tempfile::tempdir().expect("tempdir");
    let plain = work.path().join("plain");
    let out = run_ok(&[
        "decrypt",
        "--key",
        path_str(&TestKey::Rsa.secret()),
        "--out",
        path_str(&plain),
        path_str(&fx.spool_dir()),
    ]);
    assert!(out.contains("decrypted 1, skipped 0, failed 0"), "{out}");
    assert!(plain.join(&receipts[0]).join("message.txt").exists());
}

/// `gpg --export-secret-subkeys` of `key` (armored), made by the real gpg in
/// a throwaway home: the primary key becomes a gnu-dummy stub (S2K 101).
fn secret_subkeys_export(key: TestKey, dir: &Path) -> PathBuf {
    let gpg = Gpg::with_secret_keys(&[&key.secret()]);
    let out = gpg
        .cmd()
        .args(["--armor", "--export-secret-subkeys", key.fingerprint()])
        .output()
        .expect("gpg --export-secret-subkeys");
    assert!(
        out.status.success() && !out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let packets = {
        let file = dir.join("export-for-list.asc");
        std::fs::write(&file, &out.stdout).expect("write");
        gpg.list_packets(&file)
    };
    assert!(packets.contains("gnu-dummy"), "{packets}");
    let path = dir.join("test-only-secret-subkeys.asc");
    std::fs::write(&path, &out.stdout).expect("write export");
    path
}

#[tokio::test]
async fn decrypt_opens_records_with_a_subkey_only_export_whose_primary_is_a_stub() {
    // An RSA primary is encryption-capable by algorithm, so this is the case
    // where a stub primary used to be asked for a passphrase.
    for key in [TestKey::Rsa, TestKey::Ed25519] {
        let fx = Fixture::new(&[key], DEFAULT_FORMS, "");
        let receipts = submit(&fx, 1).await;
        let work = tempfile::tempdir().expect("tempdir");
        let export = secret_subkeys_export(key, work.path());
        let plain = work.path().join("plain");
        let (code, out, err) = sealform(&[
            "decrypt",
            "--key",
            path_str(&export),
            "--out",
            path_str(&plain),
            path_str(&fx.spool_dir()),
        ]);
        assert_eq!(code, 0, "{key:?}\nstdout:\n{out}\nstderr:\n{err}");
        assert!(out.contains("decrypted 1, skipped 0, failed 0"), "{out}");
        let fields: Value =
            serde_json::from_slice(&read(&plain.join(&receipts[0]).join("fields.json")))
                .expect("json");
        assert_eq!(fields["fields"]["contact"], "signal-contact-0");
    }
}

#[tokio::test]
async fn a_key_the_passphrase_does_not_unlock_is_skipped_when_another_key_decrypts() {
    let fx = Fixture::new(&[TestKey::Rsa], DEFAULT_FORMS, "");
    submit(&fx, 1).await;
    let work = tempfile::tempdir().expect("tempdir");
    let wrong = work.path().join("wrong-passphrase");
    std::fs::write(&wrong, "not the passphrase\n").expect("write");
    let plain = work.path().join("plain");
    let (code, out, err) = sealform(&[
        "decrypt",
        "--key",
        path_str(&TestKey::Protected.secret()),
        "--key",
        path_str(&TestKey::Rsa.secret()),
        "--passphrase-file",
        path_str(&wrong),
        "--out",
        path_str(&plain),
        path_str(&fx.spool_dir()),
    ]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("decrypted 1, skipped 0, failed 0"), "{out}");
    assert!(
        err.contains(TestKey::Protected.encryption_subkey()) && err.contains("skipped"),
        "{err}"
    );
}

/// A record decrypt cannot finish writing leaves no partial plaintext
/// folder behind, is counted as failed, and decrypts on the next run.
#[tokio::test]
async fn decrypt_removes_a_record_it_could_not_finish_writing() {
    let fx = Fixture::new(&[TestKey::Ed25519], DEFAULT_FORMS, "");
    submit(&fx, 1).await;
    let work = tempfile::tempdir().expect("tempdir");
    let plain = work.path().join("plain");
    let (secret, spool) = (TestKey::Ed25519.secret(), fx.spool_dir());
    let args = [
        "decrypt",
        "--key",
        path_str(&secret),
        "--out",
        path_str(&plain),
        path_str(&spool),
    ];
    let cut = sealform_writing_at_most_512_bytes_per_file(&args);
    let (out, err) = (
        String::from_utf8_lossy(&cut.stdout),
        String::from_utf8_lossy(&cut.stderr),
    );
    assert_eq!(cut.status.code(), Some(1), "{out}{err}");
    assert!(out.contains("decrypted 0, skipped 0, failed 1"), "{out}");
    assert!(format!("{out}{err}").contains("too large"), "{out}{err}");
    let left: Vec<_> = std::fs::read_dir(&plain)
        .expect("out dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "nothing half-written is left: {left:?}");

    // What a run killed mid-record leaves (it cannot clean up) is removed
    // by the next run; other hidden folders are kept.
    let killed = plain.join(".01ARZ3NDEKTSV4RRFFQ69G5FAV.partial-0a1b2c3d");
    let mine = plain.join(".notes");
    for d in [&killed, &mine] {
        std::fs::create_dir(d).expect("mkdir");
        std::fs::write(d.join("message.txt"), "plaintext").expect("write");
    }
    let (code, out, err) = sealform(&args);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("decrypted 1"), "{out}");
    assert!(
        err.contains("left half-written by an interrupted run"),
        "{err}"
    );
    assert!(!killed.exists() && mine.exists());
    assert_eq!(decrypted_dirs(&plain).len(), 2, "the record and .notes");
}
