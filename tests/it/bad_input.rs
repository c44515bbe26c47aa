//! Acceptance of bad client input (issue 2, point 6): one table of requests
//! against the in-process router, on the HTML and the API route where a
//! case applies to both.
//!
//! Each case must get its documented status (DESIGN.md: 400 malformed, 404
//! unknown form, 405 wrong method, 413 too large, 415 wrong content type,
//! 422 validation); API errors are `{"error": {"code", "message"}}`, HTML
//! errors are an HTML page; no error body repeats what was submitted (every
//! value and client-chosen name carries a canary); nothing is written to the
//! spool; and the app keeps serving afterwards.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

/// In every submitted value or client-chosen name; never in an answer.
const CANARY: &str = "q7Canary9zX";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Route {
    Api,
    Html,
}

struct Case {
    name: &'static str,
    route: Route,
    request: Request<Body>,
    status: StatusCode,
    /// The API error code (`None` for HTML cases).
    code: Option<&'static str>,
}

fn api_raw(form: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::post(format!("/api/v1/forms/{form}/submissions"));
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    b.body(body.into()).expect("request")
}

fn html_raw(form: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::post(format!("/forms/{form}"));
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    b.body(body.into()).expect("request")
}

fn api_json(v: Value) -> Request<Body> {
    api_post("tip", &v)
}

fn html_form(body: &str) -> Request<Body> {
    form_post("tip", body)
}

/// A body of `len` bytes that announces its length in `Content-Length`.
fn with_length(mut req: Request<Body>, len: usize) -> Request<Body> {
    req.headers_mut()
        .insert("content-length", len.to_string().parse().expect("header"));
    req
}

/// The same bytes as a stream of unknown length (as with chunked encoding).
fn streamed(bytes: Vec<u8>) -> Body {
    Body::from_stream(Body::from(bytes).into_data_stream())
}

fn canaries(n: usize) -> String {
    CANARY.repeat(n / CANARY.len() + 1)[..n].to_owned()
}

