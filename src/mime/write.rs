//! The envelope writer: a record's plaintext, the padded MIME message of
//! [`crate::mime`], written as a stream part by part, then padded to
//! [`padded_len`]. Sequoia cannot pad SEIPDv1 messages, so the padding lives
//! here.
//!
//! This module never stores what passes through it: every buffer that holds
//! encoded plaintext is [`Zeroizing`], and nothing is logged or formatted into
//! an error. It only writes; reading an envelope back is the job of
//! [`super::parse`](mod@super::parse).

use std::io::{self, Write};

use chrono::{DateTime, Utc};
use zeroize::Zeroizing;

use super::encode::{
    Base64Lines, QuotedPrintable, RFC5987, encode_header_text, json_str, sanitize_content_type,
};
use super::padded_len;

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
    /// The reply mailbox and certificate, for a form with replies.
    pub reply: Option<ReplyKey<'a>>,
}

/// What lets staff answer a record anonymously: the `Reply-Mailbox`
/// header and the `reply-key.asc` part (see `src/replies.rs`).
#[derive(Clone, Copy)]
pub struct ReplyKey<'a> {
    /// The mailbox address.
    pub mailbox: &'a str,
    /// The mailbox certificate's fingerprint: the `Reply-Key` header, which
    /// tells the server's `reply-key.asc` part from a file a submitter
    /// uploaded under that name.
    pub fingerprint: &'a str,
    /// The mailbox certificate, ASCII-armored.
    pub cert_armored: &'a str,
}

/// The file name of the reply certificate's part.
pub const REPLY_KEY_FILE: &str = "reply-key.asc";

/// The header naming the reply mailbox.
pub const REPLY_MAILBOX_HEADER: &str = "Reply-Mailbox";

/// The header giving the fingerprint of the reply certificate.
pub const REPLY_KEY_HEADER: &str = "Reply-Key";

/// Writes one envelope to `W`, part by part, then pads it.
pub struct EnvelopeWriter<W: Write> {
    out: Counting<W>,
    boundary: String,
    attachments: Vec<AttachmentInfo>,
    /// The reply certificate, written as the last part.
    reply_key: Option<String>,
}

impl<W: Write> EnvelopeWriter<W> {
    /// Writes the message headers and opens the multipart body.
    pub fn start(out: W, head: &Head<'_>) -> io::Result<Self> {
        let boundary = format!(
            "sealform-{}",
            data_encoding::HEXLOWER.encode(&rand::random::<[u8; 16]>())
        );
        let mut out = Counting {
            inner: out,
            count: 0,
        };
        if let Some(reply) = &head.reply {
            write!(
                out,
                "{REPLY_MAILBOX_HEADER}: {}\r\n{REPLY_KEY_HEADER}: {}\r\n",
                reply.mailbox, reply.fingerprint
            )?;
        }
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
            reply_key: head.reply.map(|r| r.cert_armored.to_owned()),
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
        if let Some(key) = self.reply_key.take() {
            write!(
                self.out,
                "\r\n--{}\r\n\
                 Content-Type: application/pgp-keys\r\n\
                 Content-Disposition: attachment; filename=\"{REPLY_KEY_FILE}\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n",
                self.boundary
            )?;
            let mut b64 = Base64Lines::new(&mut self.out);
            b64.write_all(key.as_bytes())?;
            b64.finish()?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn head() -> Head<'static> {
        Head {
            form: "tip",
            title: "Send a tip",
            receipt: "abcdefghijklmnopqrstuvwxyz",
            received_at: DateTime::from_timestamp(1_800_000_000, 0).expect("valid time"),
            reply: None,
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
