//! The submitter's experience in a real browser: Debian's headless Chromium,
//! driven by `tests/browser/run.mjs` (playwright-core), against the real
//! server on a real port. The record each browser run produced is decrypted
//! with the real gpg and compared with what the browser typed.
//!
//! `scripts/setup` installs Chromium and the npm packages; this test is
//! skipped, saying why, only when they are not there.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::*;

/// Node, Chromium and the script's npm packages, or why not.
pub(crate) fn browser_tools() -> Result<(PathBuf, PathBuf), String> {
    let chromium = std::env::var_os("SEALFORM_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !chromium.exists() {
        return Err(format!(
            "{} not found (Debian package `chromium`)",
            chromium.display()
        ));
    }
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Err("node not found (Debian package `nodejs`)".into());
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !dir.join("node_modules/playwright-core").exists() {
        return Err(format!(
            "{}/node_modules is missing (run `npm ci` there)",
            dir.display()
        ));
    }
    Ok((dir, chromium))
}

#[test]
fn a_person_fills_the_form_in_chromium_with_and_without_javascript_and_gpg_reads_it_back() {
    let (dir, chromium) = match browser_tools() {
        Ok(t) => t,
        Err(why) => {
            // Only when setup could not install them; `make test` runs setup first.
            println!("SKIPPED browser test: {why}; run ./scripts/setup to install it");
            eprintln!("SKIPPED browser test: {why}; run ./scripts/setup to install it");
            return;
        }
    };
    // The real abuse defaults (form tokens, minimum fill time, honeypot,
    // cross-site check): a person in a real browser must pass them all.
    // Only the rate limits are raised, for the test's many posts.
    let tables = r#"
[limits]
form_client = { burst = 1000, per_minute = 1000 }
form_each = { burst = 1000, per_minute = 1000 }
form_global = { burst = 1000, per_minute = 1000 }
"#;
    let fx = Fixture::with_tables(&[TestKey::Ed25519, TestKey::Rsa], I18N_FORMS, "", tables);
    let server = Server::start(&fx);
    let shots = tempfile::Builder::new()
        .prefix("sealform-screenshots-")
        .tempdir()
        .expect("screenshot dir")
        .keep();
    let out = Command::new("timeout")
        .arg("300")
        .arg("node")
        .arg(dir.join("run.mjs"))
        .arg(server.url(""))
        .arg("tip")
        .arg(&shots)
        .env("SEALFORM_CHROMIUM", &chromium)
        .output()
        .expect("run node");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser script failed ({}):\n{stderr}",
        out.status
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "report is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    println!(
        "screenshots (desktop, phone, 200 % zoom): {}",
        shots.display()
    );

    let scenarios = report["scenarios"].as_array().expect("scenarios");
    let names: Vec<&str> = scenarios
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        ["js-on-en", "js-off-switch-to-es", "js-on-accept-es"]
    );
    let gpg = Gpg::with_secret_keys(&[&TestKey::Ed25519.secret()]);
    let mut receipts = Vec::new();
    for s in scenarios {
        let name = s["name"].as_str().expect("name");
        let want_lang = if name.ends_with("-en") { "en" } else { "es" };
        assert_eq!(s["formStatus"], 200, "{name}");
        assert_eq!(s["lang"], want_lang, "{name}: page language");
        assert_eq!(
            s["submitLabel"],
            if want_lang == "es" {
                "Enviar cifrado"
            } else {
                "Send encrypted"
            },
            "{name}"
        );

        // The error path: first required field left empty.
        let e = &s["error"];
        assert_eq!(s["emptied"], "message", "{name}");
        assert_eq!(e["status"], 422, "{name}");
        assert_eq!(e["lang"], want_lang, "{name}");
        assert_eq!(
            e["summaryLinks"],
            serde_json::json!(["#f-message"]),
            "{name}"
        );
        assert!(
            e["describedBy"]
                .as_str()
                .is_some_and(|d| d.split(' ').any(|id| id == "f-message-error")),
            "{name}: {e}"
        );
        assert_eq!(e["autofocus"], serde_json::json!(["f-message"]), "{name}");
        assert_eq!(
            e["focused"], "f-message",
            "{name}: focus on the first error"
        );
        assert_eq!(e["kept"], e["typedBefore"], "{name}: typed values kept");
        assert_eq!(
            e["kept"].as_object().map(|o| o.len()),
            Some(4),
            "{name}: {e}"
        );

        // Accessibility: axe-core ran on every page where JavaScript is on.
        if s["js"] == true {
            for page in ["form", "error", "confirmation"] {
                let v = &s["axe"][page];
                assert_eq!(
                    v.as_array().map(Vec::len),
                    Some(0),
                    "{name}: axe violations on the {page} page: {v:#}"
                );
            }
            let order: Vec<&str> = s["tabOrder"]
                .as_array()
                .expect("tab order")
                .iter()
                .filter_map(Value::as_str)
                .filter(|id| id.starts_with("f-") || *id == "BUTTON")
                .collect();
            assert_eq!(
                order,
                [
                    "f-message",
                    "f-contact",
                    "f-email",
                    "f-topic",
                    "f-publish",
                    "BUTTON"
                ],
                "{name}: keyboard order"
            );
        }
        assert_eq!(
            s["sideways"],
            serde_json::json!([]),
            "{name}: pages that scroll sideways (phone, 200 % zoom, 320 px)"
        );
        if s["js"] == true {
            assert_eq!(
                s["print"],
                serde_json::json!({"receiptVisible": true, "switcherVisible": false}),
                "{name}: printed confirmation page"
            );
        }
        if name == "js-off-switch-to-es" {
            assert_eq!(s["switchedUrl"], "?lang=es", "switcher works without JS");
        }

        // The confirmation page and the record behind it.
        assert_eq!(s["sentStatus"], 200, "{name}");
        assert_eq!(s["sentLang"], want_lang, "{name}");
        let receipt = s["receipt"].as_str().expect("receipt").to_owned();
        assert_eq!(receipt.len(), 26, "{name}: {receipt}");
        let typed = &s["typed"];
        let plain = gpg.decrypt(&fx.record(&receipt)).expect("gpg decrypts");
        let record = json_part(&plain);
        let fields = record["fields"].as_object().expect("fields");
        assert_eq!(fields.len(), 5, "{name}: {record}");
        for (field, value) in typed.as_object().expect("typed") {
            let want = match value {
                // HTML form encoding turns a textarea's newlines into CRLF;
                // the record keeps exactly the bytes the browser sent.
                Value::String(s) => Value::String(s.replace('\n', "\r\n")),
                other => other.clone(),
            };
            assert_eq!(fields[field], want, "{name}: field {field}");
        }
        let message = typed["message"].as_str().expect("message");
        assert!(message.contains('\n') && message.contains('Ñ') && message.contains('🚓'));
        receipts.push(receipt);
    }
    // Only the three sends were stored; the error paths stored nothing.
    assert_eq!(fx.records().len(), 3);

    // Every request stayed on the server's origin.
    let origin = server.url("/");
    let requests = report["requests"].as_array().expect("requests");
    assert!(requests.len() >= 12, "{requests:?}");
    for r in requests {
        let url = r.as_str().expect("url");
        assert!(url.starts_with(&origin), "request to another origin: {url}");
    }

    // Page weights, HTML plus the stylesheet.
    for (page, w) in report["weights"].as_object().expect("weights") {
        let html = w["html"].as_u64().expect("html bytes");
        let css = w["css"].as_u64().expect("css bytes");
        println!(
            "weight {page}: {html} B HTML + {css} B CSS = {} B",
            html + css
        );
        assert!(html + css < 30 * 1024, "{page} weighs {} bytes", html + css);
    }

    // Screenshots of form, error and confirmation pages, three widths.
    for page in ["form", "error", "confirmation"] {
        for lang in ["en", "es"] {
            for width in ["desktop", "phone", "zoom200"] {
                let f = shots.join(format!("{page}-{lang}-{width}.png"));
                assert!(f.exists(), "{} missing", f.display());
            }
        }
    }

    // The server logged neither the language query nor anything typed.
    let log = server.log_text();
    assert!(!log.contains("lang="), "query string logged:\n{log}");
    for r in &receipts {
        assert!(!log.contains(r.as_str()), "receipt logged");
    }
    assert!(
        !log.contains("Núñez") && !log.contains("SWAT"),
        "value logged"
    );
}
