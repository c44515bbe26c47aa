//! Anonymous replies (issue 21): reply codes handed out at submission, the
//! mailbox and certificate inside the record, `sealform reply` and `push`,
//! the staff route that stores answers, their expiry, and canaries for
//! what must never be stored.
//!
//! One module per side under `replies/`; this file holds the helpers they
//! share.

use std::path::Path;

use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};

use crate::support::*;

mod browser;
mod canaries;
mod reader;
mod staff;

/// Forms for these tests: `tip` gives reply codes, `plain` does not,
/// `upload` takes files and gives reply codes.
pub const REPLIES_FORMS: &str = r#"
[[forms]]
id = "tip"
title = "Send a tip"
replies = true

  [[forms.fields]]
  name = "message"
  label = "Message"
  kind = "textarea"
  required = true
  max_len = 5000

  [[forms.fields]]
  name = "contact"
  label = "Contact"
  kind = "text"
  max_len = 200

[[forms]]
id = "plain"
title = "No replies here"

  [[forms.fields]]
  name = "message"
  label = "Message"
  kind = "textarea"
  required = true

[[forms]]
id = "upload"
title = "Send documents"
replies = true

  [[forms.fields]]
  name = "message"
  label = "Message"
  kind = "textarea"

  [[forms.fields]]
  name = "documents"
  label = "Documents"
  kind = "file"
  multiple = true
"#;

/// A fixture with [`REPLIES_FORMS`], the staff API on the public listener
/// with one fresh token (also in `dir/token`) and `replies` as the
/// `[replies]` table's lines; returns it and the token.
pub fn replies_fixture(replies: &str) -> (Fixture, String) {
    let token = sealform::staff_token::mint().to_string();
    let hash = sealform::staff_token::TokenHash::of(&token);
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        REPLIES_FORMS,
        &format!("[staff]\ntokens = [\"{hash}\"]\non_public_listener = true\n"),
        &format!("{TEST_TABLES}\n[replies]\n{replies}\n"),
    );
    std::fs::write(fx.path().join("token"), format!("{token}\n")).expect("token file");
    (fx, token)
}

/// The reply code of a 201 body (panics without one).
pub fn reply_code_of(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).expect("json");
    v["reply_code"].as_str().expect("a reply code").to_owned()
}

/// A JSON submission to `form` with `message`.
pub fn tip(form: &str, message: &str) -> Request<Body> {
    api_post(form, &json!({ "fields": { "message": message } }))
}

/// `PUT /api/v1/staff/mailboxes/{mailbox}/replies/{id}` with `body`.
pub fn put_answer(mailbox: &str, id: &str, token: Option<&str>, body: Vec<u8>) -> Request<Body> {
    let mut r = Request::put(format!("/api/v1/staff/mailboxes/{mailbox}/replies/{id}"))
        .header("content-type", "application/pgp-encrypted");
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    r.body(Body::from(body)).expect("request")
}

/// The answer files under `data_dir/replies/<mailbox>/`.
pub fn stored_answers(fx: &Fixture, mailbox: &str) -> Vec<std::path::PathBuf> {
    let dir = fx.data_dir().join("replies").join(mailbox);
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    v.sort();
    v
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
