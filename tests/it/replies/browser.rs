//! Issue 21's acceptance end to end, in Debian's headless Chromium with
//! JavaScript off (`tests/browser/replies.mjs`, one step per run) against
//! the real server, with the real staff commands (`pull`, `decrypt`,
//! `reply`, `push`) and the real gpg: a tip, its code read off the
//! confirmation page; staff find the mailbox certificate in the record and
//! answer with a status; the tipster reads answer and status in Spanish and
//! in English; an answer written with plain `gpg --encrypt` reads the same;
//! a follow-up that staff decrypt and link to the tip by the mailbox both
//! records carry; a delete, after which the same code finds nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::browser::browser_tools;
use crate::support::*;
use sealform::replies::{AnswerId, ReplyCode};

use super::{REPLIES_FORMS, path_str};

/// The tipster's browser: one step of `replies.mjs`, its JSON report.
struct Tipster {
    script: PathBuf,
    chromium: PathBuf,
    base: String,
}

impl Tipster {
    fn step(&self, step: &str, lang: &str, args: &[&str]) -> Value {
        let out = Command::new("timeout")
            .arg("120")
            .arg("node")
            .arg(&self.script)
            .args([step, &self.base, lang])
            .args(args)
            .env("SEALFORM_CHROMIUM", &self.chromium)
            .env("SEALFORM_SUBMIT_DELAY_MS", "1200")
            .output()
            .expect("run node");
        assert!(
            out.status.success(),
            "replies.mjs {step} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
        // Every request stayed on the server, and no URL carried the code.
        for r in report["requests"].as_array().expect("requests") {
            let url = r.as_str().expect("url");
            assert!(url.starts_with(&self.base), "{url}");
            assert!(!url.contains("code="), "{url}");
        }
        report
    }
}

/// `sealform args...`, which must succeed; its stdout.
fn run_ok(args: &[&str]) -> String {
    let (code, out, err) = sealform(args);
    assert_eq!(code, 0, "sealform {args:?}\nstdout:\n{out}\nstderr:\n{err}");
    out
}

/// The newsroom: the real staff commands against the server, in `work`.
struct Newsroom<'a> {
    server: &'a Server,
    token_file: PathBuf,
    work: &'a Path,
}

impl Newsroom<'_> {
    /// Pulls every new record into a bundle, decrypts it; the folder of
    /// the record `receipt`.
    fn pull_and_decrypt(&self, receipt: &str) -> PathBuf {
        let bundle = self.work.join("bundle");
        let plain = self.work.join("plain");
        run_ok(&[
            "pull",
            "--url",
            &self.server.url(""),
            "--token-file",
            path_str(&self.token_file),
            "--out",
            path_str(&bundle),
        ]);
        let dir = plain.join(receipt);
        if !dir.exists() {
            let _ = std::fs::remove_dir_all(&plain);
            run_ok(&[
                "decrypt",
                "--key",
                path_str(&TestKey::Ed25519.secret()),
                "--out",
                path_str(&plain),
                path_str(&bundle),
            ]);
        }
        assert!(dir.is_dir(), "{} not decrypted", dir.display());
        dir
    }

    /// `sealform reply` to `record` with `text` and `status`, then `push`.
    fn reply(&self, record: &Path, text: &str, status: &str) {
        let outbox = self.work.join("outbox");
        let file = self.work.join("answer.txt");
        std::fs::write(&file, text).expect("answer");
        run_ok(&[
            "reply",
            "--record",
            path_str(record),
            "--message",
            path_str(&file),
            "--status",
            status,
            "--out",
            path_str(&outbox),
        ]);
        self.push(&outbox);
    }

    /// An answer encrypted with plain `gpg --encrypt -r` to the certificate
    /// in `key` (the record's `reply-key.asc`), dropped into a fresh outbox
    /// under `mailbox`, then `push`.
    fn reply_with_gpg(&self, key: &Path, mailbox: &str, text: &str) {
        let gpg = Gpg::with_secret_keys(&[]);
        let out = gpg.cmd().arg("--import").arg(key).output().expect("gpg");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cert = {
            use sequoia_openpgp::parse::Parse;
            sequoia_openpgp::Cert::from_file(key).expect("cert")
        };
        let plain = self.work.join("gpg-answer.txt");
        std::fs::write(&plain, text).expect("write");
        let outbox = self.work.join("gpg-outbox");
        std::fs::create_dir_all(outbox.join(mailbox)).expect("outbox dir");
        let dropped = outbox
            .join(mailbox)
            .join(format!("{}.pgp", AnswerId::random()));
        let out = gpg
            .cmd()
            .args(["--trust-model", "always", "--encrypt", "-r"])
            .arg(cert.fingerprint().to_hex())
            .arg("-o")
            .arg(&dropped)
            .arg(&plain)
            .output()
            .expect("gpg");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.push(&outbox);
    }

    fn push(&self, outbox: &Path) {
        run_ok(&[
            "push",
            "--url",
            &self.server.url(""),
            "--token-file",
            path_str(&self.token_file),
            path_str(outbox),
        ]);
    }
}

