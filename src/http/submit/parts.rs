//! Reading one part of an upload: values into buffers that leave no
//! unzeroized copy behind (`ZeroizingBuf`, src/http/secret_body.rs), and the file name a part
//! declares ([`filename_of`]), decoded as browsers and RFC 5987 write it.
//! Never used as a path; never logged.

use axum::http::{HeaderMap, header};
use zeroize::Zeroizing;

use crate::submission::Rejection;

/// The file name a part declares: RFC 5987 `filename*=utf-8''…` when present,
/// otherwise `filename="…"` with the escapes browsers use for `"`, CR and LF
/// (`%22`, `%0D`, `%0A`, per the HTML standard) undone. Never used as a path.
pub fn filename_of(
    headers: &HeaderMap,
    plain: Option<&str>,
) -> Result<Zeroizing<String>, Rejection> {
    let disposition = headers
        .get(header::CONTENT_DISPOSITION)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if let Some(ext) = ext_value(disposition, b"filename*") {
        return decode_ext_value(ext);
    }
    let plain = plain.unwrap_or("");
    let mut out = Zeroizing::new(String::with_capacity(plain.len()));
    let mut rest = plain;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let code = rest.get(i..i + 3);
        let decoded = match code {
            Some("%22") => Some('"'),
            Some("%0D") | Some("%0d") => Some('\r'),
            Some("%0A") | Some("%0a") => Some('\n'),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[i + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The raw value of parameter `name` (an RFC 5987 extended parameter, never
/// quoted) in a `Content-Disposition` value.
fn ext_value<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let lower: Vec<u8> = header.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = lower[from..].windows(name.len()).position(|w| w == name) {
        let at = from + found;
        from = at + name.len();
        let boundary_ok = at == 0 || matches!(lower[at - 1], b';' | b' ' | b'\t');
        let rest = header[from..].trim_ascii_start();
        if !boundary_ok || !rest.starts_with(b"=") {
            continue;
        }
        let rest = rest[1..].trim_ascii_start();
        let end = rest.iter().position(|&b| b == b';').unwrap_or(rest.len());
        return Some(rest[..end].trim_ascii_end());
    }
    None
}

/// `charset'language'percent-encoded` with charset UTF-8.
fn decode_ext_value(v: &[u8]) -> Result<Zeroizing<String>, Rejection> {
    let malformed = || Rejection::Malformed("a file name parameter is not valid RFC 5987");
    let mut pieces = v.splitn(3, |&b| b == b'\'');
    let charset = pieces.next().ok_or_else(malformed)?;
    let _language = pieces.next().ok_or_else(malformed)?;
    let encoded = pieces.next().ok_or_else(malformed)?;
    if !charset.eq_ignore_ascii_case(b"utf-8") {
        return Err(malformed());
    }
    let bytes: Zeroizing<Vec<u8>> =
        Zeroizing::new(percent_encoding::percent_decode(encoded).collect());
    match std::str::from_utf8(&bytes) {
        Ok(s) => Ok(Zeroizing::new(s.to_owned())),
        Err(_) => Err(Rejection::InvalidUtf8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn name_from(disposition: &[u8], plain: Option<&str>) -> Result<String, Rejection> {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_bytes(disposition).expect("header"),
        );
        filename_of(&h, plain).map(|z| z.to_string())
    }

    #[test]
    fn file_names_are_decoded_from_each_form_clients_use() {
        type Case<'a> = (&'a [u8], Option<&'a str>, Result<&'a str, Rejection>);
        let cases: &[Case<'_>] = &[
            (
                b"form-data; name=\"f\"; filename=\"a.txt\"",
                Some("a.txt"),
                Ok("a.txt"),
            ),
            (
                b"form-data; name=\"f\"; filename=\"a%22b%0D%0Ac%25.txt\"",
                Some("a%22b%0D%0Ac%25.txt"),
                Ok("a\"b\r\nc%25.txt"),
            ),
            (
                b"form-data; name=\"f\"; filename*=UTF-8''..%2F%C3%A9t%C3%A9%0A%22.txt",
                None,
                Ok("../\u{e9}t\u{e9}\n\".txt"),
            ),
            (
                b"form-data; name=\"f\"; filename=\"x\"; filename*=utf-8'en'y%20z",
                Some("x"),
                Ok("y z"),
            ),
            (b"form-data; name=\"f\"", None, Ok("")),
            (
                b"form-data; name=\"f\"; filename*=latin1''x",
                None,
                Err(Rejection::Malformed(
                    "a file name parameter is not valid RFC 5987",
                )),
            ),
            (
                b"form-data; name=\"f\"; filename*=utf-8''%FF",
                None,
                Err(Rejection::InvalidUtf8),
            ),
        ];
        for (header, plain, want) in cases {
            let got = name_from(header, *plain);
            assert_eq!(
                got.as_deref().map_err(Clone::clone),
                want.clone(),
                "{}",
                String::from_utf8_lossy(header)
            );
        }
    }
}
