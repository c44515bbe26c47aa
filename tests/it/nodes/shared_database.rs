//! Two nodes, one PostgreSQL (a real one, `tests/it/pg.rs`): submissions
//! to both, a form opened on one sent to the other once only, `pull`
//! through one node fetching what both took in, `ack` through the other
//! removing it for both, and retention started on both at once; an answer
//! to a tipster pushed to one node, read, followed up and deleted on the
//! other.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;
use crate::pg::Postgres;

/// A node over `pg` with `forms`, form tokens signed with `secret`, the staff API next
/// to the forms for the token hashed `hash`, acknowledged records deleted
/// at every purge (and so at start).
fn pg_node(pg: &Postgres, secret: &Path, hash: &str, forms: &str) -> Fixture {
    let tables = format!(
        "{LIMITS}\n[abuse]\nmin_fill_secs = 0\nform_token_secret_file = \"{}\"\n\n\
         [store]\nbackend = \"postgres\"\nurl = \"{}\"\nsslmode = \"disable\"\npool_size = 20\n\n\
         [staff]\ntokens = [\"{hash}\"]\non_public_listener = true\n\n\
         [retention]\nacked_days = 0\n",
        secret.display(),
        pg.url()
    );
    Fixture::with_tables(&[TestKey::Ed25519], forms, "", &tables)
}

fn submit_json(client: &reqwest::blocking::Client, node: &Server, i: usize) -> String {
    let res = client
        .post(node.url("/api/v1/forms/tip/submissions"))
        .json(&json!({ "fields": { "message": format!("message number {i} to a node") } }))
        .send()
        .expect("submit");
    assert_eq!(res.status().as_u16(), 201);
    let body: Value = res.json().expect("json");
    body["receipt"].as_str().expect("receipt").to_owned()
}

