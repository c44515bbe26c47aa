//! The daily digest (`[notify]`) against a real SMTP server on loopback:
//! Debian's aiosmtpd run by `tests/smtp/sink.py` with `/usr/bin/python3`,
//! plain, with STARTTLS and with TLS from the start (a throwaway CA made
//! with the `openssl` CLI), and the real `gpg` to open what arrives.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use mail_parser::{MessageParser, MimeHeaders};
use sequoia_openpgp as openpgp;

use openpgp::cert::CertBuilder;
use openpgp::serialize::SerializeInto;

use crate::support::{Fixture, Gpg, Server, TestKey, api_post, sealform, send};

mod smtp;

use smtp::{Mail, Mode, Pki, Sink, free_port, wait_for};

/// The three forms of the fixtures, one required field each.
const FORMS: [&str; 3] = ["formalpha", "formbravo", "formcharlie"];

/// `[[forms]]` tables for [`FORMS`].
fn three_forms() -> String {
    FORMS
        .iter()
        .map(|id| {
            format!(
                "[[forms]]\nid = \"{id}\"\ntitle = \"{id}\"\n[[forms.fields]]\nname = \"message\"\n\
                 label = \"Message\"\nkind = \"textarea\"\nrequired = true\n"
            )
        })
        .collect()
}

const DESK_A: &str = "desk-a@example.org";
const DESK_B: &str = "desk-b@example.org";

/// A field value that must never be seen outside the ciphertext.
const SECRET_VALUE: &str = "canary-value-q8z";

/// `HH:MM:SS` UTC, `secs` from now.
fn in_secs(secs: u64) -> String {
    chrono::DateTime::<chrono::Utc>::from(SystemTime::now() + Duration::from_secs(secs))
        .format("%H:%M:%S")
        .to_string()
}

/// A `[notify]` table; each reader is `(address, key line)`.
fn notify_table(smtp_url: &str, at: &str, readers: &[(&str, String)], extra: &str) -> String {
    let mut t = format!(
        "\n[notify]\nsmtp_url = \"{smtp_url}\"\nfrom = \"sealform@example.org\"\nat = \"{at}\"\n{extra}\n"
    );
    for (address, key) in readers {
        t.push_str(&format!(
            "[[notify.readers]]\naddress = \"{address}\"\n{key}\n"
        ));
    }
    t
}

fn by_fingerprint(k: TestKey) -> String {
    format!("fingerprint = \"{}\"", k.fingerprint())
}

/// A fixture with the three forms, both gpg-made keys and `table` added.
fn fixture(server_extra: &str, table: &str) -> Fixture {
    let fx = Fixture::new(
        &[TestKey::Ed25519, TestKey::Rsa],
        &three_forms(),
        server_extra,
    );
    let config = std::fs::read_to_string(fx.config_path()).expect("config");
    std::fs::write(fx.config_path(), format!("{config}{table}")).expect("config");
    fx
}

/// The armored OpenPGP message in a mail.
fn armored(raw: &[u8]) -> String {
    let text = std::str::from_utf8(raw).expect("the digest mail is ASCII");
    let start = text
        .find("-----BEGIN PGP MESSAGE-----")
        .expect("armor begins");
    let end = text.find("-----END PGP MESSAGE-----").expect("armor ends") + 25;
    text[start..end].to_owned()
}

/// The mail with its ciphertext taken out, and its boundary and Message-ID
/// (random each time) replaced by fixed text: what the provider reads.
fn outside(raw: &[u8]) -> String {
    let text = std::str::from_utf8(raw).expect("ASCII");
    let parsed = MessageParser::default().parse(raw).expect("MIME parses");
    let boundary = parsed
        .content_type()
        .and_then(|c| c.attribute("boundary"))
        .expect("a boundary")
        .to_owned();
    let id = parsed.message_id().expect("a Message-ID").to_owned();
    text.replace(&armored(raw), "CIPHERTEXT")
        .replace(&boundary, "BOUNDARY")
        .replace(&id, "ID")
}

