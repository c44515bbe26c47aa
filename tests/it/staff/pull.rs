//! `sealform pull` against a real server: the whole routine (pull, decrypt,
//! ack), resuming a killed pull, proxies and relays that tamper, records
//! the server refuses and URLs or listings it will not follow.

use super::*;

#[test]
fn twenty_records_pulled_from_a_real_server_decrypt_with_every_value_and_ack_empties_the_spool() {
    let (fx, token) = staff_fixture(&[TestKey::Ed25519, TestKey::Rsa], "");
    let server = Server::start(&fx);
    let client = reqwest::blocking::Client::new();
    let receipts = submit_to(&server, &client, 20);
    // The listing shows only days, never a finer time.
    let listing: Value = client
        .get(server.url("/api/v1/staff/submissions?state=new"))
        .bearer_auth(&token)
        .send()
        .expect("list")
        .json()
        .expect("json");
    let items = listing["submissions"].as_array().expect("list");
    assert_eq!(items.len(), 20);
    for item in items {
        let day = item["day"].as_str().expect("day");
        assert_eq!(day.len(), 10, "{item}");
        assert_eq!(item["state"], "new");
    }

    let work = tempfile::tempdir().expect("tempdir");
    let bundle = work.path().join("bundle");
    let token_file = fx.path().join("token");
    let out = run_ok(&[
        "pull",
        "--url",
        &server.url(""),
        "--token-file",
        path_str(&token_file),
        "--out",
        path_str(&bundle),
    ]);
    assert!(out.contains("20 fetched"), "{out}");
    let manifest: Value =
        serde_json::from_slice(&read(&bundle.join("MANIFEST.json"))).expect("manifest");
    assert_eq!(manifest["records"].as_array().expect("records").len(), 20);
    for r in manifest["records"].as_array().expect("records") {
        assert!(
            r["recipients"]
                .as_array()
                .expect("recipients")
                .contains(&json!(TestKey::Ed25519.fingerprint()))
        );
    }
    // A second pull finds nothing new.
    let out = run_ok(&[
        "pull",
        "--url",
        &server.url(""),
        "--token-file",
        path_str(&token_file),
        "--out",
        path_str(&bundle),
    ]);
    assert!(out.contains("0 fetched"), "{out}");

    let plain = work.path().join("plain");
    let out = run_ok(&[
        "decrypt",
        "--key",
        path_str(&TestKey::Ed25519.secret()),
        "--out",
        path_str(&plain),
        "--csv",
        path_str(&bundle),
    ]);
    assert!(out.contains("decrypted 20, skipped 0, failed 0"), "{out}");
    let csv = String::from_utf8(read(&plain.join("tip.csv"))).expect("csv");
    assert_eq!(csv.lines().count(), 21, "{csv}");
    assert!(csv.starts_with("receipt,received_at,message,contact,email,topic,publish\r\n"));
    for (i, receipt) in receipts.iter().enumerate() {
        let dir = plain.join(receipt);
        let text = String::from_utf8(read(&dir.join("message.txt"))).expect("utf-8");
        let fields: Value = serde_json::from_slice(&read(&dir.join("fields.json"))).expect("json");
        assert!(read(&dir.join("message.eml")).starts_with(b"Date: "));
        assert_eq!(fields["receipt"], receipt.as_str());
        for (name, value) in fields_for(i).as_object().expect("object") {
            assert_eq!(&fields["fields"][name], value, "{name}");
            let shown = match value {
                Value::Bool(true) => "yes".to_owned(),
                Value::Bool(false) => "no".to_owned(),
                v => v.as_str().expect("string").to_owned(),
            };
            assert!(text.contains(&shown), "{name} missing from message.txt");
            assert!(csv.contains(&shown), "{name} missing from the CSV");
        }
        let row = csv
            .lines()
            .find(|l| l.starts_with(receipt.as_str()))
            .expect("row");
        assert!(row.contains(&format!("signal-contact-{i},person{i}@example.org,schools")));
    }

    let out = ack_over_http(&server, &token_file, &bundle);
    assert!(out.contains("20 acknowledged, 0 refused"), "{out}");
    assert!(fx.records().is_empty(), "the spool is empty");
    let items = every_record(&server, &client, &token);
    assert_eq!(items.len(), 20);
    assert!(items.iter().all(|i| i["state"] == "acked"), "{listing}");
    // The log never names a receipt or the token.
    let log = server.log_text();
    assert!(!log.contains(&token));
    assert!(receipts.iter().all(|r| !log.contains(r.as_str())));
    assert!(server.terminate().success());
}

