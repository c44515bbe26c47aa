//! Fuzzes what a client controls on the submission routes: the urlencoded
//! and JSON decoders, then `Submission::validate` against a form with every
//! field kind, then (for what validates) the envelope writer.
//!
//! Property: nothing panics; a rejection never carries a name that is not
//! one of the form's fields; a valid submission's envelope is 7-bit ASCII
//! and exactly its padded length.

#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sealform::config::{Config, FormConfig};
use sealform::mime::{EnvelopeWriter, Head, padded_len};
use sealform::submission::{Submission, decode_json, decode_urlencoded};

const FORM: &str = r#"
[server]
data_dir = "d"
keys_dir = "k"
[[forms]]
id = "f"
title = "Fuzz form é"
[[forms.fields]]
name = "name"
label = "Name"
kind = "text"
max_len = 40
[[forms.fields]]
name = "msg"
label = "Message"
kind = "textarea"
required = true
[[forms.fields]]
name = "mail"
label = "Mail"
kind = "email"
[[forms.fields]]
name = "pick"
label = "Pick"
kind = "select"
options = ["a", "b"]
[[forms.fields]]
name = "ok"
label = "OK"
kind = "checkbox"
"#;

fn form() -> &'static FormConfig {
    static FORM_CONFIG: OnceLock<FormConfig> = OnceLock::new();
    FORM_CONFIG.get_or_init(|| {
        Config::parse(FORM, Path::new("fuzz.toml"))
            .expect("the fuzz form parses")
            .forms
            .remove(0)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let form = form();
    let raw = if mode & 1 == 0 {
        decode_urlencoded(body)
    } else {
        decode_json(body)
    };
    let submission = match raw.and_then(|raw| Submission::validate(form, raw)) {
        Ok(s) => s,
        Err(rejection) => {
            if let Some(field) = rejection.field() {
                assert!(form.fields.iter().any(|f| f.name == field));
            }
            let _ = rejection.to_string();
            return;
        }
    };
    let head = Head {
        form: &form.id,
        title: &form.title,
        receipt: "aaaaaaaaaaaaaaaaaaaaaaaaaa",
        received_at: chrono::Utc::now(),
        reply: None,
    };
    let fields = submission.envelope_fields(form);
    let mut out = Vec::new();
    let mut envelope = EnvelopeWriter::start(&mut out, &head).expect("writes to a Vec");
    envelope.text_part(&form.title, &fields).expect("text part");
    envelope.json_part(&head, &fields).expect("json part");
    let (_, len) = envelope.finish().expect("finish");
    assert_eq!(out.len() as u64, len);
    assert_eq!(len, padded_len(len));
    assert!(out.is_ascii(), "the envelope is 7-bit MIME");
});
