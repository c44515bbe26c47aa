//! The plaintext of a record: a padded MIME message, written as a stream.
//!
//! `gpg -d record.pgp > x.eml` must open in any mail client, so the sealed
//! plaintext is an RFC 5322 message with a `multipart/mixed` body:
//! 1. `text/plain` (quoted-printable): the fields as `Label: value`;
//! 2. one base64 part per attachment, name and type only in its headers;
//! 3. last, `application/json` (base64): the machine-readable record.
//!
//! After the closing boundary comes padding (the MIME epilogue, which parsers
//! ignore) so that the total length falls into a size bucket: at least
//! [`MIN_PADDED_LEN`], then Padmé rounding. Sequoia cannot pad SEIPDv1
//! messages, so the padding lives here.
//!
//! This module never stores what passes through it: every buffer that holds
//! encoded plaintext is [`Zeroizing`], and nothing is logged or formatted into
//! an error.

use std::io::{self, Write};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use zeroize::Zeroizing;

/// The smallest padded envelope. A message of a few thousand characters
/// appears twice (text and JSON parts), so 8 KiB makes ordinary messages all
/// the same size.
pub const MIN_PADDED_LEN: u64 = 8 * 1024;

/// Raw bytes per base64 line (76 encoded characters, RFC 2045).
const B64_LINE_RAW: usize = 57;

/// Length of a padded envelope whose content is `len` bytes long: at least
/// [`MIN_PADDED_LEN`], otherwise `len` rounded up with Padmé (overhead at most
/// 12 %, and the rounded length leaks O(log log len) bits).
pub fn padded_len(len: u64) -> u64 {
    if len <= MIN_PADDED_LEN {
        return MIN_PADDED_LEN;
    }
    let e = 63 - u64::from(len.leading_zeros()); // floor(log2 len)
    let s = 64 - u64::from(e.leading_zeros()); // floor(log2 e) + 1
    let mask = (1u64 << (e - s)) - 1;
    (len + mask) & !mask
}

/// A field value inside the envelope.
pub enum FieldValue<'a> {
    /// Text, as typed.
    Text(&'a str),
    /// A checkbox.
    Checked(bool),
}

/// One field as the envelope shows it.
pub struct EnvelopeField<'a> {
    /// The schema name (JSON key).
    pub name: &'a str,
    /// The label (text part).
    pub label: &'a str,
    /// The value.
    pub value: FieldValue<'a>,
}

/// What an attachment part says about itself, listed in the JSON part.
///
/// No `Debug`: `filename` is plaintext from the submitter, and a derived
/// `Debug` would let a log line or a panic message print it by mistake.
#[derive(Clone)]
pub struct AttachmentInfo {
    /// The form field it was sent in.
    pub field: String,
    /// The file name the client gave.
    pub filename: Zeroizing<String>,
    /// The content type the client gave.
    pub content_type: String,
    /// Its length in bytes.
    pub size: u64,
}

/// The record's headers.
pub struct Head<'a> {
    /// The form id.
    pub form: &'a str,
    /// The form title (the `Subject`).
    pub title: &'a str,
    /// The receipt shown to the submitter.
    pub receipt: &'a str,
    /// When the submission arrived (exact: it is inside the ciphertext).
    pub received_at: DateTime<Utc>,
}

/// Writes one envelope to `W`, part by part, then pads it.
pub struct EnvelopeWriter<W: Write> {
    out: Counting<W>,
    boundary: String,
    attachments: Vec<AttachmentInfo>,
}

impl<W: Write> EnvelopeWriter<W> {
    /// Writes the message headers and opens the multipart body.
    pub fn start(out: W, head: &Head<'_>) -> io::Result<Self> {
        let boundary = format!("sealform-{}", hex::encode(rand::random::<[u8; 16]>()));
        let mut out = Counting {
            inner: out,
            count: 0,
        };
        write!(
            out,
            "Date: {date}\r\n\
             From: sealform <sealform@localhost.invalid>\r\n\
             Subject: {subject}\r\n\
             MIME-Version: 1.0\r\n\
             X-Sealform-Form: {form}\r\n\
             X-Sealform-Receipt: {receipt}\r\n\
             Content-Type: multipart/mixed;\r\n boundary=\"{boundary}\"\r\n\
             \r\n\
             This is a sealform record in MIME format.\r\n",
            date = head.received_at.to_rfc2822(),
            subject = encode_header_text(head.title),
            form = head.form,
            receipt = head.receipt,
        )?;
        Ok(EnvelopeWriter {
            out,
            boundary,
            attachments: Vec::new(),
        })
    }

