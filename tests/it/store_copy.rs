//! `sealform store copy`: a store of 1,000 records (some with attachments,
//! some exported, some acknowledged) copied from the embedded store to a
//! real PostgreSQL and back is byte-identical, entry for entry, and a copy
//! killed half-way completes when run again, skipping what it had copied.
//! The answers to tipsters go along, each on the day it was pushed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use axum::http::StatusCode;
use serde_json::json;

use crate::pg::Postgres;
use crate::support::*;
use crate::upload::{Multipart, UPLOAD_FORMS, api_upload, receipt_of};

use sealform::receipt::Receipt;
use sealform::replies::{AnswerId, FsMailboxes, MailboxId};
use sealform::store::{IndexEntry, Store};

const RECORDS: usize = 1000;

/// Fills `fx`'s store through the in-process app: `RECORDS` submissions,
/// every tenth with two attachments; then marks every seventh exported
/// and acknowledges every eleventh.
async fn fill(fx: &Fixture) {
    let (app, state) = fx.app_and_state();
    let mut receipts = Vec::new();
    for i in 0..RECORDS {
        let req = if i % 10 == 0 {
            let body = Multipart::new()
                .text("message", &format!("record {i} with files"))
                .file(
                    "documents",
                    "a.txt",
                    "text/plain",
                    format!("first {i}").as_bytes(),
                )
                .file(
                    "photo",
                    "b.bin",
                    "application/octet-stream",
                    &[i as u8; 700],
                )
                .finish();
            api_upload("upload", body)
        } else {
            api_post(
                "upload",
                &json!({ "fields": { "message": format!("record {i}") } }),
            )
        };
        let (res, body) = send(&app, req).await;
        assert_eq!(
            res.status(),
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&body)
        );
        receipts.push(Receipt::parse(&receipt_of(&body)).expect("receipt"));
    }
    let store = &state.intake().store;
    for (i, r) in receipts.iter().enumerate() {
        if i % 7 == 0 {
            store.mark_exported(r).expect("export");
        }
        if i % 11 == 0 {
            store.ack(r, SystemTime::now()).expect("ack");
        }
    }
    store.flush().expect("flush");
}

/// Every record of the embedded store under `fx`: its entry and its
/// ciphertext (none once acknowledged), in receipt order.
fn contents(fx: &Fixture) -> Vec<(String, IndexEntry, Option<Vec<u8>>)> {
    let (store, _) = Store::open(&fx.data_dir(), 1 << 20, |_| Vec::new()).expect("open");
    let mut v: Vec<_> = store
        .list()
        .expect("list")
        .into_iter()
        .map(|(r, e)| (r.to_string(), e, std::fs::read(store.path_of(&r)).ok()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn copy(from: &Fixture, to: &Fixture) -> String {
    let (from, to) = (from.config_path(), to.config_path());
    let (code, out, err) = sealform(&[
        "store",
        "copy",
        "--from",
        from.to_str().expect("utf-8"),
        "--to",
        to.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "store copy\n{out}\n{err}");
    out
}

/// Starts a copy from `from` to `to` and SIGKILLs it once `copied()` says
/// it is under way; fails if it finished first.
fn copy_killed_half_way(from: &Fixture, to: &Fixture, copied: impl Fn() -> usize) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sealform"))
        .args(["store", "copy", "--from"])
        .arg(from.config_path())
        .arg("--to")
        .arg(to.config_path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn copy");
    let deadline = Instant::now() + Duration::from_secs(120);
    while copied() < RECORDS / 5 {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the copy ended before it was killed"
        );
        assert!(Instant::now() < deadline, "the copy made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
}

/// Puts answers into the reply store under `fx`: 3 mailboxes, each with
/// one answer pushed 5 days ago and one yesterday.
fn fill_answers(fx: &Fixture) {
    let boxes = FsMailboxes::open(&fx.data_dir(), 20).expect("reply store");
    let day = Duration::from_secs(86_400);
    for m in 0..3u8 {
        let mailbox = mailbox(m);
        for (age, text) in [(5, "old"), (1, "new")] {
            let bytes = format!("answer {text} to mailbox {m}").into_bytes();
            let pushed = SystemTime::now() - age * day;
            boxes
                .put(&mailbox, &AnswerId::random(), &bytes, pushed)
                .expect("put");
        }
    }
}

fn mailbox(m: u8) -> MailboxId {
    format!("{}{}", char::from(b'a' + m), "x".repeat(31))
        .parse()
        .expect("mailbox")
}

/// Every answer in the reply store under `fx`: (mailbox, id, day, bytes).
fn answers(fx: &Fixture) -> Vec<(String, String, String, Vec<u8>)> {
    let boxes = FsMailboxes::open(&fx.data_dir(), 20).expect("reply store");
    let mut v = Vec::new();
    for m in 0..3u8 {
        for a in boxes.list(&mailbox(m)).expect("list") {
            v.push((
                mailbox(m).to_string(),
                a.id.to_string(),
                a.day,
                a.ciphertext,
            ));
        }
    }
    v.sort();
    v
}

/// Records in the database (0 before the first copy created the schema).
fn rows(pg: &Postgres) -> usize {
    pg.client()
        .query_one("SELECT count(*) FROM records", &[])
        .map_or(0, |r| r.get::<_, i64>(0) as usize)
}

#[test]
fn a_store_copied_away_and_back_is_byte_identical_and_a_killed_copy_completes() {
    let a = Fixture::new(&[TestKey::Ed25519], UPLOAD_FORMS, "");
    // The blocking PostgreSQL client below cannot run inside a runtime.
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(fill(&a));
    fill_answers(&a);
    let pg = Postgres::start();
    let store = format!(
        "{TEST_TABLES}\n[store]\nbackend = \"postgres\"\nurl = \"{}\"\nsslmode = \"disable\"\n",
        pg.url()
    );
    let b = Fixture::with_tables(&[TestKey::Ed25519], UPLOAD_FORMS, "", &store);
    let c = Fixture::new(&[TestKey::Ed25519], UPLOAD_FORMS, "");
    copy_killed_half_way(&a, &b, || rows(&pg));
    let out = copy(&a, &b);
    assert!(out.contains(&format!("{RECORDS} record(s): ")), "{out}");
    assert!(
        !out.contains(" 0 already there (same entry"),
        "the second run skipped what the first copied: {out}"
    );
    assert!(out.contains("6 answer(s) to tipsters: "), "{out}");
    let out = copy(&a, &b);
    assert!(
        out.contains(&format!("0 copied, {RECORDS} already there")),
        "{out}"
    );
    assert!(
        out.contains("6 answer(s) to tipsters: 0 copied, 6 already there"),
        "{out}"
    );
    let out = copy(&b, &c);
    assert!(
        out.contains(&format!("{RECORDS} copied, 0 already there")),
        "{out}"
    );
    assert!(
        out.contains("6 answer(s) to tipsters: 6 copied, 0 already there"),
        "{out}"
    );
    let (sent, came_back) = (answers(&a), answers(&c));
    assert_eq!(sent.len(), 6);
    assert!(sent == came_back, "the answers differ after the round trip");
    let (original, back) = (contents(&a), contents(&c));
    assert_eq!(original.len(), RECORDS);
    assert_eq!(
        original.iter().filter(|r| r.2.is_none()).count(),
        RECORDS.div_ceil(11)
    );
    assert!(original == back, "the copy differs from the original");
}
