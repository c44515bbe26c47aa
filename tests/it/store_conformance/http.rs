//! The real `sealform serve` with `[store] backend = "postgres"` on a real
//! PostgreSQL: JSON, form and upload submissions, `pull` and `decrypt` (the
//! records decrypt, the upload byte-identical), `ack`; and a database that
//! goes away: 503, never 500 nor a hang, and the node recovers by itself.

use std::io::Read;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::pg::Postgres;
use crate::staff::{ack_over_http, every_record as listing, path_str as s, run_ok};
use crate::support::*;

const BOUNDARY: &str = "sealform-pg-test-b0undary";

/// One form with text fields and a file.
const FORMS: &str = r#"
[[forms]]
id = "tip"
title = "Send a tip"
max_file_bytes = 16777216
max_total_bytes = 16777216

  [[forms.fields]]
  name = "message"
  label = "Message"
  kind = "textarea"
  required = true
  max_len = 5000

  [[forms.fields]]
  name = "file"
  label = "File"
  kind = "file"
"#;

/// A fixture on `pg` with a staff token (in `dir/token`); the token.
pub fn pg_fixture(pg: &Postgres, forms: &str, server_extra: &str) -> (Fixture, String) {
    let token = sealform::staff_token::mint().to_string();
    let hash = sealform::staff_token::TokenHash::of(&token);
    let fx = Fixture::new(
        &[TestKey::Ed25519, TestKey::Rsa],
        forms,
        &format!(
            "{server_extra}\n[staff]\ntokens = [\"{hash}\"]\non_public_listener = true\n\n\
             [store]\nbackend = \"postgres\"\nurl = \"{}\"\nsslmode = \"disable\"\n",
            pg.url()
        ),
    );
    std::fs::write(fx.path().join("token"), format!("{token}\n")).expect("token file");
    (fx, token)
}