#[test]
fn a_pull_killed_mid_download_and_run_again_yields_a_complete_verified_bundle() {
    let (fx, token) = staff_fixture(&[TestKey::Ed25519], "");
    let server = Server::start(&fx);
    let client = reqwest::blocking::Client::new();
    submit_to(&server, &client, 20);
    let work = tempfile::tempdir().expect("tempdir");
    let bundle = work.path().join("bundle");
    let token_file = fx.path().join("token");
    let pull_args = [
        "pull",
        "--url",
        &server.url(""),
        "--token-file",
        path_str(&token_file),
        "--out",
        path_str(&bundle),
    ];
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sealform"))
        .args(pull_args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn pull");
    let deadline = Instant::now() + Duration::from_secs(30);
    let has_a_record = |dir: &Path| {
        std::fs::read_dir(dir).is_ok_and(|rd| {
            rd.flatten().any(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.ends_with(".pgp") && !n.starts_with('.')
            })
        })
    };
    while !has_a_record(&bundle) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().expect("kill");
    child.wait().expect("wait");
    // Whatever the killed run left under a final name is complete.
    for e in std::fs::read_dir(&bundle).expect("bundle") {
        let p = e.expect("entry").path();
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_owned();
        if let Some(receipt) = name.strip_suffix(".pgp").filter(|_| !name.starts_with('.')) {
            assert_eq!(read(&p), read(&fx.record(receipt)), "{name} is complete");
        }
    }
    // And a kill in the middle of writing a file leaves only a hidden
    // `.part` file, which the next run removes.
    let any = fx.records()[0].clone();
    let stem = any.file_stem().and_then(|s| s.to_str()).expect("stem");
    std::fs::write(bundle.join(format!(".{stem}.pgp.part")), &read(&any)[..100]).expect("part");
    let out = run_ok(&pull_args);
    assert!(out.contains("0 failed"), "{out}");
    let manifest: Value =
        serde_json::from_slice(&read(&bundle.join("MANIFEST.json"))).expect("manifest");
    let records = manifest["records"].as_array().expect("records");
    assert_eq!(records.len(), 20);
    let mut files: Vec<String> = std::fs::read_dir(&bundle)
        .expect("bundle")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        21,
        "20 records and the manifest, nothing else: {files:?}"
    );
    for r in records {
        let receipt = r["receipt"].as_str().expect("receipt");
        let bytes = read(&bundle.join(format!("{receipt}.pgp")));
        assert_eq!(bytes, read(&fx.record(receipt)));
        assert_eq!(r["sha256"], sealform::bundle::sha256_hex(&bytes));
    }
    let listing: Value = client
        .get(server.url("/api/v1/staff/submissions?state=exported"))
        .bearer_auth(&token)
        .send()
        .expect("list")
        .json()
        .expect("json");
    assert_eq!(listing["submissions"].as_array().expect("list").len(), 20);
}

/// What a test relay does to the traffic it carries.
#[derive(Clone, Default)]
struct Relaying {
    /// Drop the `x-sealform-sha256` header from every answer, as a careless
    /// proxy might.
    drop_digest: bool,
    /// Answer 409 itself, without forwarding, to requests whose request line
    /// contains this (as the server does for a record another staff member
    /// acknowledged meanwhile).
    refuse: Option<String>,
    /// Stop listening after this many connections: the server goes away.
    connections: Option<usize>,
    /// Send half of each record's body, then nothing more (a stalled
    /// link).
    stall_records: bool,
}

