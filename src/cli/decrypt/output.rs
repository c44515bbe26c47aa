//! What `sealform decrypt` writes for each record: its folder (the whole
//! message, its text and JSON parts, its attachments under safe distinct
//! names, and for a form with replies `reply.txt`) and, with `--csv`, one
//! CSV per form. Every file is created new
//! with private permissions; nothing is replaced in place.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use zeroize::Zeroizing;

use crate::durable;
use crate::mime::{Parsed, REPLY_KEY_FILE, REPLY_KEY_HEADER, REPLY_MAILBOX_HEADER, safe_file_name};
use crate::replies::reply_key_in;
use sequoia_openpgp::serialize::SerializeInto as _;

/// One row of a form's CSV.
pub(super) struct Row {
    receipt: String,
    received_at: String,
    fields: Vec<(String, String)>,
}

/// Writes the folder of one record: `message.eml`, `message.txt`,
/// `fields.json`, `attachments/` and, for a record that can be answered,
/// `reply.txt` (its mailbox and the command that answers it).
pub(super) fn write_record(dir: &Path, plain: &[u8], parsed: &Parsed) -> anyhow::Result<()> {
    let mkdir = |p: &Path| {
        durable::create_private_dir(p).with_context(|| format!("while creating {}", p.display()))
    };
    mkdir(dir)?;
    write_new(&dir.join("message.eml"), plain)?;
    if let Some(text) = &parsed.text {
        write_new(&dir.join("message.txt"), text)?;
    }
    if let Some(json) = &parsed.json {
        let mut pretty = Zeroizing::new(serde_json::to_vec_pretty(json)?);
        pretty.push(b'\n');
        write_new(&dir.join("fields.json"), &pretty)?;
    }
    // A record of a form with replies: the server's certificate (told from
    // a file a submitter named alike by the Reply-Key header) and how to
    // answer. The headers are hostile input like the rest, so only a
    // well-formed mailbox is repeated.
    if let Some((mailbox, cert)) = reply_key_in(parsed) {
        let hint = format!(
            "{REPLY_MAILBOX_HEADER}: {mailbox}\n{REPLY_KEY_HEADER}: {}\n\nThe sender can be \
             answered anonymously (README, \"Replying to a tipster\"):\n  \
             sealform reply --record THIS_FOLDER --message ANSWER.txt --out OUTBOX\n\
             or encrypt to ./{REPLY_KEY_FILE} (this folder's, not one under attachments/).\n",
            cert.fingerprint().to_hex()
        );
        write_new(&dir.join("reply.txt"), hint.as_bytes())?;
        write_new(&dir.join(REPLY_KEY_FILE), &cert.armored().to_vec()?)?;
    }
    if !parsed.attachments.is_empty() {
        let adir = dir.join("attachments");
        mkdir(&adir)?;
        let raw: Vec<&str> = parsed.attachments.iter().map(|(n, _)| n.as_str()).collect();
        for (name, (_, bytes)) in attachment_names(&raw).iter().zip(&parsed.attachments) {
            write_new(&adir.join(name), bytes)?;
        }
    }
    Ok(())
}

/// One safe, distinct file name per attachment, in order: the safe form of
/// the name the record gives, and for a name already taken (ignoring ASCII
/// case) `2-name`, `3-name`… Each base name keeps its own counter, so `k`
/// attachments of one name cost O(k), not O(k²).
fn attachment_names(raw: &[&str]) -> Vec<String> {
    let mut used: HashSet<String> = HashSet::with_capacity(raw.len());
    let mut next: HashMap<String, usize> = HashMap::new();
    raw.iter()
        .enumerate()
        .map(|(i, raw)| {
            let base = safe_file_name(raw, &format!("attachment-{}", i + 1));
            if used.insert(base.to_ascii_lowercase()) {
                return base;
            }
            let n = next.entry(base.to_ascii_lowercase()).or_insert(2);
            loop {
                let name = format!("{n}-{base}");
                *n += 1;
                if used.insert(name.to_ascii_lowercase()) {
                    return name;
                }
            }
        })
        .collect()
}

/// Creates a new file (never follows or replaces an existing one).
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = durable::create_private_file(path)
        .with_context(|| format!("while creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("while writing {}", path.display()))
}

/// A record decrypted by an earlier run, for the CSV.
pub(super) fn reread(dir: &Path) -> Option<Parsed> {
    let json = serde_json::from_slice(&fs::read(dir.join("fields.json")).ok()?).ok()?;
    Some(Parsed {
        json: Some(json),
        ..Parsed::default()
    })
}

pub(super) fn add_row(rows: &mut BTreeMap<String, Vec<Row>>, dir: &Path, parsed: &Parsed) {
    let Some(json) = &parsed.json else { return };
    let form = json["form"]
        .as_str()
        .or(parsed.form.as_deref())
        .unwrap_or("unknown-form");
    let form = safe_file_name(form, "unknown-form");
    let receipt = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let received_at = json["received_at"].as_str().unwrap_or("").to_owned();
    let fields = json["fields"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
                        serde_json::Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect()
        })
        .unwrap_or_default();
    rows.entry(form).or_default().push(Row {
        receipt,
        received_at,
        fields,
    });
}

