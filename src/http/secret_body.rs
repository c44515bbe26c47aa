//! Response bodies that carry a secret: a reply code (the 201 of a form with
//! replies, its confirmation page) or the answers a tipster reads. The body
//! is written into a buffer that never leaves an unzeroized copy behind
//! ([`ZeroizingBuf`]) and handed to hyper as `Bytes` whose owner zeroizes
//! it when hyper drops it, once written to the socket (the connections are
//! built with vectored writes, `src/http/conn.rs`, so hyper queues the body
//! instead of copying it into its own buffer). It owns nothing else. What it
//! cannot reach: an HTML page is rendered into a `String` that grows as it
//! is written (the copies a growth leaves are freed unzeroized), and the
//! kernel's socket buffers.

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::http::error::{HttpError, Surface};

/// A growable byte buffer that never leaves an unzeroized copy behind: it
/// grows by moving into a bigger zeroizing buffer.
pub struct ZeroizingBuf(Zeroizing<Vec<u8>>);

impl ZeroizingBuf {
    /// An empty buffer with room for `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        ZeroizingBuf(Zeroizing::new(Vec::with_capacity(capacity)))
    }
    /// Bytes held.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Appends `bytes`, moving into a bigger buffer when full.
    pub fn push(&mut self, bytes: &[u8]) {
        let need = self.0.len() + bytes.len();
        if need > self.0.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(need.max(self.0.capacity() * 2)));
            bigger.extend_from_slice(&self.0);
            self.0 = bigger;
        }
        self.0.extend_from_slice(bytes);
    }
    /// The bytes as text, or `None` (the bytes zeroized) if not UTF-8.
    pub fn into_string(mut self) -> Option<Zeroizing<String>> {
        let bytes = std::mem::take(&mut *self.0);
        match String::from_utf8(bytes) {
            Ok(s) => Some(Zeroizing::new(s)),
            Err(e) => {
                drop(Zeroizing::new(e.into_bytes()));
                None
            }
        }
    }
    /// The bytes, zeroized when the last `Bytes` sharing them is dropped.
    pub fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self.0)
    }
}

impl std::io::Write for ZeroizingBuf {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.push(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `value` as a JSON response with `status`, serialized straight into a
/// zeroizing buffer (axum's `Json` would serialize it into one that grows
/// and is not zeroized).
pub fn json(status: StatusCode, value: &impl Serialize) -> Response {
    let mut buf = ZeroizingBuf::new(1024);
    if let Err(e) = serde_json::to_writer(&mut buf, value) {
        return HttpError::internal(&e).on(Surface::Api).into_response();
    }
    with_type(status, buf.into_bytes(), "application/json")
}

/// A rendered page as an HTML response with `status`, its bytes zeroized
/// once hyper has sent them. The `String` is taken as it is: moved, not
/// copied.
pub fn html(status: StatusCode, page: String) -> Response {
    let bytes = Bytes::from_owner(Zeroizing::new(page.into_bytes()));
    with_type(status, bytes, "text/html; charset=utf-8")
}

fn with_type(status: StatusCode, bytes: Bytes, content_type: &'static str) -> Response {
    let mut res = (status, Body::from(bytes)).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[test]
    fn a_zeroizing_buffer_grows_and_keeps_its_bytes() {
        let mut b = ZeroizingBuf::new(2);
        for chunk in [&b"ab"[..], b"cde", b"", b"fghij"] {
            b.push(chunk);
        }
        assert_eq!(b.len(), 10);
        assert_eq!(
            b.into_string().as_deref().map(|s| s.as_str()),
            Some("abcdefghij")
        );
        let mut bad = ZeroizingBuf::new(1);
        bad.push(&[0xff]);
        assert!(bad.into_string().is_none());
    }

    /// An owner that says when it is dropped: `Zeroizing`'s drop, which
    /// zeroes the bytes, runs exactly then.
    struct Watched(Zeroizing<Vec<u8>>, Arc<AtomicBool>);
    impl AsRef<[u8]> for Watched {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }
    impl Drop for Watched {
        fn drop(&mut self) {
            self.1.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn bytes_from_an_owner_drop_it_with_their_last_clone() {
        let dropped = Arc::new(AtomicBool::new(false));
        let bytes = Bytes::from_owner(Watched(
            Zeroizing::new(b"secret".to_vec()),
            Arc::clone(&dropped),
        ));
        let clone = bytes.slice(1..3);
        drop(bytes);
        assert!(
            !dropped.load(Ordering::SeqCst),
            "dropped while a slice held it"
        );
        assert_eq!(&clone[..], b"ec");
        drop(clone);
        assert!(
            dropped.load(Ordering::SeqCst),
            "not dropped with its last slice"
        );
    }

    #[tokio::test]
    async fn json_and_html_bodies_are_whole_and_typed() {
        let res = json(
            StatusCode::CREATED,
            &serde_json::json!({"reply_code": "abandon ability"}),
        );
        assert_eq!(res.status(), StatusCode::CREATED);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .expect("body");
        assert_eq!(&body[..], br#"{"reply_code":"abandon ability"}"#);

        let res = html(StatusCode::OK, "<p>an answer</p>".to_owned());
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .expect("body");
        assert_eq!(&body[..], b"<p>an answer</p>");
    }
}