/// The `Reply-Mailbox` header of a decrypted record.
fn mailbox_of(record: &Path) -> String {
    let eml = String::from_utf8(read(&record.join("message.eml"))).expect("utf-8");
    eml.lines()
        .find_map(|l| l.strip_prefix("Reply-Mailbox: "))
        .unwrap_or_else(|| panic!("no Reply-Mailbox in {eml}"))
        .trim()
        .to_owned()
}

/// The file named `name` anywhere under `dir`.
fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(found) = find_file(&p, name) {
                return Some(found);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

/// The tip form with replies, one staff token (in `dir/token`) and the
/// real abuse defaults (form tokens, a minimum fill time of 1 s, the
/// cross-site check); only the rate limits are raised.
fn fixture() -> Fixture {
    let token = sealform::staff_token::mint().to_string();
    let hash = sealform::staff_token::TokenHash::of(&token);
    let tables = r#"
[limits]
form_client = { burst = 1000, per_minute = 1000 }
form_each = { burst = 1000, per_minute = 1000 }
form_global = { burst = 1000, per_minute = 1000 }

[abuse]
min_fill_secs = 1
"#;
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        REPLIES_FORMS,
        &format!("[staff]\ntokens = [\"{hash}\"]\non_public_listener = true\n"),
        tables,
    );
    std::fs::write(fx.path().join("token"), format!("{token}\n")).expect("token file");
    fx
}

