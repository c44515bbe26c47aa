//! The staff routine end to end: the token-authenticated staff API, `pull`
//! and `export` bundles, offline `decrypt` (with gpg-made and
//! `sealform keygen` keys), `ack`, retention and hostile record contents.
//!
//! One module per topic under `staff/`; this file holds the helpers they share.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

mod ack;
mod api;
mod decrypt;
mod export;
mod hostile;
mod pull;
mod retention;
mod scopes;

/// A fixture whose `[staff]` table accepts one fresh token; returns the
/// fixture and the token (also written to `dir/token`). The staff API is
/// on the public listener unless `staff_extra` gives it its own `listen`.
fn staff_fixture(keys: &[TestKey], staff_extra: &str) -> (Fixture, String) {
    let token = sealform::staff_token::mint().to_string();
    let hash = sealform::staff_token::TokenHash::of(&token);
    let placement = if staff_extra.contains("listen =") {
        ""
    } else {
        "on_public_listener = true"
    };
    let fx = Fixture::new(
        keys,
        DEFAULT_FORMS,
        &format!("[staff]\ntokens = [\"{hash}\"]\n{placement}\n{staff_extra}\n"),
    );
    std::fs::write(fx.path().join("token"), format!("{token}\n")).expect("token file");
    (fx, token)
}

fn staff_get(path: &str, token: Option<&str>) -> Request<Body> {
    let mut r = Request::get(path);
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    r.body(Body::empty()).expect("request")
}

/// `n` API submissions (`fields_for(0..n)`) to a real server; their receipts.
fn submit_to(server: &Server, client: &reqwest::blocking::Client, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let res = client
                .post(server.url("/api/v1/forms/tip/submissions"))
                .json(&json!({ "fields": fields_for(i) }))
                .send()
                .expect("submit");
            assert_eq!(res.status().as_u16(), 201);
            let body: Value = res.json().expect("json");
            body["receipt"].as_str().expect("receipt").to_owned()
        })
        .collect()
}

fn fields_for(i: usize) -> Value {
    json!({
        "message": format!("message number {i}: the chief said «no budget»"),
        "contact": format!("signal-contact-{i}"),
        "email": format!("person{i}@example.org"),
        "topic": "schools",
        "publish": i % 2 == 0,
    })
}

pub(crate) fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

pub(crate) fn run_ok(args: &[&str]) -> String {
    let (code, out, err) = sealform(args);
    assert_eq!(
        code, 0,
        "sealform {args:?} failed\nstdout:\n{out}\nstderr:\n{err}"
    );
    out
}

/// Every record the server's staff API lists (`state=all`).
pub(crate) fn every_record(
    server: &Server,
    client: &reqwest::blocking::Client,
    token: &str,
) -> Vec<Value> {
    let listing: Value = client
        .get(server.url("/api/v1/staff/submissions?state=all"))
        .bearer_auth(token)
        .send()
        .expect("list")
        .json()
        .expect("json");
    listing["submissions"].as_array().expect("list").clone()
}

/// Runs `sealform ack` on `bundle` against the server's staff API; its
/// stdout.
pub(crate) fn ack_over_http(server: &Server, token_file: &Path, bundle: &Path) -> String {
    let url = server.url("");
    run_ok(&[
        "ack",
        "--all-readers",
        "--url",
        &url,
        "--token-file",
        path_str(token_file),
        path_str(bundle),
    ])
}

/// The receipt folders under a decrypt output.
fn decrypted_dirs(out: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(out)
        .expect("out dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

/// Submits `n` records through the in-process app; returns their receipts.
/// Acknowledges one record through the in-process staff API (the app is
/// dropped again, releasing the index for a CLI command).
async fn ack_through_the_api(fx: &Fixture, token: &str, receipt: &str) {
    let app = fx.app();
    let (res, _) = send(
        &app,
        Request::post(format!("/api/v1/staff/submissions/{receipt}/ack"))
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
}

async fn submit(fx: &Fixture, n: usize) -> Vec<String> {
    let app = fx.app();
    let mut receipts = Vec::new();
    for i in 0..n {
        let (res, body) = send(&app, api_post("tip", &json!({ "fields": fields_for(i) }))).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let v: Value = serde_json::from_slice(&body).expect("json");
        receipts.push(v["receipt"].as_str().expect("receipt").to_owned());
    }
    receipts
}

/// `sealform pull` from `url` into `bundle` with the fixture's token and
/// `extra` arguments, ready to run.
fn pull_command(fx: &Fixture, url: &str, bundle: &Path, extra: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sealform"));
    cmd.args(["pull", "--url", url, "--token-file"])
        .arg(fx.path().join("token"))
        .arg("--out")
        .arg(bundle)
        .args(extra);
    cmd
}

/// Runs `cmd`: its exit code, stdout and stderr.
fn outcome(cmd: &mut std::process::Command) -> (Option<i32>, String, String) {
    let out = cmd.output().expect("run sealform");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `sealform pull` from `url` into `bundle` with the fixture's token.
fn pull(fx: &Fixture, url: &str, bundle: &Path) -> (Option<i32>, String, String) {
    outcome(&mut pull_command(fx, url, bundle, &[]))
}

/// A fresh token and its config hash.
fn token_and_hash() -> (String, String) {
    let token = sealform::staff_token::mint().to_string();
    let hash = sealform::staff_token::TokenHash::of(&token).to_string();
    (token, hash)
}
