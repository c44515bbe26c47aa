//! A tiny blocking HTTP/1.1 client over `std::net::TcpStream`, for the tests
//! that drive the real server from plain threads (and need to see exactly
//! what happens when the server dies mid-request).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

/// A response: status code and body (headers are dropped).
pub struct WireResponse {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

/// Sends one request (`Connection: close`) and reads the whole answer.
/// Any I/O failure (refused, reset, the server was killed) is an `Err`.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> std::io::Result<WireResponse> {
    let ct: Vec<(&str, &str)> = content_type
        .map(|c| ("Content-Type", c))
        .into_iter()
        .collect();
    request_with(addr, method, path, &ct, body)
}

/// [`request`] with any extra headers.
pub fn request_with(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<WireResponse> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.set_write_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if method != "GET" || !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    s.flush()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse(&raw)
}

/// Parses a `Connection: close` response (Content-Length or chunked body).
pub fn parse(raw: &[u8]) -> std::io::Result<WireResponse> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let headers = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status: u16 = headers
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let mut body = raw[end + 4..].to_vec();
    if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    Ok(WireResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..line_end]).ok()?.trim(), 16).ok()?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// POST JSON to the API submission route.
pub fn post_api(addr: &str, form: &str, json: &Value) -> std::io::Result<WireResponse> {
    request(
        addr,
        "POST",
        &format!("/api/v1/forms/{form}/submissions"),
        Some("application/json"),
        json.to_string().as_bytes(),
    )
}

/// POST a urlencoded body to the HTML form route.
pub fn post_form(addr: &str, form: &str, body: &str) -> std::io::Result<WireResponse> {
    request(
        addr,
        "POST",
        &format!("/forms/{form}"),
        Some("application/x-www-form-urlencoded"),
        body.as_bytes(),
    )
}

/// The receipt of a successful API (201 JSON) or HTML (200 page) answer.
pub fn receipt_of(res: &WireResponse) -> Option<String> {
    match res.status {
        201 => serde_json::from_slice::<Value>(&res.body).ok()?["receipt"]
            .as_str()
            .map(str::to_owned),
        200 => receipt_in_page(&res.body),
        _ => None,
    }
}

/// The receipt shown on the HTML "sent" page (`<code id="receipt">…`).
pub fn receipt_in_page(page: &[u8]) -> Option<String> {
    let page = std::str::from_utf8(page).ok()?;
    let after = page.split("<code id=\"receipt\">").nth(1)?;
    let r = after.split('<').next()?;
    (r.len() == 26).then(|| r.to_owned())
}
