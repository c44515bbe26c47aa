//! Upload limits and malformed bodies: the size caps, broken multipart,
//! framing in tiny chunks, long names, too many parts, required files and
//! the free-space floor, each a clear 4xx or 503 that leaves nothing.

use super::*;

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
