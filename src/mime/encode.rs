//! The encodings the envelope writer uses: base64 in 76-character lines,
//! quoted-printable text, RFC 2047 encoded words for header text, sanitized
//! content types and the RFC 5987 set for file names in headers.
//!
//! Every buffer that holds encoded plaintext is [`Zeroizing`]; nothing here
//! stores, logs or formats what passes through into an error, and nothing
//! here decodes (decoding is the job of
//! [`super::parse`](mod@super::parse)).

use std::io::{self, Write};

use data_encoding::BASE64;
use zeroize::Zeroizing;

/// Raw bytes per base64 line (76 encoded characters, RFC 2045).
const B64_LINE_RAW: usize = 57;

/// Base64 in 76-character CRLF lines, batching output in a zeroized buffer.
pub(super) struct Base64Lines<W: Write> {
    out: W,
    pending: Zeroizing<Vec<u8>>,
    encoded: Zeroizing<Vec<u8>>,
}

const B64_BATCH_LINES: usize = 256;

impl<W: Write> Base64Lines<W> {
    pub(super) fn new(out: W) -> Self {
        Base64Lines {
            out,
            pending: Zeroizing::new(Vec::with_capacity(B64_LINE_RAW)),
            encoded: Zeroizing::new(Vec::with_capacity(B64_BATCH_LINES * 78)),
        }
    }

    fn line(&mut self, raw: &[u8]) -> io::Result<()> {
        let start = self.encoded.len();
        self.encoded.resize(start + BASE64.encode_len(raw.len()), 0);
        BASE64.encode_mut(raw, &mut self.encoded[start..]);
        self.encoded.extend_from_slice(b"\r\n");
        if self.encoded.len() + 78 > self.encoded.capacity() {
            self.out.write_all(&self.encoded)?;
            self.encoded.clear();
        }
        Ok(())
    }

    pub(super) fn finish(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut *self.pending);
            let rest = Zeroizing::new(rest);
            self.line(&rest)?;
        }
        self.out.write_all(&self.encoded)?;
        self.encoded.clear();
        Ok(())
    }
}

impl<W: Write> Write for Base64Lines<W> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let total = buf.len();
        if !self.pending.is_empty() {
            let take = (B64_LINE_RAW - self.pending.len()).min(buf.len());
            self.pending.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.pending.len() == B64_LINE_RAW {
                let line: Zeroizing<[u8; B64_LINE_RAW]> = Zeroizing::new(
                    self.pending[..]
                        .try_into()
                        .map_err(|_| io::Error::other("base64 line"))?,
                );
                self.pending.clear();
                self.line(&line[..])?;
            }
        }
        while buf.len() >= B64_LINE_RAW {
            self.line(&buf[..B64_LINE_RAW])?;
            buf = &buf[B64_LINE_RAW..];
        }
        self.pending.extend_from_slice(buf);
        Ok(total)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Quoted-printable (RFC 2045 §6.7) for UTF-8 text with `\n` line breaks,
/// written as CRLF lines of at most 76 characters.
pub(super) struct QuotedPrintable<W: Write> {
    out: W,
    line: Zeroizing<Vec<u8>>,
}

impl<W: Write> QuotedPrintable<W> {
    pub(super) fn new(out: W) -> Self {
        QuotedPrintable {
            out,
            line: Zeroizing::new(Vec::with_capacity(80)),
        }
    }

    pub(super) fn write_text(&mut self, text: &str) -> io::Result<()> {
        for &b in text.as_bytes() {
            if b == b'\n' {
                self.end_line()?;
                continue;
            }
            let literal = (b'!'..=b'~').contains(&b) && b != b'=' || b == b' ' || b == b'\t';
            let width = if literal { 1 } else { 3 };
            if self.line.len() + width > 75 {
                self.line.extend_from_slice(b"=\r\n");
                self.out.write_all(&self.line)?;
                self.line.clear();
            }
            if literal {
                self.line.push(b);
            } else {
                self.line.push(b'=');
                self.line.extend_from_slice(hex_upper(b).as_slice());
            }
        }
        Ok(())
    }

    /// Ends a hard line: trailing whitespace must be encoded to survive.
    pub(super) fn end_line(&mut self) -> io::Result<()> {
        if let Some(&last) = self.line.last() {
            if last == b' ' || last == b'\t' {
                self.line.pop();
                if self.line.len() + 3 > 75 {
                    self.line.extend_from_slice(b"=\r\n");
                    self.out.write_all(&self.line)?;
                    self.line.clear();
                }
                self.line.push(b'=');
                self.line.extend_from_slice(hex_upper(last).as_slice());
            }
        }
        self.line.extend_from_slice(b"\r\n");
        self.out.write_all(&self.line)?;
        self.line.clear();
        Ok(())
    }

    pub(super) fn finish(mut self) -> io::Result<()> {
        if !self.line.is_empty() {
            self.end_line()?;
        }
        Ok(())
    }
}

fn hex_upper(b: u8) -> [u8; 2] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]
}

/// A JSON string literal, escaped by serde_json, straight to `w`.
pub(super) fn json_str(w: &mut impl Write, s: &str) -> io::Result<()> {
    serde_json::to_writer(w, s).map_err(io::Error::other)
}

/// Header text: raw when short printable ASCII, otherwise RFC 2047 encoded
/// words folded over several lines.
pub(super) fn encode_header_text(text: &str) -> String {
    let clean = text.chars().all(|c| (' '..='~').contains(&c));
    if clean && text.len() <= 900 && !text.contains("=?") {
        return text.to_owned();
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|w| format!("=?utf-8?b?{}?=", BASE64.encode(w.as_bytes())))
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// Keeps a client-supplied content type only if it is a plain `type/subtype`
/// token pair; anything else becomes `application/octet-stream`.
pub(super) fn sanitize_content_type(ct: &str) -> String {
    let ct = ct.split(';').next().unwrap_or("").trim();
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match ct.split_once('/') {
        Some((t, s)) if token(t) && token(s) => ct.to_ascii_lowercase(),
        _ => "application/octet-stream".to_owned(),
    }
}

/// `attr-char` of RFC 5987: everything else is percent-encoded.
pub(super) const RFC5987: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use std::io::Write;

    #[test]
    fn base64_lines_match_one_shot_encoding_for_any_write_pattern() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for step in [1usize, 3, 56, 57, 58, 1000, 10_000] {
            let mut out = Vec::new();
            let mut w = Base64Lines::new(&mut out);
            for chunk in data.chunks(step) {
                w.write_all(chunk).expect("write");
            }
            w.finish().expect("finish");
            let joined: String = String::from_utf8(out).expect("ascii").replace("\r\n", "");
            assert_eq!(
                joined,
                base64::engine::general_purpose::STANDARD.encode(&data),
                "step {step}"
            );
        }
    }

    #[test]
    fn non_ascii_titles_become_encoded_words() {
        let h = encode_header_text("Solicitud de formación");
        assert!(h.starts_with("=?utf-8?b?") && h.is_ascii());
        assert_eq!(encode_header_text("Plain title"), "Plain title");
        assert!(!encode_header_text("inject\r\nBcc: x").contains('\n'));
    }
}
