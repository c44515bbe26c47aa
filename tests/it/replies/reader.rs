//! The tipster's side in process, through `router(state)`: a wrong code,
//! an issued code whose mailbox is empty and one whose mailbox was emptied
//! get byte-identical pages (the form token masked) and JSON bodies; words
//! that are not a code and a typo the checksum catches are told apart; the
//! answers and the newest status are shown; a follow-up before any answer
//! is refused; the posts are rate limited and their tokens single-use.

use std::time::SystemTime;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use sealform::http::AppState;
use sealform::replies::{AnswerId, ReplyCode, ReplyStatus, answer_plaintext, seal_answer};
use serde_json::{Value, json};

use super::REPLIES_FORMS;
use crate::support::*;

/// `[limits]`/`[abuse]` with form tokens on (no minimum fill time) and
/// the form posts' rate budgets `burst` per client.
fn tables(burst: u32) -> String {
    format!(
        r#"
[limits]
form_client = {{ burst = {burst}, per_minute = 1 }}
form_each = {{ burst = 100000, per_minute = 100000 }}
form_global = {{ burst = 100000, per_minute = 100000 }}
form_page_client = {{ burst = 100000, per_minute = 100000 }}
api_client = {{ burst = 100000, per_minute = 100000 }}
api_global = {{ burst = 100000, per_minute = 100000 }}

[abuse]
min_fill_secs = 0
"#
    )
}

/// An API submission to `tip`; its receipt and reply code.
pub async fn submit_tip(app: &axum::Router, message: &str) -> (String, String) {
    let (res, body) = send(
        app,
        api_post("tip", &json!({"fields": {"message": message}})),
    )
    .await;
    let receipt = created(&res, &body);
    let v: Value = serde_json::from_slice(&body).expect("json");
    let code = v["reply_code"].as_str().expect("reply_code").to_owned();
    (receipt, code)
}

/// Seals an answer to the mailbox of `code` (as `sealform reply` would)
/// and stores it through the state's reply store.
pub fn push_answer(state: &AppState, code: &str, status: Option<ReplyStatus>, text: &str) {
    let derived = ReplyCode::parse(code)
        .expect("code")
        .derive()
        .expect("derive");
    let plain = answer_plaintext(Some("tip"), status, text.as_bytes());
    // The certificate as staff find it in the record (public only).
    let cert = {
        use sequoia_openpgp::parse::Parse;
        sequoia_openpgp::Cert::from_bytes(derived.cert_armored().as_bytes()).expect("cert")
    };
    let sealed = seal_answer(&cert, &[], &plain, SystemTime::now()).expect("seal");
    state
        .mailboxes()
        .put(
            &derived.mailbox,
            &AnswerId::random(),
            &sealed,
            SystemTime::now(),
        )
        .expect("put");
}

/// `GET /replies` (in `lang`): status and page.
async fn get_replies(app: &axum::Router, lang: &str) -> (StatusCode, String) {
    let req = Request::get(format!("/replies?lang={lang}"))
        .body(Body::empty())
        .expect("request");
    let (res, body) = send(app, req).await;
    (res.status(), String::from_utf8(body).expect("utf-8"))
}

/// A urlencoded POST to `path` with `pairs`: status and page.
async fn post_page(app: &axum::Router, path: &str, pairs: &[(&str, &str)]) -> (StatusCode, String) {
    let req = Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(urlencode(pairs)))
        .expect("request");
    let (res, body) = send(app, req).await;
    (res.status(), String::from_utf8(body).expect("utf-8"))
}

/// Reads the code on the page: a fresh token from `GET /replies`, then the
/// post. Status and page.
async fn read_page(app: &axum::Router, code: &str) -> (StatusCode, String) {
    let (_, form) = get_replies(app, "en").await;
    let token = token_in(form.as_bytes());
    post_page(
        app,
        "/replies?lang=en",
        &[("sf.token", &token), ("code", code)],
    )
    .await
}

/// A JSON POST to `path`: status and body.
async fn post_api(app: &axum::Router, path: &str, body: &Value) -> (StatusCode, Vec<u8>) {
    let req = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let (res, body) = send(app, req).await;
    (res.status(), body)
}

/// `page` with every form token's value replaced by `TOKEN`.
fn masked(page: &str) -> String {
    let marker = "name=\"sf.token\" value=\"";
    let mut out = String::new();
    let mut rest = page;
    while let Some(at) = rest.find(marker) {
        let start = at + marker.len();
        out.push_str(&rest[..start]);
        out.push_str("TOKEN");
        let end = rest[start..].find('"').expect("end of value");
        rest = &rest[start + end..];
    }
    out.push_str(rest);
    out
}