    /// Writes the human-readable part: every field as `Label: value`.
    pub fn text_part(&mut self, title: &str, fields: &[EnvelopeField<'_>]) -> io::Result<()> {
        write!(
            self.out,
            "\r\n--{}\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n",
            self.boundary
        )?;
        let mut qp = QuotedPrintable::new(&mut self.out);
        qp.write_text(title)?;
        qp.write_text("\n\n")?;
        for f in fields {
            qp.write_text(f.label)?;
            qp.write_text(":")?;
            match f.value {
                FieldValue::Checked(c) => qp.write_text(if c { " yes" } else { " no" })?,
                FieldValue::Text(v) => {
                    // Continuation lines are indented so a value can never
                    // pass for another field's label. A line ends at LF,
                    // CRLF or a lone CR (which a terminal and some mail
                    // readers also show as a new line).
                    let lines = v
                        .split('\n')
                        .flat_map(|l| l.strip_suffix('\r').unwrap_or(l).split('\r'));
                    for (i, line) in lines.enumerate() {
                        qp.write_text(if i == 0 { " " } else { "\n  " })?;
                        qp.write_text(line)?;
                    }
                }
            }
            qp.write_text("\n")?;
        }
        qp.finish()
    }

    /// Opens an attachment part; write the file's bytes to the returned
    /// writer and call [`AttachmentWriter::finish`].
    pub fn attachment(
        &mut self,
        field: &str,
        filename: &str,
        content_type: &str,
    ) -> io::Result<AttachmentWriter<'_, W>> {
        let content_type = sanitize_content_type(content_type);
        write!(
            self.out,
            "\r\n--{}\r\n\
             Content-Type: {content_type}\r\n\
             Content-Disposition: attachment; filename*=utf-8''{}\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n",
            self.boundary,
            percent_encoding::utf8_percent_encode(filename, RFC5987),
        )?;
        let info = AttachmentInfo {
            field: field.to_owned(),
            filename: Zeroizing::new(filename.to_owned()),
            content_type,
            size: 0,
        };
        Ok(AttachmentWriter {
            b64: Base64Lines::new(&mut self.out),
            info: Some(info),
            list: &mut self.attachments,
        })
    }

    /// Writes the machine-readable part: `{"form", "receipt", "received_at",
    /// "fields", "attachments"}`.
    pub fn json_part(&mut self, head: &Head<'_>, fields: &[EnvelopeField<'_>]) -> io::Result<()> {
        write!(
            self.out,
            "\r\n--{}\r\n\
             Content-Type: application/json; charset=utf-8\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n",
            self.boundary
        )?;
        let mut w = Base64Lines::new(&mut self.out);
        w.write_all(b"{\"form\":")?;
        json_str(&mut w, head.form)?;
        w.write_all(b",\"receipt\":")?;
        json_str(&mut w, head.receipt)?;
        w.write_all(b",\"received_at\":")?;
        json_str(
            &mut w,
            &head
                .received_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )?;
        w.write_all(b",\"fields\":{")?;
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            json_str(&mut w, f.name)?;
            w.write_all(b":")?;
            match f.value {
                FieldValue::Text(v) => json_str(&mut w, v)?,
                FieldValue::Checked(c) => w.write_all(if c { b"true" } else { b"false" })?,
            }
        }
        w.write_all(b"},\"attachments\":[")?;
        for (i, a) in self.attachments.iter().enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            w.write_all(b"{\"field\":")?;
            json_str(&mut w, &a.field)?;
            w.write_all(b",\"filename\":")?;
            json_str(&mut w, &a.filename)?;
            w.write_all(b",\"content_type\":")?;
            json_str(&mut w, &a.content_type)?;
            write!(w, ",\"size\":{}}}", a.size)?;
        }
        w.write_all(b"]}")?;
        w.finish()
    }

    /// Closes the multipart body, pads the envelope to its bucket and returns
    /// the underlying writer and the padded length.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        write!(self.out, "\r\n--{}--\r\n", self.boundary)?;
        let target = padded_len(self.out.count);
        let mut left = target - self.out.count;
        // Lines of spaces: invisible in a mail client, ignored by parsers.
        const LINE: &[u8; 78] =
            b"                                                                            \r\n";
        while left > 0 {
            let n = usize::try_from(left).map_or(LINE.len(), |l| l.min(LINE.len()));
            self.out.write_all(&LINE[LINE.len() - n..])?;
            left -= n as u64;
        }
        self.out.flush()?;
        Ok((self.out.inner, target))
    }
}

