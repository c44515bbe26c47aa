//! Property tests: random bodies against the in-process router never get a
//! 5xx, a panic or an echo of what was sent; random field sets come back
//! unchanged from envelope → seal → decrypt.
//!
//! Case counts are modest (sealing takes milliseconds) so the suite stays
//! fast; failures are reported with proptest's shrunk input.

use std::collections::BTreeMap;
use std::time::SystemTime;

use axum::body::Body;
use axum::http::Request;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use sealform::config::Config;
use sealform::intake::Intake;
use sealform::mime::{EnvelopeWriter, Head};
use sealform::seal::seal;
use sealform::submission::{RawValue, Submission};
use sequoia_openpgp as openpgp;
use zeroize::Zeroizing;

use crate::support::*;

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    })
}

/// Names a body may use: the form's own, near misses and junk.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["message", "contact", "email", "topic", "publish"])
            .prop_map(str::to_owned),
        1 => prop::sample::select(vec!["", "Message", "message ", "fields", "__proto__", "a[b]"])
            .prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

/// Values: ordinary text, markers long enough that an echo would be
/// noticed, and arbitrary Unicode (control characters included).
fn text_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 .,@-]{0,40}",
        "echo[A-Za-z0-9]{16}",
        any::<String>(),
        prop::sample::select(vec![
            "on", "off", "true", "police", "a@b.org", "  ", "%", "%zz"
        ])
        .prop_map(str::to_owned),
    ]
}

/// The markers a response must never repeat.
fn markers<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    values
        .into_iter()
        .filter(|v| v.starts_with("echo") && v.len() == 20)
        .map(str::to_owned)
        .collect()
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        text_value().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON body: mostly `{"fields": {...}}`-shaped, sometimes anything, and
/// sometimes cut short.
fn json_body() -> impl Strategy<Value = (Vec<u8>, Vec<String>)> {
    prop_oneof![
        2 => tip_fields().prop_map(|f| {
            let body = serde_json::json!({ "fields": f }).to_string().into_bytes();
            (body, Vec::new())
        }),
        4 => json_fields_body(),
        1 => json_value().prop_map(|v| (v.to_string().into_bytes(), Vec::new())),
        1 => (json_fields_body(), any::<prop::sample::Index>()).prop_map(|((b, m), cut)| {
            let n = cut.index(b.len() + 1);
            (b[..n].to_vec(), m)
        }),
        1 => prop::collection::vec(any::<u8>(), 0..256).prop_map(|b| (b, Vec::new())),
    ]
}

/// `{"fields": {...}}` with random names and values, and its markers.
fn json_fields_body() -> impl Strategy<Value = (Vec<u8>, Vec<String>)> {
    prop::collection::vec((field_name(), json_value()), 0..7).prop_map(|pairs| {
        let mut texts = Vec::new();
        let mut obj = serde_json::Map::new();
        for (k, v) in pairs {
            if let serde_json::Value::String(s) = &v {
                texts.push(s.clone());
            }
            obj.insert(k, v);
        }
        let body = serde_json::json!({ "fields": obj })
            .to_string()
            .into_bytes();
        (body, markers(texts.iter().map(String::as_str)))
    })
}