/// Every record `node`'s staff API lists, as (receipt, state), sorted.
fn listing(
    client: &reqwest::blocking::Client,
    node: &Server,
    token: &str,
) -> Vec<(String, String)> {
    let listing: Value = client
        .get(node.url("/api/v1/staff/submissions?state=all"))
        .bearer_auth(token)
        .send()
        .expect("list")
        .json()
        .expect("json");
    let mut v: Vec<(String, String)> = listing["submissions"]
        .as_array()
        .expect("list")
        .iter()
        .map(|r| {
            (
                r["receipt"].as_str().expect("receipt").to_owned(),
                r["state"].as_str().expect("state").to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

fn run_ok(args: &[&str]) -> String {
    let (code, out, err) = sealform(args);
    assert_eq!(code, 0, "sealform {args:?}\nstdout:\n{out}\nstderr:\n{err}");
    out
}

/// Waits until `server`'s log says retention ran; the line.
fn retention_line(server: &Server) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = server.log_text();
        if let Some(line) = log.lines().find(|l| l.contains("retention applied")) {
            return line.to_owned();
        }
        assert!(!log.contains("upkeep of the store failed"), "{log}");
        assert!(
            Instant::now() < deadline,
            "no retention within 30 s:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The number after `acked=` in a retention log line.
fn acked_in(line: &str) -> usize {
    let at = line.find("acked=").expect("acked=") + "acked=".len();
    line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .expect("a count")
}

/// Two nodes' fixtures over one database, sharing a form-token key and a
/// staff token.
struct Cluster {
    pg: Postgres,
    /// Holds the shared secret file (and what a test puts beside it).
    shared: tempfile::TempDir,
    /// The staff token both nodes accept.
    token: String,
    a: Fixture,
    b: Fixture,
}

fn cluster(forms: &str) -> Cluster {
    let pg = Postgres::start();
    let shared = tempfile::tempdir().expect("tempdir");
    let secret = secret_file(shared.path(), &[0x5a; 48], 0o600);
    let token = sealform::staff_token::mint().to_string();
    let hash = sealform::staff_token::TokenHash::of(&token).to_string();
    let (a, b) = (
        pg_node(&pg, &secret, &hash, forms),
        pg_node(&pg, &secret, &hash, forms),
    );
    Cluster {
        pg,
        shared,
        token,
        a,
        b,
    }
}

#[test]
fn two_nodes_over_one_database_share_records_tokens_pull_ack_and_retention() {
    let Cluster {
        pg,
        shared,
        token,
        a: fa,
        b: fb,
    } = cluster(DEFAULT_FORMS);
    let token_file = shared.path().join("staff.token");
    std::fs::write(&token_file, format!("{token}\n")).expect("token file");
    let (a, b) = (Server::start(&fa), Server::start(&fb));
    let client = reqwest::blocking::Client::new();

    let mut receipts: Vec<String> = (0..6)
        .map(|i| submit_json(&client, if i % 2 == 0 { &a } else { &b }, i))
        .collect();
    // A form opened on A is accepted by B, then refused by A (and B).
    let form_token = token_from(&client, &a);
    let (status, page) = post_to(&client, &b, &form_token);
    assert_eq!(status, 200, "{page}");
    let receipt = page
        .split("<code id=\"receipt\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .expect("receipt")
        .to_owned();
    receipts.push(receipt);
    for node in [&a, &b] {
        let (status, page) = post_to(&client, node, &form_token);
        assert_eq!(status, 400, "{page}");
        assert!(page.contains("already sent"), "{page}");
    }
    receipts.sort();
    let listed: Vec<String> = listing(&client, &a, &token)
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert_eq!(listed, receipts, "node A lists what both took in");

    // pull through B fetches every record, and the real gpg reads them.
    let work = tempfile::tempdir().expect("tempdir");
    let bundle = work.path().join("bundle");
    let bundle_s = bundle.to_str().expect("utf-8");
    let token_s = token_file.to_str().expect("utf-8");
    let out = run_ok(&[
        "pull",
        "--url",
        &b.url(""),
        "--token-file",
        token_s,
        "--out",
        bundle_s,
    ]);
    assert!(out.contains("7 fetched"), "{out}");
    let gpg = Gpg::with_secret_keys(&[&TestKey::Ed25519.secret()]);
    for r in &receipts {
        let plain = gpg
            .decrypt(&bundle.join(format!("{r}.pgp")))
            .expect("gpg decrypts");
        let plain = String::from_utf8_lossy(&plain);
        assert!(
            plain.contains(&format!("X-Sealform-Receipt: {r}")),
            "{plain}"
        );
    }

    // ack through A: acknowledged for both.
    let out = run_ok(&[
        "ack",
        "--all-readers",
        "--url",
        &a.url(""),
        "--token-file",
        token_s,
        bundle_s,
    ]);
    assert!(out.contains("7 acknowledged"), "{out}");
    assert!(
        listing(&client, &b, &token)
            .iter()
            .all(|(_, state)| state == "acked"),
        "node B sees them acknowledged"
    );

    // The shared replay set holds the used token's nonce and day, nothing
    // else; a day whose tokens have all expired is forgotten by the next
    // node to start.
    let mut db = pg.client();
    let rows = db
        .query("SELECT day, length(nonce) FROM used_tokens", &[])
        .expect("used_tokens");
    let today = sealform::store::day_string(std::time::SystemTime::now());
    let seen: Vec<(String, i32)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(seen, vec![(today.clone(), 16)]);
    db.execute(
        "INSERT INTO used_tokens (nonce, day) VALUES ($1, '2020-01-01')",
        &[&&[7u8; 16][..]],
    )
    .expect("an old nonce");

    // Both nodes restart at once and purge at start: each record once.
    a.terminate();
    b.terminate();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Server::start(&fa));
        let b = s.spawn(|| Server::start(&fb));
        (a.join().expect("node a"), b.join().expect("node b"))
    });
    let (la, lb) = (retention_line(&a), retention_line(&b));
    assert_eq!(acked_in(&la) + acked_in(&lb), 7, "{la}\n{lb}");
    assert!(listing(&client, &a, &token).is_empty());
    assert!(listing(&client, &b, &token).is_empty());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let days: Vec<String> = db
            .query("SELECT day FROM used_tokens", &[])
            .expect("used_tokens")
            .iter()
            .map(|r| r.get(0))
            .collect();
        if days == vec![today.clone()] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expired days not forgotten: {days:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for server in [&a, &b] {
        let log = server.log_text();
        assert!(!log.contains("ERROR") && !log.contains("failed"), "{log}");
    }
}

#[test]
fn an_answer_pushed_to_one_node_is_read_followed_up_and_deleted_on_the_other() {
    use sealform::replies::{AnswerId, ReplyCode, ReplyStatus, answer_plaintext, seal_answer};

    // `_shared` holds the secret file the nodes read at start.
    let Cluster {
        pg,
        shared: _shared,
        token,
        a: fa,
        b: fb,
    } = cluster(crate::replies::REPLIES_FORMS);
    let (a, b) = (Server::start(&fa), Server::start(&fb));
    let client = reqwest::blocking::Client::new();

    // A tip to A; its reply code.
    let res = client
        .post(a.url("/api/v1/forms/tip/submissions"))
        .json(&json!({"fields": {"message": "a tip to node A"}}))
        .send()
        .expect("submit");
    assert_eq!(res.status().as_u16(), 201);
    let body: Value = res.json().expect("json");
    let code_text = body["reply_code"].as_str().expect("reply_code").to_owned();
    let derived = ReplyCode::parse(&code_text)
        .expect("code")
        .derive()
        .expect("derive");
    let mailbox = derived.mailbox.to_string();

    // Staff push an answer to A.
    let plain = answer_plaintext(
        Some("tip"),
        Some(ReplyStatus::InProgress),
        b"we are looking into it",
    );
    let sealed =
        seal_answer(derived.cert(), &[], &plain, std::time::SystemTime::now()).expect("seal");
    let res = client
        .put(a.url(&format!(
            "/api/v1/staff/mailboxes/{mailbox}/replies/{}",
            AnswerId::random()
        )))
        .bearer_auth(&token)
        .body(sealed)
        .send()
        .expect("push");
    assert_eq!(res.status().as_u16(), 201, "{}", a.log_text());
    // The database holds the mailbox as the key of its row, and the day.
    let mut db = pg.client();
    let rows: Vec<(String, String)> = db
        .query("SELECT mailbox, day FROM reply_answers", &[])
        .expect("reply_answers")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let today = sealform::store::day_string(std::time::SystemTime::now());
    assert_eq!(rows, vec![(mailbox.clone(), today)]);

    // The tipster reads it on B, and follows up there.
    let read = |node: &Server| -> Value {
        let res = client
            .post(node.url("/api/v1/replies"))
            .json(&json!({"code": code_text}))
            .send()
            .expect("read");
        assert_eq!(res.status().as_u16(), 200);
        res.json().expect("json")
    };
    let on_b = read(&b);
    assert_eq!(
        on_b["answers"][0]["message"], "we are looking into it",
        "{on_b}"
    );
    assert_eq!(on_b["status"], "in-progress", "{on_b}");
    let res = client
        .post(b.url("/api/v1/replies/follow-up"))
        .json(&json!({"code": code_text, "message": "here is more, sent to node B"}))
        .send()
        .expect("follow up");
    assert_eq!(res.status().as_u16(), 201);
    let follow_up: Value = res.json().expect("json");
    let follow_up = follow_up["receipt"].as_str().expect("receipt").to_owned();
    assert!(
        listing(&client, &a, &token)
            .iter()
            .any(|(r, _)| *r == follow_up),
        "node A lists the follow-up node B took in"
    );

    // Deleted on B: gone for A as well.
    let res = client
        .post(b.url("/api/v1/replies/delete"))
        .json(&json!({"code": code_text}))
        .send()
        .expect("delete");
    assert_eq!(res.status().as_u16(), 204);
    let on_a = read(&a);
    assert_eq!(on_a["answers"], json!([]), "{on_a}");
    let left: i64 = db
        .query_one("SELECT count(*) FROM reply_answers", &[])
        .expect("count")
        .get(0);
    assert_eq!(left, 0);
    for server in [&a, &b] {
        assert!(
            !server.log_text().contains(&mailbox),
            "no mailbox in the log"
        );
    }
}