/// The writer for one attachment's content.
pub struct AttachmentWriter<'e, W: Write> {
    b64: Base64Lines<&'e mut Counting<W>>,
    info: Option<AttachmentInfo>,
    list: &'e mut Vec<AttachmentInfo>,
}

impl<W: Write> AttachmentWriter<'_, W> {
    /// Ends the part and records it for the JSON part.
    pub fn finish(mut self) -> io::Result<()> {
        self.b64.finish()?;
        if let Some(info) = self.info.take() {
            self.list.push(info);
        }
        Ok(())
    }
}

impl<W: Write> Write for AttachmentWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.b64.write(buf)?;
        if let Some(info) = self.info.as_mut() {
            info.size += n as u64;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.b64.flush()
    }
}

/// Counts what passes through.
struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Base64 in 76-character CRLF lines, batching output in a zeroized buffer.
struct Base64Lines<W: Write> {
    out: W,
    pending: Zeroizing<Vec<u8>>,
    encoded: Zeroizing<Vec<u8>>,
}

const B64_BATCH_LINES: usize = 256;

impl<W: Write> Base64Lines<W> {
    fn new(out: W) -> Self {
        Base64Lines {
            out,
            pending: Zeroizing::new(Vec::with_capacity(B64_LINE_RAW)),
            encoded: Zeroizing::new(Vec::with_capacity(B64_BATCH_LINES * 78)),
        }
    }