#[test]
fn a_tipster_and_the_newsroom_talk_through_reply_codes_in_chromium_without_javascript() {
    let (dir, chromium) = match browser_tools() {
        Ok(t) => t,
        Err(why) => {
            println!("SKIPPED replies browser test: {why}; run ./scripts/setup to install it");
            eprintln!("SKIPPED replies browser test: {why}; run ./scripts/setup to install it");
            return;
        }
    };
    let fx = fixture();
    let server = Server::start(&fx);
    let tipster = Tipster {
        script: dir.join("replies.mjs"),
        chromium,
        base: server.url(""),
    };
    let work = tempfile::tempdir().expect("work dir");

    // The tip, and the code on its confirmation page.
    let tip = "The mayor's brother won the bridge contract. Ñandú 🚓";
    let sent = tipster.step("submit", "en", &["tip", tip]);
    assert_eq!(sent["status"], 200, "{sent}");
    let receipt = sent["receipt"].as_str().expect("receipt").to_owned();
    let code = sent["code"].as_str().expect("code on the page").to_owned();
    assert_eq!(code.split_whitespace().count(), 12, "{code}");

    // Staff: pull, decrypt, find the certificate and the mailbox; answer.
    let newsroom = Newsroom {
        server: &server,
        token_file: fx.path().join("token"),
        work: work.path(),
    };
    let record = newsroom.pull_and_decrypt(&receipt);
    let mailbox = mailbox_of(&record);
    let derived = ReplyCode::parse(&code)
        .expect("code")
        .derive()
        .expect("derive");
    assert_eq!(mailbox, derived.mailbox.to_string());
    let key = find_file(&record, "reply-key.asc").expect("reply-key.asc in the record");
    assert_eq!(read(&key), derived.cert_armored().into_bytes());
    let answer = "Thank you. Could you tell us which year?\nWe keep this private.";
    newsroom.reply(&record, answer, "answered");

    // The tipster reads it in Spanish and in English.
    for (lang, status) in [("es", "Estado: respondido"), ("en", "Status: answered")] {
        let read = tipster.step("read", lang, &[&code]);
        assert_eq!(read["status"], 200, "{read}");
        assert_eq!(read["lang"], lang, "{read}");
        assert_eq!(read["statusLine"], status, "{read}");
        let answers = read["answers"].as_array().expect("answers");
        assert_eq!(answers.len(), 1, "{read}");
        assert_eq!(answers[0]["text"], answer, "{read}");
        assert_eq!(answers[0]["status"], status, "{read}");
    }

    // An answer written with plain gpg to the certificate from the record,
    // dropped in the outbox and pushed, reads the same.
    let by_gpg = "Answered with plain gpg: please call the desk.";
    newsroom.reply_with_gpg(&key, &mailbox, by_gpg);
    let read = tipster.step("read", "en", &[&code]);
    let answers = read["answers"].as_array().expect("answers");
    assert_eq!(answers.len(), 2, "{read}");
    // A plain answer carries no time: within its day it may come first.
    let plain = answers
        .iter()
        .find(|a| a["text"] == by_gpg)
        .unwrap_or_else(|| panic!("the plain gpg answer is shown: {read}"));
    assert_eq!(plain["status"], Value::Null, "no status in a plain answer");
    assert_eq!(
        read["statusLine"], "Status: answered",
        "the newest status stays"
    );

    // A follow-up, which staff decrypt and link to the tip by its mailbox.
    let follow = "It was 2019. I have the invoices.";
    let sent = tipster.step("follow-up", "en", &[&code, follow]);
    assert_eq!(sent["status"], 200, "{sent}");
    let receipt2 = sent["receipt"].as_str().expect("receipt").to_owned();
    assert_ne!(receipt2, receipt);
    let record2 = newsroom.pull_and_decrypt(&receipt2);
    assert_eq!(
        mailbox_of(&record2),
        mailbox,
        "both records carry the mailbox"
    );
    let fields: Value = serde_json::from_slice(&read_fields(&record2)).expect("fields.json");
    assert_eq!(fields["fields"]["message"], follow.replace('\n', "\r\n"));

    // Delete, after which the same code finds nothing.
    let gone = tipster.step("delete", "en", &[&code]);
    assert_eq!(gone["confirmStatus"], 200, "{gone}");
    assert_eq!(gone["status"], 200, "{gone}");
    assert!(
        gone["deleted"].as_str().is_some_and(|d| !d.is_empty()),
        "{gone}"
    );
    let folder = fx.data_dir().join("replies").join(&mailbox);
    assert!(!folder.exists(), "the mailbox is gone from disk");
    let after = tipster.step("read", "en", &[&code]);
    assert_eq!(after["status"], 200, "{after}");
    assert_eq!(after["answers"], serde_json::json!([]), "{after}");
    assert!(
        after["notice"]
            .as_str()
            .is_some_and(|n| n.contains("nothing here for this code")),
        "{after}"
    );

    // The server logged no code, answer or follow-up.
    let log = server.log_text();
    for secret in [code.as_str(), answer, by_gpg, follow, &mailbox] {
        assert!(!log.contains(secret), "logged: {secret}\n{log}");
    }
}

/// The record's `fields.json`.
fn read_fields(record: &Path) -> Vec<u8> {
    read(&record.join("fields.json"))
}
