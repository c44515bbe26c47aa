//! Attachments travel in the envelope as their own bytes
//! (`Content-Transfer-Encoding: binary`, issue 24): what `gpg -d` gives back
//! opens byte-identical in Debian's Python `email` parser (standing in for a
//! mail client), in `mail-parser` and in `sealform decrypt`; a record written
//! with base64 attachments before the change still decrypts.

use std::io::Write as _;
use std::process::{Command, Stdio};

use base64::Engine as _;

use super::*;

/// Files that would break a careless binary part: CR and LF in every
/// combination, lines that start like a delimiter, NUL, and endings in a
/// lone CR or LF just before the delimiter's CRLF (three: the `upload`
/// form's most). Each comes with the type a client claims for it: a file
/// called `message/*` or `multipart/*` must still come back as a file, not
/// as a message nested in the record.
fn awkward_files() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut all_bytes: Vec<u8> = (0..=255u8).collect();
    all_bytes.extend_from_slice(b"\r\n--sealform-\r\n--\r\n\r\n--\n\r\r\n\0\r\n.\r\n");
    all_bytes.extend((0..600u32).map(|i| (i * 7 % 251) as u8));
    all_bytes.push(b'\r');
    vec![
        ("awkward.bin", "multipart/mixed", all_bytes),
        (
            "lf-last.txt",
            "text/plain",
            b"line one\nline two\n".to_vec(),
        ),
        (
            "crlf-last.eml",
            "message/rfc822",
            b"From: x\r\n\r\n--\r\n".to_vec(),
        ),
    ]
}

/// `(file name, sha256 hex, Content-Transfer-Encoding)` of every attachment
/// of `plain` as `/usr/bin/python3`'s `email` package reads it.
fn python_attachments(plain: &[u8]) -> Vec<(String, String, String)> {
    const SCRIPT: &str = "import email, hashlib, sys
from email import policy
m = email.message_from_bytes(sys.stdin.buffer.read(), policy=policy.default)
for p in m.walk():
    if p.get_filename() is not None:
        data = p.get_payload(decode=True)
        print(p.get_filename(), hashlib.sha256(data).hexdigest(), p['Content-Transfer-Encoding'], sep='\\t')
";
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run /usr/bin/python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(plain)
        .expect("feed python");
    let out = child.wait_with_output().expect("python");
    assert!(out.status.success(), "python failed");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_owned(), f[1].to_owned(), f[2].to_owned())
        })
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(data))
}

/// The attachments `sealform decrypt` writes for the records in `dir`:
/// file name and sha256.
fn sealform_decrypt_attachments(dir: &std::path::Path) -> Vec<(String, String)> {
    let out = tempfile::tempdir().expect("tempdir");
    let plain = out.path().join("plain");
    let key = TestKey::Ed25519.secret();
    let (code, stdout, stderr) = sealform(&[
        "decrypt",
        "--key",
        key.to_str().expect("utf-8"),
        "--out",
        plain.to_str().expect("utf-8"),
        dir.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let mut got = Vec::new();
    for record in std::fs::read_dir(&plain).expect("out") {
        let attachments = record.expect("entry").path().join("attachments");
        for f in std::fs::read_dir(attachments).expect("attachments") {
            let f = f.expect("file").path();
            let name = f.file_name().expect("name").to_string_lossy().into_owned();
            got.push((name, sha256_hex(&std::fs::read(&f).expect("read"))));
        }
    }
    got.sort();
    got
}

#[tokio::test]
async fn binary_attachments_open_byte_identical_in_python_mail_parser_and_sealform_decrypt() {
    let fx = fixture("");
    let app = fx.app();
    let files = awkward_files();
    let mut body = Multipart::new().text("message", "see the files");
    for (name, content_type, data) in &files {
        body = body.file("documents", name, content_type, data);
    }
    let (res, body) = send(&app, api_upload("upload", body.finish())).await;
    let receipt = created(&res, &body);
    let plain = decrypt(&fx, &receipt);

    let want: Vec<(String, String, String)> = files
        .iter()
        .map(|(n, _, d)| ((*n).to_owned(), sha256_hex(d), "binary".to_owned()))
        .collect();
    assert_eq!(python_attachments(&plain), want);

    let message = MessageParser::default().parse(&plain).expect("MIME parses");
    let parsed: Vec<(String, String)> = message
        .attachments()
        .filter_map(|p| Some((p.attachment_name()?.to_owned(), sha256_hex(p.contents()))))
        .collect();
    let by_name: Vec<(String, String)> = want
        .iter()
        .map(|(n, h, _)| (n.clone(), h.clone()))
        .collect();
    assert_eq!(parsed, by_name);

    let json = json_part(&plain);
    let sizes: Vec<u64> = json["attachments"]
        .as_array()
        .expect("list")
        .iter()
        .map(|a| a["size"].as_u64().expect("size"))
        .collect();
    assert_eq!(
        sizes,
        files
            .iter()
            .map(|(_, _, d)| d.len() as u64)
            .collect::<Vec<_>>()
    );

    let spool = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        fx.record(&receipt),
        spool.path().join(format!("{receipt}.pgp")),
    )
    .expect("copy");
    let mut sorted = by_name;
    sorted.sort();
    assert_eq!(sealform_decrypt_attachments(spool.path()), sorted);
}

#[test]
fn a_record_with_base64_attachments_from_before_still_decrypts() {
    // An envelope as sealform wrote them before issue 24, sealed with the
    // real `gpg` to the test-only key.
    let data: Vec<u8> = (0..=255u8).chain(*b"\r\n--\r\n").collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    let envelope = format!(
        "Date: Mon, 7 Dec 2026 05:00:00 +0000\r\nFrom: sealform <sealform@localhost.invalid>\r\n\
         Subject: Send documents\r\nMIME-Version: 1.0\r\nX-Sealform-Form: upload\r\n\
         X-Sealform-Receipt: aaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\
         Content-Type: multipart/mixed;\r\n boundary=\"sealform-0123\"\r\n\r\n\
         This is a sealform record in MIME format.\r\n\
         \r\n--sealform-0123\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\nSend documents\r\n\
         \r\n--sealform-0123\r\nContent-Type: application/octet-stream\r\n\
         Content-Disposition: attachment; filename*=utf-8''old.bin\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n\
         \r\n--sealform-0123--\r\n",
        lines.join("\r\n")
    );
    let work = tempfile::tempdir().expect("tempdir");
    let plain = work.path().join("envelope.eml");
    std::fs::write(&plain, envelope.as_bytes()).expect("write");
    let spool = work.path().join("spool");
    std::fs::create_dir(&spool).expect("spool");
    let record = spool.join("aaaaaaaaaaaaaaaaaaaaaaaaaa.pgp");
    let gpg = Gpg::with_secret_keys(&[&TestKey::Ed25519.secret()]);
    let out = gpg
        .cmd()
        .args([
            "--trust-model",
            "always",
            "--compress-algo",
            "none",
            "--recipient",
        ])
        .arg(TestKey::Ed25519.fingerprint())
        .arg("--output")
        .arg(&record)
        .arg("--encrypt")
        .arg(&plain)
        .output()
        .expect("run gpg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        sealform_decrypt_attachments(&spool),
        vec![("old.bin".to_owned(), sha256_hex(&data))]
    );
    assert_eq!(
        python_attachments(envelope.as_bytes()),
        vec![("old.bin".to_owned(), sha256_hex(&data), "base64".to_owned())]
    );
}
