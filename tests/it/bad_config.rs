//! A refused config names every problem at once: `sealform check` and
//! `sealform serve` list each (the file, the key, the fix) and exit 1, so
//! that an operator fixes them in one pass instead of one per start.

use crate::support::*;

/// The three mistakes, one per table, and the words each must be reported with.
const MISTAKES: [(&str, &str); 3] = [
    (
        "server.max_body_bytes",
        "must be from 1024 to 67108864 (64 MiB)",
    ),
    (
        "retention.unacked_days",
        "0 would delete unread records at the first midnight",
    ),
    (
        "forms[0].fields[1].options",
        "only select fields take options, this is text",
    ),
];

/// A fixture with the default forms, except that `contact` (a text field)
/// has options; with `server_extra` and `tables`.
fn fixture(server_extra: &str, tables: &str, bad_field: bool) -> Fixture {
    let forms = if bad_field {
        DEFAULT_FORMS.replace(
            "kind = \"text\"\n  max_len = 200",
            "kind = \"text\"\n  max_len = 200\n  options = [\"a\"]",
        )
    } else {
        DEFAULT_FORMS.to_owned()
    };
    let tables = format!("{TEST_TABLES}\n{tables}");
    Fixture::with_tables(&[TestKey::Ed25519], &forms, server_extra, &tables)
}

#[test]
fn check_and_serve_report_every_config_problem_at_once() {
    let fx = fixture(
        "max_body_bytes = 10",
        "[retention]\nunacked_days = 0\n",
        true,
    );
    let config = fx.config_path();
    let path = config.to_str().expect("utf-8 path");
    let (code, out, err) = sealform(&["check", "--config", path]);
    assert_eq!(code, 1, "{out}{err}");
    for (key, words) in MISTAKES {
        let line = err
            .lines()
            .find(|l| l.contains(&format!("`{key}`")))
            .unwrap_or_else(|| panic!("check does not name {key}:\n{err}"));
        assert!(line.starts_with("sealform: error: "), "{line}");
        assert!(line.contains(path), "the file is not named: {line}");
        assert!(line.contains(words), "{key}: {line}");
    }
    assert!(
        err.contains("3 problem(s) in the config"),
        "no count in:\n{err}"
    );
    assert!(!out.contains("(ok)"), "{out}");

    let (code, out, err) = sealform(&["serve", "--config", path]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("3 config problem(s)"), "{err}");
    for (key, words) in MISTAKES {
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("`{key}`")) && l.contains(words) && l.contains(path)),
            "serve does not name {key}:\n{err}"
        );
    }
}

#[test]
fn a_single_config_problem_is_one_line_as_before() {
    let fx = fixture("", "[retention]\nunacked_days = 0\n", false);
    let config = fx.config_path();
    let path = config.to_str().expect("utf-8 path");
    let (code, _, err) = sealform(&["check", "--config", path]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err,
        format!(
            "sealform: error: {path}: `retention.unacked_days` 0 would delete unread records at \
             the first midnight after they arrive; leave the key out to keep unread records, or \
             give the days to keep them (at least 1)\n"
        )
    );
}
