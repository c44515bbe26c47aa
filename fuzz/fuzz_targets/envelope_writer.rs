//! Fuzzes the envelope writer with arbitrary field names, labels, values,
//! attachment names, content types and bytes, written in arbitrary chunks.
//!
//! Property: nothing panics; the envelope is 7-bit ASCII, exactly its padded
//! length, and its JSON part decodes to the fields and attachment list that
//! went in.

#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use sealform::mime::{EnvelopeField, EnvelopeWriter, FieldValue, Head, padded_len};

fuzz_target!(|data: &[u8]| {
    // Sections separated by 0xff: name, label, value, … then, after an empty
    // section, attachment filename, content type, bytes.
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut sections = data.split(|&b| b == 0xff);
    let mut strings = Vec::new();
    for s in sections.by_ref() {
        if s.is_empty() || strings.len() >= 30 {
            break;
        }
        strings.push(text(s));
    }
    let attachment: Vec<&[u8]> = sections.take(3).collect();

    let fields: Vec<EnvelopeField<'_>> = strings
        .chunks(3)
        .enumerate()
        .map(|(i, c)| EnvelopeField {
            name: &c[0],
            label: c.get(1).map_or("", String::as_str),
            value: match c.get(2) {
                Some(v) => FieldValue::Text(v),
                None => FieldValue::Checked(i % 2 == 0),
            },
        })
        .collect();
    let head = Head {
        form: "fuzz",
        title: strings.first().map_or("", String::as_str),
        receipt: "aaaaaaaaaaaaaaaaaaaaaaaaaa",
        received_at: chrono::Utc::now(),
        reply: None,
    };
    let mut out = Vec::new();
    let mut envelope = EnvelopeWriter::start(&mut out, &head).expect("writes to a Vec");
    envelope.text_part(head.title, &fields).expect("text part");
    let mut attached = None;
    if let [name, content_type, bytes] = attachment[..] {
        let (name, content_type) = (text(name), text(content_type));
        let mut a = envelope
            .attachment("file", &name, &content_type)
            .expect("attachment");
        for chunk in bytes.chunks(1 + usize::from(bytes.first().copied().unwrap_or(0))) {
            a.write_all(chunk).expect("attachment bytes");
        }
        a.finish().expect("attachment end");
        attached = Some((name, bytes.len()));
    }
    envelope.json_part(&head, &fields).expect("json part");
    let (_, len) = envelope.finish().expect("finish");
    assert_eq!(out.len() as u64, len);
    assert_eq!(len, padded_len(len));
    assert!(out.is_ascii(), "the envelope is 7-bit MIME");

    // The JSON part is the last base64 part before the closing boundary.
    let mime = std::str::from_utf8(&out).expect("ascii");
    let json_b64 = mime
        .split("Content-Type: application/json; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n")
        .nth(1)
        .and_then(|rest| rest.split("\r\n--").next())
        .expect("a JSON part");
    use base64::Engine as _;
    let json = base64::engine::general_purpose::STANDARD
        .decode(json_b64.replace("\r\n", ""))
        .expect("base64");
    // serde_json (with `raw_value`, which a dependency turns on) reads an
    // object whose key is its private RawValue token as a raw value, not a
    // map; real field names are `[a-z0-9_-]+` (config validation), so only
    // this harness can produce one.
    if fields.iter().any(|f| f.name.starts_with("$serde_json::")) {
        return;
    }
    let json: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
    let decoded = json["fields"].as_object().expect("fields");
    for f in &fields {
        let want = match f.value {
            FieldValue::Text(v) => serde_json::Value::from(v),
            FieldValue::Checked(c) => serde_json::Value::from(c),
        };
        // A repeated name keeps one value; check only names given once.
        if fields.iter().filter(|g| g.name == f.name).count() == 1 {
            assert_eq!(decoded.get(f.name), Some(&want));
        }
    }
    if let Some((name, size)) = attached {
        let a = &json["attachments"][0];
        assert_eq!(a["filename"], serde_json::Value::from(name));
        assert_eq!(a["size"], serde_json::Value::from(size));
    }
});
