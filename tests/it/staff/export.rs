//! `export` backup bundles and the manifest checks `decrypt` makes on a
//! bundle: files that do not match, are not listed or are gone.

use super::*;

#[tokio::test]
async fn export_backup_copies_every_unacknowledged_record_with_only_export_times_and_changes_no_state()
 {
    let (fx, token) = staff_fixture(&[TestKey::Ed25519], "");
    let receipts = submit(&fx, 4).await;
    ack_through_the_api(&fx, &token, &receipts[0]).await;
    let work = tempfile::tempdir().expect("tempdir");
    let backup = work.path().join("backup");
    let config = fx.config_path();
    let started = std::time::SystemTime::now() - Duration::from_secs(1);
    let out = run_ok(&[
        "export",
        "--backup",
        "--config",
        path_str(&config),
        "--out",
        path_str(&backup),
    ]);
    assert!(out.contains("3 fetched"), "{out}");
    // Every file of the backup was made by the export: no record's day or
    // arrival is in its times.
    for e in std::fs::read_dir(&backup).expect("backup") {
        let m = e.expect("entry").metadata().expect("stat");
        assert!(m.modified().expect("mtime") >= started);
    }
    let gpg = Gpg::with_secret_keys(&[&TestKey::Ed25519.secret()]);
    for r in &receipts[1..] {
        gpg.decrypt(&backup.join(format!("{r}.pgp")))
            .expect("the backup decrypts");
    }
    // No state changed: staff still fetch all three as new.
    let bundle = work.path().join("bundle");
    let out = run_ok(&[
        "export",
        "--config",
        path_str(&config),
        "--out",
        path_str(&bundle),
    ]);
    assert!(out.contains("3 fetched"), "{out}");
}

#[tokio::test]
async fn a_file_that_does_not_match_the_manifest_is_refused_and_the_others_decrypt() {
    let fx = Fixture::standard();
    let receipts = submit(&fx, 3).await;
    let work = tempfile::tempdir().expect("tempdir");
    let bundle = work.path().join("bundle");
    let config = fx.config_path();
    let out = run_ok(&[
        "export",
        "--config",
        path_str(&config),
        "--out",
        path_str(&bundle),
    ]);
    assert!(out.contains("3 fetched"), "{out}");
    let out = run_ok(&[
        "export",
        "--config",
        path_str(&config),
        "--out",
        path_str(&bundle),
    ]);
    assert!(
        out.contains("0 fetched"),
        "exported records are not exported again: {out}"
    );

    let victim = bundle.join(format!("{}.pgp", receipts[1]));
    let mut bytes = read(&victim);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&victim, bytes).expect("tamper");

    let plain = work.path().join("plain");
    let (code, out, err) = sealform(&[
        "decrypt",
        "--key",
        path_str(&TestKey::Rsa.secret()),
        "--out",
        path_str(&plain),
        path_str(&bundle),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("decrypted 2, skipped 0, failed 1"), "{out}");
    assert!(
        out.contains(&format!(
            "{}.pgp: refused: its sha256 does not match MANIFEST.json",
            receipts[1]
        )),
        "{out}"
    );
    assert!(plain.join(&receipts[0]).join("fields.json").exists());
    assert!(plain.join(&receipts[2]).join("fields.json").exists());
    assert!(!plain.join(&receipts[1]).exists());
    // Running it again skips what is already there and says why.
    let (code, out, _) = sealform(&[
        "decrypt",
        "--key",
        path_str(&TestKey::Rsa.secret()),
        "--out",
        path_str(&plain),
        path_str(&bundle),
    ]);
    assert_eq!(code, 1);
    assert!(out.contains("decrypted 0, skipped 2, failed 1"), "{out}");
    assert!(out.contains("already decrypted in"), "{out}");

    // `ack` refuses the damaged copy too, and acknowledges the rest.
    let (code, out, _) = sealform(&[
        "ack",
        "--all-readers",
        "--config",
        path_str(&config),
        path_str(&bundle),
    ]);
    assert_eq!(code, 1);
    assert!(out.contains("2 acknowledged, 1 refused"), "{out}");
    assert_eq!(fx.records(), vec![fx.record(&receipts[1])]);
}

