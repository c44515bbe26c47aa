//! Several nodes behind one load balancer: what they must share. Each node
//! is the real `sealform serve` on a port of its own.
//!
//! The form-token key: every node given the same
//! `[abuse] form_token_secret_file` accepts the forms the others render;
//! a node without it does not, and a file other users can read, or too
//! short to be a key, stops a node from starting.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::support::*;

mod shared_database;

const LIMITS: &str = r#"
[limits]
form_client = { burst = 100000, per_minute = 100000 }
form_page_client = { burst = 100000, per_minute = 100000 }
form_each = { burst = 100000, per_minute = 100000 }
form_global = { burst = 100000, per_minute = 100000 }
"#;

/// A node's fixture: form tokens on, signed with the key in `secret` (or a
/// random key of its own).
fn node(secret: Option<&Path>) -> Fixture {
    let key = secret.map_or(String::new(), |p| {
        format!("form_token_secret_file = \"{}\"\n", p.display())
    });
    let tables = format!("{LIMITS}\n[abuse]\nmin_fill_secs = 0\n{key}");
    Fixture::with_tables(&[TestKey::Ed25519], DEFAULT_FORMS, "", &tables)
}

/// A secret file of `bytes` with `mode`, in `dir`.
fn secret_file(dir: &Path, bytes: &[u8], mode: u32) -> std::path::PathBuf {
    let path = dir.join("form-token.secret");
    std::fs::write(&path, bytes).expect("write secret");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

fn token_from(client: &reqwest::blocking::Client, node: &Server) -> String {
    let res = client.get(node.url("/forms/tip")).send().expect("GET form");
    assert_eq!(res.status(), 200);
    token_in(&res.bytes().expect("page"))
}

/// Posts the form with `token` to `node`: the status and the page.
fn post_to(client: &reqwest::blocking::Client, node: &Server, token: &str) -> (u16, String) {
    let body = urlencode(&[
        ("message", "a message sent to another node"),
        ("sf.token", token),
    ]);
    let res = client
        .post(node.url("/forms/tip"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .expect("POST form");
    let status = res.status().as_u16();
    (status, res.text().expect("page"))
}

#[test]
fn a_form_opened_on_one_node_is_accepted_by_another_with_the_same_secret_file() {
    let shared = tempfile::tempdir().expect("tempdir");
    let secret = secret_file(
        shared.path(),
        format!("{}\n", "5a".repeat(32)).as_bytes(),
        0o600,
    );
    let (fa, fb, fc) = (node(Some(&secret)), node(Some(&secret)), node(None));
    let (a, b, c) = (Server::start(&fa), Server::start(&fb), Server::start(&fc));
    let client = reqwest::blocking::Client::new();

    let token = token_from(&client, &a);
    let (status, page) = post_to(&client, &b, &token);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"receipt\""), "{page}");
    assert_eq!((fa.records().len(), fb.records().len()), (0, 1));

    let (status, page) = post_to(&client, &b, &token);
    assert_eq!(status, 400, "the same token twice on one node: {page}");
    assert!(page.contains("already sent"), "{page}");

    // A node with a key of its own refuses the others' forms.
    let other = token_from(&client, &a);
    let (status, page) = post_to(&client, &c, &other);
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("did not come from"), "{page}");
    assert_eq!(fc.records().len(), 0);
}

#[test]
fn a_secret_file_others_can_read_or_too_short_stops_the_node_from_starting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("5a".repeat(32).into_bytes(), 0o644, "other users may read"),
        ("5a".repeat(16).into_bytes(), 0o600, "holds 16 secret bytes"),
    ];
    for (bytes, mode, says) in cases {
        let secret = secret_file(dir.path(), &bytes, mode);
        let fx = node(Some(&secret));
        let config = fx.config_path();
        let config = config.to_str().expect("utf-8 path");
        let (code, out, err) = sealform(&["check", "--config", config]);
        assert_eq!(code, 1, "check: {out}{err}");
        assert!(err.contains(says), "check says {says}: {err}");
        let (code, _, err) = sealform(&["serve", "--listen", "127.0.0.1:0", "--config", config]);
        assert_ne!(code, 0, "serve refuses to start: {err}");
        assert!(err.contains(says), "serve says {says}: {err}");
        assert!(!err.contains("5a5a"), "the secret is not shown: {err}");
    }
}