    fn line(&mut self, raw: &[u8]) -> io::Result<()> {
        let start = self.encoded.len();
        self.encoded.resize(start + 76, 0);
        let n = base64::engine::general_purpose::STANDARD
            .encode_slice(raw, &mut self.encoded[start..])
            .map_err(io::Error::other)?;
        self.encoded.truncate(start + n);
        self.encoded.extend_from_slice(b"\r\n");
        if self.encoded.len() + 78 > self.encoded.capacity() {
            self.out.write_all(&self.encoded)?;
            self.encoded.clear();
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
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
struct QuotedPrintable<W: Write> {
    out: W,
    line: Zeroizing<Vec<u8>>,
}

impl<W: Write> QuotedPrintable<W> {
    fn new(out: W) -> Self {
        QuotedPrintable {
            out,
            line: Zeroizing::new(Vec::with_capacity(80)),
        }
    }

    fn write_text(&mut self, text: &str) -> io::Result<()> {
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
    fn end_line(&mut self) -> io::Result<()> {
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

    fn finish(mut self) -> io::Result<()> {
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
fn json_str(w: &mut impl Write, s: &str) -> io::Result<()> {
    serde_json::to_writer(w, s).map_err(io::Error::other)
}

/// Header text: raw when short printable ASCII, otherwise RFC 2047 encoded
/// words folded over several lines.
fn encode_header_text(text: &str) -> String {
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
        .map(|w| {
            format!(
                "=?utf-8?b?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w)
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// Keeps a client-supplied content type only if it is a plain `type/subtype`
/// token pair; anything else becomes `application/octet-stream`.
fn sanitize_content_type(ct: &str) -> String {
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
const RFC5987: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
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

    fn head() -> Head<'static> {
        Head {
            form: "tip",
            title: "Send a tip",
            receipt: "abcdefghijklmnopqrstuvwxyz",
            received_at: DateTime::from_timestamp(1_800_000_000, 0).expect("valid time"),
        }
    }

    fn envelope(fields: &[EnvelopeField<'_>]) -> Vec<u8> {
        let mut w = EnvelopeWriter::start(Vec::new(), &head()).expect("start");
        w.text_part("Send a tip", fields).expect("text");
        w.json_part(&head(), fields).expect("json");
        let (out, len) = w.finish().expect("finish");
        assert_eq!(out.len() as u64, len);
        out
    }

    #[test]
    fn padme_rounds_up_by_at_most_twelve_percent() {
        assert_eq!(padded_len(0), MIN_PADDED_LEN);
        assert_eq!(padded_len(MIN_PADDED_LEN), MIN_PADDED_LEN);
        for len in [8193u64, 10_000, 65_537, 1 << 20, 1_000_000_007, 5 << 30] {
            let p = padded_len(len);
            assert!(p >= len && (p - len) * 100 <= len * 12, "{len} -> {p}");
            assert_eq!(padded_len(p), p, "a bucket is a fixed point");
        }
    }

    #[test]
    fn short_and_three_thousand_byte_messages_pad_to_the_same_length() {
        let short = envelope(&[EnvelopeField {
            name: "m",
            label: "Message",
            value: FieldValue::Text("0123456789"),
        }]);
        let long_text = "x".repeat(3000);
        let long = envelope(&[EnvelopeField {
            name: "m",
            label: "Message",
            value: FieldValue::Text(&long_text),
        }]);
        assert_eq!(short.len(), long.len());
    }

    /// Decodes quoted-printable (test helper).
    fn qp_decode(s: &str) -> String {
        let s = s.replace("=\r\n", "");
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'=' {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("hex"));
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).expect("utf-8")
    }

    /// The quoted-printable body of the text part of `envelope`.
    fn text_part(envelope: &str) -> &str {
        envelope
            .split("Content-Transfer-Encoding: quoted-printable\r\n\r\n")
            .nth(1)
            .expect("text part")
            .split("\r\n--sealform-")
            .next()
            .expect("end")
    }

    #[test]
    fn quoted_printable_lines_stay_short_and_decode_to_the_text() {
        let value = format!("{} \u{e9}t\u{e9} = 1 \n second line\t", "word ".repeat(40));
        let env = envelope(&[EnvelopeField {
            name: "m",
            label: "Message",
            value: FieldValue::Text(&value),
        }]);
        let text = String::from_utf8(env).expect("ascii");
        for l in text.lines() {
            assert!(l.len() <= 78, "line too long: {l:?}");
        }
        let part = text_part(&text);
        let decoded = qp_decode(part);
        let want = format!(
            "Send a tip\r\n\r\nMessage: {}\r\n   second line\t\r\n",
            value.lines().next().expect("line")
        );
        assert_eq!(decoded, want);
        assert!(part.contains("=09\r\n"), "trailing tab is encoded");
    }

    #[test]
    fn a_lone_cr_starts_an_indented_line_so_it_cannot_fake_a_label() {
        let env = envelope(&[EnvelopeField {
            name: "m",
            label: "Message",
            value: FieldValue::Text("hi\rEmail: x@evil.example\r\nthird\nfourth"),
        }]);
        assert_eq!(
            qp_decode(text_part(&String::from_utf8(env).expect("ascii"))),
            "Send a tip\r\n\r\nMessage: hi\r\n  Email: x@evil.example\r\n  third\r\n  fourth\r\n"
        );
    }

    #[test]
    fn the_json_part_carries_every_value_exactly() {
        let fields = [
            EnvelopeField {
                name: "a",
                label: "A",
                value: FieldValue::Text("quote \" back\\slash \r\n\u{1F600}"),
            },
            EnvelopeField {
                name: "b",
                label: "B",
                value: FieldValue::Checked(true),
            },
        ];
        let env = String::from_utf8(envelope(&fields)).expect("ascii");
        let json_b64: String = env
            .split("Content-Type: application/json; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n")
            .nth(1)
            .expect("json part")
            .split("\r\n--")
            .next()
            .expect("end")
            .replace("\r\n", "");
        let json = base64::engine::general_purpose::STANDARD
            .decode(json_b64)
            .expect("b64");
        let v: serde_json::Value = serde_json::from_slice(&json).expect("json");
        assert_eq!(v["fields"]["a"], "quote \" back\\slash \r\n\u{1F600}");
        assert_eq!(v["fields"]["b"], true);
        assert_eq!(v["receipt"], "abcdefghijklmnopqrstuvwxyz");
        assert_eq!(v["received_at"], "2027-01-15T08:00:00Z");
    }

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

    #[test]
    fn hostile_attachment_names_are_percent_encoded_in_the_header() {
        let mut w = EnvelopeWriter::start(Vec::new(), &head()).expect("start");
        let mut a = w
            .attachment("file", "../../etc/\"pass\r\nwd\u{e9}", "text/plain\r\nX: y")
            .expect("att");
        a.write_all(b"hello").expect("write");
        a.finish().expect("finish");
        let (out, _) = w.finish().expect("finish");
        let text = String::from_utf8(out).expect("ascii");
        assert!(text.contains("filename*=utf-8''..%2F..%2Fetc%2F%22pass%0D%0Awd%C3%A9\r\n"));
        assert!(text.contains("Content-Type: application/octet-stream\r\n"));
    }
}
