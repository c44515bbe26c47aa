//! `GET /api/v1/openapi.json` describes the forms exactly as they are
//! validated.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn the_openapi_document_describes_each_form_as_the_server_validates_it() {
    let fx = Fixture::new(
        &[TestKey::Ed25519, TestKey::Rsa],
        DEFAULT_FORMS,
        "[staff]\non_public_listener = true",
    );
    let app = fx.app();
    let (res, body) = send(
        &app,
        Request::get("/api/v1/openapi.json")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let doc: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let post = &doc["paths"]["/api/v1/forms/tip/submissions"]["post"];
    let fields =
        &post["requestBody"]["content"]["application/json"]["schema"]["properties"]["fields"];
    assert_eq!(fields["required"], json!(["message"]));
    assert_eq!(fields["additionalProperties"], false);
    assert_eq!(fields["properties"]["message"]["maxLength"], 5000);
    assert_eq!(fields["properties"]["contact"]["maxLength"], 200);
    assert_eq!(
        fields["properties"]["topic"]["enum"],
        json!(["police", "schools", "other"])
    );
    assert!(post["responses"]["201"].is_object());
    assert!(post["responses"]["422"].is_object());

    // The staff API served on this listener is described, behind its token.
    let list = &doc["paths"]["/api/v1/staff/submissions"]["get"];
    assert_eq!(list["security"], json!([{ "staffToken": [] }]));
    assert!(doc["paths"]["/api/v1/staff/submissions/{receipt}/ack"]["post"].is_object());
    assert_eq!(
        doc["components"]["securitySchemes"]["staffToken"]["scheme"],
        "bearer"
    );

    // What the document calls valid, the server accepts; what it calls
    // unknown, the server refuses.
    let valid = json!({"fields": {"message": "x", "topic": "schools", "publish": true}});
    let (res, _) = send(&app, api_post("tip", &valid)).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let unknown = json!({"fields": {"message": "x", "not_in_the_schema": "y"}});
    let (res, _) = send(&app, api_post("tip", &unknown)).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