/// An urlencoded body: pairs of names and values, each either encoded
/// properly or sent raw (stray `%`, `+`, `=`, `&` and invalid UTF-8 included).
fn urlencoded_body() -> impl Strategy<Value = (Vec<u8>, Vec<String>)> {
    let part = prop_oneof![
        3 => text_value().prop_map(|s| {
            percent_encoding::utf8_percent_encode(&s, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
                .into_bytes()
        }),
        1 => prop::collection::vec(any::<u8>(), 0..24),
    ];
    let pair = (field_name(), part, text_value());
    prop_oneof![
        2 => tip_fields().prop_map(|f| {
            let pairs: Vec<(String, String)> = f
                .into_iter()
                .filter_map(|(k, v)| match v {
                    serde_json::Value::String(s) => Some((k, s)),
                    serde_json::Value::Bool(true) => Some((k, "on".to_owned())),
                    _ => None,
                })
                .collect();
            let refs: Vec<(&str, &str)> =
                pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            (urlencode(&refs).into_bytes(), Vec::new())
        }),
        4 => prop::collection::vec(pair, 0..8).prop_map(|pairs| {
            let mut body = Vec::new();
            let mut texts = Vec::new();
            for (i, (name, value, _)) in pairs.iter().enumerate() {
                if i > 0 {
                    body.push(b'&');
                }
                body.extend(
                    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
                        .to_string()
                        .bytes(),
                );
                body.push(b'=');
                body.extend_from_slice(value);
                if let Ok(v) = std::str::from_utf8(value) {
                    texts.push(
                        percent_encoding::percent_decode_str(v)
                            .decode_utf8_lossy()
                            .into_owned(),
                    );
                }
            }
            (body, markers(texts.iter().map(String::as_str)))
        }),
        1 => prop::collection::vec(any::<u8>(), 0..256).prop_map(|b| (b, Vec::new())),
    ]
}

/// A `multipart/form-data` body, well-formed or not: (content type, body,
/// markers).
fn multipart_body() -> impl Strategy<Value = (String, Vec<u8>, Vec<String>)> {
    let part = (
        field_name(),
        prop::option::of("[a-zA-Z0-9._ -]{0,20}"),
        text_value(),
        any::<bool>(),
    );
    (
        "[a-zA-Z0-9'()+_,-]{1,40}",
        prop::collection::vec(part, 0..5),
        any::<bool>(),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(boundary, parts, close, cut)| {
            let mut body = Vec::new();
            let mut texts = Vec::new();
            for (name, filename, value, with_type) in &parts {
                body.extend(format!("--{boundary}\r\n").bytes());
                body.extend(format!("Content-Disposition: form-data; name=\"{name}\"").bytes());
                if let Some(f) = filename {
                    body.extend(format!("; filename=\"{f}\"").bytes());
                }
                body.extend(b"\r\n");
                if *with_type {
                    body.extend(b"Content-Type: application/octet-stream\r\n");
                }
                body.extend(b"\r\n");
                body.extend(value.bytes());
                body.extend(b"\r\n");
                texts.push(value.clone());
            }
            if close {
                body.extend(format!("--{boundary}--\r\n").bytes());
            } else {
                let n = cut.index(body.len() + 1);
                body.truncate(n);
            }
            (
                format!("multipart/form-data; boundary={boundary}"),
                body,
                markers(texts.iter().map(String::as_str)),
            )
        })
}

/// Sends `req` and checks the answer: a 2xx or a 4xx, never a 5xx, never an
/// echo of a marker. Returns the status.
fn check_answer(
    rt: &tokio::runtime::Runtime,
    app: &axum::Router,
    req: Request<Body>,
    markers: &[String],
) -> Result<u16, TestCaseError> {
    let (res, body) = rt.block_on(send(app, req));
    let status = res.status().as_u16();
    prop_assert!(
        (200..300).contains(&status) || (400..500).contains(&status),
        "status {status}: {}",
        String::from_utf8_lossy(&body)
    );
    let text = String::from_utf8_lossy(&body);
    let text = outside_refilled_form(&text, status);
    for m in markers {
        prop_assert!(
            !text.contains(m.as_str()),
            "the response echoes a submitted value"
        );
    }
    Ok(status)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn random_json_bodies_never_get_a_5xx_or_an_echo() {
    let fx = Fixture::standard();
    let app = fx.app();
    let rt = runtime();
    let created = std::cell::Cell::new(0);
    let strategy = (
        json_body(),
        prop::sample::select(vec!["application/json", "text/plain"]),
    );
    runner(128)
        .run(&strategy, |((body, markers), ct)| {
            let req = Request::post("/api/v1/forms/tip/submissions")
                .header("content-type", ct)
                .body(Body::from(body))
                .expect("request");
            if check_answer(&rt, &app, req, &markers)? == 201 {
                created.set(created.get() + 1);
            }
            Ok(())
        })
        .expect("property holds");
    // Every 201 is one record, and nothing else left one behind.
    assert_eq!(fx.records().len(), created.get());
    assert!(created.get() > 0, "some bodies were valid submissions");
    assert_eq!(fx.partials(), 0);
}

#[test]
fn random_urlencoded_bodies_never_get_a_5xx_or_an_echo() {
    let fx = Fixture::standard();
    let app = fx.app();
    let rt = runtime();
    let created = std::cell::Cell::new(0);
    runner(128)
        .run(&urlencoded_body(), |(body, markers)| {
            let req = Request::post("/forms/tip")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .expect("request");
            if check_answer(&rt, &app, req, &markers)? == 200 {
                created.set(created.get() + 1);
            }
            Ok(())
        })
        .expect("property holds");
    assert_eq!(fx.records().len(), created.get());
    assert!(created.get() > 0, "some bodies were valid submissions");
    assert_eq!(fx.partials(), 0);
}

#[test]
fn random_multipart_bodies_never_get_a_5xx_or_an_echo() {
    let fx = Fixture::standard();
    let app = fx.app();
    let rt = runtime();
    let created = std::cell::Cell::new(0);
    let strategy = (
        multipart_body(),
        prop::sample::select(vec!["/forms/tip", "/forms/nope"]),
    );
    runner(96)
        .run(&strategy, |((ct, body, markers), path)| {
            let req = Request::post(path)
                .header("content-type", ct)
                .body(Body::from(body))
                .expect("request");
            if check_answer(&rt, &app, req, &markers)? == 200 {
                created.set(created.get() + 1);
            }
            Ok(())
        })
        .expect("property holds");
    assert_eq!(fx.records().len(), created.get());
    assert_eq!(fx.partials(), 0);
}

/// Text a person could type into a field: any Unicode but control
/// characters (plus newlines where `multiline`), never blank.
fn typed_text(max: usize, multiline: bool) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..max).prop_map(move |chars| {
        let mut s = String::from("x");
        for c in chars {
            let keep = !c.is_control() || c == '\t' || (multiline && (c == '\n' || c == '\r'));
            s.push(if keep { c } else { '?' });
        }
        s
    })
}