/// A relay on loopback in front of `upstream`, doing what `how` says. One
/// request per connection (it asks the server to close).
fn relay(upstream: String, how: Relaying) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        let mut listener = Some(listener);
        let mut left = how.connections.unwrap_or(usize::MAX);
        while let Some(l) = &listener {
            let Ok((mut client, _)) = l.accept() else {
                break;
            };
            left -= 1;
            if left == 0 {
                // Closed before the last connection is served, so the
                // client's next connection is refused, never left waiting.
                listener = None;
            }
            let mut reader = BufReader::new(client.try_clone().expect("clone"));
            let mut head = String::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().expect("length");
                }
                if !lower.starts_with("connection:") {
                    head.push_str(&line);
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).expect("body");
            let request_line = head.lines().next().unwrap_or("");
            if how
                .refuse
                .as_deref()
                .is_some_and(|r| request_line.contains(r))
            {
                let _ = client.write_all(
                    b"HTTP/1.1 409 Conflict\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                continue;
            }
            let mut server = std::net::TcpStream::connect(&upstream).expect("upstream");
            server
                .write_all(format!("{head}connection: close\r\n\r\n").as_bytes())
                .expect("forward");
            server.write_all(&body).expect("forward body");
            let mut answer = Vec::new();
            server.read_to_end(&mut answer).expect("answer");
            let split = answer
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("head")
                + 4;
            let head = String::from_utf8_lossy(&answer[..split]).into_owned();
            let kept: String = head
                .split_inclusive("\r\n")
                .filter(|l| {
                    !(how.drop_digest && l.to_ascii_lowercase().starts_with("x-sealform-sha256:"))
                })
                .collect();
            let _ = client.write_all(kept.as_bytes());
            let body = &answer[split..];
            if how.stall_records && request_line.starts_with("GET /api/v1/staff/submissions/") {
                let _ = client.write_all(&body[..body.len() / 2]);
                std::thread::sleep(Duration::from_secs(30));
                continue;
            }
            let _ = client.write_all(body);
        }
    });
    format!("http://{addr}")
}

#[test]
fn pull_ignores_proxy_settings_and_does_not_acknowledge_what_the_server_gave_no_digest_for() {
    let (fx, _token) = staff_fixture(&[TestKey::Ed25519], "");
    let server = Server::start(&fx);
    let client = reqwest::blocking::Client::new();
    submit_to(&server, &client, 3);
    let relay = relay(
        server.addr.clone(),
        Relaying {
            drop_digest: true,
            ..Relaying::default()
        },
    );
    let work = tempfile::tempdir().expect("tempdir");
    let bundle = work.path().join("bundle");
    let token_file = fx.path().join("token");
    // A proxy in the environment that does not answer: the token and the
    // records must go only where --url says.
    let dead_proxy = "http://127.0.0.1:9";
    let (code, stdout, stderr) = outcome(
        pull_command(
            &fx,
            &relay,
            &bundle,
            &["--ack-after-verify", "--all-readers"],
        )
        .envs([
            ("http_proxy", dead_proxy),
            ("HTTP_PROXY", dead_proxy),
            ("all_proxy", dead_proxy),
            ("ALL_PROXY", dead_proxy),
        ])
        .env_remove("NO_PROXY")
        .env_remove("no_proxy"),
    );
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("3 fetched, 0 already in the bundle, 0 acknowledged, 3 failed"),
        "{stdout}{stderr}"
    );
    assert!(
        stderr.contains("not acknowledged: the bundle does not record that its copy was checked"),
        "{stderr}"
    );
    assert_eq!(fx.records().len(), 3, "nothing is deleted on the server");
    // Pulled again (all of them: they are marked exported now), straight
    // from the server: the copies are already in the bundle, but were never
    // checked against the server's digest, so they are still not
    // acknowledged.
    let again = ["--all", "--ack-after-verify", "--all-readers"];
    let (code, stdout, stderr) = outcome(&mut pull_command(&fx, &server.url(""), &bundle, &again));
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("0 fetched, 3 already in the bundle, 0 acknowledged, 3 failed"),
        "{stdout}{stderr}"
    );
    assert_eq!(fx.records().len(), 3, "nothing is deleted on the server");
    // The copies themselves are fine: `ack` checks them against the
    // manifest and acknowledges them.
    let out = ack_over_http(&server, &token_file, &bundle);
    assert!(out.contains("3 acknowledged, 0 refused"), "{out}");
    assert!(fx.records().is_empty());
}

