//! The submitter's pages, in-process: languages, the form sent back with its
//! errors, framing policy and page weight. The real-browser checks (axe,
//! JavaScript on and off, decryption) are in `browser.rs`.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};

use crate::support::*;

fn fixture() -> Fixture {
    Fixture::new(&[TestKey::Ed25519, TestKey::Rsa], I18N_FORMS, "")
}

fn get(path: &str, accept_language: Option<&str>) -> Request<Body> {
    let mut r = Request::get(path);
    if let Some(l) = accept_language {
        r = r.header(header::ACCEPT_LANGUAGE, l);
    }
    r.body(Body::empty()).expect("request")
}

fn text(body: &[u8]) -> String {
    String::from_utf8(body.to_vec()).expect("UTF-8 page")
}

#[tokio::test]
async fn accept_language_es_gives_the_spanish_pages() {
    let fx = fixture();
    let app = fx.app();
    for path in ["/", "/forms/tip", "/keys"] {
        let (res, body) = send(&app, get(path, Some("es-ES,es;q=0.9,en;q=0.5"))).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let page = text(&body);
        assert!(page.contains("<html lang=\"es\">"), "{path}: {page}");
        assert!(page.contains("Idioma"), "{path}");
    }
    let (_, body) = send(&app, get("/forms/tip", Some("es"))).await;
    let page = text(&body);
    for spanish in [
        "Envíe una pista",
        "Mensaje",
        "Tema",
        "policía",
        "Enviar cifrado",
        "Qué pasa con su mensaje",
        "Hasta 5000 caracteres.",
        "(obligatorio)",
        "Déjelo vacío",
    ] {
        assert!(page.contains(spanish), "missing {spanish:?}");
    }
    // The submitted value of a translated option stays the configured one.
    assert!(page.contains("<option value=\"police\">policía</option>"));
}

#[tokio::test]
async fn english_is_the_default_and_the_lang_link_overrides_the_header() {
    let fx = fixture();
    let app = fx.app();
    let cases = [
        ("/forms/tip", None, "en"),
        ("/forms/tip", Some("fr-FR,de;q=0.8"), "en"),
        ("/forms/tip?lang=es", Some("en"), "es"),
        ("/forms/tip?lang=en", Some("es"), "en"),
        ("/forms/tip?lang=zz", Some("es"), "es"),
        ("/?lang=es", None, "es"),
    ];
    for (path, header, want) in cases {
        let (res, body) = send(&app, get(path, header)).await;
        assert_eq!(res.status(), StatusCode::OK);
        let page = text(&body);
        assert!(
            page.contains(&format!("<html lang=\"{want}\">")),
            "{path} {header:?}"
        );
        // The form posts back in the same language.
        if path.starts_with("/forms/") {
            assert!(page.contains(&format!("action=\"/forms/tip?lang={want}\"")));
        }
    }
}

#[tokio::test]
async fn the_language_switcher_is_plain_links_to_this_page() {
    let fx = fixture();
    let (_, body) = send(&fx.app(), get("/forms/tip", None)).await;
    let page = text(&body);
    assert!(
        page.contains("<a href=\"/forms/tip?lang=es\" hreflang=\"es\" lang=\"es\">Español</a>")
    );
    assert!(page.contains("<a href=\"/forms/tip?lang=en\" hreflang=\"en\" lang=\"en\" aria-current=\"page\">English</a>"));
    assert!(!page.contains("<script"), "pages need no JavaScript");
}

#[tokio::test]
async fn a_missing_translation_falls_back_to_english_never_to_a_key_name() {
    let fx = fixture();
    let app = fx.app();
    let (_, body) = send(&app, get("/forms/tip", Some("es"))).await;
    let page = text(&body);
    // Not translated in the config: the email and checkbox labels, the
    // description, the other form's title.
    for english in ["Email", "May publish", "Test form"] {
        assert!(page.contains(english), "missing {english:?}");
    }
    let (_, body) = send(&app, get("/", Some("es"))).await;
    assert!(text(&body).contains(">Plain</a>"));
    // No catalogue key ever reaches a page.
    for page in [text(&body), page] {
        for key in sealform::i18n::Msg::ALL {
            assert!(
                !page.contains(&format!(">{}<", key.key())),
                "key {} shown",
                key.key()
            );
        }
    }
}

