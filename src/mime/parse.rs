//! The parser of a decrypted envelope: headers, parts, base64 and
//! quoted-printable decoding, and the file names a record gives.
//!
//! The decrypted plaintext is hostile input: anyone holding a recipient's
//! public certificate can seal anything, so every header, part and name in
//! it is untrusted. The parser never panics, never indexes past a buffer and
//! never trusts a name: [`safe_file_name`] turns whatever a record calls a
//! file into one plain name that stays inside the output folder. It reads no
//! network, no key and no file, and writes nothing: the `decrypt` command
//! decides where the parts go.

use zeroize::Zeroizing;

use super::MAX_PARTS;
use super::decode::{decode_base64, decode_qp};

/// Why a decrypted envelope was refused. No variant carries a byte of
/// plaintext.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The record has more MIME parts than any form can produce.
    #[error(
        "refused: the decrypted record has more than {MAX_PARTS} MIME parts, far more than any \
         form writes; it was not made by sealform"
    )]
    TooManyParts,
}

/// A decrypted record, taken apart. Everything in it is untrusted.
#[derive(Default)]
pub struct Parsed {
    /// `X-Sealform-Receipt`, as written inside the ciphertext.
    pub receipt: Option<String>,
    /// `X-Sealform-Form`, as written inside the ciphertext.
    pub form: Option<String>,
    /// `Reply-Mailbox`: the mailbox a tipster reads answers from, for a
    /// form with replies.
    pub reply_mailbox: Option<String>,
    /// `Reply-Key`: the fingerprint of the mailbox certificate, which names
    /// the one `reply-key.asc` part the server wrote.
    pub reply_key: Option<String>,
    /// The decoded `text/plain` part.
    pub text: Option<Zeroizing<Vec<u8>>>,
    /// The decoded `application/json` part, if it is JSON.
    pub json: Option<serde_json::Value>,
    /// Attachment parts: the name the record gives (unsafe) and the bytes.
    pub attachments: Vec<(Zeroizing<String>, Zeroizing<Vec<u8>>)>,
    /// Parts that could not be decoded.
    pub damaged_parts: usize,
}

/// Takes a decrypted envelope apart. What cannot be read is counted in
/// [`Parsed::damaged_parts`] or left out; the only failure is a record with
/// more than [`MAX_PARTS`] parts ([`ParseError::TooManyParts`]), refused
/// before any part is decoded.
pub fn parse(plain: &[u8]) -> Result<Parsed, ParseError> {
    let mut out = Parsed::default();
    let (head, body) = split_head(plain);
    let headers = parse_headers(head);
    out.receipt = header(&headers, "x-sealform-receipt").map(str::to_owned);
    out.form = header(&headers, "x-sealform-form").map(str::to_owned);
    out.reply_mailbox = header(&headers, "reply-mailbox").map(str::to_owned);
    out.reply_key = header(&headers, "reply-key").map(str::to_owned);
    let boundary = header(&headers, "content-type").and_then(|ct| param(ct, "boundary"));
    let Some(boundary) = boundary.filter(|b| !b.is_empty() && b.len() <= 200) else {
        out.text = Some(Zeroizing::new(body.to_vec()));
        return Ok(out);
    };
    let parts = split_parts(body, boundary.as_bytes()).ok_or(ParseError::TooManyParts)?;
    let mut texts: Vec<Zeroizing<Vec<u8>>> = Vec::new();
    for (i, part) in parts.into_iter().enumerate() {
        let (phead, pbody) = split_head(part);
        let ph = parse_headers(phead);
        let cte = header(&ph, "content-transfer-encoding")
            .unwrap_or("7bit")
            .trim()
            .to_ascii_lowercase();
        let decoded = match cte.as_str() {
            "base64" => decode_base64(pbody),
            "quoted-printable" => Some(decode_qp(pbody)),
            _ => Some(Zeroizing::new(pbody.to_vec())),
        };
        let Some(decoded) = decoded else {
            out.damaged_parts += 1;
            continue;
        };
        let ctype = header(&ph, "content-type")
            .and_then(|c| c.split(';').next())
            .unwrap_or("text/plain")
            .trim()
            .to_ascii_lowercase();
        let disposition = header(&ph, "content-disposition").unwrap_or("");
        let is_attachment = disposition
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("attachment");
        if !is_attachment && ctype == "text/plain" {
            // An upload writes the fields sent after its files in a second
            // text part ("(continued)"): all of them are the message.
            texts.push(decoded);
        } else if !is_attachment && ctype == "application/json" && out.json.is_none() {
            match shaped_like_ours(&decoded)
                .then(|| serde_json::from_slice(&decoded).ok())
                .flatten()
            {
                Some(v) => out.json = Some(v),
                None => out.damaged_parts += 1,
            }
        } else {
            let name = disposition_filename(disposition)
                .unwrap_or_else(|| Zeroizing::new(format!("part-{}", i + 1)));
            out.attachments.push((name, decoded));
        }
    }
    out.text = match texts.len() {
        0 => None,
        1 => texts.pop(),
        // Joined once, into a buffer of the final size (no copy left behind).
        n => {
            let len = texts.iter().map(|t| t.len()).sum::<usize>() + 2 * (n - 1);
            let mut all = Zeroizing::new(Vec::with_capacity(len));
            for (i, t) in texts.iter().enumerate() {
                if i > 0 {
                    all.extend_from_slice(b"\n\n");
                }
                all.extend_from_slice(t);
            }
            Some(all)
        }
    };
    Ok(out)
}