/// A valid field set for the `tip` form, as name → JSON value.
fn tip_fields() -> impl Strategy<Value = BTreeMap<String, serde_json::Value>> {
    (
        typed_text(400, true),
        prop::option::of(typed_text(150, false)),
        prop::option::of("[a-z0-9._+-]{1,16}@[a-z0-9-]{1,16}\\.[a-z]{2,6}"),
        prop::option::of(prop::sample::select(vec!["police", "schools", "other"])),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(message, contact, email, topic, publish)| {
            let mut m = BTreeMap::new();
            m.insert("message".to_owned(), message.into());
            if let Some(c) = contact {
                m.insert("contact".to_owned(), c.into());
            }
            if let Some(e) = email {
                m.insert("email".to_owned(), e.into());
            }
            if let Some(t) = topic {
                m.insert("topic".to_owned(), t.into());
            }
            if let Some(p) = publish {
                m.insert("publish".to_owned(), p.into());
            }
            m
        })
}

/// Decrypts `ciphertext` with Sequoia and the test-only ed25519 secret key.
fn sequoia_decrypt(ciphertext: &[u8]) -> Vec<u8> {
    use openpgp::crypto::SessionKey;
    use openpgp::packet::{PKESK, SKESK};
    use openpgp::parse::Parse;
    use openpgp::parse::stream::{
        DecryptionHelper, DecryptorBuilder, MessageStructure, VerificationHelper,
    };
    use openpgp::policy::StandardPolicy;
    use openpgp::types::SymmetricAlgorithm;

    struct Helper(openpgp::Cert);
    impl VerificationHelper for Helper {
        fn get_certs(&mut self, _: &[openpgp::KeyHandle]) -> openpgp::Result<Vec<openpgp::Cert>> {
            Ok(Vec::new())
        }
        fn check(&mut self, _: MessageStructure<'_>) -> openpgp::Result<()> {
            Ok(())
        }
    }
    impl DecryptionHelper for Helper {
        fn decrypt(
            &mut self,
            pkesks: &[PKESK],
            _: &[SKESK],
            sym: Option<SymmetricAlgorithm>,
            decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
        ) -> openpgp::Result<Option<openpgp::Cert>> {
            let p = StandardPolicy::new();
            for ka in self
                .0
                .keys()
                .with_policy(&p, None)
                .secret()
                .for_storage_encryption()
                .for_transport_encryption()
            {
                let mut pair = ka.key().clone().into_keypair()?;
                for pkesk in pkesks {
                    if let Some((algo, sk)) = pkesk.decrypt(&mut pair, sym) {
                        if decrypt(algo, &sk) {
                            return Ok(Some(self.0.clone()));
                        }
                    }
                }
            }
            Err(anyhow::anyhow!("no test-only key decrypts this"))
        }
    }

    let tsk = openpgp::Cert::from_file(TestKey::Ed25519.secret()).expect("test-only key");
    let p = StandardPolicy::new();
    let mut d = DecryptorBuilder::from_bytes(ciphertext)
        .expect("parse")
        .with_policy(&p, None, Helper(tsk))
        .expect("decrypt");
    let mut out = Vec::new();
    std::io::copy(&mut d, &mut out).expect("read plaintext");
    out
}

