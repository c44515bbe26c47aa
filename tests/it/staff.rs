//! The staff routine end to end: the token-authenticated staff API, `pull`
//! and `export` bundles, offline `decrypt` (with gpg-made and
//! `sealform keygen` keys), `ack`, retention and hostile record contents.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

/// A fixture whose `[staff]` table accepts one fresh token; returns the
/// fixture and the token (also written to `dir/token`). The staff API is
/// on the public listener unless `staff_extra` gives it its own `listen`.
fn staff_fixture(keys: &[TestKey], staff_extra: &str) -> (Fixture, String) {
    let token = sealform::staff_token::mint().to_string();
    let hash = sealform::staff_token::TokenHash::of(&token);
    let placement = if staff_extra.contains("listen =") {
        ""
    } else {
        "on_public_listener = true"
    };
    let fx = Fixture::new(
        keys,
        DEFAULT_FORMS,
        &format!("[staff]\ntokens = [\"{hash}\"]\n{placement}\n{staff_extra}\n"),
    );
    std::fs::write(fx.path().join("token"), format!("{token}\n")).expect("token file");
    (fx, token)
}

fn staff_get(path: &str, token: Option<&str>) -> Request<Body> {
    let mut r = Request::get(path);
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    r.body(Body::empty()).expect("request")
}

/// `n` API submissions (`fields_for(0..n)`) to a real server; their receipts.
fn submit_to(server: &Server, client: &reqwest::blocking::Client, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let res = client
                .post(server.url("/api/v1/forms/tip/submissions"))
                .json(&json!({ "fields": fields_for(i) }))
                .send()
                .expect("submit");
            assert_eq!(res.status().as_u16(), 201);
            let body: Value = res.json().expect("json");
            body["receipt"].as_str().expect("receipt").to_owned()
        })
        .collect()
}

