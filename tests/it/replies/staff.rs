//! The newsroom's side of replies: codes at submission, the mailbox and
//! certificate in the decrypted record, `sealform reply` and `push` into the
//! reply store, the staff route's refusals, expiry, and canaries.

use std::os::unix::fs::MetadataExt;

use axum::http::StatusCode;
use data_encoding::BASE64;
use sealform::replies::{MailboxId, ReplyCode, ReplyStatus};

use super::*;

const SECRET_ANSWER: &str = "Canary answer: please send the second page of the memo.";
const TIP_TEXT: &str = "Canary tip: the mayor's budget is fake.";

/// Whether `needle` (raw, or base64 at any of the 3 alignments) is in `hay`.
fn contains_in_any_form(hay: &[u8], needle: &[u8]) -> bool {
    let raw = hay.windows(needle.len()).any(|w| w == needle);
    let b64 = (0..3).any(|skip| {
        let enc = BASE64.encode(&needle[skip..]);
        // Drop the last characters, which depend on the bytes after it.
        let core = &enc.as_bytes()[..enc.len().saturating_sub(4)];
        core.len() > 8 && hay.windows(core.len()).any(|w| w == core)
    });
    raw || b64
}

#[tokio::test]
async fn a_replies_form_answers_with_a_code_and_a_plain_form_without_one() {
    let (fx, _) = replies_fixture("");
    let app = fx.app();
    let (res, body) = send(&app, tip("tip", "hello")).await;
    created(&res, &body);
    let code = reply_code_of(&body);
    assert_eq!(code.split(' ').count(), 12);
    ReplyCode::parse(&code).expect("a valid code");
    let (res, body) = send(&app, tip("plain", "hello")).await;
    created(&res, &body);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert!(v.get("reply_code").is_none(), "{v}");
    // Two submissions, two codes.
    let (_, again) = send(&app, tip("tip", "hello")).await;
    assert_ne!(reply_code_of(&again), code);
}

#[tokio::test]
async fn an_upload_to_a_replies_form_gets_a_code_too() {
    let (fx, _) = replies_fixture("");
    let app = fx.app();
    let boundary = "replies-test-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"message\"\r\n\r\nsee file\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"documents\"; filename=\"a.txt\"\r\n\
         Content-Type: text/plain\r\n\r\nfile body\r\n--{boundary}--\r\n"
    );
    let req = Request::post("/api/v1/forms/upload/submissions")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .expect("request");
    let (res, body) = send(&app, req).await;
    created(&res, &body);
    ReplyCode::parse(&reply_code_of(&body)).expect("a valid code");
}

