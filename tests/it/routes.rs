//! Acceptance of the read-only routes (issue 2, point 6): the pages, the
//! schemas, the keys, the health check, unknown paths, and HTML escaping of
//! everything an operator writes into a form.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use sequoia_openpgp as openpgp;
use serde_json::Value;

use openpgp::parse::Parse;

use crate::support::*;

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("request")
}

fn header(res: &axum::http::Response<()>, name: &str) -> String {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

fn spaced(fpr: &str) -> String {
    fpr.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("hex"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn the_get_routes_answer_with_pages_schemas_and_public_keys() {
    let fx = Fixture::standard();
    let app = fx.app();
    let keys = [TestKey::Ed25519, TestKey::Rsa];

    let (res, body) = send(&app, get("/")).await;
    let page = String::from_utf8_lossy(&body);
    assert_eq!(res.status(), StatusCode::OK);
    assert!(header(&res, "content-type").starts_with("text/html"));
    assert!(
        page.contains("href=\"/forms/tip?lang=en\"") && page.contains("Send a tip"),
        "{page}"
    );
    // Nothing from another origin, and the security headers are set.
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "{page}"
    );
    assert!(header(&res, "content-security-policy").contains("default-src 'none'"));
    assert_eq!(header(&res, "x-content-type-options"), "nosniff");
    assert_eq!(header(&res, "referrer-policy"), "no-referrer");

    let (res, body) = send(&app, get("/forms/tip")).await;
    let page = String::from_utf8_lossy(&body);
    assert_eq!(res.status(), StatusCode::OK);
    assert!(page.contains("action=\"/forms/tip?lang=en\"") && page.contains("method=\"post\""));
    for name in ["message", "contact", "email", "topic", "publish"] {
        assert!(
            page.contains(&format!("name=\"{name}\"")),
            "field {name}: {page}"
        );
    }
    for o in ["police", "schools", "other"] {
        assert!(page.contains(&format!("value=\"{o}\"")), "{page}");
    }
    for k in keys {
        assert!(
            page.contains(&spaced(k.fingerprint())),
            "recipient {k:?} shown: {page}"
        );
    }
    assert!(
        !page.contains("<script"),
        "the form works without JavaScript"
    );

    let (res, body) = send(&app, get("/api/v1/forms")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(header(&res, "content-type").starts_with("application/json"));
    let v: Value = serde_json::from_slice(&body).expect("json");
    let tip = &v["forms"][0];
    assert_eq!(tip["id"], "tip");
    assert_eq!(tip["title"], "Send a tip");
    let names: Vec<&str> = tip["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["message", "contact", "email", "topic", "publish"]);
    assert_eq!(tip["fields"][0]["required"], true);
    assert_eq!(tip["fields"][0]["max_len"], 5000);
    assert_eq!(tip["fields"][3]["options"][1], "schools");
    let mut recipients: Vec<&str> = tip["recipients"]
        .as_array()
        .expect("recipients")
        .iter()
        .map(|r| r.as_str().expect("fpr"))
        .collect();
    recipients.sort();
    let mut want: Vec<&str> = keys.iter().map(|k| k.fingerprint()).collect();
    want.sort();
    assert_eq!(recipients, want);

    let (res, body) = send(&app, get("/keys")).await;
    let page = String::from_utf8_lossy(&body);
    assert_eq!(res.status(), StatusCode::OK);
    for k in keys {
        assert!(
            page.contains(&format!("href=\"/keys/{}.asc\"", k.fingerprint())),
            "{page}"
        );
    }

    for k in keys {
        for path in [
            format!("/keys/{}.asc", k.fingerprint()),
            format!("/keys/{}.asc", k.fingerprint().to_ascii_lowercase()),
        ] {
            let (res, body) = send(&app, get(&path)).await;
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            assert_eq!(header(&res, "content-type"), "application/pgp-keys");
            assert!(body.starts_with(b"-----BEGIN PGP PUBLIC KEY BLOCK-----"));
            let cert = openpgp::Cert::from_bytes(&body).expect("the served cert parses");
            assert_eq!(cert.fingerprint().to_hex(), k.fingerprint());
            assert!(!cert.is_tsk(), "only public parts are served");
            assert!(
                cert.keys()
                    .any(|ka| ka.key().fingerprint().to_hex() == k.encryption_subkey()),
                "the encryption subkey is served"
            );
        }
    }
    for path in [
        "/keys/0000111122223333444455556666777788889999.asc",
        &format!("/keys/{}", TestKey::Rsa.fingerprint()),
        "/keys/..%2F..%2Fconfig.toml",
        "/keys/%2e%2e",
    ] {
        let (res, body) = send(&app, get(path)).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(body.starts_with(b"<!DOCTYPE html>"), "{path}");
    }

    let (res, body) = send(&app, get("/healthz")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body, b"ok\n");

    let (res, body) = send(&app, get("/forms/nope")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(body.starts_with(b"<!DOCTYPE html>"));
    let (res, body) = send(&app, get("/no/such/page?secret=1")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(body.starts_with(b"<!DOCTYPE html>"));
    assert!(!String::from_utf8_lossy(&body).contains("secret"));
    let (res, body) = send(&app, get("/api/v1/nothing")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let v: Value = serde_json::from_slice(&body).expect("API 404 is JSON");
    assert_eq!(v["error"]["code"], "not_found");
}

#[tokio::test]
async fn what_the_operator_writes_into_a_form_is_html_escaped() {
    let forms = r#"
[[forms]]
id = "xss"
title = "Title <script>alert(1)</script> & \"quotes\""
description = "Description <script>alert(2)</script><img src=x onerror=alert(3)>"

  [[forms.fields]]
  name = "message"
  label = "Label <script>alert(4)</script>"
  hint = "Hint <script>alert(5)</script>"
  kind = "textarea"
  required = true

  [[forms.fields]]
  name = "pick"
  label = "Pick"
  kind = "select"
  options = ["<script>alert(6)</script>", "\"><b>x</b>"]
"#;
    let fx = Fixture::new(&[TestKey::Ed25519], forms, "");
    let app = fx.app();
    let (_, index) = send(&app, get("/")).await;
    let (_, form) = send(&app, get("/forms/xss")).await;
    let (res, sent) = send(&app, form_post("xss", "message=hello")).await;
    assert_eq!(res.status(), StatusCode::OK);
    for (what, page) in [("index", index), ("form", form), ("receipt page", sent)] {
        let page = String::from_utf8(page).expect("utf-8");
        assert!(!page.contains("<script"), "{what}: {page}");
        assert!(!page.contains("<img"), "{what}: {page}");
        assert!(!page.contains("<b>"), "{what}: {page}");
        assert!(page.contains("&lt;script&gt;alert("), "{what}: {page}");
    }
}