/// Writes `DIR/<form>.csv` (RFC 4180, CRLF), replacing an older one
/// atomically. Columns: receipt, received_at, then every field name in the
/// records' order (see [`csv_text`]).
pub(super) fn write_csv(out: &Path, form: &str, rows: &[Row]) -> anyhow::Result<()> {
    let text = csv_text(rows);
    let path = out.join(format!("{form}.csv"));
    let tmp = out.join(format!(".{form}.csv.tmp"));
    let _ = fs::remove_file(&tmp);
    write_new(&tmp, text.as_bytes())?;
    fs::rename(&tmp, &path).with_context(|| format!("while writing {}", path.display()))?;
    Ok(())
}

/// The CSV of `rows`. Columns keep the order the records give their fields
/// (the form's): a name first met in a later record goes right after the
/// one before it there, so a field left empty in the first record does not
/// move to the end. Columns are a linked list and positions a map, so the
/// time is linear in the cells written, whatever the number of names.
fn csv_text(rows: &[Row]) -> Zeroizing<String> {
    let mut first: Option<&str> = None;
    let mut next: HashMap<&str, Option<&str>> = HashMap::new();
    for row in rows {
        let mut before: Option<&str> = None;
        for (k, _) in &row.fields {
            let k = k.as_str();
            if !next.contains_key(k) {
                let after = match before {
                    Some(b) => next.insert(b, Some(k)).flatten(),
                    None => first.replace(k),
                };
                next.insert(k, after);
            }
            before = Some(k);
        }
    }
    let columns: Vec<&str> =
        std::iter::successors(first, |c| next.get(c).copied().flatten()).collect();
    let position: HashMap<&str, usize> = columns.iter().enumerate().map(|(i, c)| (*c, i)).collect();
    let mut text = Zeroizing::new(String::new());
    let mut header = vec![csv_cell("receipt"), csv_cell("received_at")];
    header.extend(columns.iter().map(|c| csv_cell(c)));
    text.push_str(&header.join(","));
    text.push_str("\r\n");
    for row in rows {
        // The first value of a name wins, as a search from the front would.
        let mut values: Vec<Option<&str>> = vec![None; columns.len()];
        for (k, v) in row.fields.iter().rev() {
            if let Some(&i) = position.get(k.as_str()) {
                values[i] = Some(v.as_str());
            }
        }
        let mut cells = Zeroizing::new(vec![csv_cell(&row.receipt), csv_cell(&row.received_at)]);
        cells.extend(values.iter().map(|v| csv_cell(v.unwrap_or(""))));
        text.push_str(&Zeroizing::new(cells.join(",")));
        text.push_str("\r\n");
    }
    text
}

