//! Tokens limited to some forms or actions: what the index keeps, 403s on
//! what a token may not do, and records it does not reach answered like no record.

use super::*;

/// The default forms plus `leak`, a copy of `tip` under another id.
fn two_forms() -> String {
    format!(
        "{DEFAULT_FORMS}\n{}",
        DEFAULT_FORMS.replace("id = \"tip\"", "id = \"leak\"")
    )
}

#[tokio::test]
async fn the_index_keeps_no_form_id_unless_a_token_is_limited_to_some_forms() {
    for (tokens, kept) in [
        // A bare hash and a table without `forms`: every form, so no form id.
        (
            "[\"{full}\", { hash = \"{other}\", can = [\"list\"] }]",
            false,
        ),
        (
            "[\"{full}\", { hash = \"{other}\", can = [\"list\"], forms = [\"leak\"] }]",
            true,
        ),
    ] {
        let (full, full_hash) = token_and_hash();
        let (_, other_hash) = token_and_hash();
        let tokens = tokens
            .replace("{full}", &full_hash)
            .replace("{other}", &other_hash);
        let fx = Fixture::new(
            &[TestKey::Ed25519],
            &two_forms(),
            &format!("[staff]\non_public_listener = true\ntokens = {tokens}\n"),
        );
        let app = fx.app();
        let (res, body) = send(&app, api_post("tip", &json!({"fields": {"message": "x"}}))).await;
        let receipt = created(&res, &body);
        let (res, body) = send(
            &app,
            staff_get("/api/v1/staff/submissions?state=all", Some(&full)),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
        let listing: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(listing["submissions"][0]["receipt"], receipt.as_str());
        let form = &listing["submissions"][0]["form"];
        assert_eq!(form == "tip", kept, "{tokens}: {listing}");
        assert_eq!(form.is_null(), !kept, "{tokens}: {listing}");
        drop(app);
        let index_says_tip = fx
            .all_stored_bytes()
            .iter()
            .any(|(_, bytes)| bytes.windows(5).any(|w| w == b"\"tip\""));
        assert_eq!(index_says_tip, kept, "{tokens}");
    }
}

#[tokio::test]
async fn a_token_scoped_to_one_form_and_to_list_and_download_gets_403_on_ack_and_on_the_other_forms_records()
 {
    let (scoped, scoped_hash) = token_and_hash();
    let (acker, acker_hash) = token_and_hash();
    let (full, full_hash) = token_and_hash();
    let fx = Fixture::new(
        &[TestKey::Ed25519],
        &two_forms(),
        &format!(
            "[staff]\non_public_listener = true\ntokens = [\n  {{ hash = \"{scoped_hash}\", can = [\"list\", \"download\"], \
             forms = [\"tip\"] }},\n  {{ hash = \"{acker_hash}\", can = [\"ack\"] }},\n  \
             \"{full_hash}\",\n]\n"
        ),
    );
    let app = fx.app();
    let mut receipts = Vec::new();
    for form in ["tip", "leak"] {
        let (res, body) = send(&app, api_post(form, &json!({"fields": {"message": "x"}}))).await;
        receipts.push(created(&res, &body));
    }
    let (tip, leak) = (&receipts[0], &receipts[1]);
    let listing = |token: &str| {
        let app = app.clone();
        let token = token.to_owned();
        async move {
            let (res, body) = send(
                &app,
                staff_get("/api/v1/staff/submissions?state=all", Some(&token)),
            )
            .await;
            (
                res.status(),
                serde_json::from_slice::<Value>(&body).expect("json"),
            )
        }
    };
    let post = |path: String, token: &str| {
        Request::post(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request")
    };

    // The scoped token lists and downloads its form's records only.
    let (status, body) = listing(&scoped).await;
    assert_eq!(status, StatusCode::OK);
    let items = body["submissions"].as_array().expect("list");
    assert_eq!(items.len(), 1, "{body}");
    assert_eq!(items[0]["receipt"], tip.as_str());
    assert_eq!(items[0]["form"], "tip");
    let (res, body) = send(
        &app,
        staff_get(&format!("/api/v1/staff/submissions/{tip}"), Some(&scoped)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body, read(&fx.record(tip)));
    let (res, _) = send(
        &app,
        post(format!("/api/v1/staff/submissions/{tip}/exported"), &scoped),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    // 403 for the other form's record, and for acknowledging at all.
    let forbidden = [
        staff_get(&format!("/api/v1/staff/submissions/{leak}"), Some(&scoped)),
        post(
            format!("/api/v1/staff/submissions/{leak}/exported"),
            &scoped,
        ),
        post(format!("/api/v1/staff/submissions/{leak}/ack"), &scoped),
        post(format!("/api/v1/staff/submissions/{tip}/ack"), &scoped),
        staff_get("/api/v1/staff/submissions", Some(&acker)),
        staff_get(&format!("/api/v1/staff/submissions/{tip}"), Some(&acker)),
    ];
    for req in forbidden {
        let what = format!("{} {}", req.method(), req.uri());
        let (res, body) = send(&app, req).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{what}");
        let body: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["error"]["code"], "forbidden", "{what}: {body}");
    }
    assert_eq!(fx.records().len(), 2, "nothing was acknowledged");

    // A bare hash may do everything for every form, and so may a table
    // without forms for what it names.
    let (status, body) = listing(&full).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["submissions"].as_array().expect("list").len(), 2);
    let (res, _) = send(
        &app,
        post(format!("/api/v1/staff/submissions/{leak}/ack"), &acker),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let (res, _) = send(
        &app,
        post(format!("/api/v1/staff/submissions/{tip}/ack"), &full),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(fx.records().is_empty());
}

#[tokio::test]
async fn a_record_of_a_form_the_token_does_not_reach_is_answered_like_no_record() {
    let (scoped, scoped_hash) = token_and_hash();
    let fx = Fixture::new(
        &[TestKey::Ed25519],
        &two_forms(),
        &format!(
            "[staff]\non_public_listener = true\ntokens = [\n  {{ hash = \"{scoped_hash}\", can = \
             [\"list\", \"download\", \"ack\"], forms = [\"tip\"] }},\n]\n"
        ),
    );
    let app = fx.app();
    let (res, body) = send(&app, api_post("leak", &json!({"fields": {"message": "x"}}))).await;
    let leak = created(&res, &body);
    // A receipt that was never handed out.
    let none = "a".repeat(26);
    assert_ne!(leak, none);
    let answers = |receipt: String| {
        let app = app.clone();
        let token = scoped.clone();
        async move {
            let mut seen = Vec::new();
            for (method, path) in [
                ("GET", format!("/api/v1/staff/submissions/{receipt}")),
                (
                    "POST",
                    format!("/api/v1/staff/submissions/{receipt}/exported"),
                ),
                ("POST", format!("/api/v1/staff/submissions/{receipt}/ack")),
            ] {
                let req = Request::builder()
                    .method(method)
                    .uri(&path)
                    .header("authorization", format!("Bearer {token}"))
                    .body(Body::empty())
                    .expect("request");
                let (res, body) = send(&app, req).await;
                seen.push((method, res.status(), body));
            }
            seen
        }
    };
    // The token for "tip" cannot tell the "leak" record from no record:
    // both are 403 with the same body on every route.
    let of_leak = answers(leak.clone()).await;
    let of_none = answers(none).await;
    assert_eq!(of_leak, of_none);
    for (method, status, _) in &of_leak {
        assert_eq!(*status, StatusCode::FORBIDDEN, "{method}");
    }
    assert_eq!(
        fx.records(),
        vec![fx.record(&leak)],
        "nothing was acknowledged"
    );
}