/// Nesting and separators (`,` `:`) allowed in a record's JSON part. Ours
/// nests 3 deep and has a few per field and attachment (at most 256 fields
/// and 1000 files). A parsed value takes about 80 bytes and pretty-printing
/// puts each on its own indented line, so a hostile `[[[…0,0,0…]]]` would
/// take 40 to 130 times its size in memory and in `fields.json`.
const MAX_JSON_DEPTH: usize = 8;
const MAX_JSON_SEPARATORS: usize = 100_000;

/// Whether `json` stays within [`MAX_JSON_DEPTH`] and
/// [`MAX_JSON_SEPARATORS`] (a scan of its bytes, before anything is parsed).
fn shaped_like_ours(json: &[u8]) -> bool {
    let (mut depth, mut separators) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' | b':' => {
                separators += 1;
                if separators > MAX_JSON_SEPARATORS {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

/// Splits at the first empty line (CRLF or LF).
fn split_head(msg: &[u8]) -> (&[u8], &[u8]) {
    let crlf = find(msg, b"\r\n\r\n").map(|i| (i, i + 4));
    let lf = find(msg, b"\n\n").map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => {
            let (h, b) = if a.0 <= b.0 { a } else { b };
            (&msg[..h], &msg[b..])
        }
        (Some((h, b)), None) | (None, Some((h, b))) => (&msg[..h], &msg[b..]),
        (None, None) => (msg, &[]),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Most bytes of a header block read (ours are under 4 KiB; a part with no
/// empty line is all header).
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Unfolded headers, names lowercased, from the first [`MAX_HEADER_BYTES`].
/// Non-UTF-8 bytes are replaced.
fn parse_headers(head: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(&head[..head.len().min(MAX_HEADER_BYTES)]);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            if out.len() < 200 {
                out.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
    }
    out
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A `name=value` or `name="value"` parameter of a header value.
fn param(value: &str, name: &str) -> Option<String> {
    for p in value.split(';').skip(1) {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        if k.trim().eq_ignore_ascii_case(name) {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            return Some(v.to_owned());
        }
    }
    None
}

/// The parts between `--boundary` lines, up to `--boundary--`; `None` as
/// soon as there are more than [`MAX_PARTS`].
fn split_parts<'a>(body: &'a [u8], boundary: &[u8]) -> Option<Vec<&'a [u8]>> {
    let mut delim = b"--".to_vec();
    delim.extend_from_slice(boundary);
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut pos = 0;
    while pos < body.len() {
        let end = body[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |i| pos + i);
        let line = &body[pos..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(delim.as_slice()) {
            let rest_trimmed = rest.trim_ascii_end();
            if rest_trimmed.is_empty() || rest_trimmed == b"--" {
                if let Some(s) = start {
                    // The CRLF before a delimiter belongs to the delimiter.
                    let mut e = pos;
                    if e > s && body[e - 1] == b'\n' {
                        e -= 1;
                    }
                    if e > s && body[e - 1] == b'\r' {
                        e -= 1;
                    }
                    if parts.len() == MAX_PARTS {
                        return None;
                    }
                    parts.push(&body[s..e.max(s)]);
                }
                if rest_trimmed == b"--" {
                    return Some(parts);
                }
                start = Some((end + 1).min(body.len()));
            }
        }
        pos = end + 1;
    }
    // No closing delimiter: keep what was opened.
    if let Some(s) = start {
        if parts.len() == MAX_PARTS {
            return None;
        }
        parts.push(&body[s..]);
    }
    Some(parts)
}

/// The file name of a `Content-Disposition`: `filename*=utf-8''…`
/// (RFC 5987) first, then `filename=`. Still unsafe: see
/// [`safe_file_name`].
fn disposition_filename(disposition: &str) -> Option<Zeroizing<String>> {
    if let Some(v) = param(disposition, "filename*") {
        let encoded = v.split_once("''").map_or(v.as_str(), |(_, e)| e);
        let bytes = percent_encoding::percent_decode_str(encoded).collect::<Vec<u8>>();
        return Some(Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned()));
    }
    param(disposition, "filename").map(Zeroizing::new)
}

/// Longest file name written, in bytes (ext4 allows 255).
const MAX_NAME: usize = 120;

/// Turns an untrusted name into one plain file name that stays inside the
/// folder it is joined to: no separators, no `.`/`..`, no leading dot, no
/// control, bidi or zero-width characters, no characters Windows refuses,
/// no reserved device names (`con`, `nul`, `com1`…), at most 120 bytes.
/// Empty results become `fallback`.
pub fn safe_file_name(raw: &str, fallback: &str) -> String {
    let mapped: String = raw
        .chars()
        .map(|c| {
            let bad = c.is_control()
                || matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|')
                || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}');
            if bad { '_' } else { c }
        })
        .collect();
    let trimmed = mapped.trim_matches(|c: char| c == '.' || c.is_whitespace());
    let mut name = String::new();
    for c in trimmed.chars() {
        if name.len() + c.len_utf8() > MAX_NAME {
            break;
        }
        name.push(c);
    }
    let name = name.trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    if name.is_empty() {
        return fallback.to_owned();
    }
    let stem = name
        .split('.')
        .next()
        .unwrap_or("")
        .trim_end()
        .to_ascii_uppercase();
    let reserved = matches!(
        stem.as_str(),
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$"
    ) || (stem.len() == 4
        && (stem.starts_with("COM") || stem.starts_with("LPT"))
        && stem.as_bytes()[3].is_ascii_digit());
    if reserved {
        format!("_{name}")
    } else {
        name.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_record_with_more_parts_than_any_form_writes_is_refused_quickly() {
        let head = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n";
        let hostile: Vec<u8> = head
            .iter()
            .copied()
            .chain(b"--b\n".repeat(4 << 20))
            .collect();
        let started = std::time::Instant::now();
        let err = parse(&hostile).err().expect("refused");
        assert!(matches!(err, ParseError::TooManyParts), "{err}");
        assert!(err.to_string().contains("MIME parts"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        // Exactly the cap is still read.
        let mut at_cap: Vec<u8> = head.to_vec();
        at_cap.extend(b"--b\nContent-Disposition: attachment\n\nx\n".repeat(MAX_PARTS));
        at_cap.extend(b"--b--\n");
        let parsed = parse(&at_cap).expect("at the cap");
        assert_eq!(parsed.attachments.len(), MAX_PARTS);
    }

    #[test]
    fn hostile_names_become_plain_names_inside_the_folder() {
        let cases: &[(&str, &str)] = &[
            ("../../etc/passwd", "_.._etc_passwd"),
            ("/abs", "_abs"),
            ("..", "fallback"),
            (".", "fallback"),
            ("", "fallback"),
            (".hidden", "hidden"),
            ("con", "_con"),
            ("CON.txt", "_CON.txt"),
            ("lpt1", "_lpt1"),
            ("com9.log", "_com9.log"),
            ("console", "console"),
            ("a\0b", "a_b"),
            ("line\nbreak\r.txt", "line_break_.txt"),
            ("C:\\Windows\\x", "C__Windows_x"),
            ("evil\u{202E}gpj.exe", "evil_gpj.exe"),
            ("trailing. ", "trailing"),
            ("report ü.pdf", "report ü.pdf"),
        ];
        for (raw, want) in cases {
            let got = safe_file_name(raw, "fallback");
            assert_eq!(&got, want, "{raw:?}");
            let p = Path::new("/out").join(&got);
            assert_eq!(p.parent(), Some(Path::new("/out")), "{raw:?}");
        }
        let long = "x".repeat(1000);
        assert_eq!(safe_file_name(&long, "f").len(), MAX_NAME);
        let multibyte = "é".repeat(100);
        assert!(safe_file_name(&multibyte, "f").len() <= MAX_NAME);
    }

    fn test_head() -> crate::mime::Head<'static> {
        crate::mime::Head {
            form: "tip",
            title: "Send a tip",
            receipt: "abcdefghijklmnopqrstuvwxyz",
            received_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
            reply: None,
        }
    }

    #[test]
    fn a_reply_mailbox_and_key_are_written_inside_the_envelope_and_read_back() {
        use crate::mime::{EnvelopeWriter, REPLY_KEY_FILE, ReplyKey};
        let key = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxjMEXg==\n-----END PGP PUBLIC KEY BLOCK-----\n";
        let head = crate::mime::Head {
            reply: Some(ReplyKey {
                mailbox: "2xp7fuhh57nkgchbvkyukwishe2ld5ma",
                fingerprint: "40E44DF03F46ACBC404676BCED6E70E482E62DEB",
                cert_armored: key,
            }),
            ..test_head()
        };
        let mut w = EnvelopeWriter::start(Vec::new(), &head).expect("start");
        w.json_part(&head, &[]).expect("json");
        let (plain, _) = w.finish().expect("finish");
        let p = parse(&plain).expect("parse");
        assert_eq!(
            p.reply_mailbox.as_deref(),
            Some("2xp7fuhh57nkgchbvkyukwishe2ld5ma")
        );
        assert_eq!(
            p.reply_key.as_deref(),
            Some("40E44DF03F46ACBC404676BCED6E70E482E62DEB")
        );
        assert_eq!(p.attachments.len(), 1);
        assert_eq!(p.attachments[0].0.as_str(), REPLY_KEY_FILE);
        assert_eq!(&p.attachments[0].1[..], key.as_bytes());
        // Not listed among the submission's attachments in the JSON part.
        assert_eq!(p.json.expect("json")["attachments"], serde_json::json!([]));
        assert!(
            parse(b"Subject: x\r\n\r\nbody")
                .expect("parse")
                .reply_mailbox
                .is_none()
        );
    }

    #[test]
    fn a_written_envelope_parses_back_into_text_json_and_attachments() {
        use crate::mime::{EnvelopeField, EnvelopeWriter, FieldValue};
        use std::io::Write;
        let head = test_head();
        let fields = [EnvelopeField {
            name: "message",
            label: "Message",
            value: FieldValue::Text("héllo = world\nsecond line"),
        }];
        let mut w = EnvelopeWriter::start(Vec::new(), &head).expect("start");
        w.text_part(head.title, &fields).expect("text");
        let mut a = w.attachment("file", "../x.txt", "text/plain").expect("att");
        a.write_all(&[0u8, 1, 2, 255]).expect("write");
        a.finish().expect("finish");
        w.json_part(&head, &fields).expect("json");
        let (plain, _) = w.finish().expect("finish");
        let p = parse(&plain).expect("parse");
        assert_eq!(p.receipt.as_deref(), Some("abcdefghijklmnopqrstuvwxyz"));
        assert_eq!(p.form.as_deref(), Some("tip"));
        let text = String::from_utf8(p.text.expect("text").to_vec()).expect("utf8");
        assert!(
            text.contains("Message: héllo = world\n  second line"),
            "{text}"
        );
        let json = p.json.expect("json");
        assert_eq!(json["fields"]["message"], "héllo = world\nsecond line");
        assert_eq!(p.attachments.len(), 1);
        assert_eq!(p.attachments[0].0.as_str(), "../x.txt");
        assert_eq!(&p.attachments[0].1[..], &[0u8, 1, 2, 255]);
        assert_eq!(p.damaged_parts, 0);
    }

    #[test]
    fn both_text_parts_of_an_upload_are_the_message() {
        use crate::mime::{EnvelopeField, EnvelopeWriter, FieldValue};
        let head = test_head();
        let field = |label, value| EnvelopeField {
            name: label,
            label,
            value: FieldValue::Text(value),
        };
        let mut w = EnvelopeWriter::start(Vec::new(), &head).expect("start");
        w.text_part(head.title, &[field("Contact", "before the file")])
            .expect("text");
        w.attachment("file", "a.bin", "application/octet-stream")
            .expect("att")
            .finish()
            .expect("finish");
        w.text_part(
            "Send a tip (continued)",
            &[field("Message", "after the file")],
        )
        .expect("text");
        w.json_part(&head, &[]).expect("json");
        let (plain, _) = w.finish().expect("finish");
        let p = parse(&plain).expect("parse");
        let text = String::from_utf8(p.text.expect("text").to_vec()).expect("utf8");
        assert!(text.contains("Contact: before the file"), "{text}");
        assert!(text.contains("Message: after the file"), "{text}");
        assert_eq!(
            p.attachments.len(),
            1,
            "the second text part is no attachment"
        );
        assert_eq!(p.attachments[0].0.as_str(), "a.bin");
    }

    #[test]
    fn a_json_part_nested_too_deep_or_with_too_many_values_is_damaged_not_parsed() {
        let envelope = |json: &[u8]| {
            let mut e = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
                Content-Type: application/json\r\n\r\n"
                .to_vec();
            e.extend_from_slice(json);
            e.extend_from_slice(b"\r\n--b--\r\n");
            e
        };
        let deep = format!("{}0{}", "[".repeat(9), "]".repeat(9));
        let wide = format!("[{}0]", "0,".repeat(MAX_JSON_SEPARATORS + 1));
        let fine = format!(
            "{{\"fields\":{{\"a\":\"[[[[[[[[[[,,,:\\\"\"}},\"x\":{}0{}}}",
            "[".repeat(7),
            "]".repeat(7)
        );
        for (json, ok) in [
            (deep.as_str(), false),
            (wide.as_str(), false),
            (fine.as_str(), true),
        ] {
            let p = parse(&envelope(json.as_bytes())).expect("parse");
            assert_eq!(p.json.is_some(), ok, "{}", &json[..json.len().min(80)]);
            assert_eq!(p.damaged_parts, usize::from(!ok));
        }
    }

    #[test]
    fn malformed_envelopes_parse_without_panicking() {
        let cases: &[&[u8]] = &[
            b"",
            b"\r\n\r\n",
            b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n",
            b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Transfer-Encoding: base64\n\n!!!\n--b--",
            b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\nx",
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=\r\n=4\r\n=ZZ--b--",
            b"X-Sealform-Receipt: ../../x\r\n\r\n\xff\xfe",
        ];
        for c in cases {
            let _ = parse(c).expect("few parts");
        }
    }
}
