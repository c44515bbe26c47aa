//! What an upload becomes: a MIME message a mail client opens (decrypted
//! with gpg), the receipt page, a 32 MiB file byte for byte, and no canary
//! byte of a file or its name on disk or in the logs.

use super::*;

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
