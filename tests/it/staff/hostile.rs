//! Hostile contents: names inside a record, file names on the transfer
//! medium and what a hostile server or bundle says reach the disk and the
//! terminal only as safe names and escaped text.

use super::*;

#[test]
fn hostile_names_inside_a_record_end_up_as_safe_names_inside_the_output_folder() {
    use sealform::mime::{EnvelopeField, EnvelopeWriter, FieldValue, Head};
    use std::io::Write;

    let fx = Fixture::new(&[TestKey::Ed25519], DEFAULT_FORMS, "");
    let config = sealform::config::Config::load(&fx.config_path()).expect("config");
    let (keyring, _) =
        sealform::keys::Keyring::load(&config, std::time::SystemTime::now()).expect("keys");
    let recipients = keyring.for_form("tip").expect("route");
    let work = tempfile::tempdir().expect("tempdir");
    let inbox = work.path().join("in");
    std::fs::create_dir(&inbox).expect("in");
    let names = [
        "../../etc/passwd",
        "/abs",
        "con",
        "a\0b",
        "two\nlines",
        "..",
        "\u{202E}txt.exe",
    ];
    let mut ct = Vec::new();
    sealform::seal::seal(&mut ct, &recipients, |w| {
        let head = Head {
            form: "../../evil-form",
            title: "x",
            receipt: "../../etc/passwd",
            received_at: chrono::Utc::now(),
            reply: None,
        };
        let fields = [EnvelopeField {
            name: "../x",
            label: "L",
            value: FieldValue::Text("v"),
        }];
        let mut env = EnvelopeWriter::start(w, &head)?;
        env.text_part("x", &fields)?;
        for n in names {
            let mut a = env.attachment("file", n, "text/plain")?;
            a.write_all(b"payload")?;
            a.finish()?;
        }
        env.json_part(&head, &fields)?;
        env.finish()?;
        Ok(())
    })
    .expect("seal");
    std::fs::write(inbox.join("hostile.pgp"), &ct).expect("write");

    let deep = work.path().join("a/b");
    let plain = deep.join("out");
    let out = run_ok(&[
        "decrypt",
        "--key",
        path_str(&TestKey::Ed25519.secret()),
        "--csv",
        "--out",
        path_str(&plain),
        path_str(&inbox),
    ]);
    assert!(out.contains("decrypted 1,"), "{out}");
    // The hostile receipt header is not used as a folder name.
    assert_eq!(decrypted_dirs(&plain), vec![plain.join("hostile")]);
    let mut got: Vec<String> = std::fs::read_dir(plain.join("hostile/attachments"))
        .expect("attachments")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    got.sort();
    let mut want = vec![
        "_.._etc_passwd",
        "_abs",
        "_con",
        "a_b",
        "two_lines",
        "attachment-6",
        "_txt.exe",
    ];
    want.sort();
    assert_eq!(got, want);
    for name in &got {
        assert_eq!(
            read(&plain.join("hostile/attachments").join(name)),
            b"payload"
        );
    }
    assert!(plain.join("_.._evil-form.csv").exists());
    // Nothing escaped the output folder.
    let mut outside: Vec<PathBuf> = Vec::new();
    for dir in [
        work.path().to_path_buf(),
        work.path().join("a"),
        deep.clone(),
    ] {
        for e in std::fs::read_dir(&dir).expect("dir") {
            outside.push(e.expect("entry").path());
        }
    }
    outside.sort();
    let mut expected = vec![
        work.path().join("a"),
        work.path().join("in"),
        deep.clone(),
        plain.clone(),
    ];
    expected.sort();
    assert_eq!(outside, expected);
}

/// Bytes that would drive a terminal: ESC and BEL, as in `ESC ] 0 ; … BEL`
/// (which sets the window title, and worse sequences follow the same form).
fn has_terminal_escapes(bytes: &[u8]) -> bool {
    bytes.iter().any(|&b| b == 0x1b || b == 0x07)
}