#[tokio::test]
async fn a_bundle_file_the_manifest_does_not_list_is_refused_and_a_listed_one_that_is_gone_is_reported()
 {
    let fx = Fixture::standard();
    let receipts = submit(&fx, 3).await;
    let work = tempfile::tempdir().expect("tempdir");
    let bundle = work.path().join("bundle");
    let out = run_ok(&[
        "export",
        "--config",
        path_str(&fx.config_path()),
        "--out",
        path_str(&bundle),
    ]);
    assert!(out.contains("3 fetched"), "{out}");
    // A genuine record that this bundle never listed is put in it, and a
    // listed one is lost on the way.
    let planted = submit(&fx, 1).await.remove(0);
    std::fs::copy(fx.record(&planted), bundle.join(format!("{planted}.pgp"))).expect("plant");
    std::fs::remove_file(bundle.join(format!("{}.pgp", receipts[2]))).expect("lose");

    let plain = work.path().join("plain");
    let decrypt = |input: &Path| {
        sealform(&[
            "decrypt",
            "--key",
            path_str(&TestKey::Rsa.secret()),
            "--out",
            path_str(&plain),
            path_str(input),
        ])
    };
    let (code, out, err) = decrypt(&bundle);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("decrypted 2, skipped 0, failed 2"), "{out}");
    assert!(
        out.contains(&format!(
            "{planted}.pgp: refused: it is not listed in its folder's MANIFEST.json"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{}.pgp: listed in MANIFEST.json but missing from the folder",
            receipts[2]
        )),
        "{out}"
    );
    assert!(!plain.join(&planted).exists());
    let mut want = vec![plain.join(&receipts[0]), plain.join(&receipts[1])];
    want.sort();
    assert_eq!(decrypted_dirs(&plain), want);

    // Named alone, the planted file is refused the same way.
    let (code, out, _) = decrypt(&bundle.join(format!("{planted}.pgp")));
    assert_eq!(code, 1);
    assert!(out.contains("decrypted 0, skipped 0, failed 1"), "{out}");
    assert!(
        out.contains("not listed in its folder's MANIFEST.json"),
        "{out}"
    );

    // A manifest that cannot be read stops the run instead of being skipped.
    std::fs::write(bundle.join("MANIFEST.json"), b"{\"version\": 1, \"rec").expect("damage");
    std::fs::remove_dir_all(&plain).expect("clean");
    for input in [bundle.clone(), bundle.join(format!("{}.pgp", receipts[0]))] {
        let (code, out, err) = decrypt(&input);
        assert_ne!(code, 0, "{out}{err}");
        assert!(
            err.contains("MANIFEST.json is not a valid manifest"),
            "{err}"
        );
        assert!(!plain.exists() || decrypted_dirs(&plain).is_empty());
    }
}

#[tokio::test]
async fn export_and_purge_name_the_recipients_of_a_record_they_reindex_by_fingerprint_as_serve_does()
 {
    for first in ["export", "purge"] {
        let fx = Fixture::new(&[TestKey::Ed25519, TestKey::Rsa], DEFAULT_FORMS, "");
        submit(&fx, 2).await;
        // The index is lost (restored from nothing): the first command to
        // open the store indexes every record again from its file.
        std::fs::remove_dir_all(fx.data_dir().join("index")).expect("lose the index");
        let work = tempfile::tempdir().expect("tempdir");
        let bundle = work.path().join("bundle");
        let config_path = fx.config_path();
        let config = path_str(&config_path);
        if first == "purge" {
            run_ok(&["purge", "--config", config]);
        }
        let out = run_ok(&["export", "--config", config, "--out", path_str(&bundle)]);
        assert!(out.contains("2 fetched"), "{first}: {out}");
        let manifest: Value =
            serde_json::from_slice(&read(&bundle.join("MANIFEST.json"))).expect("manifest");
        let mut want = vec![
            TestKey::Ed25519.fingerprint().to_owned(),
            TestKey::Rsa.fingerprint().to_owned(),
        ];
        want.sort();
        for r in manifest["records"].as_array().expect("records") {
            let mut got: Vec<String> =
                serde_json::from_value(r["recipients"].clone()).expect("list");
            got.sort();
            assert_eq!(got, want, "re-indexed by {first}: {r}");
        }
    }
}

#[tokio::test]
async fn export_goes_on_past_a_record_it_cannot_read_and_says_so() {
    let fx = Fixture::standard();
    let receipts = submit(&fx, 3).await;
    std::fs::remove_file(fx.record(&receipts[0])).expect("remove a spool file");
    let work = tempfile::tempdir().expect("tempdir");
    let bundle = work.path().join("bundle");
    let (code, out, err) = sealform(&[
        "export",
        "--config",
        path_str(&fx.config_path()),
        "--out",
        path_str(&bundle),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("2 fetched") && out.contains("1 failed"),
        "{out}"
    );
    assert!(err.contains(&format!("{}: ", receipts[0])), "{err}");
    assert!(!bundle.join(format!("{}.pgp", receipts[0])).exists());
    for r in &receipts[1..] {
        assert!(bundle.join(format!("{r}.pgp")).exists(), "{r}");
    }
}
