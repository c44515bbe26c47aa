//! Acceptance of "plaintext never touches disk or logs" (issue 2, point 3):
//! the real server takes 50 submissions, each field holding a unique canary
//! (and the URL's query string and the User-Agent one more); afterwards no
//! file under `data_dir` and no byte of the server's log holds any canary:
//! raw, hex, or base64 at any of the three byte alignments. Receipts must not
//! be logged either.
//!
//! As a control, every record is decrypted and the same needle search must
//! find the canaries there (the JSON part is base64): a search that cannot
//! find anything would prove nothing.

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use serde_json::json;

use crate::support::*;
use crate::wire;

/// Every encoding of `canary` an accidental write could use.
fn needles(canary: &str) -> Vec<String> {
    let raw = canary.as_bytes();
    let mut out = vec![
        canary.to_owned(),
        data_encoding::HEXLOWER.encode(raw),
        data_encoding::HEXUPPER.encode(raw),
    ];
    for engine in [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE,
    ] {
        // The canary may start at any offset modulo 3 in the encoded data:
        // encode it after 0, 1 and 2 filler bytes and keep only the
        // characters that depend on the canary alone.
        for shift in 0..3 {
            let mut data = vec![0u8; shift];
            data.extend_from_slice(raw);
            let enc = engine.encode(&data);
            let start = if shift == 0 { 0 } else { 4 };
            let end = enc.len() - 4;
            out.push(enc[start..end].to_owned());
        }
    }
    out
}

/// Needles are cut to this length so one pass over a file with a set of
/// fixed-size windows finds any of them (a debug build cannot afford a
/// substring search per needle per file).
const NEEDLE_LEN: usize = 24;

/// Every needle, cut to [`NEEDLE_LEN`], mapped to the canary it encodes.
pub(crate) fn needle_set(canaries: &[String]) -> HashMap<Vec<u8>, String> {
    let mut set = HashMap::new();
    for c in canaries {
        for n in needles(c) {
            assert!(n.len() >= NEEDLE_LEN, "{n} is long enough");
            set.insert(n.as_bytes()[..NEEDLE_LEN].to_vec(), c.clone());
        }
    }
    set
}

/// The first needle found in `bytes`, or in `bytes` without line breaks
/// (base64 or hex wrapped into lines).
pub(crate) fn scan<'a>(bytes: &[u8], set: &'a HashMap<Vec<u8>, String>) -> Option<&'a String> {
    let unwrapped: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| *b != b'\r' && *b != b'\n')
        .collect();
    [bytes, &unwrapped[..]]
        .into_iter()
        .find_map(|hay| hay.windows(NEEDLE_LEN).find_map(|w| set.get(w)))
}

pub(crate) fn canary(i: usize, field: &str) -> String {
    // Alphanumeric, so it is the same raw and urlencoded.
    // The random part first: every needle's first NEEDLE_LEN characters
    // then depend on it, so each needle names one submission.
    format!("{:016x}Cnry{i:02}{field}", rand::random::<u64>())
}

#[test]
fn no_canary_reaches_the_disk_or_the_log_in_any_encoding() {
    let fx = Fixture::new(&[TestKey::Ed25519], DEFAULT_FORMS, "");
    let server = Server::start(&fx);
    let mut all_canaries = Vec::new();
    let mut receipts = Vec::new();
    for i in 0..50 {
        let message = canary(i, "message");
        let contact = canary(i, "contact");
        let email_local = canary(i, "email");
        let email = format!("{email_local}@example.org");
        let query = canary(i, "query");
        let agent = canary(i, "agent");
        let res = if i % 2 == 0 {
            let body = json!({"fields": {
                "message": format!("line one {message}\nline two"),
                "contact": contact, "email": email, "topic": "other", "publish": true,
            }});
            wire::request_with(
                &server.addr,
                "POST",
                &format!("/api/v1/forms/tip/submissions?q={query}"),
                &[("Content-Type", "application/json"), ("User-Agent", &agent)],
                body.to_string().as_bytes(),
            )
        } else {
            let body = urlencode(&[
                ("message", &format!("line one {message}\r\nline two")),
                ("contact", &contact),
                ("email", &email),
                ("topic", "police"),
                ("publish", "on"),
            ]);
            wire::request_with(
                &server.addr,
                "POST",
                &format!("/forms/tip?q={query}"),
                &[
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    ("User-Agent", &agent),
                ],
                body.as_bytes(),
            )
        }
        .expect("request");
        let receipt =
            wire::receipt_of(&res).unwrap_or_else(|| panic!("submission {i}: {}", res.status));
        receipts.push((
            receipt,
            [message.clone(), contact.clone(), email_local.clone()],
        ));
        all_canaries.extend([message, contact, email_local, query, agent]);
    }
    let log = std::sync::Arc::clone(&server.log);
    let status = server.terminate();
    assert!(status.success());
    let log = final_log(&log);
    assert!(log.contains("listening on"), "the log was captured: {log}");
    assert_eq!(fx.records().len(), 50);
    assert_eq!(fx.partials(), 0);

    let set = needle_set(&all_canaries);
    // raw, hex and three base64 shifts at least (upper-case hex and URL-safe
    // base64 coincide with the others when no letter or `+`/`/` occurs).
    assert!(set.len() >= all_canaries.len() * 5, "needles are distinct");
    let stored = fx.all_stored_bytes();
    assert!(stored.len() > 50, "the spool and the index are there");
    for (path, bytes) in &stored {
        if let Some(c) = scan(bytes, &set) {
            panic!("canary {c} (in some encoding) is in {}", path.display());
        }
    }
    if let Some(c) = scan(log.as_bytes(), &set) {
        panic!("canary {c} (in some encoding) is in the log:\n{log}");
    }
    for (receipt, _) in &receipts {
        assert!(
            !log.contains(receipt.as_str()),
            "a receipt is in the log:\n{log}"
        );
    }

    // Control: the canaries are in the plaintext, and the search finds them.
    let gpg = Gpg::with_secret_keys(&[&TestKey::Ed25519.secret()]);
    for (receipt, fields) in &receipts {
        let eml = gpg.decrypt(&fx.record(receipt)).expect("decrypts");
        let j = json_part(&eml);
        assert!(
            j["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(&fields[0]))
        );
        let found: HashSet<&String> = [scan(&eml, &set)].into_iter().flatten().collect();
        assert!(
            !found.is_empty(),
            "the needles find a canary in the plaintext"
        );
        for c in fields {
            let one = needle_set(std::slice::from_ref(c));
            assert!(
                scan(&eml, &one).is_some(),
                "the needles of {c} find it in the plaintext"
            );
        }
    }
}

/// The whole log of a server that was stopped: its stderr reader may still
/// be draining the pipe, so wait for the last line `serve` writes.
pub(crate) fn final_log(log: &std::sync::Mutex<Vec<u8>>) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let text = String::from_utf8_lossy(&log.lock().expect("log")).into_owned();
        if text.contains("stopped") || std::time::Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
