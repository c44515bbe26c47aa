//! Attachments: multipart uploads streamed into the ciphertext, their limits,
//! and what is left behind when an upload fails (nothing).
//!
//! Records are decrypted with the real `gpg` and the MIME message is parsed
//! with an independent parser (`mail-parser`), as a mail client would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures_util::StreamExt as _;
use mail_parser::{MessageParser, MimeHeaders};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const BOUNDARY: &str = "sealform-test-7MA4YWxkTrZu0gW";

/// Forms for these tests: `upload` with small caps, `big` with room for tens
/// of MiB and a required file.
const UPLOAD_FORMS: &str = r#"
[[forms]]
id = "upload"
title = "Send documents"
max_file_bytes = 1000
max_files = 3
max_total_bytes = 2500

  [[forms.fields]]
  name = "message"
  label = "Message"
  kind = "textarea"
  required = true
  max_len = 100

  [[forms.fields]]
  name = "contact"
  label = "Contact"
  kind = "text"
  max_len = 50

  [[forms.fields]]
  name = "publish"
  label = "May publish"
  kind = "checkbox"

  [[forms.fields]]
  name = "documents"
  label = "Documents"
  kind = "file"
  multiple = true

  [[forms.fields]]
  name = "photo"
  label = "Photo"
  kind = "file"

[[forms]]
id = "big"
title = "Send a large file"
max_file_bytes = 268435456
max_total_bytes = 268435456

  [[forms.fields]]
  name = "note"
  label = "Note"
  kind = "text"

  [[forms.fields]]
  name = "file"
  label = "File"
  kind = "file"
  required = true
"#;

fn fixture(server_extra: &str) -> Fixture {
    Fixture::new(
        &[TestKey::Ed25519, TestKey::Rsa],
        UPLOAD_FORMS,
        server_extra,
    )
}

/// A `multipart/form-data` body under construction.
struct Multipart {
    body: Vec<u8>,
}

impl Multipart {
    fn new() -> Self {
        Multipart { body: Vec::new() }
    }

    fn text(self, name: &str, value: &str) -> Self {
        self.raw_part(
            &format!("form-data; name=\"{name}\""),
            None,
            value.as_bytes(),
        )
    }

    fn file(self, name: &str, filename: &str, content_type: &str, data: &[u8]) -> Self {
        self.raw_part(
            &format!("form-data; name=\"{name}\"; filename=\"{filename}\""),
            Some(content_type),
            data,
        )
    }

    fn raw_part(mut self, disposition: &str, content_type: Option<&str>, data: &[u8]) -> Self {
        self.body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n").as_bytes(),
        );
        if let Some(ct) = content_type {
            self.body
                .extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        self.body.extend_from_slice(b"\r\n");
        self.body.extend_from_slice(data);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    /// The headers of a file part whose content follows (for streaming).
    fn file_head(mut self, name: &str, filename: &str) -> Self {
        self.body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        self
    }

    fn finish(mut self) -> Vec<u8> {
        self.body
            .extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        self.body
    }
}

fn content_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

fn page_post(form: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(format!("/forms/{form}"))
        .header("content-type", content_type())
        .body(Body::from(body))
        .expect("request")
}

fn api_upload(form: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(format!("/api/v1/forms/{form}/submissions"))
        .header("content-type", content_type())
        .body(Body::from(body))
        .expect("request")
}

/// Deterministic pseudo-random bytes (xorshift64*), in chunks.
struct Noise {
    state: u64,
    left: u64,
    chunk: usize,
}

impl Noise {
    fn new(seed: u64, len: u64) -> Self {
        Noise {
            state: seed | 1,
            left: len,
            chunk: 64 * 1024,
        }
    }
    fn sha256(seed: u64, len: u64) -> String {
        let mut h = Sha256::new();
        for c in Noise::new(seed, len) {
            h.update(&c);
        }
        data_encoding::HEXLOWER.encode(&h.finalize())
    }
}

impl Iterator for Noise {
    type Item = Vec<u8>;
    fn next(&mut self) -> Option<Vec<u8>> {
        if self.left == 0 {
            return None;
        }
        let n = self.left.min(self.chunk as u64) as usize;
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            out.extend_from_slice(&self.state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        out.truncate(n);
        self.left -= n as u64;
        Some(out)
    }
}

/// A streamed body: `head`, then `len` noise bytes, then `tail`, with no
/// `Content-Length` (chunked).
fn streamed_body(head: Vec<u8>, seed: u64, len: u64, tail: Vec<u8>) -> Body {
    let chunks = std::iter::once(head)
        .chain(Noise::new(seed, len))
        .chain(std::iter::once(tail))
        .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from(c)));
    Body::from_stream(futures_util::stream::iter(chunks))
}

fn receipt_of(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body).expect("json")["receipt"]
        .as_str()
        .expect("receipt")
        .to_owned()
}

fn decrypt(fx: &Fixture, receipt: &str) -> Vec<u8> {
    let gpg = Gpg::with_secret_keys(&[&TestKey::Ed25519.secret()]);
    gpg.decrypt(&fx.record(receipt)).expect("gpg decrypts")
}