#[rustfmt::skip] // one line per case: a table
fn cases() -> Vec<Case> {
    use Route::*;
    let c = CANARY;
    let long = canaries(5001);
    let big = 300 * 1024; // over the default 256 KiB limit
    let big_json = format!(r#"{{"fields": {{"message": "{}"}}}}"#, canaries(big));
    let big_form = format!("message={}", canaries(big));
    let many_form = (0..10_000)
        .map(|i| format!("f{i}={c}"))
        .collect::<Vec<_>>()
        .join("&");
    let many_json = format!(
        "{{\"fields\": {{{}}}}}",
        (0..10_000)
            .map(|i| format!("\"f{i}\": \"{c}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut invalid_utf8_json = br#"{"fields": {"message": ""#.to_vec();
    invalid_utf8_json.extend_from_slice(b"\xff\xfe");
    invalid_utf8_json.extend_from_slice(c.as_bytes());
    invalid_utf8_json.extend_from_slice(b"\"}}");
    let mut invalid_utf8_form = b"message=".to_vec();
    invalid_utf8_form.extend_from_slice(b"\xc3\x28");
    invalid_utf8_form.extend_from_slice(c.as_bytes());

    let case = |name, route, request, status: u16, code| Case {
        name,
        route,
        request,
        status: StatusCode::from_u16(status).expect("status"),
        code,
    };
    vec![
        // Unknown form.
        case("api unknown form", Api, api_post("nope", &json!({"fields": {"message": c}})), 404, Some("unknown_form")),
        case("html unknown form", Html, form_post("nope", &format!("message={c}")), 404, None),
        // Missing required field, or only blanks.
        case("api missing required field", Api, api_json(json!({"fields": {"contact": c}})), 422, Some("missing_field")),
        case("html missing required field", Html, html_form(&format!("contact={c}")), 422, None),
        case("api required field blank", Api, api_json(json!({"fields": {"message": "  \t ", "contact": c}})), 422, Some("missing_field")),
        case("api empty fields object", Api, api_json(json!({"fields": {}})), 422, Some("missing_field")),
        // Over max_len.
        case("api message over max_len", Api, api_json(json!({"fields": {"message": long}})), 422, Some("too_long")),
        case("html message over max_len", Html, html_form(&format!("message={long}")), 422, None),
        case("api contact over max_len", Api, api_json(json!({"fields": {"message": "ok", "contact": canaries(201)}})), 422, Some("too_long")),
        // Unknown field (its name is the canary).
        case("api unknown field", Api, api_json(json!({"fields": {"message": "ok", c: "x"}})), 422, Some("unknown_field")),
        case("html unknown field", Html, html_form(&format!("message=ok&{c}=x")), 422, None),
        case("html field name with bad percent-encoding", Html, html_form(&format!("mess%ZZage={c}")), 422, None),
        // Not UTF-8.
        case("api invalid UTF-8", Api, api_raw("tip", Some("application/json"), invalid_utf8_json), 400, Some("malformed")),
        case("html invalid UTF-8 (raw bytes)", Html, html_raw("tip", Some("application/x-www-form-urlencoded"), invalid_utf8_form), 400, None),
        case("html invalid UTF-8 (percent-encoded)", Html, html_form(&format!("message=%FF%FE{c}")), 400, None),
        case("html bad percent-encoding of UTF-8", Html, html_form(&format!("message=%C3%28{c}")), 400, None),
        // Wrong or missing content type.
        case("api text/plain", Api, api_raw("tip", Some("text/plain"), format!(r#"{{"fields": {{"message": "{c}"}}}}"#)), 415, Some("unsupported_media_type")),
        case("api urlencoded", Api, api_raw("tip", Some("application/x-www-form-urlencoded"), format!("message={c}")), 415, Some("unsupported_media_type")),
        case("api no content type", Api, api_raw("tip", None, format!(r#"{{"fields": {{"message": "{c}"}}}}"#)), 415, Some("unsupported_media_type")),
        case("html JSON", Html, html_raw("tip", Some("application/json"), format!(r#"{{"fields": {{"message": "{c}"}}}}"#)), 415, None),
        case("html no content type", Html, html_raw("tip", None, format!("message={c}")), 415, None),
        // Malformed JSON.
        case("api truncated JSON", Api, api_raw("tip", Some("application/json"), format!(r#"{{"fields": {{"message": "{c}""#)), 400, Some("malformed")),
        case("api not JSON at all", Api, api_raw("tip", Some("application/json"), format!("message={c}")), 400, Some("malformed")),
        case("api trailing garbage", Api, api_raw("tip", Some("application/json"), format!(r#"{{"fields": {{"message": "ok"}}}} {c}"#)), 400, Some("malformed")),
        case("api JSON array instead of object", Api, api_json(json!([{"fields": {"message": c}}])), 400, Some("malformed")),
        case("api fields is an array", Api, api_json(json!({"fields": [c]})), 400, Some("malformed")),
        case("api fields missing", Api, api_json(json!({"message": c})), 400, Some("malformed")),
        // serde_json skips an ignored value without recursion, so depth
        // is no stack risk; it is simply not a string.
        case("api deeply nested value", Api, api_raw("tip", Some("application/json"), format!(r#"{{"fields": {{"message": {}"{c}"{}}}}}"#, "[".repeat(5000), "]".repeat(5000))), 422, Some("wrong_type")),
        case("api deeply nested body", Api, api_raw("tip", Some("application/json"), format!("{}\"{c}\"{}", "[".repeat(5000), "]".repeat(5000))), 400, Some("malformed")),
        case("api very long unknown field name", Api, api_json(json!({"fields": {"message": "ok", canaries(100_000): "x"}})), 422, Some("unknown_field")),
        case("api unknown top-level key", Api, api_json(json!({"fields": {"message": "ok"}, c: 1})), 400, Some("malformed")),
        // Empty body: malformed JSON on the API; on the HTML route an empty
        // form is a form without the required field.
        case("api empty body", Api, api_raw("tip", Some("application/json"), ""), 400, Some("malformed")),
        case("html empty body", Html, html_raw("tip", Some("application/x-www-form-urlencoded"), ""), 422, None),
        // Too large, announced and streamed.
        case("api over the body limit (Content-Length)", Api, with_length(api_raw("tip", Some("application/json"), big_json.clone()), big_json.len()), 413, Some("payload_too_large")),
        case("api over the body limit (streamed)", Api, api_raw("tip", Some("application/json"), streamed(big_json.into_bytes())), 413, Some("payload_too_large")),
        case("html over the body limit (Content-Length)", Html, with_length(html_raw("tip", Some("application/x-www-form-urlencoded"), big_form.clone()), big_form.len()), 413, None),
        case("html over the body limit (streamed)", Html, html_raw("tip", Some("application/x-www-form-urlencoded"), streamed(big_form.into_bytes())), 413, None),
        // Duplicates and floods of fields.
        case("api duplicated field", Api, api_raw("tip", Some("application/json"), format!(r#"{{"fields": {{"message": "{c}", "message": "{c}"}}}}"#)), 400, Some("duplicate_field")),
        case("html duplicated field", Html, html_form(&format!("message={c}&message={c}")), 400, None),
        case("api ten thousand fields", Api, api_raw("tip", Some("application/json"), many_json), 400, Some("too_many_fields")),
        case("html ten thousand fields", Html, html_form(&many_form), 400, None),
        // Wrong JSON types.
        case("api number for text", Api, api_json(json!({"fields": {"message": 12345}})), 422, Some("wrong_type")),
        case("api array for text", Api, api_json(json!({"fields": {"message": [c]}})), 422, Some("wrong_type")),
        case("api object for text", Api, api_json(json!({"fields": {"message": {"v": c}}})), 422, Some("wrong_type")),
        case("api null for text", Api, api_json(json!({"fields": {"message": null}})), 422, Some("wrong_type")),
        case("api bool for text", Api, api_json(json!({"fields": {"message": true}})), 422, Some("wrong_type")),
        case("api string checkbox", Api, api_json(json!({"fields": {"message": "ok", "publish": c}})), 422, Some("wrong_type")),
        case("html checkbox with a strange value", Html, html_form(&format!("message=ok&publish={c}")), 422, None),
        // Kind-specific validation.
        case("api invalid email", Api, api_json(json!({"fields": {"message": "ok", "email": c}})), 422, Some("invalid_email")),
        case("html invalid email", Html, html_form(&format!("message=ok&email={c}%40nodot")), 422, None),
        case("api invalid select option", Api, api_json(json!({"fields": {"message": "ok", "topic": c}})), 422, Some("invalid_option")),
        case("html invalid select option", Html, html_form(&format!("message=ok&topic={c}")), 422, None),
        // Control characters and NUL.
        case("api control character", Api, api_json(json!({"fields": {"message": "ok", "contact": format!("a\u{7}{c}")}})), 422, Some("invalid_characters")),
        case("html control character", Html, html_form(&format!("message=ok&contact=a%1B{c}")), 422, None),
        case("api newline in one-line field", Api, api_json(json!({"fields": {"message": "ok", "contact": format!("a\n{c}")}})), 422, Some("invalid_characters")),
        case("api NUL byte", Api, api_json(json!({"fields": {"message": format!("a\u{0}{c}")}})), 422, Some("invalid_characters")),
        case("html NUL byte", Html, html_form(&format!("message=a%00{c}")), 422, None),
        case("html raw NUL byte", Html, html_raw("tip", Some("application/x-www-form-urlencoded"), format!("message=a\0{c}")), 422, None),
        // Wrong method.
        case("api GET on the submission route", Api, Request::get("/api/v1/forms/tip/submissions").body(Body::empty()).expect("req"), 405, Some("method_not_allowed")),
        case("html PUT on a form", Html, Request::put("/forms/tip").header("content-type", "application/x-www-form-urlencoded").body(Body::from(format!("message={c}"))).expect("req"), 405, None),
    ]
}

#[tokio::test]
async fn every_bad_request_gets_its_documented_status_and_stores_nothing() {
    let fx = Fixture::standard();
    let app = fx.app();
    let cases = cases();
    assert!(cases.len() >= 20);
    for case in cases {
        let name = case.name;
        let (res, body) = send(&app, case.request).await;
        assert_eq!(
            res.status(),
            case.status,
            "{name}: {}",
            String::from_utf8_lossy(&body)
        );
        let text = String::from_utf8_lossy(&body);
        let text = outside_refilled_form(&text, res.status().as_u16());
        assert!(
            !text.contains(CANARY),
            "{name}: the answer echoes the submission: {text}"
        );
        let ct = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        match case.route {
            Route::Api => {
                assert!(ct.starts_with("application/json"), "{name}: {ct}");
                let v: Value = serde_json::from_slice(&body)
                    .unwrap_or_else(|e| panic!("{name}: API error is JSON ({e}): {text}"));
                let err = &v["error"];
                assert_eq!(err["code"].as_str(), case.code, "{name}: {text}");
                assert!(
                    err["message"].as_str().is_some_and(|m| !m.is_empty()),
                    "{name}: a message: {text}"
                );
            }
            Route::Html => {
                assert!(ct.starts_with("text/html"), "{name}: {ct}");
                assert!(text.starts_with("<!DOCTYPE html>"), "{name}: {text}");
            }
        }
        assert!(fx.records().is_empty(), "{name}: a record was written");
        assert_eq!(fx.partials(), 0, "{name}: spool/tmp is not empty");
    }

    // Still serving, both ways.
    let (res, _) = send(
        &app,
        api_json(json!({"fields": {"message": "after the storm"}})),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let (res, _) = send(&app, html_form("message=after+the+storm")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(fx.records().len(), 2);
    assert_eq!(fx.partials(), 0);
}

#[tokio::test]
async fn a_lone_percent_sign_is_kept_as_browsers_do() {
    // Not an error: a `%` not followed by two hex digits is taken literally
    // (WHATWG urlencoded parsing), so what the person typed is what is sealed.
    let fx = Fixture::new(&[TestKey::Ed25519], DEFAULT_FORMS, "");
    let app = fx.app();
    let (res, body) = send(&app, html_form("message=100%ZZ+sure%")).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let receipt = crate::wire::receipt_in_page(&body).expect("receipt");
    let gpg = Gpg::with_secret_keys(&[&TestKey::Ed25519.secret()]);
    let eml = gpg.decrypt(&fx.record(&receipt)).expect("decrypts");
    assert_eq!(json_part(&eml)["fields"]["message"], "100%ZZ sure%");
}

/// Writes `head` and `body` (ignoring a server that stops reading early)
/// and returns what it answered.
fn raw_exchange(addr: &str, head: &str, body: &[u8]) -> crate::wire::WireResponse {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .expect("timeout");
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A reset after the answer was sent still leaves the answer.
            Err(_) => break,
        }
    }
    crate::wire::parse(&raw).expect("an HTTP answer")
}

#[test]
fn the_real_server_answers_413_to_oversized_bodies_announced_or_chunked() {
    let fx = Fixture::standard();
    let server = Server::start(&fx);
    let payload = format!("message={}", canaries(300 * 1024));
    let json_payload = format!(r#"{{"fields": {{"message": "{}"}}}}"#, canaries(300 * 1024));
    let chunked = |body: &[u8]| {
        let mut out = Vec::new();
        for c in body.chunks(8192) {
            out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            out.extend_from_slice(c);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    };
    for (route, ct, body) in [
        (
            "/forms/tip",
            "application/x-www-form-urlencoded",
            payload.as_bytes(),
        ),
        (
            "/api/v1/forms/tip/submissions",
            "application/json",
            json_payload.as_bytes(),
        ),
    ] {
        let start = format!(
            "POST {route} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {ct}\r\n"
        );
        let announced = raw_exchange(
            &server.addr,
            &format!("{start}Content-Length: {}\r\n\r\n", body.len()),
            body,
        );
        let streamed = raw_exchange(
            &server.addr,
            &format!("{start}Transfer-Encoding: chunked\r\n\r\n"),
            &chunked(body),
        );
        for (how, res) in [("Content-Length", announced), ("chunked", streamed)] {
            assert_eq!(res.status, 413, "{route} {how}: {}", res.headers);
            assert!(!String::from_utf8_lossy(&res.body).contains(CANARY));
        }
    }
    assert!(fx.records().is_empty());
    assert_eq!(fx.partials(), 0);
    let res = crate::wire::post_form(&server.addr, "tip", "message=still+here").expect("post");
    assert_eq!(res.status, 200);
    assert!(server.terminate().success());
}

#[test]
fn an_announced_oversized_body_gets_413_before_it_is_sent() {
    // The client announces 100 MB and sends nothing: the answer must come
    // from the Content-Length alone, not after a timeout.
    let fx = Fixture::new(
        &[TestKey::Ed25519, TestKey::Rsa],
        DEFAULT_FORMS,
        "[staff]\non_public_listener = true",
    );
    let server = Server::start(&fx);
    for (route, ct, want_ct) in [
        (
            "/forms/tip",
            "application/x-www-form-urlencoded",
            "text/html",
        ),
        (
            "/api/v1/forms/tip/submissions",
            "application/json",
            "application/json",
        ),
        // Multipart passes only where uploads are taken, under their caps.
        (
            "/api/v1/staff/submissions/AAAAAAAAAAAAAAAAAAAAAAAAAA/ack",
            "multipart/form-data; boundary=x",
            "application/json",
        ),
    ] {
        let started = std::time::Instant::now();
        let res = raw_exchange(
            &server.addr,
            &format!(
                "POST {route} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                 Content-Type: {ct}\r\nContent-Length: 100000000\r\n\r\n"
            ),
            b"",
        );
        assert_eq!(res.status, 413, "{route}: {}", res.headers);
        assert!(
            res.headers
                .to_ascii_lowercase()
                .contains(&format!("content-type: {want_ct}")),
            "{route}: {}",
            res.headers
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{route}: answered at once, not after a timeout"
        );
    }
    assert!(server.terminate().success());
}
