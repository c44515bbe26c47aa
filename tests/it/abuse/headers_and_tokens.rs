//! Security headers on every response, HSTS, and the posts refused for
//! their form token, a cross-site origin or a filled honeypot.

use super::*;

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        DEFAULT_FORMS,
        "",
        &tables(
            "api_client = { burst = 1, per_minute = 1 }",
            "public_url = \"https://tips.example.org\"",
        ),
    );
    let app = fx.app();
    let fpr = TestKey::Ed25519.fingerprint();
    let api = || api_post("tip", &json!({"fields": {"message": MESSAGE}}));
    let get = |p: &str| Request::get(p).body(Body::empty()).expect("req");
    let cases: Vec<(&str, Request<Body>, StatusCode)> = vec![
        ("index", get("/"), StatusCode::OK),
        ("form", get("/forms/tip"), StatusCode::OK),
        ("unknown form", get("/forms/nope"), StatusCode::NOT_FOUND),
        (
            "form post without token",
            form_post("tip", "message=hello"),
            StatusCode::BAD_REQUEST,
        ),
        ("keys", get("/keys"), StatusCode::OK),
        ("key file", get(&format!("/keys/{fpr}.asc")), StatusCode::OK),
        ("stylesheet", get("/static/style.css"), StatusCode::OK),
        ("health", get("/healthz"), StatusCode::OK),
        ("schemas", get("/api/v1/forms"), StatusCode::OK),
        ("api submission", api(), StatusCode::CREATED),
        ("api rate limited", api(), StatusCode::TOO_MANY_REQUESTS),
        ("nowhere", get("/nowhere"), StatusCode::NOT_FOUND),
        (
            "wrong method",
            Request::delete("/forms/tip")
                .body(Body::empty())
                .expect("req"),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ];
    for (name, req, status) in cases {
        let (res, _) = send(&app, req).await;
        assert_eq!(res.status(), status, "{name}");
        let h = res.headers();
        let expect = [
            (
                "content-security-policy",
                "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
            ("referrer-policy", "no-referrer"),
            ("x-content-type-options", "nosniff"),
            ("cross-origin-opener-policy", "same-origin"),
            (
                "strict-transport-security",
                "max-age=63072000; includeSubDomains",
            ),
        ];
        for (header, value) in expect {
            assert_eq!(
                h.get(header).and_then(|v| v.to_str().ok()),
                Some(value),
                "{name}: {header}"
            );
        }
        let pp = h
            .get("permissions-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            pp.contains("camera=()") && pp.contains("geolocation=()"),
            "{name}: {pp}"
        );
        let cache = h
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if name == "stylesheet" {
            assert!(cache.starts_with("public"), "{name}: {cache}");
        } else {
            assert_eq!(cache, "no-store", "{name}");
        }
        assert!(h.get("server").is_none(), "{name}: server header");
        assert!(h.get("x-request-id").is_none(), "{name}: request id");
        if status == StatusCode::TOO_MANY_REQUESTS {
            let secs: u64 = h
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .expect("429 has a Retry-After in seconds");
            assert!((1..=60).contains(&secs), "{secs}");
        }
    }
}

#[tokio::test]
async fn hsts_is_sent_only_when_the_public_address_is_https() {
    let fx = Fixture::with_tables(&[TestKey::Ed25519], DEFAULT_FORMS, "", &tables("", ""));
    let (res, _) = send(
        &fx.app(),
        Request::get("/").body(Body::empty()).expect("req"),
    )
    .await;
    assert!(res.headers().get("strict-transport-security").is_none());
}

#[tokio::test]
async fn bad_form_tokens_cross_site_posts_and_a_filled_honeypot_are_refused_and_store_nothing() {
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        DEFAULT_FORMS,
        "",
        &tables(
            "form_client = { burst = 100, per_minute = 60 }",
            "min_fill_secs = 1\ntoken_lifetime_secs = 3",
        ),
    );
    let app = fx.app();
    let mut t = Vec::new();
    for _ in 0..7 {
        t.push(fresh_token(&app).await);
    }
    let post = |token: Option<&str>, extra: &[(&str, &str)]| {
        let mut pairs = vec![("message", MESSAGE)];
        if let Some(tok) = token {
            pairs.push(("sf.token", tok));
        }
        pairs.extend_from_slice(extra);
        form_post("tip", &urlencode(&pairs))
    };
    let started = Instant::now();

    // Sent at once: faster than a person types.
    let (res, body) = send(&app, post(Some(&t[0]), &[])).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let page = String::from_utf8_lossy(&body);
    assert!(page.contains("faster than a person"), "{page}");
    assert!(
        page.contains("name=\"sf.token\""),
        "the refusal offers the form again"
    );
    // What was written comes back with a fresh token, and the page says so.
    assert!(page.contains(MESSAGE), "the refusal keeps what was written");
    assert!(page.contains("still in the form"), "{page}");

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let evil = [("origin", "https://evil.example")];
    let cross = [("sec-fetch-site", "cross-site")];
    // (name, request, status, the page says, the page keeps what was written)
    let cases: Vec<(&str, Request<Body>, StatusCode, &str, bool)> = vec![
        (
            "missing token",
            post(None, &[]),
            StatusCode::BAD_REQUEST,
            "did not come from",
            true,
        ),
        (
            "forged token",
            post(
                Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                &[],
            ),
            StatusCode::BAD_REQUEST,
            "did not come from",
            true,
        ),
        (
            "honeypot filled",
            post(Some(&t[1]), &[("sf.homepage", "http://spam.example")]),
            StatusCode::BAD_REQUEST,
            "must stay empty",
            true,
        ),
        (
            "cross-site origin",
            evil.iter()
                .fold(post(Some(&t[2]), &[]), |r, (k, v)| with_header(r, k, v)),
            StatusCode::FORBIDDEN,
            "another web site",
            false,
        ),
        (
            "cross-site fetch metadata",
            cross
                .iter()
                .fold(post(Some(&t[3]), &[]), |r, (k, v)| with_header(r, k, v)),
            StatusCode::FORBIDDEN,
            "another web site",
            false,
        ),
    ];
    for (name, req, status, says, kept) in cases {
        let (res, body) = send(&app, req).await;
        let page = String::from_utf8_lossy(&body);
        assert_eq!(res.status(), status, "{name}: {page}");
        assert!(page.contains(says), "{name}: {page}");
        // Never for another site's post: its values are that site's words.
        assert_eq!(page.contains(MESSAGE), kept, "{name}: {page}");
        assert!(
            page.contains("name=\"sf.token\""),
            "{name}: form offered again"
        );
    }
    assert!(fx.records().is_empty(), "nothing refused was stored");

    // A good post, as a browser sends it from our own no-referrer page.
    let good = with_header(
        with_header(post(Some(&t[4]), &[("sf.homepage", "")]), "origin", "null"),
        "sec-fetch-site",
        "same-origin",
    );
    let (res, body) = send(&app, good).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(
        res.headers().get("cache-control").map(|v| v.as_bytes()),
        Some(&b"no-store"[..]),
        "the receipt page is never cached"
    );
    assert_eq!(fx.records().len(), 1);

    let (res, body) = send(&app, post(Some(&t[4]), &[])).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let page = String::from_utf8_lossy(&body);
    assert!(page.contains("already sent once"), "{page}");
    // A replay's values reached the server before (here: stored).
    assert!(!page.contains(MESSAGE), "a replay is not offered again");

    // The JSON API needs no token.
    let (res, _) = send(
        &app,
        api_post("tip", &json!({"fields": {"message": MESSAGE}})),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);

    let wait = Duration::from_millis(3300).saturating_sub(started.elapsed());
    tokio::time::sleep(wait).await;
    let (res, body) = send(&app, post(Some(&t[5]), &[])).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let page = String::from_utf8_lossy(&body);
    assert!(page.contains("expired"), "{page}");
    assert!(
        page.contains(MESSAGE),
        "a page left open too long keeps its text"
    );
    assert_eq!(
        fx.records().len(),
        2,
        "only the good post and the API call stored"
    );
}

#[tokio::test]
async fn a_cross_site_multipart_post_to_the_api_is_refused() {
    let fx = Fixture::standard();
    let app = fx.app();
    let body = "--b\r\nContent-Disposition: form-data; name=\"message\"\r\n\r\nhello\r\n--b--\r\n";
    let req = axum::http::Request::post("/api/v1/forms/tip/submissions")
        .header("content-type", "multipart/form-data; boundary=b")
        .header("sec-fetch-site", "cross-site")
        .body(axum::body::Body::from(body))
        .expect("request");
    let (res, _) = send(&app, req).await;
    assert_eq!(res.status(), axum::http::StatusCode::FORBIDDEN);
    assert!(fx.records().is_empty());
}