/// One CSV cell: quoted when needed; a leading `=`, `+`, `-`, `@`, tab or
/// CR gets a `'` so a spreadsheet shows the text instead of running it as a
/// formula (the value comes from an anonymous submitter).
fn csv_cell(v: &str) -> String {
    let guarded = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_owned()
    };
    // `;` too: spreadsheets in many locales split CSV at `;`, and an
    // unquoted `x;=1+1` would put a formula in a cell of its own.
    if guarded.contains([',', ';', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

#[cfg(test)]
mod tests {
    use super::{Row, attachment_names, csv_cell, csv_text, write_record};

    #[test]
    fn reply_txt_and_the_key_come_only_from_the_server_s_headers() {
        use crate::replies::ReplyCode;
        use zeroize::Zeroizing;
        let tmp = tempfile::tempdir().expect("tempdir");
        let real = ReplyCode::generate().derive().expect("derive");
        let spoof = ReplyCode::generate().derive().expect("derive");
        let good = real.mailbox.to_string();
        let fpr = real.cert().fingerprint().to_hex();
        let part = |d: &crate::replies::Derived| {
            (
                Zeroizing::new("reply-key.asc".to_owned()),
                Zeroizing::new(d.cert_armored().into_bytes()),
            )
        };
        for (i, (mailbox, key, parts, written)) in [
            (
                Some(good.as_str()),
                Some(fpr.as_str()),
                vec![part(&spoof), part(&real)],
                true,
            ),
            (
                Some(good.as_str()),
                Some(fpr.as_str()),
                vec![part(&spoof)],
                false,
            ),
            (
                Some("../../etc/passwd"),
                Some(fpr.as_str()),
                vec![part(&real)],
                false,
            ),
            (Some(good.as_str()), None, vec![part(&real)], false),
            (None, None, vec![], false),
        ]
        .into_iter()
        .enumerate()
        {
            let dir = tmp.path().join(i.to_string());
            let parsed = crate::mime::Parsed {
                reply_mailbox: mailbox.map(str::to_owned),
                reply_key: key.map(str::to_owned),
                attachments: parts,
                ..crate::mime::Parsed::default()
            };
            write_record(&dir, b"x", &parsed).expect("write");
            let hint = std::fs::read_to_string(dir.join("reply.txt"));
            assert_eq!(hint.is_ok(), written, "case {i}");
            if let Ok(hint) = hint {
                assert!(
                    hint.starts_with(&format!("Reply-Mailbox: {good}\n")),
                    "{hint}"
                );
                let key = std::fs::read_to_string(dir.join("reply-key.asc")).expect("key");
                assert_eq!(key, real.cert_armored());
            }
        }
    }

    #[test]
    fn same_named_attachments_get_distinct_names_as_before() {
        let cases: &[(&[&str], &[&str])] = &[
            (
                &["a.txt", "a.txt", "A.TXT"],
                &["a.txt", "2-a.txt", "3-A.TXT"],
            ),
            (
                &["a.txt", "a.txt", "2-a.txt"],
                &["a.txt", "2-a.txt", "2-2-a.txt"],
            ),
            (
                &["2-a.txt", "a.txt", "a.txt"],
                &["2-a.txt", "a.txt", "3-a.txt"],
            ),
            (
                &["", "..", "attachment-1"],
                &["attachment-1", "attachment-2", "2-attachment-1"],
            ),
            (&["../x", "/x"], &["_x", "2-_x"]),
        ];
        for (raw, want) in cases {
            assert_eq!(&attachment_names(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn ten_thousand_same_named_attachments_are_named_in_linear_time() {
        let raw = vec!["same.txt"; 10_000];
        let started = std::time::Instant::now();
        let names = attachment_names(&raw);
        // The old loop restarted at 2 for each name: 35 s in a debug build.
        assert!(started.elapsed() < std::time::Duration::from_secs(3));
        let distinct: std::collections::HashSet<String> =
            names.iter().map(|n| n.to_ascii_lowercase()).collect();
        assert_eq!(distinct.len(), raw.len());
        assert_eq!(names[9_999], "10000-same.txt");
    }

    #[test]
    fn csv_columns_follow_the_records_field_order_and_cells_line_up() {
        let row = |receipt: &str, fields: &[(&str, &str)]| Row {
            receipt: receipt.into(),
            received_at: "t".into(),
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let rows = [
            row("r1", &[("b", "1"), ("a", "2")]),
            row("r2", &[("c", "3"), ("b", "4")]),
        ];
        assert_eq!(
            csv_text(&rows).as_str(),
            "receipt,received_at,c,b,a\r\nr1,t,,1,2\r\nr2,t,3,4,\r\n"
        );
        // A field left empty (so absent) in the first record keeps its place.
        let rows = [
            row("r1", &[("message", "m"), ("may_publish", "no")]),
            row(
                "r2",
                &[("message", "m"), ("contact", "c"), ("may_publish", "yes")],
            ),
        ];
        assert!(
            csv_text(&rows).starts_with("receipt,received_at,message,contact,may_publish\r\n"),
            "{}",
            csv_text(&rows).as_str()
        );
        // Many distinct field names (a crafted record) stay fast.
        let many: Vec<(String, String)> = (0..50_000)
            .map(|i| (format!("f{i}"), String::new()))
            .collect();
        let started = std::time::Instant::now();
        let text = csv_text(&[Row {
            receipt: "r".into(),
            received_at: "t".into(),
            fields: many,
        }]);
        assert!(started.elapsed() < std::time::Duration::from_secs(3));
        assert!(text.starts_with("receipt,received_at,f0,f1,"));
    }

    #[test]
    fn csv_cells_are_quoted_and_formulas_are_defused() {
        let cases = [
            ("plain", "plain"),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("two\nlines", "\"two\nlines\""),
            ("=HYPERLINK(\"x\")", "\"'=HYPERLINK(\"\"x\"\")\""),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("x;=1+1", "\"x;=1+1\""),
        ];
        for (v, want) in cases {
            assert_eq!(csv_cell(v), want, "{v:?}");
        }
    }
}