#[test]
fn pull_goes_on_past_a_record_the_server_refuses_and_stops_when_the_server_goes_away() {
    let (fx, token) = staff_fixture(&[TestKey::Ed25519], "");
    let server = Server::start(&fx);
    let client = reqwest::blocking::Client::new();
    let receipts = submit_to(&server, &client, 3);
    let work = tempfile::tempdir().expect("tempdir");
    // The server refuses to mark the second record exported: the others
    // are still marked.
    let refusing = relay(
        server.addr.clone(),
        Relaying {
            refuse: Some(format!("{}/exported", receipts[1])),
            ..Relaying::default()
        },
    );
    let (code, stdout, stderr) = pull(&fx, &refusing, &work.path().join("b1"));
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("3 fetched, 0 already in the bundle, 0 acknowledged, 1 failed"),
        "{stdout}{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}: not marked exported", receipts[1])),
        "{stderr}"
    );
    let items = every_record(&server, &client, &token);
    let exported = |r: &String| {
        items
            .iter()
            .any(|i| i["receipt"] == r.as_str() && i["state"] == "exported")
    };
    let marked: Vec<bool> = receipts.iter().map(exported).collect();
    assert_eq!(marked, [true, false, true]);

    // The server goes away after the listing and one record: the run stops
    // at once (rather than waiting on each record in turn), with the one
    // record it wrote listed in the manifest.
    submit_to(&server, &client, 2);
    let vanishing = relay(
        server.addr.clone(),
        Relaying {
            connections: Some(2),
            ..Relaying::default()
        },
    );
    let bundle = work.path().join("b2");
    let (code, stdout, stderr) = pull(&fx, &vanishing, &bundle);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("the connection to the staff API failed (")
            && stderr
                .contains("1 fetched, 0 already in the bundle, 0 acknowledged, 0 failed so far")
            && stderr.contains("run the same command again"),
        "{stderr}"
    );
    let manifest: Value =
        serde_json::from_slice(&read(&bundle.join("MANIFEST.json"))).expect("manifest");
    assert_eq!(manifest["records"].as_array().expect("records").len(), 1);
    // Run again against the server itself: the rest arrive.
    let (code, stdout, stderr) = pull(&fx, &server.url(""), &bundle);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("2 fetched, 1 already in the bundle, 0 acknowledged, 0 failed"),
        "{stdout}{stderr}"
    );

    // `ack` stops too when the server goes away.
    let vanishing = relay(
        server.addr.clone(),
        Relaying {
            connections: Some(1),
            ..Relaying::default()
        },
    );
    let token_file = fx.path().join("token");
    let (code, stdout, stderr) = outcome(
        std::process::Command::new(env!("CARGO_BIN_EXE_sealform"))
            .args(["ack", "--all-readers", "--url", &vanishing, "--token-file"])
            .args([&token_file, &bundle]),
    );
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("the connection to the staff API failed after 1 acknowledged, 0 refused"),
        "{stderr}"
    );
    // Records checked against the server's digest when an earlier run wrote
    // them are acknowledged by a later --ack-after-verify run; so are the
    // two this bundle lacked (exported to b1 already, hence --all).
    let again = ["--all", "--ack-after-verify", "--all-readers"];
    let (code, stdout, stderr) = outcome(&mut pull_command(&fx, &server.url(""), &bundle, &again));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("2 fetched, 2 already in the bundle, 4 acknowledged, 0 failed"),
        "{stdout}{stderr}"
    );
    assert!(fx.records().is_empty());

    // A record whose bytes stop coming ends the run after --stall-secs,
    // leaving no partial file.
    submit_to(&server, &client, 1);
    let stalling = relay(
        server.addr.clone(),
        Relaying {
            stall_records: true,
            ..Relaying::default()
        },
    );
    let stalled = work.path().join("b3");
    let started = Instant::now();
    let (code, stdout, stderr) = outcome(&mut pull_command(
        &fx,
        &stalling,
        &stalled,
        &["--stall-secs", "1"],
    ));
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("the connection to the staff API failed (")
            && stderr
                .contains("0 fetched, 0 already in the bundle, 0 acknowledged, 0 failed so far"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "stopped by the stall time, not by the relay giving up"
    );
    let left: Vec<_> = std::fs::read_dir(&stalled)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, ["MANIFEST.json"], "no partial file is left");
}

#[test]
fn pull_refuses_a_url_that_is_not_http_and_a_listing_without_end() {
    let (fx, _token) = staff_fixture(&[TestKey::Ed25519], "");
    let work = tempfile::tempdir().expect("tempdir");
    let bundle = work.path().join("bundle");
    let (code, _, stderr) = pull(&fx, "https://127.0.0.1:9", &bundle);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("--url must start with http://"), "{stderr}");
    // Something that is not a sealform server answers with an endless
    // listing: it is cut off at 64 MiB, not read into memory.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut conn, _)) = listener.accept() {
            let mut head = [0u8; 4096];
            let _ = conn.read(&mut head);
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n");
            let chunk = vec![b' '; 1 << 20];
            while conn.write_all(&chunk).is_ok() {}
        }
    });
    let (code, stdout, stderr) = pull(&fx, &format!("http://{addr}"), &bundle);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("the listing is larger than 67108864 bytes"),
        "{stderr}"
    );
}
