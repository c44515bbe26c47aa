//! `pull --ack-after-verify`: only what was verified, and with `--for`, only
//! what is sealed to that key (by fingerprint, subkey or key ID), is acknowledged.

use super::*;

#[test]
fn pull_with_ack_after_verify_acknowledges_only_what_it_verified() {
    let (fx, token) = staff_fixture(&[TestKey::Ed25519], "");
    let server = Server::start(&fx);
    let client = reqwest::blocking::Client::new();
    submit_to(&server, &client, 3);
    let work = tempfile::tempdir().expect("tempdir");
    let bundle = work.path().join("bundle");
    let out = run_ok(&[
        "pull",
        "--url",
        &server.url(""),
        "--token-file",
        path_str(&fx.path().join("token")),
        "--out",
        path_str(&bundle),
        "--ack-after-verify",
        "--all-readers",
    ]);
    assert!(
        out.contains("3 fetched, 0 already in the bundle, 3 acknowledged"),
        "{out}"
    );
    assert!(fx.records().is_empty());
    let items = every_record(&server, &client, &token);
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|i| i["state"] == "acked"));
    // The bundle still holds every record, verified.
    let plain = work.path().join("plain");
    let out = run_ok(&[
        "decrypt",
        "--key",
        path_str(&TestKey::Ed25519.secret()),
        "--out",
        path_str(&plain),
        path_str(&bundle),
    ]);
    assert!(out.contains("decrypted 3, skipped 0, failed 0"), "{out}");
}

/// `--for` with a primary key's ID (the last 16 hex digits of its
/// fingerprint, as `gpg --list-keys --keyid-format long` shows it): the
/// record's packets name the encryption subkey, the manifest the primary
/// fingerprint, and the key ID is an alias of that.
#[test]
fn pull_ack_after_verify_for_a_primary_key_id_acknowledges_the_records_sealed_to_its_subkey() {
    let (fx, token) = staff_fixture(&[TestKey::Ed25519], "");
    let server = Server::start(&fx);
    let client = reqwest::blocking::Client::new();
    submit_to(&server, &client, 1);
    let work = tempfile::tempdir().expect("tempdir");
    let bundle = work.path().join("bundle");
    let fpr = TestKey::Ed25519.fingerprint();
    let key_id = &fpr[fpr.len() - 16..];
    let (code, stdout, stderr) = outcome(&mut pull_command(
        &fx,
        &server.url(""),
        &bundle,
        &["--ack-after-verify", "--for", key_id],
    ));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("1 fetched, 0 already in the bundle, 1 acknowledged"),
        "{stdout}"
    );
    assert!(stdout.contains("0 left for other readers"), "{stdout}");
    assert!(fx.records().is_empty());
    assert!(
        every_record(&server, &client, &token)
            .iter()
            .all(|r| r["state"] == "acked")
    );
}

/// `DEFAULT_FORMS` as form `id`, sealed to `recipients` (TOML, after
/// `recipients = `) or, with `None`, to every key with hidden recipients.
fn form_sealed_to(id: &str, recipients: Option<&str>) -> String {
    let route = match recipients {
        Some(r) => format!("recipients = {r}"),
        None => "hide_recipients = true".to_owned(),
    };
    DEFAULT_FORMS
        .replace("id = \"tip\"", &format!("id = \"{id}\""))
        .replace(
            "description = \"Test form\"",
            &format!("description = \"Test form\"\n{route}"),
        )
}

#[test]
fn pull_ack_after_verify_for_a_key_leaves_records_sealed_to_other_keys_unacknowledged_and_says_so()
{
    let (ed, rsa) = (TestKey::Ed25519, TestKey::Rsa);
    let forms = [
        form_sealed_to("tip", Some(&format!("[\"{}\"]", ed.fingerprint()))),
        form_sealed_to("leak", Some(&format!("[\"{}\"]", rsa.fingerprint()))),
        form_sealed_to("hidden", None),
    ]
    .join("\n");
    let (token, hash) = token_and_hash();
    let fx = Fixture::new(
        &[ed, rsa],
        &forms,
        &format!("[staff]\non_public_listener = true\ntokens = [\"{hash}\"]\n"),
    );
    std::fs::write(fx.path().join("token"), &token).expect("token file");
    let server = Server::start(&fx);
    let client = reqwest::blocking::Client::new();
    let mut receipts = std::collections::HashMap::<&str, Vec<String>>::new();
    for form in ["tip", "tip", "leak", "hidden"] {
        let res = client
            .post(server.url(&format!("/api/v1/forms/{form}/submissions")))
            .json(&json!({ "fields": fields_for(0) }))
            .send()
            .expect("submit");
        assert_eq!(res.status().as_u16(), 201);
        let body: Value = res.json().expect("json");
        let receipt = body["receipt"].as_str().expect("receipt").to_owned();
        receipts.entry(form).or_default().push(receipt);
    }
    let work = tempfile::tempdir().expect("tempdir");
    let bundle = work.path().join("bundle");
    let url = server.url("");

    // Neither --for nor --all-readers: refused before anything is fetched.
    let (code, stdout, stderr) = outcome(&mut pull_command(
        &fx,
        &url,
        &bundle,
        &["--ack-after-verify"],
    ));
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("--for") && stderr.contains("--all-readers"),
        "{stderr}"
    );
    assert!(
        every_record(&server, &client, &token)
            .iter()
            .all(|r| r["state"] == "new")
    );

    // For the ed25519 key (by its primary fingerprint): its two records are
    // acknowledged; the RSA one and the hidden one are left, and it says so.
    let for_ed = ["--ack-after-verify", "--for", ed.fingerprint()];
    let (code, stdout, stderr) = outcome(&mut pull_command(&fx, &url, &bundle, &for_ed));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("4 fetched, 0 already in the bundle, 2 acknowledged, 0 failed"),
        "{stdout}"
    );
    assert!(stdout.contains("2 left for other readers"), "{stdout}");
    assert!(
        stdout.contains("1 of them have hidden recipients"),
        "{stdout}"
    );
    let mut left = vec![
        fx.record(&receipts["leak"][0]),
        fx.record(&receipts["hidden"][0]),
    ];
    left.sort();
    assert_eq!(fx.records(), left);

    // `ack` for the RSA key, given as its certificate file: the record
    // sealed to it goes; the ed25519 ones (not its) and the hidden one stay
    // unacknowledged by this run.
    let rsa_cert = rsa.public();
    let (code, stdout, stderr) = sealform(&[
        "ack",
        "--for",
        path_str(&rsa_cert),
        "--url",
        &url,
        "--token-file",
        path_str(&fx.path().join("token")),
        path_str(&bundle),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("1 acknowledged, 0 refused"), "{stdout}");
    assert!(stdout.contains("3 left for other readers"), "{stdout}");
    assert_eq!(fx.records(), vec![fx.record(&receipts["hidden"][0])]);
    // `ack` needs to be told too.
    let (code, _, stderr) = sealform(&[
        "ack",
        "--config",
        path_str(&fx.config_path()),
        path_str(&bundle),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--all-readers"), "{stderr}");
    assert_eq!(fx.records(), vec![fx.record(&receipts["hidden"][0])]);
}