#[tokio::test]
async fn the_confirmation_page_shows_the_code_once_with_advice_in_english_and_spanish() {
    let (fx, _) = replies_fixture("");
    let app = fx.app();
    for (lang, advice) in [("en", "keep them private"), ("es", "guárdelas en privado")] {
        let req = Request::post(format!("/forms/tip?lang={lang}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(urlencode(&[("message", "hi")])))
            .expect("request");
        let (res, body) = send(&app, req).await;
        assert_eq!(res.status(), StatusCode::OK);
        let page = String::from_utf8(body).expect("utf-8");
        let at = page.find("id=\"reply-code\">").expect("the code is shown");
        let rest = &page[at + "id=\"reply-code\">".len()..];
        let code = &rest[..rest.find('<').expect("end")];
        ReplyCode::parse(code).expect("a valid code");
        assert_eq!(page.matches(code).count(), 1, "shown once");
        assert!(page.contains(advice), "{lang}: {page}");
        assert!(page.contains("href=\"/replies?lang="), "{page}");
    }
    let (_, page) = send(&app, form_post("plain", &urlencode(&[("message", "hi")]))).await;
    assert!(!String::from_utf8_lossy(&page).contains("reply-code"));
}

/// Pulls every record from `server` into `work/bundle` and decrypts it into
/// `work/plain`; returns the record folders.
fn pull_and_decrypt(server: &Server, fx: &Fixture, work: &Path) -> Vec<std::path::PathBuf> {
    let bundle = work.join("bundle");
    let plain = work.join("plain");
    let token_file = fx.path().join("token");
    let url = server.url("");
    let run = |args: &[&str]| {
        let (code, out, err) = sealform(args);
        assert_eq!(code, 0, "{args:?}\n{out}\n{err}");
    };
    run(&[
        "pull",
        "--url",
        &url,
        "--token-file",
        path_str(&token_file),
        "--out",
        path_str(&bundle),
    ]);
    run(&[
        "decrypt",
        "--key",
        path_str(&TestKey::Ed25519.secret()),
        "--out",
        path_str(&plain),
        path_str(&bundle),
    ]);
    let mut dirs: Vec<_> = std::fs::read_dir(&plain)
        .expect("plain")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn staff_answer_a_tipster_with_reply_and_push_and_nothing_links_or_opens_it_on_the_server() {
    let (fx, _) = replies_fixture("");
    let server = Server::start(&fx);
    let client = reqwest::blocking::Client::new();
    let res = client
        .post(server.url("/api/v1/forms/tip/submissions"))
        .json(&json!({ "fields": { "message": TIP_TEXT } }))
        .send()
        .expect("submit");
    assert_eq!(res.status().as_u16(), 201);
    let code = reply_code_of(&res.bytes().expect("body"));
    let derived = ReplyCode::parse(&code)
        .expect("code")
        .derive()
        .expect("derive");
    let mailbox = derived.mailbox.to_string();

    // Staff: pull + decrypt show the mailbox header and keep the key part.
    let work = tempfile::tempdir().expect("tempdir");
    let records = pull_and_decrypt(&server, &fx, work.path());
    assert_eq!(records.len(), 1);
    let record = &records[0];
    let eml = String::from_utf8(read(&record.join("message.eml"))).expect("utf-8");
    assert!(
        eml.contains(&format!("Reply-Mailbox: {mailbox}\r\n")),
        "{eml}"
    );
    let key = String::from_utf8(read(&record.join("reply-key.asc"))).expect("key");
    let hint = String::from_utf8(read(&record.join("reply.txt"))).expect("hint");
    assert!(
        hint.starts_with(&format!("Reply-Mailbox: {mailbox}\n")),
        "{hint}"
    );
    assert_eq!(key, derived.cert_armored());

    // `sealform reply` writes the outbox; `push` uploads it.
    let outbox = work.path().join("outbox");
    let message = work.path().join("answer.txt");
    std::fs::write(&message, SECRET_ANSWER).expect("message");
    let (status, out, err) = sealform(&[
        "reply",
        "--record",
        path_str(record),
        "--message",
        path_str(&message),
        "--status",
        "in-progress",
        "--key",
        path_str(&TestKey::Ed25519.public()),
        "--out",
        path_str(&outbox),
    ]);
    assert_eq!(status, 0, "{out}\n{err}");
    let written: Vec<_> = std::fs::read_dir(outbox.join(&mailbox))
        .expect("mailbox folder in the outbox")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    assert_eq!(written.len(), 1);
    // Staff can open their own copy with their key (--key).
    let gpg = Gpg::with_secret_keys(&[&TestKey::Ed25519.secret()]);
    let plain = gpg.decrypt(&written[0]).expect("gpg opens the staff copy");
    assert!(String::from_utf8_lossy(&plain).contains(SECRET_ANSWER));

    // A reply made with plain gpg, dropped in the outbox by hand.
    let dropped = outbox.join(&mailbox).join("by-hand.asc");
    std::fs::write(work.path().join("reply-key.asc"), &key).expect("key file");
    let by_hand = work.path().join("by-hand.txt");
    std::fs::write(&by_hand, "Plain gpg answer").expect("text");
    let import = gpg
        .cmd()
        .arg("--import")
        .arg(work.path().join("reply-key.asc"))
        .output();
    assert!(import.expect("gpg").status.success());
    let enc = gpg
        .cmd()
        .args(["--trust-model", "always", "--armor", "--encrypt", "-r"])
        .arg(derived.cert().fingerprint().to_hex())
        .arg("-o")
        .arg(&dropped)
        .arg(&by_hand)
        .output()
        .expect("gpg");
    assert!(
        enc.status.success(),
        "{}",
        String::from_utf8_lossy(&enc.stderr)
    );

    let token_file = fx.path().join("token");
    let url = server.url("");
    let push = |expect: &str| {
        let (status, out, err) = sealform(&[
            "push",
            "--url",
            &url,
            "--token-file",
            path_str(&token_file),
            path_str(&outbox),
        ]);
        assert_eq!(status, 0, "{out}\n{err}");
        assert!(out.contains(expect), "{out}");
    };
    push("pushed 2 answer(s)");
    push("pushed 0 answer(s)");
    assert!(!dropped.exists(), "the hand-made file was given an id");

    // Stored under the mailbox, fsynced, with day-only times; both open.
    let stored = stored_answers(&fx, &mailbox);
    assert_eq!(stored.len(), 2);
    let mut texts = Vec::new();
    for path in &stored {
        let meta = std::fs::metadata(path).expect("meta");
        assert_eq!(meta.mtime() % 86_400, 0, "day-only mtime");
        assert_eq!(meta.atime() % 86_400, 0, "day-only atime");
        let answer = derived.open(&read(path)).expect("the code opens it");
        texts.push((answer.form, answer.status, answer.message.to_string()));
    }
    texts.sort_by(|a, b| a.2.cmp(&b.2));
    assert_eq!(
        texts,
        vec![
            (
                Some("tip".into()),
                Some(ReplyStatus::InProgress),
                SECRET_ANSWER.into()
            ),
            (None, None, "Plain gpg answer".into()),
        ]
    );

    // Canaries: no code, answer or tip text under data_dir or in the log;
    // the mailbox only as a folder name under replies/.
    let log = server.log_text();
    for secret in [code.as_str(), SECRET_ANSWER, TIP_TEXT] {
        assert!(!log.contains(secret), "in the log: {secret}");
        for (path, bytes) in fx.all_stored_bytes() {
            assert!(
                !contains_in_any_form(&bytes, secret.as_bytes()),
                "{}",
                path.display()
            );
        }
    }
    for (path, bytes) in fx.all_stored_bytes() {
        assert!(
            !contains_in_any_form(&bytes, mailbox.as_bytes()),
            "{}",
            path.display()
        );
        let rel = path.strip_prefix(fx.data_dir()).expect("under data_dir");
        if rel.to_string_lossy().contains(&mailbox) {
            assert!(
                rel.starts_with(Path::new("replies").join(&mailbox)),
                "{}",
                rel.display()
            );
        }
    }
    assert!(!log.contains(&mailbox));
    assert!(mailbox.parse::<MailboxId>().is_ok());
}

/// A real encrypted message for `mailbox` (to its code's certificate).
fn sealed_for(derived: &sealform::replies::Derived, text: &str) -> Vec<u8> {
    let plain = sealform::replies::answer_plaintext(Some("tip"), None, text.as_bytes());
    sealform::replies::seal_answer(derived.cert(), &[], &plain, std::time::SystemTime::now())
        .expect("seal")
}

#[tokio::test]
async fn the_answer_route_refuses_clearly_and_is_idempotent() {
    let (fx, token) = replies_fixture("max_per_mailbox = 2\nmax_answer_bytes = 20000");
    let app = fx.app();
    let d = ReplyCode::generate().derive().expect("derive");
    let mb = d.mailbox.to_string();
    let id = sealform::replies::AnswerId::random().to_string();
    let one = sealed_for(&d, "one");
    let cases: Vec<(Request<Body>, StatusCode)> = vec![
        (
            put_answer(&mb, &id, None, one.clone()),
            StatusCode::UNAUTHORIZED,
        ),
        (
            put_answer(&mb, &id, Some("wrong"), one.clone()),
            StatusCode::UNAUTHORIZED,
        ),
        (
            put_answer("notamailbox", &id, Some(&token), one.clone()),
            StatusCode::BAD_REQUEST,
        ),
        (
            put_answer(&mb.to_uppercase(), &id, Some(&token), one.clone()),
            StatusCode::BAD_REQUEST,
        ),
        (
            put_answer(&mb, "not-an-id", Some(&token), one.clone()),
            StatusCode::BAD_REQUEST,
        ),
        (
            put_answer(&mb, &id.to_uppercase(), Some(&token), one.clone()),
            StatusCode::BAD_REQUEST,
        ),
        (
            put_answer(&mb, &id, Some(&token), b"plain text answer".to_vec()),
            StatusCode::BAD_REQUEST,
        ),
        (
            put_answer(&mb, &id, Some(&token), d.cert_armored().into_bytes()),
            StatusCode::BAD_REQUEST,
        ),
        (
            put_answer(&mb, &id, Some(&token), vec![0xc1; 20001]),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            put_answer(&mb, &id, Some(&token), one.clone()),
            StatusCode::CREATED,
        ),
        (
            put_answer(&mb, &id, Some(&token), one.clone()),
            StatusCode::OK,
        ),
        (
            put_answer(&mb, &id, Some(&token), sealed_for(&d, "two")),
            StatusCode::CONFLICT,
        ),
    ];
    for (i, (req, want)) in cases.into_iter().enumerate() {
        let (res, body) = send(&app, req).await;
        assert_eq!(
            res.status(),
            want,
            "case {i}: {}",
            String::from_utf8_lossy(&body)
        );
        if !want.is_success() {
            let v: Value = serde_json::from_slice(&body).expect("a JSON error");
            assert!(v["error"]["code"].is_string(), "{v}");
        }
    }
    let second = sealform::replies::AnswerId::random().to_string();
    let (res, body) = send(
        &app,
        put_answer(&mb, &second, Some(&token), sealed_for(&d, "2")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        (v["id"].as_str(), v["outcome"].as_str()),
        (Some(second.as_str()), Some("stored"))
    );
    let third = sealform::replies::AnswerId::random().to_string();
    let (res, body) = send(
        &app,
        put_answer(&mb, &third, Some(&token), sealed_for(&d, "3")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["error"]["code"], "mailbox_full");
    assert_eq!(stored_answers(&fx, &mb).len(), 2);
}

/// Pushes one answer for `d`'s mailbox through an in-process app (dropped
/// again, releasing the store); it is then the mailbox's only answer.
async fn push_one(fx: &Fixture, token: &str, d: &sealform::replies::Derived) {
    let app = fx.app();
    let mb = d.mailbox.to_string();
    let id = sealform::replies::AnswerId::random().to_string();
    let (res, _) = send(&app, put_answer(&mb, &id, Some(token), sealed_for(d, "x"))).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(stored_answers(fx, &mb).len(), 1);
}

#[tokio::test]
async fn a_purge_with_keep_days_zero_removes_pushed_answers() {
    let (fx, token) = replies_fixture("keep_days = 0");
    let d = ReplyCode::generate().derive().expect("derive");
    let mb = d.mailbox.to_string();
    push_one(&fx, &token, &d).await;
    let (status, out, err) = sealform(&["purge", "--config", path_str(&fx.config_path())]);
    assert_eq!(status, 0, "{out}\n{err}");
    assert!(out.contains("deleted 1 expired answer(s)"), "{out}");
    assert!(stored_answers(&fx, &mb).is_empty());
    assert!(!fx.data_dir().join("replies").join(&mb).exists());

    // `serve` purges too, at start and after every midnight.
    push_one(&fx, &token, &d).await;
    let server = Server::start(&fx);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let logged = || server.log_text().contains("expired answers deleted");
    while !(stored_answers(&fx, &mb).is_empty() && logged()) && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        stored_answers(&fx, &mb).is_empty(),
        "serve's upkeep purged it"
    );
    assert!(logged(), "{}", server.log_text());
    assert!(!server.log_text().contains(&mb));
}

#[test]
fn reply_refuses_a_record_that_cannot_be_answered_and_push_never_uploads_a_plaintext() {
    let work = tempfile::tempdir().expect("tempdir");
    // A decrypted record of a form without replies: no Reply-Mailbox.
    let record = work.path().join("record");
    std::fs::create_dir(&record).expect("mkdir");
    std::fs::write(
        record.join("message.eml"),
        "X-Sealform-Form: plain\r\nContent-Type: text/plain\r\n\r\nhello\r\n",
    )
    .expect("eml");
    let message = work.path().join("answer.txt");
    std::fs::write(&message, SECRET_ANSWER).expect("message");
    let outbox = work.path().join("outbox");
    let (status, out, err) = sealform(&[
        "reply",
        "--record",
        path_str(&record),
        "--message",
        path_str(&message),
        "--out",
        path_str(&outbox),
    ]);
    assert_eq!(status, 1, "{out}\n{err}");
    assert!(err.contains("no Reply-Mailbox header"), "{err}");
    assert!(!err.contains(SECRET_ANSWER) && !out.contains(SECRET_ANSWER));

    // A plaintext dropped into a mailbox folder of the outbox by mistake is
    // refused before anything is sent (the URL leads nowhere).
    let mailbox = ReplyCode::generate()
        .derive()
        .expect("derive")
        .mailbox
        .to_string();
    std::fs::create_dir_all(outbox.join(&mailbox)).expect("mkdir");
    std::fs::write(outbox.join(&mailbox).join("note.txt"), SECRET_ANSWER).expect("note");
    let token = work.path().join("token");
    std::fs::write(&token, "not-a-real-token\n").expect("token");
    let (status, out, err) = sealform(&[
        "push",
        "--url",
        "http://127.0.0.1:9",
        "--token-file",
        path_str(&token),
        path_str(&outbox),
    ]);
    assert_eq!(status, 1, "{out}\n{err}");
    assert!(err.contains("not an encrypted OpenPGP message"), "{err}");
    assert!(
        out.contains("pushed 0 answer(s); 0 already on the server; 1 not pushed"),
        "{out}"
    );
}

#[tokio::test]
async fn a_push_is_refused_with_503_when_free_space_is_kept_for_submissions() {
    let token = sealform::staff_token::mint().to_string();
    let hash = sealform::staff_token::TokenHash::of(&token);
    // More free space asked for than any disk here has.
    let fx = Fixture::new(
        &[TestKey::Ed25519],
        REPLIES_FORMS,
        &format!(
            "min_free_bytes = 1125899906842624\n[staff]\ntokens = [\"{hash}\"]\non_public_listener = true\n"
        ),
    );
    let app = fx.app();
    let d = ReplyCode::generate().derive().expect("derive");
    let mb = d.mailbox.to_string();
    let id = sealform::replies::AnswerId::random().to_string();
    let (res, body) = send(
        &app,
        put_answer(&mb, &id, Some(&token), sealed_for(&d, "x")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["error"]["code"], "unavailable");
    assert!(stored_answers(&fx, &mb).is_empty());
}

#[tokio::test]
async fn a_file_uploaded_as_reply_key_asc_is_never_taken_for_the_mailbox_certificate() {
    let (fx, _) = replies_fixture("");
    let app = fx.app();
    let spoof = ReplyCode::generate().derive().expect("derive");
    let boundary = "replies-spoof-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"message\"\r\n\r\nhi\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"documents\"; \
         filename=\"reply-key.asc\"\r\nContent-Type: application/pgp-keys\r\n\r\n{}\r\n\
         --{boundary}--\r\n",
        spoof.cert_armored()
    );
    let req = Request::post("/api/v1/forms/upload/submissions")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .expect("request");
    let (res, body) = send(&app, req).await;
    created(&res, &body);
    let real = ReplyCode::parse(&reply_code_of(&body))
        .expect("code")
        .derive()
        .expect("derive");
    drop(app);
    let work = tempfile::tempdir().expect("tempdir");
    let plain = work.path().join("plain");
    let (code, out, err) = sealform(&[
        "decrypt",
        "--key",
        path_str(&TestKey::Ed25519.secret()),
        "--out",
        path_str(&plain),
        path_str(&fx.spool_dir()),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let record = std::fs::read_dir(&plain)
        .expect("plain")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.is_dir())
        .expect("a record folder");
    let key = String::from_utf8(read(&record.join("reply-key.asc"))).expect("key");
    assert_eq!(key, real.cert_armored());
    let message = work.path().join("answer.txt");
    std::fs::write(&message, "for the real tipster").expect("message");
    let outbox = work.path().join("outbox");
    let (code, out, err) = sealform(&[
        "reply",
        "--record",
        path_str(&record),
        "--message",
        path_str(&message),
        "--out",
        path_str(&outbox),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let folder = outbox.join(real.mailbox.to_string());
    let file = std::fs::read_dir(&folder)
        .expect("the real mailbox's folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .next()
        .expect("the answer");
    let bytes = read(&file);
    assert_eq!(
        real.open(&bytes)
            .expect("the real code opens it")
            .message
            .as_str(),
        "for the real tipster"
    );
    assert!(
        spoof.open(&bytes).is_err(),
        "the uploaded certificate cannot"
    );
}