#[test]
fn random_field_sets_come_back_unchanged_from_envelope_seal_and_decrypt() {
    let fx = Fixture::standard();
    let config = Config::load(&fx.config_path()).expect("config");
    let (intake, _) = Intake::open(config, SystemTime::now()).expect("intake");
    let form = &intake.config.forms[0];
    let recipients = intake.keyring.for_form(&form.id).expect("route");
    let for_gpg = std::cell::RefCell::new(Vec::new());
    runner(64)
        .run(&tip_fields(), |fields| {
            let raw: Vec<(String, RawValue)> = fields
                .iter()
                .map(|(k, v)| {
                    let value = match v {
                        serde_json::Value::Bool(b) => RawValue::Bool(*b),
                        serde_json::Value::String(s) => RawValue::Text(Zeroizing::new(s.clone())),
                        _ => RawValue::Other,
                    };
                    (k.clone(), value)
                })
                .collect();
            let submission = Submission::validate(form, raw)
                .map_err(|r| TestCaseError::fail(format!("valid set refused: {r}")))?;
            let receipt = sealform::receipt::Receipt::random().to_string();
            let head = Head {
                form: &form.id,
                title: &form.title,
                receipt: &receipt,
                received_at: chrono::Utc::now(),
                reply: None,
            };
            let env_fields = submission.envelope_fields(form);
            let mut ciphertext = Vec::new();
            seal(&mut ciphertext, &recipients, |w| {
                let mut envelope = EnvelopeWriter::start(w, &head)?;
                envelope.text_part(&form.title, &env_fields)?;
                envelope.json_part(&head, &env_fields)?;
                envelope.finish()?;
                Ok(())
            })
            .map_err(|e| TestCaseError::fail(e.to_string()))?;

            let mut expected: serde_json::Map<String, serde_json::Value> =
                fields.clone().into_iter().collect();
            // An unticked checkbox is recorded as false.
            expected.entry("publish").or_insert(false.into());
            let plain = sequoia_decrypt(&ciphertext);
            let json = json_part(&plain);
            prop_assert_eq!(
                &json["fields"],
                &serde_json::Value::Object(expected.clone())
            );
            prop_assert_eq!(&json["receipt"], &serde_json::Value::from(receipt.as_str()));
            if for_gpg.borrow().len() < 3 {
                for_gpg.borrow_mut().push((ciphertext, expected));
            }
            Ok(())
        })
        .expect("property holds");

    // The real gpg reads a few of them the same way.
    let gpg = Gpg::with_secret_keys(&[&TestKey::Ed25519.secret()]);
    for (i, (ciphertext, expected)) in for_gpg.into_inner().into_iter().enumerate() {
        let path = fx.path().join(format!("sample-{i}.pgp"));
        std::fs::write(&path, ciphertext).expect("write sample");
        let plain = gpg.decrypt(&path).expect("gpg decrypts");
        assert_eq!(
            json_part(&plain)["fields"],
            serde_json::Value::Object(expected)
        );
    }
}