/// `code` with its last word replaced so that the checksum fails.
fn mistyped(code: &str) -> String {
    let words: Vec<&str> = code.split(' ').collect();
    words
        .iter()
        .map(|w| {
            let mut typo = words[..11].to_vec();
            typo.push(w);
            typo.join(" ")
        })
        .find(|c| {
            matches!(
                ReplyCode::parse(c),
                Err(sealform::replies::CodeError::Checksum)
            )
        })
        .expect("one of the code's own words breaks its checksum")
}

#[tokio::test]
async fn a_wrong_code_and_an_empty_mailbox_get_byte_identical_pages_and_bodies() {
    let fx = Fixture::with_tables(&[TestKey::Ed25519], REPLIES_FORMS, "", &tables(1000));
    let (app, state) = fx.app_and_state();
    let (_, issued) = submit_tip(&app, "first tip").await;
    let (_, emptied) = submit_tip(&app, "second tip").await;
    push_answer(&state, &emptied, Some(ReplyStatus::Received), "we got it");
    let (status, body) = post_api(&app, "/api/v1/replies/delete", &json!({"code": emptied})).await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let wrong = ReplyCode::generate().expose().to_owned();

    let mut pages = Vec::new();
    let mut bodies = Vec::new();
    for code in [&issued, &emptied, &wrong] {
        let (status, page) = read_page(&app, code).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(
            page.contains("There is nothing here for this code"),
            "{page}"
        );
        assert!(!page.contains(code.as_str()), "the code is never echoed");
        pages.push(masked(&page));
        let (status, body) = post_api(&app, "/api/v1/replies", &json!({"code": code})).await;
        assert_eq!(status, StatusCode::OK);
        bodies.push(body);
    }
    assert_eq!(pages[0], pages[1], "issued vs emptied");
    assert_eq!(pages[0], pages[2], "issued vs wrong");
    assert_eq!(bodies[0], bodies[1]);
    assert_eq!(bodies[0], bodies[2]);
    assert_eq!(bodies[0], br#"{"status":null,"answers":[]}"#.to_vec());
    // A deleted mailbox is gone from disk.
    let derived = ReplyCode::parse(&emptied)
        .expect("code")
        .derive()
        .expect("derive");
    let folder = fx
        .data_dir()
        .join("replies")
        .join(derived.mailbox.to_string());
    assert!(!folder.exists(), "{}", folder.display());
}

#[tokio::test]
async fn a_typo_the_checksum_catches_and_words_that_are_no_code_are_told_apart() {
    let fx = Fixture::with_tables(&[TestKey::Ed25519], REPLIES_FORMS, "", &tables(1000));
    let app = fx.app();
    let (_, code) = submit_tip(&app, "a tip").await;
    let typo = mistyped(&code);
    let long = "abandon ".repeat(100);
    let cases: [(&str, &str, &str); 4] = [
        (&typo, "code_checksum", "One of the words is mistyped"),
        ("hello world", "invalid_code", "This is not a reply code"),
        ("", "invalid_code", "This is not a reply code"),
        (&long, "invalid_code", "This is not a reply code"),
    ];
    for (typed, api_code, says) in cases {
        let (status, page) = read_page(&app, typed).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{typed:?}");
        assert!(page.contains(says), "{typed:?}: {page}");
        let (status, body) = post_api(&app, "/api/v1/replies", &json!({"code": typed})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{typed:?}");
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["error"]["code"], api_code, "{typed:?}");
    }
    // Upper case and extra spaces are the same code.
    let shouted = format!("  {}  ", code.to_uppercase().replace(' ', "   "));
    let (status, _) = post_api(&app, "/api/v1/replies", &json!({"code": shouted})).await;
    assert_eq!(status, StatusCode::OK);
    // Not the body the route takes.
    for bad in [
        json!({}),
        json!({"code": 12}),
        json!({"code": code, "more": 1}),
        json!([]),
    ] {
        let (status, _) = post_api(&app, "/api/v1/replies", &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn the_answers_and_the_newest_status_are_shown_escaped_in_the_reader_s_language() {
    let fx = Fixture::with_tables(&[TestKey::Ed25519], REPLIES_FORMS, "", &tables(1000));
    let (app, state) = fx.app_and_state();
    let code = ReplyCode::generate().expose().to_owned();
    push_answer(
        &state,
        &code,
        Some(ReplyStatus::Received),
        "Thanks, <b>we read it</b>.",
    );
    // An answer's time is written to the second: the second answer is
    // written a second later, so it is the newer one.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    push_answer(
        &state,
        &code,
        Some(ReplyStatus::InProgress),
        "Can you\nsay more?",
    );

    let (status, body) = post_api(&app, "/api/v1/replies", &json!({"code": code})).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["status"], "in-progress");
    let answers = v["answers"].as_array().expect("answers");
    assert_eq!(answers.len(), 2);
    let texts: Vec<&str> = answers
        .iter()
        .map(|a| a["message"].as_str().expect("message"))
        .collect();
    assert_eq!(
        texts,
        ["Thanks, <b>we read it</b>.", "Can you\nsay more?"],
        "oldest first: {v}"
    );
    assert_eq!(answers[1]["status"], "in-progress");
    assert_eq!(answers[0]["day"].as_str().map(str::len), Some(10));

    let (_, form) = get_replies(&app, "es").await;
    let token = token_in(form.as_bytes());
    let (status, page) = post_page(
        &app,
        "/replies?lang=es",
        &[("sf.token", &token), ("code", &code)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("<html lang=\"es\""), "{page}");
    assert!(page.contains("Estado: en curso"), "{page}");
    assert!(
        page.contains("Thanks, &lt;b&gt;we read it&lt;/b&gt;."),
        "escaped: {page}"
    );
    assert!(!page.contains("<b>we read it</b>"));
    assert!(page.contains("Can you<br>say more?"), "{page}");
    // The code travels back only in the hidden fields of the two forms.
    assert_eq!(page.matches(code.as_str()).count(), 2, "{page}");
    assert!(!page.contains("code="), "never in a URL");

    // A follow-up too long for the form's `message` field comes back on
    // the answers page, the text kept and the problem next to it.
    let token = token_in(page.as_bytes());
    let long = format!("<b>{}", "x".repeat(5000));
    let pairs = [
        ("sf.token", token.as_str()),
        ("code", &code),
        ("message", &long),
    ];
    let (status, again) = post_page(&app, "/replies/follow-up?lang=en", &pairs).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{again}");
    assert!(
        again.contains("Shorten this to at most 5000 characters"),
        "{again}"
    );
    assert!(again.contains(&format!("&lt;b&gt;{}</textarea>", "x".repeat(5000))));
    assert!(again.contains("Can you<br>say more?"), "the answers again");
    assert_eq!(
        again.matches(code.as_str()).count(),
        2,
        "the code in both forms"
    );
}

#[tokio::test]
async fn a_follow_up_before_any_answer_is_refused_and_stores_nothing() {
    let fx = Fixture::with_tables(&[TestKey::Ed25519], REPLIES_FORMS, "", &tables(1000));
    let app = fx.app();
    let (_, code) = submit_tip(&app, "a tip").await;
    let before = fx.records().len();
    let (status, body) = post_api(
        &app,
        "/api/v1/replies/follow-up",
        &json!({"code": code, "message": "hello?"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["error"]["code"], "not_answered_yet");
    let (_, form) = get_replies(&app, "en").await;
    let token = token_in(form.as_bytes());
    let pairs = [
        ("sf.token", token.as_str()),
        ("code", &code),
        ("message", "hello?"),
    ];
    let (status, page) = post_page(&app, "/replies/follow-up?lang=en", &pairs).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(page.contains("once the newsroom has answered"), "{page}");
    assert_eq!(fx.records().len(), before, "nothing stored");
}

#[tokio::test]
async fn reply_posts_spend_their_token_once_and_are_rate_limited_like_form_posts() {
    let fx = Fixture::with_tables(&[TestKey::Ed25519], DEFAULT_FORMS, "", &tables(2));
    let app = fx.app();
    let code = ReplyCode::generate().expose().to_owned();
    let (_, form) = get_replies(&app, "en").await;
    let token = token_in(form.as_bytes());
    let pairs = [("sf.token", token.as_str()), ("code", code.as_str())];
    let (status, _) = post_page(&app, "/replies", &pairs).await;
    assert_eq!(status, StatusCode::OK);
    let (status, page) = post_page(&app, "/replies", &pairs).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "replayed");
    assert!(page.contains("already sent once"), "{page}");
    let (status, page) = post_page(&app, "/replies", &[("code", code.as_str())]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no token");
    assert!(page.contains("did not come from this site"), "{page}");
    // The second good post spends the burst of 2; the third is refused.
    let (status, _) = read_page(&app, &code).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = read_page(&app, &code).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // Another site's post, and a body that is not a form's.
    let req = Request::post("/replies")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .body(Body::from(urlencode(&pairs)))
        .expect("request");
    let (res, _) = send(&app, req).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let req = Request::post("/replies")
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .expect("request");
    let (res, _) = send(&app, req).await;
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

/// Three forms: `desk-a` sealed to the ed25519 key and `desk-b` to the RSA
/// key (both with replies), `closed` without replies.
fn desk_forms() -> String {
    let desk = |id: &str, recipients: &str, replies: bool| {
        format!(
            "[[forms]]\nid = \"{id}\"\ntitle = \"{id}\"\nrecipients = [{recipients}]\n\
             replies = {replies}\n\n  [[forms.fields]]\n  name = \"message\"\n  \
             label = \"Message\"\n  kind = \"textarea\"\n  required = true\n\n"
        )
    };
    let ed = format!("\"{}\"", TestKey::Ed25519.fingerprint());
    let rsa = format!("\"{}\"", TestKey::Rsa.fingerprint());
    desk("desk-a", &ed, true) + &desk("desk-b", &rsa, true) + &desk("closed", &ed, false)
}

/// An answer's plaintext written by hand, with its own time.
fn answer_at(form: &str, status: &str, written: &str, text: &str) -> Vec<u8> {
    format!(
        "Sealform-Form: {form}\nSealform-Status: {status}\nSealform-Written: {written}\n\n{text}"
    )
    .into_bytes()
}

#[tokio::test]
async fn a_follow_up_goes_to_the_form_the_newest_answer_names_charged_to_that_form() {
    let tables = r#"
[limits]
form_client = { burst = 100000, per_minute = 100000 }
form_each = { burst = 1, per_minute = 1 }
form_global = { burst = 100000, per_minute = 100000 }
api_client = { burst = 100000, per_minute = 100000 }
api_global = { burst = 100000, per_minute = 100000 }

[abuse]
form_tokens = false
"#;
    let keys = [TestKey::Ed25519, TestKey::Rsa];
    let fx = Fixture::with_tables(&keys, &desk_forms(), "", tables);
    let (app, state) = fx.app_and_state();
    let (res, body) = send(&app, super::tip("desk-a", "a tip for desk A")).await;
    let first = created(&res, &body);
    let code = super::reply_code_of(&body);
    let derived = ReplyCode::parse(&code)
        .expect("code")
        .derive()
        .expect("derive");
    // Two answers of one day, the newer one (by the time inside) under
    // the smaller id, so the store lists it first.
    let (mut a, mut b) = (AnswerId::random(), AnswerId::random());
    if a < b {
        std::mem::swap(&mut a, &mut b);
    }
    let put = |id: &AnswerId, plain: Vec<u8>| {
        let sealed = seal_answer(derived.cert(), &[], &plain, SystemTime::now()).expect("seal");
        let now = SystemTime::now();
        state
            .mailboxes()
            .put(&derived.mailbox, id, &sealed, now)
            .expect("put");
    };
    put(
        &a,
        answer_at(
            "desk-a",
            "received",
            "2026-01-01T10:00:00Z",
            "older, desk A",
        ),
    );
    put(
        &b,
        answer_at(
            "desk-b",
            "answered",
            "2026-01-01T11:00:00Z",
            "newer, desk B",
        ),
    );

    let (status, body) = post_api(&app, "/api/v1/replies", &json!({"code": code})).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["status"], "answered", "{v}");
    assert_eq!(v["answers"][0]["message"], "older, desk A", "{v}");
    assert_eq!(v["answers"][1]["message"], "newer, desk B", "{v}");
    let (_, page) = post_page(&app, "/replies", &[("code", code.as_str())]).await;
    assert!(
        page.contains("id=\"status\"><strong>Status: answered"),
        "{page}"
    );

    // The follow-up: desk B's recipients only, the same mailbox inside.
    let ask = json!({"code": code, "message": "the invoices are from 2019"});
    let (status, body) = post_api(&app, "/api/v1/replies/follow-up", &ask).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let v: Value = serde_json::from_slice(&body).expect("json");
    let receipt = v["receipt"].as_str().expect("receipt");
    let ed_only = Gpg::with_secret_keys(&[&TestKey::Ed25519.secret()]);
    assert!(
        ed_only.decrypt(&fx.record(receipt)).is_err(),
        "not desk A's key"
    );
    let rsa_only = Gpg::with_secret_keys(&[&TestKey::Rsa.secret()]);
    let eml = rsa_only
        .decrypt(&fx.record(receipt))
        .expect("desk B's key opens it");
    assert_eq!(
        json_part(&eml)["fields"]["message"],
        "the invoices are from 2019"
    );
    let tip_eml = ed_only.decrypt(&fx.record(&first)).expect("the tip");
    let header = |eml: &[u8]| {
        String::from_utf8_lossy(eml)
            .lines()
            .find_map(|l| l.strip_prefix("Reply-Mailbox: ").map(str::to_owned))
            .expect("Reply-Mailbox")
    };
    assert_eq!(header(&eml), header(&tip_eml));
    assert_eq!(header(&eml), derived.mailbox.to_string());

    // desk B's own budget (burst 1) is spent: 429, nothing stored.
    let records = fx.records().len();
    let (status, _) = post_api(&app, "/api/v1/replies/follow-up", &ask).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // An answer naming a form without replies closes follow-ups.
    put(
        &AnswerId::random(),
        answer_at("closed", "closed", "2026-01-01T12:00:00Z", "done"),
    );
    let (status, body) = post_api(&app, "/api/v1/replies/follow-up", &ask).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["error"]["code"], "follow_up_closed");
    assert_eq!(fx.records().len(), records, "nothing stored");
}