fn fields_for(i: usize) -> Value {
    json!({
        "message": format!("message number {i}: the chief said «no budget»"),
        "contact": format!("signal-contact-{i}"),
        "email": format!("person{i}@example.org"),
        "topic": "schools",
        "publish": i % 2 == 0,
    })
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn run_ok(args: &[&str]) -> String {
    let (code, out, err) = sealform(args);
    assert_eq!(
        code, 0,
        "sealform {args:?} failed\nstdout:\n{out}\nstderr:\n{err}"
    );
    out
}

/// Every record the server's staff API lists (`state=all`).
fn every_record(server: &Server, client: &reqwest::blocking::Client, token: &str) -> Vec<Value> {
    let listing: Value = client
        .get(server.url("/api/v1/staff/submissions?state=all"))
        .bearer_auth(token)
        .send()
        .expect("list")
        .json()
        .expect("json");
    listing["submissions"].as_array().expect("list").clone()
}

/// Runs `sealform ack` on `bundle` against the server's staff API; its
/// stdout.
fn ack_over_http(server: &Server, token_file: &Path, bundle: &Path) -> String {
    let url = server.url("");
    run_ok(&[
        "ack",
        "--all-readers",
        "--url",
        &url,
        "--token-file",
        path_str(token_file),
        path_str(bundle),
    ])
}

/// The receipt folders under a decrypt output.
fn decrypted_dirs(out: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(out)
        .expect("out dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

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

#[tokio::test]
async fn the_staff_api_answers_the_same_401_for_wrong_and_missing_tokens_and_429_after_twenty_failures()
 {
    let (fx, token) = staff_fixture(&[TestKey::Ed25519], "");
    let app = fx.app();
    let bad_requests = [
        staff_get("/api/v1/staff/submissions", None),
        staff_get(
            "/api/v1/staff/submissions",
            Some("sealform_0000000000000000000000000000000000000000000000000000000000000000"),
        ),
        staff_get("/api/v1/staff/submissions", Some("")),
        Request::get("/api/v1/staff/submissions")
            .header("authorization", format!("Basic {token}"))
            .body(Body::empty())
            .expect("request"),
        Request::post(format!("/api/v1/staff/submissions/{}/ack", "a".repeat(26)))
            .body(Body::empty())
            .expect("request"),
    ];
    let mut bodies = Vec::new();
    for req in bad_requests {
        let (res, body) = send(&app, req).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        bodies.push(body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "no hint which");
    let (res, body) = send(&app, staff_get("/api/v1/staff/submissions", Some(&token))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).expect("json")["submissions"],
        json!([])
    );
    // With the token: the record as ciphertext, and clear 4xx for the rest.
    drop(app);
    let receipt = submit(&fx, 1).await.remove(0);
    let app = fx.app();
    let (res, body) = send(
        &app,
        staff_get(
            &format!("/api/v1/staff/submissions/{receipt}"),
            Some(&token),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/pgp-encrypted");
    assert_eq!(body, read(&fx.record(&receipt)));
    assert_eq!(
        res.headers()["x-sealform-sha256"],
        sealform::bundle::sha256_hex(&body).as_str()
    );
    let cases = [
        (
            "/api/v1/staff/submissions?state=bogus",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/staff/submissions/aaaaaaaaaaaaaaaaaaaaaaaaaa",
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/v1/staff/submissions/..%2F..%2Fetc%2Fpasswd",
            StatusCode::NOT_FOUND,
        ),
    ];
    for (path, status) in cases {
        let (res, body) = send(&app, staff_get(path, Some(&token))).await;
        assert_eq!(res.status(), status, "{path}");
        assert!(
            serde_json::from_slice::<Value>(&body).is_ok(),
            "{path}: JSON error"
        );
    }
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let (res, _) = send(&app, staff_get("/api/v1/staff/submissions", Some("wrong"))).await;
        statuses.push(res.status());
    }
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // While limited, wrong tokens keep getting 429 ...
    let (res, body) = send(&app, staff_get("/api/v1/staff/submissions", Some("wrong"))).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).expect("json")["error"]["code"],
        "rate_limited"
    );
    // ... but failing on purpose cannot lock staff out: the right token is
    // checked first (a 256-bit secret compared in constant time).
    let (res, _) = send(&app, staff_get("/api/v1/staff/submissions", Some(&token))).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_disabled_or_separately_served_staff_api_is_not_on_the_public_router() {
    for extra in ["enabled = false", "listen = \"127.0.0.1:0\""] {
        let (fx, token) = staff_fixture(&[TestKey::Ed25519], extra);
        let app = fx.app();
        let (res, body) = send(&app, staff_get("/api/v1/staff/submissions", Some(&token))).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{extra}");
        assert!(String::from_utf8_lossy(&body).contains("not_found"));
    }
}

#[tokio::test]
async fn the_staff_api_is_next_to_the_forms_only_when_the_operator_says_so() {
    let token = sealform::staff_token::mint().to_string();
    let hash = sealform::staff_token::TokenHash::of(&token);
    for (placement, want) in [
        ("", StatusCode::NOT_FOUND),
        ("on_public_listener = false", StatusCode::NOT_FOUND),
        ("on_public_listener = true", StatusCode::OK),
    ] {
        let fx = Fixture::new(
            &[TestKey::Ed25519],
            DEFAULT_FORMS,
            &format!("[staff]\ntokens = [\"{hash}\"]\n{placement}\n"),
        );
        let app = fx.app();
        let (res, _) = send(&app, staff_get("/api/v1/staff/submissions", Some(&token))).await;
        assert_eq!(res.status(), want, "{placement:?}");
        let (_, doc) = send(&app, staff_get("/api/v1/openapi.json", None)).await;
        let doc: Value = serde_json::from_slice(&doc).expect("json");
        assert_eq!(
            doc["paths"]["/api/v1/staff/submissions"].is_object(),
            want == StatusCode::OK,
            "{placement:?}: the document describes what this listener serves"
        );
    }
}

#[tokio::test]
async fn the_openapi_document_names_nothing_of_the_staff_api_where_it_is_not_served() {
    for (staff, served) in [
        ("", false),
        ("listen = \"127.0.0.1:0\"", false),
        ("enabled = false\non_public_listener = true", false),
        ("on_public_listener = true", true),
    ] {
        let fx = Fixture::new(
            &[TestKey::Ed25519],
            DEFAULT_FORMS,
            &format!("[staff]\n{staff}\n"),
        );
        let (res, doc) = send(&fx.app(), staff_get("/api/v1/openapi.json", None)).await;
        assert_eq!(res.status(), StatusCode::OK);
        let text = String::from_utf8_lossy(&doc).to_lowercase();
        assert_eq!(text.contains("staff"), served, "{staff:?}");
        let doc: Value = serde_json::from_slice(&doc).expect("json");
        // Where it is served, every reference in it resolves.
        assert_eq!(
            doc["components"]["securitySchemes"]["staffToken"].is_object(),
            served
        );
        assert_eq!(
            doc["components"]["schemas"]["StaffRecord"].is_object(),
            served
        );
        assert!(doc["components"]["schemas"]["Error"].is_object());
    }
}

#[test]
fn check_says_where_the_staff_api_is_served_and_why() {
    let token = sealform::staff_token::mint().to_string();
    let hash = sealform::staff_token::TokenHash::of(&token);
    let cases = [
        ("", "staff API: not served", true),
        (
            "on_public_listener = true",
            "staff API: next to the forms, on server.listen under /api/v1/staff/ (staff.on_public_listener = true)",
            false,
        ),
        (
            "listen = \"127.0.0.1:8081\"",
            "staff API: on its own address http://127.0.0.1:8081/api/v1/staff/ (staff.listen)",
            false,
        ),
        (
            "enabled = false",
            "staff API: off (staff.enabled = false)",
            false,
        ),
    ];
    for (extra, line, warned) in cases {
        let fx = Fixture::new(
            &[TestKey::Ed25519],
            DEFAULT_FORMS,
            &format!("[staff]\ntokens = [\"{hash}\"]\n{extra}\n"),
        );
        let (code, out, err) = sealform(&["check", "--config", path_str(&fx.config_path())]);
        assert_eq!(code, 0, "{extra}: {out}{err}");
        assert!(out.contains(line), "{extra}: no {line:?} in\n{out}");
        assert_eq!(
            err.contains("staff.tokens are set but the staff API is served nowhere"),
            warned,
            "{extra}: {err}"
        );
    }
    // Both at once is a mistake, refused naming the key.
    let fx = Fixture::new(
        &[TestKey::Ed25519],
        DEFAULT_FORMS,
        "[staff]\nlisten = \"127.0.0.1:8081\"\non_public_listener = true\n",
    );
    let (code, _, err) = sealform(&["check", "--config", path_str(&fx.config_path())]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("staff.on_public_listener"), "{err}");
}

#[test]
fn the_staff_api_can_listen_on_its_own_address() {
    let (fx, token) = staff_fixture(&[TestKey::Ed25519], "listen = \"127.0.0.1:0\"");
    let server = Server::start(&fx);
    let log = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = server.log_text();
            if log.contains("staff API on http://") || Instant::now() > deadline {
                break log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let staff_addr = log
        .split("staff API on http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .expect("staff address in the log")
        .to_owned();
    let client = reqwest::blocking::Client::new();
    let on_staff = client
        .get(format!("http://{staff_addr}/api/v1/staff/submissions"))
        .bearer_auth(&token)
        .send()
        .expect("staff");
    assert_eq!(on_staff.status().as_u16(), 200);
    let on_public = client
        .get(server.url("/api/v1/staff/submissions"))
        .bearer_auth(&token)
        .send()
        .expect("public");
    assert_eq!(on_public.status().as_u16(), 404);
    let forms_on_staff = client
        .get(format!("http://{staff_addr}/api/v1/forms"))
        .send()
        .expect("staff");
    assert_eq!(forms_on_staff.status().as_u16(), 404);
    // A wrong method is a JSON error there too, as on the public listener.
    let wrong_method = client
        .get(format!(
            "http://{staff_addr}/api/v1/staff/submissions/{}/ack",
            "A".repeat(26)
        ))
        .bearer_auth(&token)
        .send()
        .expect("staff");
    assert_eq!(wrong_method.status().as_u16(), 405);
    let body: Value = wrong_method.json().expect("a JSON error");
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
}

/// Submits `n` records through the in-process app; returns their receipts.
/// Acknowledges one record through the in-process staff API (the app is
/// dropped again, releasing the index for a CLI command).
async fn ack_through_the_api(fx: &Fixture, token: &str, receipt: &str) {
    let app = fx.app();
    let (res, _) = send(
        &app,
        Request::post(format!("/api/v1/staff/submissions/{receipt}/ack"))
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
}

async fn submit(fx: &Fixture, n: usize) -> Vec<String> {
    let app = fx.app();
    let mut receipts = Vec::new();
    for i in 0..n {
        let (res, body) = send(&app, api_post("tip", &json!({ "fields": fields_for(i) }))).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let v: Value = serde_json::from_slice(&body).expect("json");
        receipts.push(v["receipt"].as_str().expect("receipt").to_owned());
    }
    receipts
}

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

#[tokio::test]
async fn purge_with_acked_days_zero_removes_acknowledged_records_only() {
    let (fx, token) = staff_fixture(&[TestKey::Ed25519], "[retention]\nacked_days = 0\n");
    let receipts = submit(&fx, 3).await;
    ack_through_the_api(&fx, &token, &receipts[0]).await;
    assert_eq!(fx.records().len(), 2);
    let out = run_ok(&["purge", "--config", path_str(&fx.config_path())]);
    assert!(
        out.contains("purged 1 acknowledged and 0 unacknowledged"),
        "{out}"
    );
    let out = run_ok(&["purge", "--config", path_str(&fx.config_path())]);
    assert!(
        out.contains("purged 0 acknowledged and 0 unacknowledged"),
        "{out}"
    );
    let app = fx.app();
    let (_, body) = send(
        &app,
        staff_get("/api/v1/staff/submissions?state=all", Some(&token)),
    )
    .await;
    let listing: Value = serde_json::from_slice(&body).expect("json");
    let mut left: Vec<&str> = listing["submissions"]
        .as_array()
        .expect("list")
        .iter()
        .map(|i| i["receipt"].as_str().expect("receipt"))
        .collect();
    left.sort();
    let mut want = vec![receipts[1].as_str(), receipts[2].as_str()];
    want.sort();
    assert_eq!(left, want);
    assert_eq!(fx.records().len(), 2, "unacknowledged records survive");
}

/// Every path under `root`, `root` included, with its access and
/// modification times (seconds, nanoseconds). Directories are listed with
/// `O_NOATIME`: a plain listing is a read, which would move the access time
/// this looks at.
fn times_under(root: &Path) -> Vec<(PathBuf, [(i64, i64); 2])> {
    use rustix::fs::{Dir, Mode, OFlags};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let m = std::fs::symlink_metadata(&p).expect("stat");
        out.push((
            p.clone(),
            [(m.atime(), m.atime_nsec()), (m.mtime(), m.mtime_nsec())],
        ));
        if m.is_dir() {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOATIME | OFlags::CLOEXEC;
            let fd = rustix::fs::open(&p, flags, Mode::empty()).expect("open dir");
            for e in Dir::read_from(&fd).expect("list") {
                let name = e.expect("entry").file_name().to_bytes().to_vec();
                if name != b"." && name != b".." {
                    todo.push(p.join(std::ffi::OsStr::from_bytes(&name)));
                }
            }
        }
    }
    out
}

/// Asserts that every access and modification time under `root` is 00:00
/// UTC of a day.
fn assert_only_days_under(root: &Path, when: &str) {
    let times = times_under(root);
    assert!(times.len() > 8, "{times:?}");
    let finer: Vec<_> = times
        .iter()
        .filter(|(_, t)| t.iter().any(|&(s, ns)| s % 86_400 != 0 || ns != 0))
        .collect();
    assert!(
        finer.is_empty(),
        "{when}: times finer than the day: {finer:#?}"
    );
}

#[test]
fn after_ack_and_purge_data_dir_holds_only_days_and_no_byte_of_a_purged_receipt() {
    let (fx, token) = staff_fixture(&[TestKey::Ed25519], "[retention]\nacked_days = 0\n");
    let server = Server::start(&fx);
    let client = reqwest::blocking::Client::new();
    let receipts = submit_to(&server, &client, 6);
    let (purged, kept) = receipts.split_at(3);
    // A download reads a spool file: that must not move its access time.
    let res = client
        .get(server.url(&format!("/api/v1/staff/submissions/{}", kept[0])))
        .bearer_auth(&token)
        .send()
        .expect("download");
    assert_eq!(res.status().as_u16(), 200);
    assert!(!res.bytes().expect("body").is_empty());
    for r in purged {
        let res = client
            .post(server.url(&format!("/api/v1/staff/submissions/{r}/ack")))
            .bearer_auth(&token)
            .send()
            .expect("ack");
        assert_eq!(res.status().as_u16(), 200);
    }
    assert_only_days_under(&fx.data_dir(), "after commits and acks, serve running");
    assert!(server.terminate().success());
    assert_only_days_under(&fx.data_dir(), "after serve stopped");
    let out = run_ok(&["purge", "--config", path_str(&fx.config_path())]);
    assert!(
        out.contains("purged 3 acknowledged and 0 unacknowledged"),
        "{out}"
    );
    assert_only_days_under(&fx.data_dir(), "after purge");

    // Every encoding of a receipt the store uses: its text (file names),
    // upper case, and its 16 bytes (the index's key).
    let encodings = |r: &str| -> Vec<Vec<u8>> {
        let raw = data_encoding::BASE32_NOPAD
            .decode(r.to_ascii_uppercase().as_bytes())
            .expect("base32");
        vec![
            r.as_bytes().to_vec(),
            r.to_ascii_uppercase().into_bytes(),
            raw,
        ]
    };
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let stored = fx.all_stored_bytes();
    for r in purged {
        for needle in encodings(r) {
            for (path, bytes) in &stored {
                assert!(
                    !contains(bytes, &needle),
                    "{} holds a purged receipt",
                    path.display()
                );
            }
        }
    }
    // The search can find what is there: each kept receipt's key is in the
    // index.
    for r in kept {
        let key = encodings(r).pop().expect("raw");
        assert!(
            stored
                .iter()
                .any(|(p, b)| p.starts_with(fx.data_dir().join("index")) && contains(b, &key)),
            "a kept receipt is not in the index"
        );
    }
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

/// `sealform pull` from `url` into `bundle` with the fixture's token and
/// `extra` arguments, ready to run.
fn pull_command(fx: &Fixture, url: &str, bundle: &Path, extra: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sealform"));
    cmd.args(["pull", "--url", url, "--token-file"])
        .arg(fx.path().join("token"))
        .arg("--out")
        .arg(bundle)
        .args(extra);
    cmd
}

/// Runs `cmd`: its exit code, stdout and stderr.
fn outcome(cmd: &mut std::process::Command) -> (Option<i32>, String, String) {
    let out = cmd.output().expect("run sealform");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `sealform pull` from `url` into `bundle` with the fixture's token.
fn pull(fx: &Fixture, url: &str, bundle: &Path) -> (Option<i32>, String, String) {
    outcome(&mut pull_command(fx, url, bundle, &[]))
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

#[tokio::test]
async fn serve_applies_retention_when_it_starts() {
    let (fx, token) = staff_fixture(&[TestKey::Ed25519], "[retention]\nacked_days = 0\n");
    let receipts = submit(&fx, 2).await;
    ack_through_the_api(&fx, &token, &receipts[0]).await;
    let server = Server::start(&fx);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log_text().contains("retention applied") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let listing: Value = reqwest::Client::new()
        .get(server.url("/api/v1/staff/submissions?state=all"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let left: Vec<&str> = listing["submissions"]
        .as_array()
        .expect("list")
        .iter()
        .map(|i| i["receipt"].as_str().expect("receipt"))
        .collect();
    assert_eq!(left, vec![receipts[1].as_str()]);
    assert!(
        server.log_text().contains("acked=1 unacked=0"),
        "{}",
        server.log_text()
    );
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

#[tokio::test]
async fn a_route_parameter_that_is_not_utf8_is_a_404_in_the_routes_own_format() {
    let (fx, token) = staff_fixture(&[TestKey::Ed25519], "");
    let app = fx.app();
    let cases = [
        ("GET", "/forms/%FF", false),
        ("POST", "/forms/t%C3%28ip", false),
        ("GET", "/keys/%FF.asc", false),
        ("POST", "/api/v1/forms/%FF/submissions", true),
        ("GET", "/api/v1/staff/submissions/%FF", true),
        ("POST", "/api/v1/staff/submissions/%FF%FE/ack", true),
    ];
    for (method, path, json) in cases {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .expect("request");
        let (res, body) = send(&app, req).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{method} {path}");
        if json {
            let v: Value = serde_json::from_slice(&body).expect("an API error is JSON");
            assert_eq!(v["error"]["code"], "not_found", "{method} {path}");
        } else {
            assert!(body.starts_with(b"<!DOCTYPE html>"), "{method} {path}");
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

/// The default forms plus `leak`, a copy of `tip` under another id.
fn two_forms() -> String {
    format!(
        "{DEFAULT_FORMS}\n{}",
        DEFAULT_FORMS.replace("id = \"tip\"", "id = \"leak\"")
    )
}

/// A fresh token and its config hash.
fn token_and_hash() -> (String, String) {
    let token = sealform::staff_token::mint().to_string();
    let hash = sealform::staff_token::TokenHash::of(&token).to_string();
    (token, hash)
}

#[tokio::test]
async fn the_index_keeps_no_form_id_unless_a_token_is_limited_to_some_forms() {
    for (tokens, kept) in [
        // A bare hash and a table without `forms`: every form, so no form id.
        (
            "[\"{full}\", { hash = \"{other}\", can = [\"list\"] }]",
            false,
        ),
        (
            "[\"{full}\", { hash = \"{other}\", can = [\"list\"], forms = [\"leak\"] }]",
            true,
        ),
    ] {
        let (full, full_hash) = token_and_hash();
        let (_, other_hash) = token_and_hash();
        let tokens = tokens
            .replace("{full}", &full_hash)
            .replace("{other}", &other_hash);
        let fx = Fixture::new(
            &[TestKey::Ed25519],
            &two_forms(),
            &format!("[staff]\non_public_listener = true\ntokens = {tokens}\n"),
        );
        let app = fx.app();
        let (res, body) = send(&app, api_post("tip", &json!({"fields": {"message": "x"}}))).await;
        let receipt = created(&res, &body);
        let (res, body) = send(
            &app,
            staff_get("/api/v1/staff/submissions?state=all", Some(&full)),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
        let listing: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(listing["submissions"][0]["receipt"], receipt.as_str());
        let form = &listing["submissions"][0]["form"];
        assert_eq!(form == "tip", kept, "{tokens}: {listing}");
        assert_eq!(form.is_null(), !kept, "{tokens}: {listing}");
        drop(app);
        let index_says_tip = fx
            .all_stored_bytes()
            .iter()
            .any(|(_, bytes)| bytes.windows(5).any(|w| w == b"\"tip\""));
        assert_eq!(index_says_tip, kept, "{tokens}");
    }
}

#[tokio::test]
async fn a_token_scoped_to_one_form_and_to_list_and_download_gets_403_on_ack_and_on_the_other_forms_records()
 {
    let (scoped, scoped_hash) = token_and_hash();
    let (acker, acker_hash) = token_and_hash();
    let (full, full_hash) = token_and_hash();
    let fx = Fixture::new(
        &[TestKey::Ed25519],
        &two_forms(),
        &format!(
            "[staff]\non_public_listener = true\ntokens = [\n  {{ hash = \"{scoped_hash}\", can = [\"list\", \"download\"], \
             forms = [\"tip\"] }},\n  {{ hash = \"{acker_hash}\", can = [\"ack\"] }},\n  \
             \"{full_hash}\",\n]\n"
        ),
    );
    let app = fx.app();
    let mut receipts = Vec::new();
    for form in ["tip", "leak"] {
        let (res, body) = send(&app, api_post(form, &json!({"fields": {"message": "x"}}))).await;
        receipts.push(created(&res, &body));
    }
    let (tip, leak) = (&receipts[0], &receipts[1]);
    let listing = |token: &str| {
        let app = app.clone();
        let token = token.to_owned();
        async move {
            let (res, body) = send(
                &app,
                staff_get("/api/v1/staff/submissions?state=all", Some(&token)),
            )
            .await;
            (
                res.status(),
                serde_json::from_slice::<Value>(&body).expect("json"),
            )
        }
    };
    let post = |path: String, token: &str| {
        Request::post(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request")
    };

    // The scoped token lists and downloads its form's records only.
    let (status, body) = listing(&scoped).await;
    assert_eq!(status, StatusCode::OK);
    let items = body["submissions"].as_array().expect("list");
    assert_eq!(items.len(), 1, "{body}");
    assert_eq!(items[0]["receipt"], tip.as_str());
    assert_eq!(items[0]["form"], "tip");
    let (res, body) = send(
        &app,
        staff_get(&format!("/api/v1/staff/submissions/{tip}"), Some(&scoped)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body, read(&fx.record(tip)));
    let (res, _) = send(
        &app,
        post(format!("/api/v1/staff/submissions/{tip}/exported"), &scoped),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    // 403 for the other form's record, and for acknowledging at all.
    let forbidden = [
        staff_get(&format!("/api/v1/staff/submissions/{leak}"), Some(&scoped)),
        post(
            format!("/api/v1/staff/submissions/{leak}/exported"),
            &scoped,
        ),
        post(format!("/api/v1/staff/submissions/{leak}/ack"), &scoped),
        post(format!("/api/v1/staff/submissions/{tip}/ack"), &scoped),
        staff_get("/api/v1/staff/submissions", Some(&acker)),
        staff_get(&format!("/api/v1/staff/submissions/{tip}"), Some(&acker)),
    ];
    for req in forbidden {
        let what = format!("{} {}", req.method(), req.uri());
        let (res, body) = send(&app, req).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{what}");
        let body: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["error"]["code"], "forbidden", "{what}: {body}");
    }
    assert_eq!(fx.records().len(), 2, "nothing was acknowledged");

    // A bare hash may do everything for every form, and so may a table
    // without forms for what it names.
    let (status, body) = listing(&full).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["submissions"].as_array().expect("list").len(), 2);
    let (res, _) = send(
        &app,
        post(format!("/api/v1/staff/submissions/{leak}/ack"), &acker),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let (res, _) = send(
        &app,
        post(format!("/api/v1/staff/submissions/{tip}/ack"), &full),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(fx.records().is_empty());
}

#[tokio::test]
async fn a_record_of_a_form_the_token_does_not_reach_is_answered_like_no_record() {
    let (scoped, scoped_hash) = token_and_hash();
    let fx = Fixture::new(
        &[TestKey::Ed25519],
        &two_forms(),
        &format!(
            "[staff]\non_public_listener = true\ntokens = [\n  {{ hash = \"{scoped_hash}\", can = \
             [\"list\", \"download\", \"ack\"], forms = [\"tip\"] }},\n]\n"
        ),
    );
    let app = fx.app();
    let (res, body) = send(&app, api_post("leak", &json!({"fields": {"message": "x"}}))).await;
    let leak = created(&res, &body);
    // A receipt that was never handed out.
    let none = "a".repeat(26);
    assert_ne!(leak, none);
    let answers = |receipt: String| {
        let app = app.clone();
        let token = scoped.clone();
        async move {
            let mut seen = Vec::new();
            for (method, path) in [
                ("GET", format!("/api/v1/staff/submissions/{receipt}")),
                (
                    "POST",
                    format!("/api/v1/staff/submissions/{receipt}/exported"),
                ),
                ("POST", format!("/api/v1/staff/submissions/{receipt}/ack")),
            ] {
                let req = Request::builder()
                    .method(method)
                    .uri(&path)
                    .header("authorization", format!("Bearer {token}"))
                    .body(Body::empty())
                    .expect("request");
                let (res, body) = send(&app, req).await;
                seen.push((method, res.status(), body));
            }
            seen
        }
    };
    // The token for "tip" cannot tell the "leak" record from no record:
    // both are 403 with the same body on every route.
    let of_leak = answers(leak.clone()).await;
    let of_none = answers(none).await;
    assert_eq!(of_leak, of_none);
    for (method, status, _) in &of_leak {
        assert_eq!(*status, StatusCode::FORBIDDEN, "{method}");
    }
    assert_eq!(
        fx.records(),
        vec![fx.record(&leak)],
        "nothing was acknowledged"
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

/// Every directory under `root` (itself included) is 0700 and every file
/// 0600, where `files` says which files to check.
fn assert_private_tree(root: &Path, files: impl Fn(&Path) -> bool) {
    use std::os::unix::fs::PermissionsExt;
    let mut checked = 0;
    for entry in walkdir::WalkDir::new(root) {
        let entry = entry.expect("walk");
        let mode = entry.metadata().expect("metadata").permissions().mode() & 0o777;
        if entry.file_type().is_dir() {
            assert_eq!(mode, 0o700, "{}", entry.path().display());
        } else if files(entry.path()) {
            assert_eq!(mode, 0o600, "{}", entry.path().display());
            checked += 1;
        }
    }
    assert!(checked > 0, "no file checked under {}", root.display());
}

#[test]
fn spool_bundle_and_decrypted_records_are_readable_by_their_owner_only() {
    let (fx, _token) = staff_fixture(&[TestKey::Ed25519], "");
    let server = Server::start(&fx);
    let client = reqwest::blocking::Client::new();
    submit_to(&server, &client, 3);
    let work = tempfile::tempdir().expect("tempdir");
    let bundle = work.path().join("bundle");
    run_ok(&[
        "pull",
        "--url",
        &server.url(""),
        "--token-file",
        path_str(&fx.path().join("token")),
        "--out",
        path_str(&bundle),
    ]);
    let plain = work.path().join("plain");
    run_ok(&[
        "decrypt",
        "--key",
        path_str(&TestKey::Ed25519.secret()),
        "--out",
        path_str(&plain),
        "--csv",
        path_str(&bundle),
    ]);
    drop(server);

    // sled's own files are its business; the directory around them is ours.
    let data = fx.data_dir();
    assert_private_tree(&data.join("spool"), |_| true);
    for dir in [&data, &data.join("index")] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir).expect("metadata").permissions(),
        );
        assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
    }
    assert_private_tree(&bundle, |_| true);
    assert_private_tree(&plain, |_| true);
}
