//! The shortest path through everything: one submission each way, decrypted
//! by the real gpg.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn a_json_submission_is_stored_as_one_record_gpg_decrypts() {
    let fx = Fixture::standard();
    let app = fx.app();
    let (res, body) = send(
        &app,
        api_post("tip", &json!({"fields": {"message": "hello from the API"}})),
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let receipt = serde_json::from_slice::<serde_json::Value>(&body).expect("json")["receipt"]
        .as_str()
        .expect("receipt")
        .to_owned();
    assert_eq!(fx.records(), vec![fx.record(&receipt)]);
    let gpg = Gpg::with_secret_keys(&[&TestKey::Ed25519.secret()]);
    let plain = gpg.decrypt(&fx.record(&receipt)).expect("gpg decrypts");
    assert_eq!(json_part(&plain)["fields"]["message"], "hello from the API");
}