/// Checks the shape of a digest mail and returns its plaintext, decrypted
/// by `gpg` with `key`'s secret key alone; also checks that its one PKESK
/// is for `key`'s encryption subkey.
fn open(mail: &Mail, key: TestKey, dir: &Path) -> String {
    let parsed = MessageParser::default()
        .parse(&mail.raw)
        .expect("MIME parses");
    assert_eq!(parsed.subject(), Some("sealform daily digest"));
    let ct = parsed.content_type().expect("content type");
    assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("encrypted")));
    assert_eq!(ct.attribute("protocol"), Some("application/pgp-encrypted"));
    let raw = String::from_utf8_lossy(&mail.raw);
    assert!(
        raw.contains("Content-Type: application/pgp-encrypted\r\n"),
        "{raw}"
    );
    assert!(raw.contains("Version: 1"), "{raw}");
    let file = dir.join(format!("{}.asc", rand_name()));
    std::fs::write(&file, armored(&mail.raw)).expect("write");
    let gpg = Gpg::with_secret_keys(&[&key.secret()]);
    let packets = gpg.list_packets(&file);
    let pkesks: Vec<&str> = packets
        .lines()
        .filter(|l| l.contains("pubkey enc packet"))
        .collect();
    assert_eq!(pkesks.len(), 1, "{packets}");
    assert!(
        pkesks[0].ends_with(&key.encryption_subkey()[24..]),
        "{packets}"
    );
    let plain = gpg.decrypt(&file).expect("gpg decrypts the digest");
    String::from_utf8(plain).expect("utf-8")
}

fn rand_name() -> String {
    format!("{:x}", rand::random::<u64>())
}

/// Posts `n` submissions to `form` through the in-process app.
async fn submit(app: &axum::Router, form: &str, n: usize) {
    for i in 0..n {
        let body = serde_json::json!({ "fields": { "message": format!("{SECRET_VALUE} {i}") } });
        let (res, _) = send(app, api_post(form, &body)).await;
        assert_eq!(res.status(), 201, "submission {i} to {form}");
    }
}

