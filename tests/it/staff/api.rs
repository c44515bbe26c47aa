//! The token-authenticated staff API: its 401s and 429s, where it is served
//! (next to the forms, on its own address, or not at all) and what `check`
//! and the OpenAPI document say about it.

use super::*;

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