/// Nothing stored and nothing in flight: no record, no temp file, no index
/// entry.
fn assert_nothing_stored(fx: &Fixture) {
    assert!(fx.records().is_empty(), "a record was stored");
    assert_eq!(fx.partials(), 0, "a temp file was left in spool/tmp");
    let stray: Vec<_> = std::fs::read_dir(fx.spool_dir())
        .expect("spool")
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.ends_with("tmp"))
        .collect();
    assert!(stray.is_empty(), "files left in the spool: {stray:?}");
}

/// The index has no entry (open it only once the app is dropped: sled
/// locks it).
fn assert_index_empty(fx: &Fixture) {
    let (store, _) =
        sealform::store::Store::open(&fx.data_dir(), 1 << 20, |_| vec![]).expect("store");
    assert!(store.list().expect("index").is_empty(), "an index entry");
}

fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .map(|v| v["error"]["code"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn an_upload_decrypts_to_a_mime_message_a_mail_client_opens_with_its_attachments() {
    let fx = fixture("");
    let app = fx.app();
    // As a browser sends it: `"`, CR and LF escaped, the rest raw UTF-8.
    let hostile = "../../etc/passwd \u{e9}t\u{e9} \u{1F600} %22quoted%22 line%0D%0Abreak.txt";
    let body = Multipart::new()
        .text("contact", "before the files")
        .file(
            "documents",
            "report.pdf",
            "application/pdf",
            b"%PDF-1.4 fake",
        )
        .text("message", "between the files\nsecond line")
        .file(
            "documents",
            hostile,
            "text/plain",
            b"hostile name, plain content",
        )
        // As other clients may send it: RFC 5987.
        .raw_part(
            "form-data; name=\"photo\"; filename*=utf-8''..%5Cempty%E2%80%AE.jpg",
            Some("image/jpeg"),
            b"",
        )
        .text("publish", "on")
        .finish();
    let (res, body) = send(&app, api_upload("upload", body)).await;
    let receipt = created(&res, &body);
    assert_eq!(fx.records(), vec![fx.record(&receipt)]);
    assert_eq!(fx.partials(), 0);

    let plain = decrypt(&fx, &receipt);
    let message = MessageParser::default().parse(&plain).expect("MIME parses");
    assert_eq!(message.subject(), Some("Send documents"));
    let attachments: Vec<_> = message
        .attachments()
        .filter(|p| p.attachment_name().is_some())
        .collect();
    let got: Vec<(&str, &[u8], String)> = attachments
        .iter()
        .map(|p| {
            let ct = p.content_type().expect("content type");
            (
                p.attachment_name().expect("name"),
                p.contents(),
                format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")),
            )
        })
        .collect();
    let unescaped = "../../etc/passwd \u{e9}t\u{e9} \u{1F600} \"quoted\" line\r\nbreak.txt";
    assert_eq!(
        got,
        vec![
            (
                "report.pdf",
                &b"%PDF-1.4 fake"[..],
                "application/pdf".to_owned()
            ),
            (
                unescaped,
                &b"hostile name, plain content"[..],
                "text/plain".to_owned()
            ),
            ("..\\empty\u{202e}.jpg", &b""[..], "image/jpeg".to_owned()),
        ]
    );
    // The human-readable parts: the field sent before the files first, the
    // others after the attachments.
    let first = message.body_text(0).expect("text part");
    assert!(first.contains("Contact: before the files"), "{first}");
    assert!(!first.contains("between"), "{first}");
    let json = json_part(&plain);
    assert_eq!(json["fields"]["message"], "between the files\nsecond line");
    assert_eq!(json["fields"]["contact"], "before the files");
    assert_eq!(json["fields"]["publish"], true);
    let listed: Vec<(String, String, u64)> = json["attachments"]
        .as_array()
        .expect("list")
        .iter()
        .map(|a| {
            (
                a["field"].as_str().expect("field").to_owned(),
                a["filename"].as_str().expect("name").to_owned(),
                a["size"].as_u64().expect("size"),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            ("documents".to_owned(), "report.pdf".to_owned(), 13),
            ("documents".to_owned(), unescaped.to_owned(), 27),
            ("photo".to_owned(), "..\\empty\u{202e}.jpg".to_owned(), 0),
        ]
    );
    let text = String::from_utf8_lossy(&plain);
    assert!(
        text.contains("between the files") || text.contains("between=20the"),
        "continued text part"
    );
    // Padding covers the whole envelope.
    assert_eq!(
        plain.len() as u64,
        sealform::mime::padded_len(plain.len() as u64)
    );
}

#[tokio::test]
async fn a_browser_form_post_with_a_file_gets_the_receipt_page() {
    let fx = fixture("");
    let app = fx.app();
    let (res, page) = send(
        &app,
        Request::get("/forms/upload")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    let page = String::from_utf8_lossy(&page);
    assert_eq!(res.status(), StatusCode::OK);
    assert!(page.contains("enctype=\"multipart/form-data\""), "{page}");
    assert!(page.contains("type=\"file\""), "{page}");
    assert!(
        page.contains("Up to 3 files, 1000 bytes each, 2.4 KiB in total."),
        "{page}"
    );
    // A mistake comes back as the form, with the text as it was sent, the
    // problem marked, and a word that files must be chosen again.
    let body = Multipart::new()
        .text("message", "")
        .text("contact", "kept after a mistake")
        .file("documents", "notes.txt", "text/plain", b"notes")
        .finish();
    let (res, page) = send(&app, page_post("upload", body)).await;
    let page = String::from_utf8_lossy(&page).into_owned();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(page.contains("value=\"kept after a mistake\""), "{page}");
    assert!(
        page.contains("error-summary") && page.contains("href=\"#f-message\""),
        "{page}"
    );
    assert!(page.contains("choose them again"), "{page}");
    assert!(page.contains("type=\"file\""), "the form itself: {page}");
    assert_nothing_stored(&fx);

    // A browser sends fields in document order, and an empty nameless part
    // for a file input left empty.
    let body = Multipart::new()
        .text("message", "from a browser")
        .file("documents", "notes.txt", "text/plain", b"notes")
        .file("photo", "", "application/octet-stream", b"")
        .finish();
    let (res, page) = send(&app, page_post("upload", body)).await;
    let page = String::from_utf8_lossy(&page).into_owned();
    assert_eq!(res.status(), StatusCode::OK, "{page}");
    let receipt = fx.records()[0]
        .file_stem()
        .expect("stem")
        .to_string_lossy()
        .into_owned();
    assert!(page.contains(&receipt));
    let json = json_part(&decrypt(&fx, &receipt));
    assert_eq!(json["attachments"].as_array().expect("list").len(), 1);
}

#[tokio::test]
async fn a_streamed_32_mib_file_comes_back_byte_identical_through_gpg() {
    let fx = fixture("");
    let app = fx.app();
    let len = 32 * 1024 * 1024 + 17;
    let head = Multipart::new()
        .text("note", "the big one")
        .file_head("file", "big.bin")
        .body;
    let tail = format!("\r\n--{BOUNDARY}--\r\n").into_bytes();
    let req = Request::post("/api/v1/forms/big/submissions")
        .header("content-type", content_type())
        .body(streamed_body(head, 42, len, tail))
        .expect("request");
    let (res, body) = send(&app, req).await;
    let plain = decrypt(&fx, &created(&res, &body));
    let message = MessageParser::default().parse(&plain).expect("MIME parses");
    let file = message
        .attachments()
        .find(|p| p.attachment_name() == Some("big.bin"))
        .expect("attachment");
    assert_eq!(file.contents().len() as u64, len);
    assert_eq!(
        data_encoding::HEXLOWER.encode(&Sha256::digest(file.contents())),
        Noise::sha256(42, len)
    );
}

#[tokio::test]
async fn files_of_0_and_1_byte_and_exactly_the_cap_are_stored_and_cap_plus_1_leaves_nothing() {
    // max_file_bytes = 1000
    let cases: &[(usize, StatusCode)] = &[
        (0, StatusCode::CREATED),
        (1, StatusCode::CREATED),
        (1000, StatusCode::CREATED),
        (1001, StatusCode::PAYLOAD_TOO_LARGE),
    ];
    for &(size, want) in cases {
        let fx = fixture("");
        let app = fx.app();
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let body = Multipart::new()
            .text("message", "sizes")
            .file("photo", "f.bin", "application/octet-stream", &data)
            .finish();
        let (res, body) = send(&app, api_upload("upload", body)).await;
        assert_eq!(res.status(), want, "{size} bytes");
        if want == StatusCode::CREATED {
            let plain = decrypt(&fx, &receipt_of(&body));
            let message = MessageParser::default().parse(&plain).expect("MIME");
            let part = message
                .attachments()
                .find(|p| p.attachment_name() == Some("f.bin"))
                .expect("attachment");
            assert_eq!(part.contents(), &data[..], "{size} bytes");
        } else {
            assert_eq!(error_code(&body), "file_too_large");
            assert_nothing_stored(&fx);
            drop(app);
            assert_index_empty(&fx);
        }
    }
}

#[tokio::test]
async fn uploads_over_a_cap_are_cut_off_with_413_and_leave_nothing() {
    let kb = vec![b'x'; 900];
    let cases: Vec<(&str, Vec<u8>, Option<u64>, &str)> = vec![
        (
            "more files than max_files",
            Multipart::new()
                .text("message", "m")
                .file("documents", "1", "text/plain", b"1")
                .file("documents", "2", "text/plain", b"2")
                .file("documents", "3", "text/plain", b"3")
                .file("documents", "4", "text/plain", b"4")
                .finish(),
            None,
            "too_many_files",
        ),
        (
            "files over max_total_bytes together",
            Multipart::new()
                .text("message", "m")
                .file("documents", "1", "text/plain", &kb)
                .file("documents", "2", "text/plain", &kb)
                .file("documents", "3", "text/plain", &kb)
                .finish(),
            None,
            "upload_too_large",
        ),
        (
            "a declared length over the form's limits",
            Multipart::new().text("message", "m").finish(),
            Some(1 << 40),
            "upload_too_large",
        ),
    ];
    for (what, body, declared, code) in cases {
        let fx = fixture("");
        let app = fx.app();
        let mut req = api_upload("upload", body);
        if let Some(n) = declared {
            req.headers_mut()
                .insert("content-length", n.to_string().parse().expect("header"));
        }
        let (res, body) = send(&app, req).await;
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE, "{what}");
        assert_eq!(error_code(&body), code, "{what}");
        assert_nothing_stored(&fx);
        drop(app);
        assert_index_empty(&fx);
    }
}

#[tokio::test]
async fn broken_or_invalid_multipart_bodies_get_a_clear_4xx_and_leave_nothing() {
    let ok_file = |m: Multipart| m.file("documents", "a.txt", "text/plain", b"data");
    let truncated = {
        let mut b = ok_file(Multipart::new().text("message", "m")).body;
        b.truncate(b.len() - 10);
        b
    };
    // (what, content type if not the usual, body, status, error code)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, StatusCode, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "no boundary",
            Some("multipart/form-data"),
            b"whatever".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        (
            "not multipart at all inside",
            None,
            b"this is not a multipart body".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        (
            "cut off in the middle of a file",
            None,
            truncated,
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        (
            "an unknown field",
            None,
            ok_file(Multipart::new().text("message", "m").text("evil", "x")).finish(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_field",
        ),
        (
            "a text field twice",
            None,
            ok_file(Multipart::new().text("message", "m").text("message", "n")).finish(),
            StatusCode::BAD_REQUEST,
            "duplicate_field",
        ),
        (
            "two files for a single-file field",
            None,
            Multipart::new()
                .text("message", "m")
                .file("photo", "a", "image/png", b"a")
                .file("photo", "b", "image/png", b"b")
                .finish(),
            StatusCode::BAD_REQUEST,
            "duplicate_field",
        ),
        (
            "a text field over max_len",
            None,
            ok_file(Multipart::new().text("message", &"x".repeat(101))).finish(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_long",
        ),
        (
            "a required field missing after the files",
            None,
            ok_file(Multipart::new().text("contact", "c")).finish(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_field",
        ),
        (
            "a bad field value before the first file",
            None,
            ok_file(
                Multipart::new()
                    .text("contact", "a\nb")
                    .text("message", "m"),
            )
            .finish(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_characters",
        ),
        (
            "text that is not UTF-8",
            None,
            ok_file(Multipart::new().raw_part("form-data; name=\"message\"", None, b"\xff\xfe"))
                .finish(),
            StatusCode::BAD_REQUEST,
            "invalid_utf8",
        ),
        (
            "a file name over 255 characters",
            None,
            Multipart::new()
                .text("message", "m")
                .file("photo", &"n".repeat(256), "image/png", b"a")
                .finish(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_long",
        ),
        (
            "a part without a name",
            None,
            Multipart::new()
                .text("message", "m")
                .raw_part("form-data", None, b"x")
                .finish(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_field",
        ),
    ];
    for (what, ct, body, status, code) in cases {
        let fx = fixture("");
        let app = fx.app();
        let req = Request::post("/api/v1/forms/upload/submissions")
            .header("content-type", ct.map_or_else(content_type, str::to_owned))
            .body(Body::from(body))
            .expect("request");
        let (res, body) = send(&app, req).await;
        assert_eq!(
            (res.status(), error_code(&body).as_str()),
            (status, code),
            "{what}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_nothing_stored(&fx);
    }
}

#[tokio::test]
async fn an_endless_body_without_a_boundary_is_cut_off_with_400() {
    // The parser would buffer it all; it must stop after a few MiB.
    let fx = fixture("");
    let app = fx.app();
    let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
    let endless = futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
    let req = Request::post("/api/v1/forms/upload/submissions")
        .header("content-type", content_type())
        .body(Body::from_stream(endless))
        .expect("request");
    let (res, body) = tokio::time::timeout(Duration::from_secs(60), send(&app, req))
        .await
        .expect("the server gives up on the body");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "malformed");
    assert_nothing_stored(&fx);
}

/// A body in `size`-byte chunks; `pulled` counts the chunks the server took.
fn trickled(body: Vec<u8>, size: usize, pulled: &Arc<std::sync::atomic::AtomicUsize>) -> Body {
    let pulled = Arc::clone(pulled);
    let chunks: Vec<bytes::Bytes> = body
        .chunks(size)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    Body::from_stream(futures_util::stream::iter(chunks).map(move |c| {
        pulled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok::<_, std::io::Error>(c)
    }))
}

#[tokio::test]
async fn framing_sent_in_tiny_chunks_is_cut_off_after_a_few_chunks_and_real_parts_are_not() {
    // The parser searches its whole buffer again for every chunk, so a
    // preamble or a part header that never ends, sent a byte at a time, cost
    // quadratic time until 8 MiB had been read. It stops after 64 chunks.
    let fx = fixture("");
    let app = fx.app();
    let endless_header = [
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"message\"\r\nX-Pad: ")
            .into_bytes(),
        vec![b'y'; 60_000],
    ]
    .concat();
    let cases = [
        ("a preamble", b"--b".repeat(20_000)),
        ("a part header", endless_header),
    ];
    for (what, body) in cases {
        let pulled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let req = Request::post("/api/v1/forms/upload/submissions")
            .header("content-type", content_type())
            .body(trickled(body, 1, &pulled))
            .expect("request");
        let (res, body) = send(&app, req).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{what}");
        assert_eq!(error_code(&body), "malformed", "{what}");
        let pulled = pulled.load(std::sync::atomic::Ordering::Relaxed);
        assert!((64..200).contains(&pulled), "{what}: {pulled} chunks read");
        assert_nothing_stored(&fx);
    }
    // A whole upload in 3-byte chunks: headers of 100-odd bytes each, well
    // within the bounds, and field data that keeps showing progress.
    let data: Vec<u8> = (0..900u32).map(|i| (i % 251) as u8).collect();
    let body = Multipart::new()
        .text("message", "sent three bytes at a time")
        .file("documents", "a.bin", "application/octet-stream", &data)
        .finish();
    let pulled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let req = Request::post("/api/v1/forms/upload/submissions")
        .header("content-type", content_type())
        .body(trickled(body, 3, &pulled))
        .expect("request");
    let (res, body) = send(&app, req).await;
    let eml = decrypt(&fx, &created(&res, &body));
    assert!(
        eml.windows(26).any(|w| w == b"sent three bytes at a time"),
        "the text field arrived"
    );
}

#[tokio::test]
async fn a_long_file_name_and_too_many_parts_are_named_as_such() {
    let fx = fixture("");
    let app = fx.app();
    let long_name = Multipart::new()
        .text("message", "m")
        .file("photo", &"n".repeat(256), "image/png", b"a")
        .finish();
    // 5 fields and 3 files: at most 13 parts.
    let many = (0..14)
        .fold(Multipart::new().text("message", "m"), |m, _| {
            m.raw_part("form-data; name=\"documents\"; filename=\"\"", None, b"")
        })
        .finish();
    let cases = [
        (
            long_name,
            StatusCode::UNPROCESSABLE_ENTITY,
            "a file name in field `photo` is longer than 255 characters",
        ),
        (
            many,
            StatusCode::BAD_REQUEST,
            "the upload has more parts than this form takes (at most 13)",
        ),
    ];
    for (body, status, message) in cases {
        let (res, body) = send(&app, api_upload("upload", body)).await;
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(res.status(), status, "{json}");
        assert_eq!(json["error"]["message"], message, "{json}");
        assert_nothing_stored(&fx);
    }
}

#[tokio::test]
async fn a_required_file_field_needs_a_file_on_every_route() {
    let fx = fixture("");
    let app = fx.app();
    let (res, body) = send(
        &app,
        api_post("big", &serde_json::json!({"fields": {"note": "no file"}})),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(&body), "missing_field");
    let (res, body) = send(
        &app,
        api_post("big", &serde_json::json!({"fields": {"file": "text"}})),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(&body), "expected_file");
    let (res, body) = send(
        &app,
        api_upload("big", Multipart::new().text("note", "no file").finish()),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(&body), "missing_field");
    assert_nothing_stored(&fx);
}

#[tokio::test]
async fn uploads_get_503_and_leave_nothing_when_free_space_is_under_the_floor() {
    // Before accepting: the floor is more than any disk here has.
    let fx = fixture("min_free_bytes = 9000000000000000000");
    let app = fx.app();
    let body = Multipart::new()
        .text("note", "n")
        .file("file", "a", "text/plain", b"a")
        .finish();
    let (res, body) = send(&app, api_upload("big", body)).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&body), "unavailable");
    assert_nothing_stored(&fx);

    // While writing: the floor is 16 MiB under the free space now, and the
    // upload (no Content-Length, so the first check passes) writes ~130 MiB.
    // The disk is shared with other processes: if they free more than that
    // meanwhile, the upload fits and is stored; measure again and retry.
    for attempt in 1..=3 {
        let probe = fixture("");
        let free = sealform::intake::available_space(probe.path()).expect("statvfs");
        let fx = fixture(&format!("min_free_bytes = {}", free - 16 * 1024 * 1024));
        let app = fx.app();
        let head = Multipart::new().file_head("file", "big.bin").body;
        let tail = format!("\r\n--{BOUNDARY}--\r\n").into_bytes();
        let req = Request::post("/api/v1/forms/big/submissions")
            .header("content-type", content_type())
            .body(streamed_body(head, 7, 96 * 1024 * 1024, tail))
            .expect("request");
        let (res, body) = send(&app, req).await;
        if res.status() == StatusCode::CREATED && attempt < 3 {
            continue;
        }
        assert_eq!(
            res.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            String::from_utf8_lossy(&body)
        );
        assert_nothing_stored(&fx);
        drop(app);
        assert_index_empty(&fx);
        break;
    }
}

/// Sends the head of an upload of `total` declared bytes over a raw socket.
async fn raw_upload_head(server: &Server, total: usize) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(&server.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /api/v1/forms/big/submissions HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\nContent-Length: {total}\r\n\r\n",
        server.addr,
        content_type()
    );
    s.write_all(head.as_bytes()).await.expect("write head");
    s
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_client_that_drops_the_connection_mid_upload_leaves_nothing_and_others_are_served() {
    let fx = fixture("");
    let server = Server::start(&fx);
    let size: u64 = 24 * 1024 * 1024;
    let body_head = Multipart::new().file_head("file", "half.bin").body;
    let mut s = raw_upload_head(&server, body_head.len() + size as usize + 64).await;
    s.write_all(&body_head).await.expect("write");
    for chunk in Noise::new(3, size / 2) {
        s.write_all(&chunk).await.expect("write");
    }
    // The record is being written...
    wait_until("a temp file in spool/tmp", || fx.partials() == 1).await;
    // ...and the client goes away.
    drop(s);
    wait_until("spool/tmp to be empty", || fx.partials() == 0).await;

    let res = reqwest::Client::new()
        .post(server.url("/api/v1/forms/upload/submissions"))
        .json(&serde_json::json!({"fields": {"message": "still here"}}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::CREATED);
    assert!(server.terminate().success());
    assert_eq!(fx.records().len(), 1);
    assert_eq!(fx.partials(), 0);
    let (store, _) =
        sealform::store::Store::open(&fx.data_dir(), 1 << 20, |_| vec![]).expect("store");
    assert_eq!(store.list().expect("index").len(), 1, "one index entry");
}

#[tokio::test]
async fn a_client_that_stalls_mid_upload_gets_408_and_leaves_nothing() {
    let fx = fixture("upload_stall_secs = 1");
    let server = Server::start(&fx);
    let body_head = Multipart::new().file_head("file", "slow.bin").body;
    let mut s = raw_upload_head(&server, body_head.len() + 1_000_000).await;
    s.write_all(&body_head).await.expect("write");
    s.write_all(&[0u8; 10_000]).await.expect("write");
    wait_until("a temp file in spool/tmp", || fx.partials() == 1).await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut answer))
        .await
        .expect("the server answers")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(fx.partials(), 0);
    assert!(fx.records().is_empty());
}

#[tokio::test]
async fn a_client_that_trickles_below_the_minimum_rate_gets_408_and_leaves_nothing() {
    // Never a pause as long as upload_stall_secs, but 1000 bytes/s against
    // a minimum of 2000: behind after the 1 s grace plus 1000 t / 2000 s,
    // that is about 2 s in.
    let fx = fixture("upload_stall_secs = 1\nupload_min_bytes_per_sec = 2000");
    let server = Server::start(&fx);
    let body_head = Multipart::new().file_head("file", "slow.bin").body;
    let s = raw_upload_head(&server, body_head.len() + 1_000_000).await;
    let started = Instant::now();
    let (mut reader, mut writer) = s.into_split();
    writer.write_all(&body_head).await.expect("write");
    let trickle = tokio::spawn(async move {
        while writer.write_all(&[0u8; 250]).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), reader.read_to_end(&mut answer))
        .await
        .expect("the server answers")
        .expect("read");
    let took = started.elapsed();
    trickle.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        took > Duration::from_millis(1500) && took < Duration::from_secs(10),
        "refused when behind, not before: {took:?}"
    );
    wait_until("the temp file is removed", || fx.partials() == 0).await;
    assert!(fx.records().is_empty());
}

#[tokio::test]
async fn canary_bytes_in_attachment_content_and_names_never_reach_disk_or_logs() {
    // With the access log on (off by default), so that its lines are
    // checked too.
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519, TestKey::Rsa],
        UPLOAD_FORMS,
        "",
        &format!("{TEST_TABLES}access_log = true\n"),
    );
    let server = Server::start(&fx);
    let canary = "CANARY-7f3a9c-attachment";
    let client = reqwest::Client::new();
    let content = format!("{canary} {}", "in the file ".repeat(50)).into_bytes();
    let good = Multipart::new()
        .text("message", &format!("{canary} in a field"))
        .file(
            "documents",
            &format!("{canary}.txt"),
            "text/plain",
            &content,
        )
        .finish();
    let too_big = Multipart::new()
        .text("message", "m")
        .file(
            "photo",
            &format!("{canary}-big.bin"),
            "application/octet-stream",
            &content.repeat(2),
        )
        .finish();
    let broken = {
        let mut b = Multipart::new()
            .file(
                "documents",
                &format!("{canary}-cut.txt"),
                "text/plain",
                &content,
            )
            .body;
        b.truncate(b.len() - 50);
        b
    };
    let mut receipt = None;
    for (body, want) in [(good, 201), (too_big, 413), (broken, 400)] {
        let res = client
            .post(server.url("/api/v1/forms/upload/submissions"))
            .header("content-type", content_type())
            .body(body)
            .send()
            .await
            .expect("send");
        assert_eq!(res.status().as_u16(), want);
        let text = res.text().await.expect("body");
        assert!(!text.contains(canary), "an answer echoes the canary");
        if want == 201 {
            receipt = Some(receipt_of(text.as_bytes()));
        }
    }
    let log = std::sync::Arc::clone(&server.log);
    assert!(server.terminate().success());
    let log = String::from_utf8_lossy(&log.lock().expect("log")).into_owned();
    assert!(log.contains("/api/v1/forms/{form}/submissions"), "{log}");
    assert!(!log.contains(canary), "canary in the log:\n{log}");
    // The canary was stored (sealed), so the scan below means something.
    let plain = decrypt(&fx, &receipt.expect("receipt"));
    assert!(String::from_utf8_lossy(&plain).contains(canary));
    for (path, bytes) in fx.all_stored_bytes() {
        assert!(
            !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
            "canary in {}",
            path.display()
        );
    }
}

/// Tables for the slot tests: clients told apart by `X-Forwarded-For`.
const PROXIED: &str =
    "[limits]\ntrusted_proxies = [\"127.0.0.1\"]\n\n[abuse]\nform_tokens = false\n";

/// An upload to `big` from `xff` that sends 512 bytes every 250 ms (2 KiB/s)
/// until the server answers; resolves to the answer.
async fn trickle(server: &Server, xff: &str) -> tokio::task::JoinHandle<String> {
    paced(server, xff, 512, 512, Duration::from_millis(250)).await
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_upload_gets_201_while_trickling_uploads_hold_every_slot() {
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        UPLOAD_FORMS,
        "max_concurrent_uploads = 4",
        PROXIED,
    );
    let server = Server::start(&fx);
    // Two clients hold two slots each, the most one client may hold...
    let mut held = Vec::new();
    for xff in [
        "198.51.100.1",
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.2",
    ] {
        held.push(trickle(&server, xff).await);
    }
    wait_until("four uploads in progress", || fx.partials() == 4).await;
    // ...and a third from one of them is refused.
    let third = trickle(&server, "198.51.100.1").await.await.expect("third");
    assert!(third.starts_with("HTTP/1.1 429"), "{third}");
    assert!(third.contains("too_many_uploads"), "{third}");
    assert!(
        third.to_ascii_lowercase().contains("retry-after: 5"),
        "{third}"
    );

    // Past their head start (a second), they fall behind 16 KiB/s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Every slot is taken, by uploads far behind 16 KiB/s: an honest one
    // still gets in.
    let len: u64 = 2 * 1024 * 1024;
    let head = Multipart::new()
        .text("note", "honest")
        .file_head("file", "honest.bin")
        .body;
    let mut body = head;
    for chunk in Noise::new(7, len) {
        body.extend_from_slice(&chunk);
    }
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/forms/big/submissions"))
        .header("content-type", content_type())
        .header("x-forwarded-for", "203.0.113.9")
        .body(body)
        .send()
        .await
        .expect("honest upload");
    let status = res.status();
    let answer = res.bytes().await.expect("answer");
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let plain = decrypt(&fx, &receipt_of(&answer));
    let message = MessageParser::default().parse(&plain).expect("MIME parses");
    let file = message
        .attachments()
        .find(|p| p.attachment_name() == Some("honest.bin"))
        .expect("attachment");
    assert_eq!(
        data_encoding::HEXLOWER.encode(&Sha256::digest(file.contents())),
        Noise::sha256(7, len)
    );

    // The trickler that made room got 408, and nothing of it stayed.
    wait_until("one trickler is stopped", || {
        held.iter().filter(|h| h.is_finished()).count() == 1
    })
    .await;
    let i = held.iter().position(|h| h.is_finished()).expect("finished");
    let evicted = held.remove(i).await.expect("evicted");
    assert!(evicted.starts_with("HTTP/1.1 408"), "{evicted}");
    assert!(evicted.contains("made room for another"), "{evicted}");
    assert!(
        evicted.to_ascii_lowercase().contains("connection: close"),
        "{evicted}"
    );
    wait_until("three uploads in progress", || fx.partials() == 3).await;
    for h in &held {
        h.abort();
    }
    wait_until("spool/tmp is empty", || fx.partials() == 0).await;
    assert!(server.terminate().success());
    assert_eq!(fx.records().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_upload_without_a_form_token_takes_no_upload_slot() {
    // One slot, held by an upload that is never evicted (no minimum rate):
    // a form upload without a token is refused for its token (400), not for
    // want of a slot (503).
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        UPLOAD_FORMS,
        "max_concurrent_uploads = 1\nupload_min_bytes_per_sec = 0",
        "[limits]\ntrusted_proxies = [\"127.0.0.1\"]\n",
    );
    let server = Server::start(&fx);
    let holder = trickle(&server, "198.51.100.1").await;
    wait_until("an upload in progress", || fx.partials() == 1).await;
    let body = Multipart::new()
        .text("message", "no token")
        .file("documents", "a.txt", "text/plain", b"a")
        .finish();
    let res = reqwest::Client::new()
        .post(server.url("/forms/upload"))
        .header("content-type", content_type())
        .header("x-forwarded-for", "203.0.113.9")
        .body(body)
        .send()
        .await
        .expect("post");
    let status = res.status();
    let page = res.text().await.expect("page");
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("did not come from"), "{page}");
    holder.abort();
    wait_until("spool/tmp is empty", || fx.partials() == 0).await;
    assert!(fx.records().is_empty());
    assert!(server.terminate().success());
}

/// The `sf.token` of a freshly rendered `/forms/{form}`.
async fn page_token(server: &Server, form: &str, xff: &str) -> String {
    let page = reqwest::Client::new()
        .get(server.url(&format!("/forms/{form}")))
        .header("x-forwarded-for", xff)
        .send()
        .await
        .expect("get form")
        .bytes()
        .await
        .expect("page");
    token_in(&page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_upload_refused_for_its_token_evicts_no_upload() {
    // The set of used tokens holds one: after one stored post, a post with
    // another good token is refused (busy). It must be refused before it
    // takes an upload slot, so the one upload in progress, behind the
    // minimum rate and so the one to make room, goes on.
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        UPLOAD_FORMS,
        "max_concurrent_uploads = 1",
        "[limits]\ntrusted_proxies = [\"127.0.0.1\"]\n\n[abuse]\nmin_fill_secs = 0\nmax_tracked_tokens = 1\n",
    );
    let server = Server::start(&fx);
    let post = |token: &str, xff: &str| {
        let body = Multipart::new()
            .text("sf.token", token)
            .text("message", "hello")
            .file("documents", "a.txt", "text/plain", b"a")
            .finish();
        reqwest::Client::new()
            .post(server.url("/forms/upload"))
            .header("content-type", content_type())
            .header("x-forwarded-for", xff.to_owned())
            .body(body)
            .send()
    };
    let first = page_token(&server, "upload", "203.0.113.9").await;
    let second = page_token(&server, "upload", "203.0.113.9").await;
    let res = post(&first, "203.0.113.9").await.expect("first post");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(fx.records().len(), 1);

    let holder = trickle(&server, "198.51.100.1").await;
    wait_until("an upload in progress", || fx.partials() == 1).await;
    // A second in, it is 16 KiB due and about 2 KiB sent: far behind.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let res = post(&second, "203.0.113.9").await.expect("second post");
    let status = res.status();
    let page = res.text().await.expect("page");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{page}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!holder.is_finished(), "{}", holder.await.expect("holder"));
    assert_eq!(fx.partials(), 1);
    holder.abort();
    wait_until("spool/tmp is empty", || fx.partials() == 0).await;
    assert_eq!(fx.records().len(), 1);
    assert!(server.terminate().success());
}

/// The pace of [`paced`] uploads in the eviction test.
const TENTH: Duration = Duration::from_millis(100);

/// An upload to `big` from `xff` that sends `first` bytes of its file at
/// once, then `every` bytes each `period` until the server answers;
/// resolves to the answer.
async fn paced(
    server: &Server,
    xff: &str,
    first: usize,
    every: usize,
    period: Duration,
) -> tokio::task::JoinHandle<String> {
    let mut s = tokio::net::TcpStream::connect(&server.addr)
        .await
        .expect("connect");
    let body_head = Multipart::new().file_head("file", "paced.bin").body;
    let head = format!(
        "POST /api/v1/forms/big/submissions HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\nX-Forwarded-For: {xff}\r\nContent-Length: {}\r\n\r\n",
        server.addr,
        content_type(),
        body_head.len() + 10_000_000
    );
    s.write_all(head.as_bytes()).await.expect("head");
    s.write_all(&body_head).await.expect("body head");
    let (mut reader, mut writer) = s.into_split();
    tokio::spawn(async move {
        let _writing = AbortOnDrop(tokio::spawn(async move {
            let _ = writer.write_all(&vec![b'x'; first]).await;
            loop {
                tokio::time::sleep(period).await;
                if writer.write_all(&vec![b'x'; every]).await.is_err() {
                    break;
                }
            }
        }));
        let mut answer = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(60), reader.read_to_end(&mut answer)).await;
        String::from_utf8_lossy(&answer).into_owned()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_keeps_the_minimum_rate_is_not_evicted_in_its_first_moments() {
    // Two slots. One upload is well ahead of 16 KiB/s; another sends
    // 40 KiB/s, its first bytes 100 ms after its head (a round trip). A
    // newcomer in its first 100 ms must not push it out: both keep the
    // rate, so the newcomer gets 503.
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        UPLOAD_FORMS,
        "max_concurrent_uploads = 2",
        PROXIED,
    );
    let server = Server::start(&fx);
    let ahead = paced(&server, "198.51.100.1", 64 * 1024, 4096, TENTH).await;
    wait_until("one upload in progress", || fx.partials() == 1).await;
    let honest = paced(&server, "198.51.100.2", 0, 4096, TENTH).await;
    wait_until("two uploads in progress", || fx.partials() == 2).await;
    let newcomer = paced(&server, "198.51.100.3", 0, 4096, TENTH).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!honest.is_finished(), "{}", honest.await.expect("honest"));
    assert!(!ahead.is_finished(), "{}", ahead.await.expect("ahead"));
    assert!(newcomer.is_finished(), "the newcomer is still in");
    let answer = newcomer.await.expect("newcomer");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    honest.abort();
    ahead.abort();
    wait_until("spool/tmp is empty", || fx.partials() == 0).await;
    assert!(fx.records().is_empty());
    assert!(server.terminate().success());
}