/// `sealform notify --now`, retried while the store is still held by a
/// dropped app closing down.
fn notify_now(fx: &Fixture) -> (i32, String, String) {
    let config = fx.config_path();
    let args = [
        "notify",
        "--now",
        "--config",
        config.to_str().expect("utf-8"),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = sealform(&args);
        if !out.2.contains("holds it") || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_digest_has_one_size_for_0_and_500_records_and_only_its_ciphertext_says_which() {
    let port = free_port();
    let url = format!("smtp://127.0.0.1:{port}?tls=none");
    let readers = [
        (DESK_A, by_fingerprint(TestKey::Ed25519)),
        (DESK_B, by_fingerprint(TestKey::Rsa)),
    ];
    let fx = fixture("", &notify_table(&url, "07:00", &readers, ""));
    let out = fx.path().join("mail");
    let _sink = Sink::start(port, &out, Mode::Plain, None);

    let (code, stdout, stderr) = notify_now(&fx);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(wait_for(&out, 2, 10).len(), 2);
    {
        let app = fx.app();
        submit(&app, "formalpha", 200).await;
        submit(&app, "formbravo", 200).await;
        submit(&app, "formcharlie", 100).await;
    }
    let (code, stdout, stderr) = notify_now(&fx);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let mails = wait_for(&out, 4, 10);
    assert_eq!(mails.len(), 4, "one message per reader per digest");

    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    for (reader, key, first, second) in [
        (DESK_A, TestKey::Ed25519, 0, 2),
        (DESK_B, TestKey::Rsa, 1, 3),
    ] {
        let (empty, full) = (&mails[first], &mails[second]);
        assert_eq!((empty.rcpt.as_str(), full.rcpt.as_str()), (reader, reader));
        let quiet = open(empty, key, fx.path());
        for form in ["formalpha", "formbravo", "formcharlie"] {
            assert!(
                quiet.contains(&format!("  {form}: 0 new, 0 unread, oldest unread -\r\n")),
                "{quiet}"
            );
        }
        let busy = open(full, key, fx.path());
        for (form, n) in [("formalpha", 200), ("formbravo", 200), ("formcharlie", 100)] {
            let line = format!("  {form}: {n} new, {n} unread, oldest unread {today}\r\n");
            assert!(busy.contains(&line), "{line} in {busy}");
        }
        assert_eq!(
            quiet.len(),
            busy.len(),
            "the plaintext is padded to one size"
        );
        // What the provider sees is the same text for both digests: no form
        // id, count or value.
        assert_eq!(outside(&empty.raw), outside(&full.raw));
        let seen = outside(&full.raw);
        for leak in ["formalpha", "200", "500", SECRET_VALUE] {
            assert!(
                !seen.contains(leak),
                "{leak} outside the ciphertext:\n{seen}"
            );
        }
    }
    // A cv25519 session key wraps to a fixed length, so the whole mail has
    // one size (an RSA one may differ by the leading zero byte of its MPI,
    // at random, whatever the digest says).
    assert_eq!(mails[0].raw.len(), mails[2].raw.len());
}

#[test]
fn two_readers_over_starttls_each_get_a_message_encrypted_only_to_their_key() {
    let pki = Pki::new();
    let port = free_port();
    let url = format!("smtp://127.0.0.1:{port}");
    let readers = [
        (DESK_A, by_fingerprint(TestKey::Ed25519)),
        (DESK_B, by_fingerprint(TestKey::Rsa)),
    ];
    let ca = format!("tls_ca_file = \"{}\"", pki.ca().display());
    let fx = fixture("", &notify_table(&url, "07:00", &readers, &ca));
    let out = fx.path().join("mail");
    let sink = Sink::start(port, &out, Mode::StartTls, Some(&pki));
    let (code, stdout, stderr) = notify_now(&fx);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("digest sent to 2 of 2 reader(s)"),
        "{stdout}"
    );
    let mails = wait_for(&out, 2, 10);
    assert_eq!(mails.len(), 2);
    let a = mails.iter().find(|m| m.rcpt == DESK_A).expect("reader A's");
    let b = mails.iter().find(|m| m.rcpt == DESK_B).expect("reader B's");
    // open() checks the single PKESK names the reader's own subkey.
    assert!(open(a, TestKey::Ed25519, fx.path()).contains("sealform daily digest"));
    assert!(open(b, TestKey::Rsa, fx.path()).contains("sealform daily digest"));
    let gpg_b = Gpg::with_secret_keys(&[&TestKey::Rsa.secret()]);
    let file = fx.path().join("a.asc");
    std::fs::write(&file, armored(&a.raw)).expect("write");
    assert!(
        gpg_b.decrypt(&file).is_err(),
        "reader B cannot open reader A's digest"
    );
    sink.stop();

    // Without a relay, `notify --now` says why and exits non-zero.
    let (code, _, stderr) = notify_now(&fx);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("mail to notify.readers[0] failed"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(DESK_A) && !stderr.contains(DESK_B),
        "{stderr}"
    );
}

/// `[staff]` with one fresh token on the public listener; returns the
/// table and the token.
fn staff_table() -> (String, String) {
    let token = sealform::staff_token::mint().to_string();
    let hash = sealform::staff_token::TokenHash::of(&token);
    (
        format!("[staff]\ntokens = [\"{hash}\"]\non_public_listener = true\n"),
        token,
    )
}

fn status(server: &Server, token: &str) -> serde_json::Value {
    reqwest::blocking::Client::new()
        .get(server.url("/api/v1/staff/status"))
        .bearer_auth(token)
        .send()
        .expect("status")
        .json()
        .expect("JSON")
}

#[test]
fn serve_sends_the_digest_at_the_configured_time_over_tls_and_staff_see_when() {
    let pki = Pki::new();
    let port = free_port();
    let url = format!("smtps://127.0.0.1:{port}");
    let ca = format!("tls_ca_file = \"{}\"", pki.ca().display());
    let (staff, token) = staff_table();
    let readers = [(DESK_A, by_fingerprint(TestKey::Ed25519))];
    let fx = fixture(&staff, &notify_table(&url, &in_secs(6), &readers, &ca));
    let out = fx.path().join("mail");
    let _sink = Sink::start(port, &out, Mode::Smtps, Some(&pki));
    let server = Server::start(&fx);
    let before = status(&server, &token);
    assert_eq!(
        before["notify"]["readers"][0]["last_digest"],
        serde_json::Value::Null,
        "{before}"
    );
    assert_eq!(
        before["notify"]["readers"][0]["fingerprint"],
        TestKey::Ed25519.fingerprint(),
        "{before}"
    );
    let mails = wait_for(&out, 1, 30);
    assert_eq!(mails.len(), 1, "log:\n{}", server.log_text());
    assert!(open(&mails[0], TestKey::Ed25519, fx.path()).contains("formalpha: 0 new"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let s = status(&server, &token);
        if s["notify"]["readers"][0]["last_digest"].is_string() || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        after["notify"]["readers"][0]["last_digest"].is_string(),
        "{after}"
    );
    assert!(!after.to_string().contains(DESK_A), "{after}");
    let (code, _, _) = sealform(&[
        "notify",
        "--now",
        "--config",
        fx.config_path().to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 1, "a running serve holds the store");
}

#[test]
fn a_stopped_relay_gets_the_digest_when_it_is_back_and_the_forms_keep_working() {
    let port = free_port();
    let url = format!("smtp://127.0.0.1:{port}?tls=none");
    let readers = [(DESK_A, by_fingerprint(TestKey::Ed25519))];
    let fx = fixture("", &notify_table(&url, &in_secs(6), &readers, ""));
    let server = Server::start(&fx);
    let log_has = |what: &str, secs: u64| {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !server.log_text().contains(what) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        server.log_text().contains(what)
    };
    assert!(log_has("retrying in", 20), "{}", server.log_text());
    let client = reqwest::blocking::Client::new();
    for i in 0..5 {
        let res = client
            .post(server.url("/api/v1/forms/formalpha/submissions"))
            .json(&serde_json::json!({ "fields": { "message": format!("{SECRET_VALUE} {i}") } }))
            .send()
            .expect("post");
        assert_eq!(res.status(), 201);
    }
    let out = fx.path().join("mail");
    let _sink = Sink::start(port, &out, Mode::Plain, None);
    let mails = wait_for(&out, 1, 40);
    assert_eq!(mails.len(), 1, "log:\n{}", server.log_text());
    assert!(open(&mails[0], TestKey::Ed25519, fx.path()).contains("sealform daily digest"));
    assert!(log_has("digest: delivered", 5), "{}", server.log_text());
    let log = server.log_text();
    assert!(
        !log.contains(DESK_A) && !log.contains(SECRET_VALUE),
        "{log}"
    );
}

/// A public certificate that expired nine days ago.
fn expired_cert(dir: &Path) -> PathBuf {
    let day = Duration::from_secs(86_400);
    let (cert, _) = CertBuilder::new()
        .add_userid("Expired reader <expired@example.org>")
        .add_transport_encryption_subkey()
        .set_creation_time(SystemTime::now() - 10 * day)
        .set_validity_period(Some(day))
        .generate()
        .expect("generate");
    let path = dir.join("expired-reader.asc");
    std::fs::write(&path, cert.armored().to_vec().expect("armor")).expect("write");
    path
}

#[test]
fn a_reader_whose_certificate_expired_is_skipped_logged_once_and_named_by_check() {
    let port = free_port();
    let url = format!("smtp://127.0.0.1:{port}?tls=none");
    let scratch = tempfile::tempdir().expect("dir");
    let expired = expired_cert(scratch.path());
    let readers = [
        (DESK_A, by_fingerprint(TestKey::Ed25519)),
        (DESK_B, format!("cert_file = \"{}\"", expired.display())),
    ];
    let fx = fixture("", &notify_table(&url, &in_secs(6), &readers, ""));
    let config = fx.config_path();
    let config = config.to_str().expect("utf-8");
    let (code, stdout, stderr) = sealform(&["check", "--config", config]);
    assert_eq!(code, 0, "serve would start: {stdout}{stderr}");
    assert!(
        stdout.contains("notify.readers[0]: encrypted to"),
        "{stdout}"
    );
    let line = stderr
        .lines()
        .find(|l| l.contains("notify.readers[1] gets no digest"))
        .unwrap_or_else(|| panic!("check names the reader: {stderr}"));
    assert!(line.to_lowercase().contains("expired"), "{line}");

    let out = fx.path().join("mail");
    let _sink = Sink::start(port, &out, Mode::Plain, None);
    let server = Server::start(&fx);
    let mails = wait_for(&out, 1, 30);
    assert_eq!(mails.len(), 1, "log:\n{}", server.log_text());
    assert_eq!(mails[0].rcpt, DESK_A);
    std::thread::sleep(Duration::from_millis(500));
    let log = server.log_text();
    assert_eq!(
        log.matches("notify.readers[1] gets nothing").count(),
        1,
        "{log}"
    );
    assert!(!log.contains(DESK_B), "{log}");
    server.terminate();

    let (code, _, stderr) = notify_now(&fx);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("notify.readers[1] gets nothing"),
        "{stderr}"
    );
    assert_eq!(
        wait_for(&out, 2, 10).len(),
        2,
        "the other reader still gets theirs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_gets_the_same_armored_ciphertext_as_the_mail_and_nothing_else() {
    use axum::http::HeaderMap;
    use std::sync::{Arc, Mutex};
    let got: Arc<Mutex<Vec<(HeaderMap, String)>>> = Arc::default();
    let sink = Arc::clone(&got);
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| async move {
            sink.lock().expect("hook").push((headers, body));
            "ok"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook_addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, hook).await });
    let port = free_port();
    let url = format!("smtp://127.0.0.1:{port}?tls=none");
    let webhook = format!("webhook_url = \"http://{hook_addr}/hook\"");
    let readers = [(DESK_A, by_fingerprint(TestKey::Ed25519))];
    let fx = fixture("", &notify_table(&url, "07:00", &readers, &webhook));
    let out = fx.path().join("mail");
    let _sink = Sink::start(port, &out, Mode::Plain, None);
    let fx = Arc::new(fx);
    let job = Arc::clone(&fx);
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || notify_now(&job))
        .await
        .expect("notify");
    assert_eq!(code, 0, "{stdout}{stderr}");
    let mails = wait_for(&out, 1, 10);
    let posts = got.lock().expect("hook").clone();
    assert_eq!(posts.len(), 1);
    let (headers, body) = &posts[0];
    assert_eq!(headers["content-type"], "application/pgp-encrypted");
    assert_eq!(
        body.trim_end(),
        armored(&mails[0].raw).replace("\r\n", "\n")
    );
}