fn multipart(message: &str, file: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"message\"\r\n\r\n{message}\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"doc.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

#[test]
fn json_form_and_upload_submissions_on_postgres_pull_decrypt_and_ack() {
    let pg = Postgres::start();
    let (fx, token) = pg_fixture(&pg, FORMS, "");
    let server = Server::start(&fx);
    let client = reqwest::blocking::Client::new();

    let res = client
        .post(server.url("/api/v1/forms/tip/submissions"))
        .json(&json!({"fields": {"message": "by the API «ünïcode»"}}))
        .send()
        .expect("json post");
    assert_eq!(res.status().as_u16(), 201);
    let by_api = res.json::<Value>().expect("json")["receipt"]
        .as_str()
        .expect("receipt")
        .to_owned();
    let res = client
        .post(server.url("/forms/tip"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(urlencode(&[("message", "by the HTML form")]))
        .send()
        .expect("form post");
    assert!(res.status().is_success(), "{}", res.status());
    let file: Vec<u8> = (0..3 * 1024 * 1024 + 17)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let res = client
        .post(server.url("/api/v1/forms/tip/submissions"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(multipart("with a file", &file))
        .send()
        .expect("upload");
    assert_eq!(res.status().as_u16(), 201, "{}", server.log_text());
    let uploaded = res.json::<Value>().expect("json")["receipt"]
        .as_str()
        .expect("receipt")
        .to_owned();

    // Nothing went to the embedded spool: the records are in the database.
    assert!(fx.records().is_empty(), "a spool file was written");
    let items = listing(&server, &client, &token);
    assert_eq!(items.len(), 3, "{items:?}");

    let work = tempfile::tempdir().expect("tempdir");
    let bundle = work.path().join("bundle");
    let token_file = fx.path().join("token");
    let out = run_ok(&[
        "pull",
        "--url",
        &server.url(""),
        "--token-file",
        s(&token_file),
        "--out",
        s(&bundle),
    ]);
    assert!(out.contains("3 fetched"), "{out}");
    // gpg itself decrypts what the database gave back.
    let gpg = Gpg::with_secret_keys(&[&TestKey::Rsa.secret()]);
    let eml = gpg
        .decrypt(&bundle.join(format!("{by_api}.pgp")))
        .expect("gpg decrypts a record pulled from PostgreSQL");
    assert!(String::from_utf8_lossy(&eml).contains("by the API"));
    let plain = work.path().join("plain");
    let out = run_ok(&[
        "decrypt",
        "--key",
        s(&TestKey::Ed25519.secret()),
        "--out",
        s(&plain),
        s(&bundle),
    ]);
    assert!(out.contains("decrypted 3, skipped 0, failed 0"), "{out}");
    let fields: Value =
        serde_json::from_slice(&read(&plain.join(&by_api).join("fields.json"))).expect("json");
    assert_eq!(fields["fields"]["message"], "by the API «ünïcode»");
    assert_eq!(
        read(&plain.join(&uploaded).join("attachments").join("doc.bin")),
        file,
        "the upload decrypts byte-identical"
    );

    let out = ack_over_http(&server, &token_file, &bundle);
    assert!(out.contains("3 acknowledged, 0 refused"), "{out}");
    let items = listing(&server, &client, &token);
    assert!(items.iter().all(|i| i["state"] == "acked"), "{items:?}");
    let chunks = pg.count("SELECT count(*) FROM chunks");
    assert_eq!(chunks, 0, "acknowledged ciphertext is deleted");
    let log = server.log_text();
    assert!(!log.contains(&by_api) && !log.contains(&uploaded), "{log}");
    assert!(server.terminate().success());
}

#[test]
fn a_database_that_goes_away_gets_503_fast_and_the_node_recovers_by_itself() {
    let pg = Postgres::start();
    let (fx, token) = pg_fixture(&pg, FORMS, "");
    let server = Server::start(&fx);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let post = |message: &str| {
        client
            .post(server.url("/api/v1/forms/tip/submissions"))
            .json(&json!({"fields": {"message": message}}))
            .send()
            .expect("post")
    };
    assert_eq!(post("before").status().as_u16(), 201);

    pg.stop_immediate();
    for i in 0..3 {
        let started = Instant::now();
        let res = post(&format!("while down {i}"));
        assert_eq!(res.status().as_u16(), 503, "{}", server.log_text());
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "a 503 took {:?}",
            started.elapsed()
        );
    }
    let staff = client
        .get(server.url("/api/v1/staff/submissions"))
        .bearer_auth(&token)
        .send()
        .expect("list");
    assert_eq!(staff.status().as_u16(), 503, "the staff API says 503 too");
    // The reply store is in the database too: reading and pushing say 503.
    let code = sealform::replies::ReplyCode::generate();
    let read = client
        .post(server.url("/api/v1/replies"))
        .json(&json!({"code": code.expose()}))
        .send()
        .expect("read replies");
    assert_eq!(read.status().as_u16(), 503, "reading answers says 503");
    let derived = code.derive().expect("derive");
    let plain = sealform::replies::answer_plaintext(None, None, b"an answer");
    let sealed = sealform::replies::seal_answer(derived.cert(), &[], &plain, SystemTime::now())
        .expect("seal");
    let push = client
        .put(server.url(&format!(
            "/api/v1/staff/mailboxes/{}/replies/{}",
            derived.mailbox,
            sealform::replies::AnswerId::random()
        )))
        .bearer_auth(&token)
        .body(sealed)
        .send()
        .expect("push");
    assert_eq!(push.status().as_u16(), 503, "pushing an answer says 503");

    pg.start_again();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut status = 0;
    while Instant::now() < deadline {
        status = post("after").status().as_u16();
        if status == 201 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(status, 201, "the node recovered by itself");
    let items = listing(&server, &client, &token);
    assert_eq!(items.len(), 2, "the record from before and the one after");
    let log = server.log_text();
    assert!(!log.contains("while down"), "{log}");
    assert!(server.terminate().success());
}

/// Runs `sealform serve` on `fx`, which must refuse to start; its stderr.
fn serve_refused(fx: &Fixture) -> String {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sealform"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(fx.config_path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("serve");
    // A serve that starts instead of refusing would run for ever: give it
    // a minute, then stop it and fail.
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            child.kill().expect("kill");
            let _ = child.wait();
            panic!("serve started instead of refusing the database's settings");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("serve");
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{text}");
    text
}

#[test]
fn serve_refuses_a_database_with_synchronous_commit_off_naming_the_setting() {
    let pg = Postgres::start();
    pg.client()
        .batch_execute("ALTER DATABASE sealform SET synchronous_commit = off")
        .expect("alter");
    let (fx, _) = pg_fixture(&pg, FORMS, "");
    let text = serve_refused(&fx);
    assert!(text.contains("synchronous_commit"), "{text}");
    let mut c = pg.client();
    // This session has the database's setting (off): without this its own
    // RESET would commit asynchronously, and the immediate stop below could
    // lose it (as sealform's records would be lost, hence the refusal).
    c.batch_execute(
        "SET synchronous_commit = on; ALTER DATABASE sealform RESET synchronous_commit",
    )
    .expect("alter");
    c.batch_execute("ALTER SYSTEM SET track_commit_timestamp = on")
        .expect("alter");
    drop(c);
    pg.stop_immediate();
    pg.start_again();
    let shown: String = pg
        .client()
        .query_one("SHOW synchronous_commit", &[])
        .expect("show")
        .get(0);
    assert_eq!(shown, "on");
    let text = serve_refused(&fx);
    assert!(text.contains("track_commit_timestamp"), "{text}");
    let mut c = pg.client();
    // One statement per call: ALTER SYSTEM refuses a transaction block.
    c.batch_execute("ALTER SYSTEM RESET track_commit_timestamp")
        .expect("alter");
    c.batch_execute("ALTER SYSTEM SET fsync = off")
        .expect("alter");
    drop(c);
    pg.stop_immediate();
    pg.start_again();
    let text = serve_refused(&fx);
    assert!(text.contains("fsync"), "{text}");
}

/// Endless deterministic noise (xorshift64*, a byte per step, so that the
/// bytes do not depend on how they are read), as a reader.
struct Noise(u64);

impl Read for Noise {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        for byte in out.iter_mut() {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            *byte = (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
        }
        Ok(out.len())
    }
}

/// The SHA-256 of everything `r` gives, read in pieces.
fn sha256_of(mut r: impl Read) -> Vec<u8> {
    let mut h = Sha256::new();
    std::io::copy(&mut r, &mut h).expect("hash");
    h.finalize().to_vec()
}

#[test]
fn a_128_mib_upload_into_postgres_stays_in_bounded_memory_and_decrypts_byte_identical() {
    const SIZE: u64 = 128 << 20;
    let pg = Postgres::start();
    let forms = FORMS.replace("16777216", "268435456");
    let (fx, _) = pg_fixture(&pg, &forms, "");
    let server = Server::start(&fx);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(900))
        .build()
        .expect("client");
    let small = client
        .post(server.url("/api/v1/forms/tip/submissions"))
        .json(&json!({"fields": {"message": "warm up"}}))
        .send()
        .expect("post");
    assert_eq!(small.status().as_u16(), 201);
    let pid = server.child.id();
    let idle = proc_kb(pid, "VmRSS:");

    let body = multipart("a large file", b"");
    let (head, tail) = body.split_at(body.len() - format!("\r\n--{BOUNDARY}--\r\n").len());
    let stream = std::io::Cursor::new(head.to_vec())
        .chain(Noise(7).take(SIZE))
        .chain(std::io::Cursor::new(tail.to_vec()));
    let res = client
        .post(server.url("/api/v1/forms/tip/submissions"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(reqwest::blocking::Body::new(stream))
        .send()
        .expect("upload");
    assert_eq!(res.status().as_u16(), 201, "{}", server.log_text());
    let receipt = res.json::<Value>().expect("json")["receipt"]
        .as_str()
        .expect("receipt")
        .to_owned();
    let peak = proc_kb(pid, "VmHWM:");
    eprintln!(
        "a {} MiB upload into PostgreSQL: node VmRSS idle {idle} kB, VmHWM {peak} kB, {} kB above idle",
        SIZE >> 20,
        peak.saturating_sub(idle)
    );
    assert!(
        peak.saturating_sub(idle) < 64 * 1024,
        "the node's peak rose {} kB over idle",
        peak - idle
    );
    let chunks = pg.count("SELECT count(*) FROM chunks");
    assert!(chunks > (SIZE >> 20) as i64, "{chunks} chunks of 1 MiB");

    let work = tempfile::tempdir().expect("tempdir");
    let bundle = work.path().join("bundle");
    let token_file = fx.path().join("token");
    let out = run_ok(&[
        "pull",
        "--url",
        &server.url(""),
        "--token-file",
        s(&token_file),
        "--out",
        s(&bundle),
    ]);
    assert!(out.contains("2 fetched"), "{out}");
    let plain = work.path().join("plain");
    let out = run_ok(&[
        "decrypt",
        "--key",
        s(&TestKey::Ed25519.secret()),
        "--out",
        s(&plain),
        s(&bundle),
    ]);
    assert!(out.contains("decrypted 2, skipped 0, failed 0"), "{out}");
    let file = std::fs::File::open(plain.join(&receipt).join("attachments").join("doc.bin"))
        .expect("the attachment");
    assert_eq!(
        sha256_of(file),
        sha256_of(Noise(7).take(SIZE)),
        "the upload decrypts byte-identical"
    );
    assert!(server.terminate().success());
}