#[tokio::test]
async fn a_form_with_mistakes_comes_back_422_with_what_was_typed_and_nothing_is_stored() {
    let fx = fixture();
    let app = fx.app();
    let typed_contact = "Ana <b>\"Núñez\"</b> & co";
    let body = urlencode(&[
        ("message", "   "),
        ("contact", typed_contact),
        ("email", "not-an-address"),
        ("topic", "schools"),
    ]);
    let mut req = form_post("tip", &body);
    *req.uri_mut() = "/forms/tip?lang=es".parse().expect("uri");
    let (res, body) = send(&app, req).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    let page = text(&body);
    assert!(page.contains("<html lang=\"es\">"));
    // The error summary links every problem to its field, in form order.
    let summary = page
        .split("class=\"error-summary\"")
        .nth(1)
        .expect("an error summary");
    let links: Vec<&str> = summary
        .split("href=\"#")
        .skip(1)
        .map(|s| s.split('"').next().expect("href"))
        .collect();
    assert_eq!(links, ["f-message", "f-email", "f-publish"]);
    // Each invalid field says so, points at its message, and the first gets focus.
    assert!(page.contains("id=\"f-email-error\""));
    assert!(page.contains("Escriba una dirección de correo"));
    assert!(page.contains("Marque esta casilla para continuar."));
    assert!(page.contains(
        "<textarea id=\"f-message\" name=\"message\" rows=\"8\" maxlength=\"5000\" required aria-invalid=\"true\" aria-describedby=\"f-message-error f-message-limit\" autofocus>"
    ));
    assert_eq!(page.matches(" autofocus").count(), 1);
    // What was typed is back, escaped.
    assert!(page.contains("value=\"Ana &lt;b&gt;&quot;Núñez&quot;&lt;/b&gt; &amp; co\""));
    assert!(page.contains("value=\"not-an-address\""));
    assert!(page.contains("<option value=\"schools\" selected>escuelas</option>"));
    assert!(!page.contains(typed_contact), "unescaped echo");
    // Nothing was stored.
    assert!(fx.records().is_empty());
    assert_eq!(fx.partials(), 0);
}

#[tokio::test]
async fn a_field_the_form_does_not_have_is_explained_in_the_summary_without_echoing_its_name() {
    let fx = fixture();
    let body = urlencode(&[("message", "hi"), ("publish", "on"), ("x-secret-name", "v")]);
    let (res, body) = send(&fx.app(), form_post("tip", &body)).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = text(&body);
    assert!(page.contains("The form sent a field this server does not know."));
    assert!(!page.contains("x-secret-name"));
    assert!(!page.contains(" autofocus"));
    assert!(fx.records().is_empty());
}