/// A bundle entry named `ESC ] 0 ; pwned BEL`, listed in the manifest: its
/// path in the error (a `BundleError::Io`: it cannot be read) and a bundle
/// folder of that name whose manifest cannot be read reach the terminal
/// escaped, not as raw control characters.
#[test]
fn decrypt_prints_file_names_from_the_transfer_medium_escaped() {
    const NAME: &str = "\u{1b}]0;pwned\u{7}";
    let work = tempfile::tempdir().expect("tempdir");
    let bundle = work.path().join("bundle");
    std::fs::create_dir(&bundle).expect("bundle");
    let manifest = json!({ "version": 1, "records": [{
        "receipt": NAME, "sha256": "00", "size": 1, "day": "2026-01-01", "recipients": [] }] });
    std::fs::write(bundle.join("MANIFEST.json"), manifest.to_string()).expect("manifest");
    // A folder where the record should be: reading it fails with its path.
    std::fs::create_dir(bundle.join(format!("{NAME}.pgp"))).expect("entry");
    let key = TestKey::Ed25519.secret();
    let out = work.path().join("out");
    let run = |input: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sealform"))
            .args(["decrypt", "--key", path_str(&key), "--out", path_str(&out)])
            .arg(input)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run sealform")
    };
    let done = run(&bundle);
    let text = String::from_utf8_lossy(&done.stdout);
    assert_eq!(done.status.code(), Some(1), "{text}");
    assert!(text.contains("FAILED"), "{text}");
    assert!(text.contains("\\u{1b}]0;pwned\\u{7}"), "{text}");
    assert!(
        !has_terminal_escapes(&done.stdout) && !has_terminal_escapes(&done.stderr),
        "raw escapes printed: {:?} {:?}",
        text,
        String::from_utf8_lossy(&done.stderr)
    );

    // A bundle folder of that name whose manifest is unreadable: the
    // error that ends the run names it.
    let named = work.path().join(NAME);
    std::fs::create_dir_all(named.join("MANIFEST.json")).expect("manifest folder");
    let done = run(&named);
    let err = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(1), "{err}");
    assert!(err.contains("\\u{1b}]0;pwned\\u{7}"), "{err}");
    assert!(
        !has_terminal_escapes(&done.stdout) && !has_terminal_escapes(&done.stderr),
        "raw escapes printed: {err:?}"
    );
}

/// A server that names a record's state `ESC ] 0 ; pwned BEL` (the listing
/// does not parse, and the error quotes the value), and a bundle whose
/// manifest gives a record the digest `ESC ] 0 ; pwned BEL` (the mismatch
/// quotes it): `pull` and `ack` print both escaped.
#[test]
fn pull_and_ack_print_what_a_hostile_server_or_bundle_says_escaped() {
    const EVIL: &str = "\u{1b}]0;pwned\u{7}";
    let (fx, _token) = staff_fixture(&[TestKey::Ed25519], "");
    let work = tempfile::tempdir().expect("tempdir");
    let receipt = "a".repeat(26);
    let listing = json!({ "submissions": [{
        "receipt": receipt, "size": 1, "day": "2026-01-01", "state": EVIL, "recipients": [] }] })
    .to_string();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut conn, _)) = listener.accept() {
            let mut head = [0u8; 4096];
            let _ = conn.read(&mut head);
            let _ = conn.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: \
                     {}\r\nconnection: close\r\n\r\n{listing}",
                    listing.len()
                )
                .as_bytes(),
            );
        }
    });
    let (code, stdout, stderr) = pull(&fx, &format!("http://{addr}"), &work.path().join("b"));
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("pwned"), "{stderr}");
    assert!(!has_terminal_escapes(stderr.as_bytes()), "{stderr:?}");

    let bundle = work.path().join("bundle");
    std::fs::create_dir(&bundle).expect("bundle");
    std::fs::write(bundle.join(format!("{receipt}.pgp")), b"x").expect("record");
    let manifest = json!({ "version": 1, "records": [{
        "receipt": receipt, "sha256": EVIL, "size": 1, "day": "2026-01-01", "recipients": [] }] });
    std::fs::write(bundle.join("MANIFEST.json"), manifest.to_string()).expect("manifest");
    let (code, stdout, stderr) = sealform(&[
        "ack",
        "--all-readers",
        "--url",
        "http://127.0.0.1:9",
        "--token-file",
        path_str(&fx.path().join("token")),
        path_str(&bundle),
    ]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("pwned"), "{stderr}");
    assert!(!has_terminal_escapes(stderr.as_bytes()), "{stderr:?}");
}
