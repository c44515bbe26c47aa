//! Attachments: multipart uploads streamed into the ciphertext, their limits,
//! and what is left behind when an upload fails (nothing).
//!
//! Records are decrypted with the real `gpg` and the MIME message is parsed
//! with an independent parser (`mail-parser`), as a mail client would.
//!
//! One module per topic under `upload/`; this file holds the helpers they share.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures_util::StreamExt as _;
use mail_parser::{MessageParser, MimeHeaders};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

mod binary;
mod content;
mod limits;
mod slow_clients;

const BOUNDARY: &str = "sealform-test-7MA4YWxkTrZu0gW";

/// Forms for these tests: `upload` with small caps, `big` with room for tens
/// of MiB and a required file.
pub(crate) const UPLOAD_FORMS: &str = r#"
[[forms]]
id = "upload"
title = "Send documents"
max_file_bytes = 1000
max_files = 3
max_total_bytes = 2500

  [[forms.fields]]
  name = "message"
  label = "Message"
  kind = "textarea"
  required = true
  max_len = 100

  [[forms.fields]]
  name = "contact"
  label = "Contact"
  kind = "text"
  max_len = 50

  [[forms.fields]]
  name = "publish"
  label = "May publish"
  kind = "checkbox"

  [[forms.fields]]
  name = "documents"
  label = "Documents"
  kind = "file"
  multiple = true

  [[forms.fields]]
  name = "photo"
  label = "Photo"
  kind = "file"

[[forms]]
id = "big"
title = "Send a large file"
max_file_bytes = 268435456
max_total_bytes = 268435456

  [[forms.fields]]
  name = "note"
  label = "Note"
  kind = "text"

  [[forms.fields]]
  name = "file"
  label = "File"
  kind = "file"
  required = true
"#;

fn fixture(server_extra: &str) -> Fixture {
    Fixture::new(
        &[TestKey::Ed25519, TestKey::Rsa],
        UPLOAD_FORMS,
        server_extra,
    )
}

/// A `multipart/form-data` body under construction.
pub(crate) struct Multipart {
    body: Vec<u8>,
}

impl Multipart {
    pub(crate) fn new() -> Self {
        Multipart { body: Vec::new() }
    }

    pub(crate) fn text(self, name: &str, value: &str) -> Self {
        self.raw_part(
            &format!("form-data; name=\"{name}\""),
            None,
            value.as_bytes(),
        )
    }

    pub(crate) fn file(self, name: &str, filename: &str, content_type: &str, data: &[u8]) -> Self {
        self.raw_part(
            &format!("form-data; name=\"{name}\"; filename=\"{filename}\""),
            Some(content_type),
            data,
        )
    }

    fn raw_part(mut self, disposition: &str, content_type: Option<&str>, data: &[u8]) -> Self {
        self.body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n").as_bytes(),
        );
        if let Some(ct) = content_type {
            self.body
                .extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        self.body.extend_from_slice(b"\r\n");
        self.body.extend_from_slice(data);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    /// The headers of a file part whose content follows (for streaming).
    fn file_head(mut self, name: &str, filename: &str) -> Self {
        self.body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        self
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.body
            .extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        self.body
    }
}

fn content_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

fn page_post(form: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(format!("/forms/{form}"))
        .header("content-type", content_type())
        .body(Body::from(body))
        .expect("request")
}

pub(crate) fn api_upload(form: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(format!("/api/v1/forms/{form}/submissions"))
        .header("content-type", content_type())
        .body(Body::from(body))
        .expect("request")
}

/// Deterministic pseudo-random bytes (xorshift64*), in chunks.
struct Noise {
    state: u64,
    left: u64,
    chunk: usize,
}

impl Noise {
    fn new(seed: u64, len: u64) -> Self {
        Noise {
            state: seed | 1,
            left: len,
            chunk: 64 * 1024,
        }
    }
    fn sha256(seed: u64, len: u64) -> String {
        let mut h = Sha256::new();
        for c in Noise::new(seed, len) {
            h.update(&c);
        }
        data_encoding::HEXLOWER.encode(&h.finalize())
    }
}

impl Iterator for Noise {
    type Item = Vec<u8>;
    fn next(&mut self) -> Option<Vec<u8>> {
        if self.left == 0 {
            return None;
        }
        let n = self.left.min(self.chunk as u64) as usize;
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            out.extend_from_slice(&self.state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        out.truncate(n);
        self.left -= n as u64;
        Some(out)
    }
}

/// A streamed body: `head`, then `len` noise bytes, then `tail`, with no
/// `Content-Length` (chunked).
fn streamed_body(head: Vec<u8>, seed: u64, len: u64, tail: Vec<u8>) -> Body {
    let chunks = std::iter::once(head)
        .chain(Noise::new(seed, len))
        .chain(std::iter::once(tail))
        .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from(c)));
    Body::from_stream(futures_util::stream::iter(chunks))
}

pub(crate) fn receipt_of(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body).expect("json")["receipt"]
        .as_str()
        .expect("receipt")
        .to_owned()
}

fn decrypt(fx: &Fixture, receipt: &str) -> Vec<u8> {
    let gpg = Gpg::with_secret_keys(&[&TestKey::Ed25519.secret()]);
    gpg.decrypt(&fx.record(receipt)).expect("gpg decrypts")
}

/// Nothing stored and nothing in flight: no record, no temp file, no index
/// entry.
fn assert_nothing_stored(fx: &Fixture) {
    assert!(fx.records().is_empty(), "a record was stored");
    assert_eq!(fx.partials(), 0, "a temp file was left in spool/tmp");
    let stray: Vec<_> = std::fs::read_dir(fx.spool_dir())
        .expect("spool")
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.ends_with("tmp"))
        .collect();
    assert!(stray.is_empty(), "files left in the spool: {stray:?}");
}

/// The index has no entry (open it only once the app is dropped: the
/// store admits one process).
fn assert_index_empty(fx: &Fixture) {
    let (store, _) =
        sealform::store::Store::open(&fx.data_dir(), 1 << 20, |_| vec![]).expect("store");
    assert!(store.list().expect("index").is_empty(), "an index entry");
}

fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .map(|v| v["error"]["code"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default()
}