#[tokio::test]
async fn a_corrected_form_is_sealed_and_answered_with_the_receipt_page() {
    let fx = fixture();
    let body = urlencode(&[("message", "line one\r\nline two"), ("publish", "on")]);
    let (res, body) = send(&fx.app(), form_post("tip", &body)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = text(&body);
    let receipt = page
        .split("<code id=\"receipt\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .expect("receipt");
    assert_eq!(fx.records(), vec![fx.record(receipt)]);
    let gpg = Gpg::with_secret_keys(&[&TestKey::Rsa.secret()]);
    let plain = gpg.decrypt(&fx.record(receipt)).expect("gpg decrypts");
    assert_eq!(
        json_part(&plain)["fields"]["message"],
        "line one\r\nline two"
    );
}

#[tokio::test]
async fn a_body_no_browser_sends_still_gets_a_plain_400_page() {
    let fx = fixture();
    let app = fx.app();
    let cases = ["message=%FF", "message=a&message=b"];
    for body in cases {
        let (res, page) = send(&app, form_post("tip", body)).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
        assert!(!text(&page).contains("<form"), "{body}");
    }
    assert!(fx.records().is_empty());
}

#[tokio::test]
async fn a_send_that_fails_says_so_in_the_readers_language_and_stores_nothing() {
    let fx = Fixture::new(&[TestKey::Ed25519], I18N_FORMS, "max_body_bytes = 2048");
    let app = fx.app();
    let big = format!("message={}", "a".repeat(4096));
    let post = |path: &str, ct: &str, body: String| {
        Request::post(path)
            .header(header::CONTENT_TYPE, ct)
            .header(header::ACCEPT_LANGUAGE, "es")
            .body(Body::from(body))
            .expect("request")
    };
    let form = "application/x-www-form-urlencoded";
    let cases = [
        (
            post("/forms/tip", form, big),
            StatusCode::PAYLOAD_TOO_LARGE,
            "acórtelo",
        ),
        (
            post("/forms/tip", "text/plain", "message=hi".into()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "no puede leer",
        ),
        (
            post("/forms/tip", form, "message=%FF".into()),
            StatusCode::BAD_REQUEST,
            "no puede leer",
        ),
        (
            post("/forms/nope", form, "message=hi".into()),
            StatusCode::NOT_FOUND,
            "Este formulario no existe",
        ),
        (
            get("/forms/nope", Some("es")),
            StatusCode::NOT_FOUND,
            "Este formulario no existe",
        ),
    ];
    for (req, status, spanish) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let (res, body) = send(&app, req).await;
        assert_eq!(res.status(), status, "{what}");
        let page = text(&body);
        assert!(page.contains("<html lang=\"es\">"), "{what}");
        assert!(page.contains(spanish), "{what}: {page}");
        assert!(!page.contains("aaaa"), "{what}: echoed the body");
    }
    assert!(fx.records().is_empty());
}

#[tokio::test]
async fn frame_ancestors_is_none_by_default_and_per_form_when_configured() {
    let fx = fixture();
    let app = fx.app();
    let csp = |res: &axum::http::Response<()>| {
        res.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("ascii")
            .to_owned()
    };
    let (res, _) = send(&app, get("/forms/tip", None)).await;
    assert!(csp(&res).contains("frame-ancestors https://news.example.org;"));
    let (res, _) = send(&app, form_post("tip", "message=")).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(csp(&res).contains("frame-ancestors https://news.example.org;"));
    for path in ["/forms/plain", "/", "/keys", "/nope"] {
        let (res, _) = send(&app, get(path, None)).await;
        let policy = csp(&res);
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{path}: {policy}"
        );
        assert_eq!(
            res.headers()
                .get_all(header::CONTENT_SECURITY_POLICY)
                .iter()
                .count(),
            1
        );
    }
}

#[tokio::test]
async fn every_page_weighs_under_30_kib_with_the_stylesheet() {
    let fx = fixture();
    let app = fx.app();
    let (_, css) = send(&app, get("/static/style.css", None)).await;
    let error_body = urlencode(&[("message", ""), ("contact", &"x".repeat(200))]);
    let pages = [
        ("/", send(&app, get("/", Some("es"))).await.1),
        (
            "/forms/tip",
            send(&app, get("/forms/tip", Some("es"))).await.1,
        ),
        (
            "/forms/tip (errors)",
            send(&app, form_post("tip", &error_body)).await.1,
        ),
        ("/keys", send(&app, get("/keys", None)).await.1),
    ];
    for (name, body) in pages {
        let total = body.len() + css.len();
        println!(
            "{name}: {} B HTML + {} B CSS = {total} B",
            body.len(),
            css.len()
        );
        assert!(total < 30 * 1024, "{name} weighs {total} bytes");
    }
}
