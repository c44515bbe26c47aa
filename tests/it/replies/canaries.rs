//! Issue 21's canaries on the tipster's side: the real server issues reply
//! codes, takes answers through the staff route, and is read, answered
//! (follow-ups) and emptied through the pages and the API; afterwards no
//! file under `data_dir` and no byte of the log holds a code, an answer's
//! text or a follow-up's text (raw, hex or base64), and a mailbox address
//! is only ever the name of its folder in the reply store. As a control,
//! the follow-ups are found in their decrypted records.

use std::time::SystemTime;

use serde_json::{Value, json};

use crate::canaries::{canary, final_log, needle_set, scan};
use crate::support::*;
use sealform::replies::{AnswerId, ReplyCode, ReplyStatus, answer_plaintext, seal_answer};

use super::REPLIES_FORMS;

/// The mailbox certificate of `code`, as staff find it (public only).
fn public_cert(code: &ReplyCode) -> sequoia_openpgp::Cert {
    use sequoia_openpgp::parse::Parse;
    let armored = code.derive().expect("derive").cert_armored();
    sequoia_openpgp::Cert::from_bytes(armored.as_bytes()).expect("cert")
}

#[test]
fn no_code_answer_or_follow_up_reaches_the_disk_or_the_log() {
    let token = sealform::staff_token::mint().to_string();
    let hash = sealform::staff_token::TokenHash::of(&token);
    let fx = Fixture::new(
        &[TestKey::Ed25519],
        REPLIES_FORMS,
        &format!("[staff]\ntokens = [\"{hash}\"]\non_public_listener = true\n"),
    );
    let server = Server::start(&fx);
    let client = reqwest::blocking::Client::new();
    let mut secrets = Vec::new();
    let mut mailboxes = Vec::new();
    let mut follow_ups = Vec::new();
    for i in 0..6 {
        let res = client
            .post(server.url("/api/v1/forms/tip/submissions"))
            .json(&json!({"fields": {"message": format!("tip {i}")}}))
            .send()
            .expect("submit");
        assert_eq!(res.status().as_u16(), 201);
        let body: Value = res.json().expect("json");
        let code_text = body["reply_code"].as_str().expect("reply_code").to_owned();
        let code = ReplyCode::parse(&code_text).expect("code");
        let mailbox = code.derive().expect("derive").mailbox.to_string();

        // Staff answer through the staff route.
        let answer = canary(i, "answer");
        let plain = answer_plaintext(Some("tip"), Some(ReplyStatus::Answered), answer.as_bytes());
        let sealed =
            seal_answer(&public_cert(&code), &[], &plain, SystemTime::now()).expect("seal");
        let res = client
            .put(server.url(&format!(
                "/api/v1/staff/mailboxes/{mailbox}/replies/{}",
                AnswerId::random()
            )))
            .bearer_auth(&token)
            .body(sealed)
            .send()
            .expect("put");
        assert_eq!(res.status().as_u16(), 201);

        // The tipster reads (API and page) and follows up (one or the other).
        let res = client
            .post(server.url("/api/v1/replies"))
            .json(&json!({"code": code_text}))
            .send()
            .expect("read");
        let read: Value = res.json().expect("json");
        assert_eq!(read["answers"][0]["message"], answer.as_str());
        let res = client
            .post(server.url("/replies"))
            .form(&[("code", code_text.as_str())])
            .send()
            .expect("read page");
        assert!(res.text().expect("page").contains(&answer));
        let follow_up = canary(i, "follow");
        let res = if i % 2 == 0 {
            client
                .post(server.url("/api/v1/replies/follow-up"))
                .json(&json!({"code": code_text, "message": follow_up}))
                .send()
                .expect("follow-up")
        } else {
            client
                .post(server.url("/replies/follow-up"))
                .form(&[
                    ("code", code_text.as_str()),
                    ("message", follow_up.as_str()),
                ])
                .send()
                .expect("follow-up page")
        };
        assert!(res.status().is_success(), "{}", res.status());
        let receipt = if i % 2 == 0 {
            let v: Value = res.json().expect("json");
            v["receipt"].as_str().expect("receipt").to_owned()
        } else {
            let page = res.text().expect("page");
            let at = page.find("id=\"receipt\">").expect("receipt on the page") + 13;
            page[at..at + 26].to_owned()
        };
        follow_ups.push((receipt, follow_up.clone()));
        secrets.extend([code_text, answer, follow_up]);
        mailboxes.push(mailbox);
    }
    // Half the mailboxes are deleted by their tipster.
    for code in secrets.chunks(3).step_by(2).map(|c| &c[0]) {
        let res = client
            .post(server.url("/api/v1/replies/delete"))
            .json(&json!({"code": code}))
            .send()
            .expect("delete");
        assert_eq!(res.status().as_u16(), 204);
    }
    let log = std::sync::Arc::clone(&server.log);
    assert!(server.terminate().success());
    let log = final_log(&log);
    assert!(log.contains("listening on"), "the log was captured: {log}");

    let set = needle_set(&secrets);
    for (path, bytes) in fx.all_stored_bytes() {
        if let Some(c) = scan(&bytes, &set) {
            panic!("secret {c} (in some encoding) is in {}", path.display());
        }
    }
    if let Some(c) = scan(log.as_bytes(), &set) {
        panic!("secret {c} (in some encoding) is in the log:\n{log}");
    }
    // A mailbox is the name of its folder in the reply store, nothing else.
    let set = needle_set(&mailboxes);
    for (path, bytes) in fx.all_stored_bytes() {
        if let Some(m) = scan(&bytes, &set) {
            panic!("mailbox {m} is in the bytes of {}", path.display());
        }
        let outside = !path.starts_with(fx.data_dir().join("replies"));
        let named = mailboxes
            .iter()
            .any(|m| path.to_string_lossy().contains(m.as_str()));
        assert!(!(outside && named), "{}", path.display());
    }
    if let Some(m) = scan(log.as_bytes(), &set) {
        panic!("mailbox {m} is in the log:\n{log}");
    }
    for (i, m) in mailboxes.iter().enumerate() {
        let folder = fx.data_dir().join("replies").join(m);
        assert_eq!(
            folder.exists(),
            i % 2 == 1,
            "deleted mailboxes are gone: {m}"
        );
    }

    // Control: each follow-up is in its decrypted record, found by the same search.
    let gpg = Gpg::with_secret_keys(&[&TestKey::Ed25519.secret()]);
    for (receipt, follow_up) in &follow_ups {
        let eml = gpg.decrypt(&fx.record(receipt)).expect("decrypts");
        let one = needle_set(std::slice::from_ref(follow_up));
        assert!(scan(&eml, &one).is_some(), "{follow_up} in its record");
    }
}
