//! The digest's plaintext: a MIME entity (`text/plain`) saying what a
//! [`Summary`] says, padded to exactly [`DIGEST_BYTES`] whatever it says,
//! so that its ciphertext has one size every day.

use std::fmt::Write as _;

use super::census::FormCount;

/// The size of every digest's plaintext, headers of the inner entity
/// included.
pub const DIGEST_BYTES: usize = 8192;

/// At most this many forms get a line; the rest are summed up in one.
pub const MAX_FORM_LINES: usize = 40;

/// What a digest says.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// The slot's day, `YYYY-MM-DD`.
    pub day: String,
    /// The slot's time of day, `HH:MM[:SS]` UTC (as configured).
    pub at: String,
    /// Per form, as `super::census::count_forms` counts them.
    pub forms: Vec<FormCount>,
    /// Certificates that expire within 30 days: (fingerprint, whole days left).
    pub expiring: Vec<(String, u64)>,
    /// Free and total bytes where `data_dir` is.
    pub space: Option<(u64, u64)>,
    /// Failures since the last digest.
    pub failures: Failures,
}

/// Failures since the last digest, as counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failures {
    /// Errors logged by the server.
    pub errors: u64,
    /// Warnings logged by the server.
    pub warnings: u64,
    /// Attempts to deliver a digest that failed (each retried).
    pub deliveries: u64,
    /// Readers who got no digest (certificate expired or gone).
    pub readers_skipped: u64,
}

const HEAD: &str =
    "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n";

/// The padded plaintext of `summary`: always [`DIGEST_BYTES`] long. Forms
/// beyond [`MAX_FORM_LINES`], or beyond what fits, are left out and counted
/// in a last line.
pub fn render(summary: &Summary) -> Vec<u8> {
    let mut shown = summary.forms.len().min(MAX_FORM_LINES);
    loop {
        let text = text(summary, shown);
        if HEAD.len() + text.len() <= DIGEST_BYTES || shown == 0 {
            return pad(text);
        }
        shown -= 1;
    }
}

/// `HEAD` and `text`, cut or padded to [`DIGEST_BYTES`]. The padding is
/// lines of spaces (at most 76 each, as mail lines should be), which mail
/// readers show as nothing.
fn pad(text: String) -> Vec<u8> {
    let mut out = Vec::with_capacity(DIGEST_BYTES);
    out.extend_from_slice(HEAD.as_bytes());
    out.extend_from_slice(text.as_bytes());
    if out.len() > DIGEST_BYTES - 2 {
        out.truncate(DIGEST_BYTES - 2);
        out.extend_from_slice(b"\r\n");
    }
    while out.len() + 2 <= DIGEST_BYTES {
        let spaces = (DIGEST_BYTES - out.len() - 2).min(76);
        out.resize(out.len() + spaces, b' ');
        out.extend_from_slice(b"\r\n");
    }
    out.resize(DIGEST_BYTES, b' ');
    out
}

fn text(summary: &Summary, shown: usize) -> String {
    let mut t = String::new();
    let _ = write!(
        t,
        "sealform daily digest, {} {} UTC\r\n\r\nForms (arrived since the last digest; not \
         acknowledged yet; oldest of those):\r\n",
        summary.day, summary.at
    );
    for c in summary.forms.iter().take(shown) {
        let name = c.form.as_deref().unwrap_or("(form not recorded)");
        let oldest = c.oldest_unread.as_deref().unwrap_or("-");
        let _ = write!(
            t,
            "  {name}: {} new, {} unread, oldest unread {oldest}\r\n",
            c.new, c.unread
        );
    }
    if shown < summary.forms.len() {
        let rest = &summary.forms[shown..];
        let (new, unread) = rest.iter().fold((0u64, 0u64), |(n, u), c| {
            (n.saturating_add(c.new), u.saturating_add(c.unread))
        });
        let _ = write!(
            t,
            "  ... {} more form(s) not listed: {new} new, {unread} unread\r\n",
            rest.len()
        );
    }
    t.push_str("\r\nCertificates expiring within 30 days:");
    if summary.expiring.is_empty() {
        t.push_str(" none\r\n");
    } else {
        t.push_str("\r\n");
        for (fpr, days) in summary.expiring.iter().take(8) {
            let _ = write!(t, "  {fpr}: {days} day(s) left\r\n");
        }
        if summary.expiring.len() > 8 {
            let _ = write!(t, "  ... and {} more\r\n", summary.expiring.len() - 8);
        }
    }
    match summary.space {
        Some((free, total)) => {
            let pct = free.saturating_mul(100).checked_div(total).unwrap_or(0);
            let _ = write!(
                t,
                "\r\nFree space in data_dir: {:.1} GiB of {:.1} GiB ({pct}%)\r\n",
                gib(free),
                gib(total)
            );
        }
        None => t.push_str("\r\nFree space in data_dir: unknown (statvfs failed)\r\n"),
    }
    let f = summary.failures;
    let _ = write!(
        t,
        "\r\nFailures since the last digest:\r\n  errors logged: {}\r\n  warnings logged: \
         {}\r\n  failed attempts to deliver the digest: {}\r\n  readers skipped: {}\r\n\r\n\
         This message has the same size every day; its absence is the alarm.\r\n",
        f.errors, f.warnings, f.deliveries, f.readers_skipped
    );
    t
}

fn gib(bytes: u64) -> f64 {
    // Display only: the precision lost above 2^53 bytes does not matter.
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    b / f64::from(1u32 << 30)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(i: usize, n: u64) -> FormCount {
        FormCount {
            form: Some(format!("{}{i}", "f".repeat(60))),
            new: n,
            unread: n * 1000,
            oldest_unread: Some("2026-01-01".into()),
        }
    }

    #[test]
    fn every_digest_has_the_same_size_whatever_it_says() {
        let empty = render(&Summary::default());
        let full = Summary {
            day: "2026-12-07".into(),
            at: "07:00".into(),
            forms: (0..500).map(|i| form(i, u64::MAX / 2000)).collect(),
            expiring: (0..20).map(|i| (format!("{i:040}"), 3)).collect(),
            space: Some((u64::MAX, u64::MAX)),
            failures: Failures {
                errors: u64::MAX,
                warnings: u64::MAX,
                deliveries: u64::MAX,
                readers_skipped: u64::MAX,
            },
        };
        let big = render(&full);
        assert_eq!(empty.len(), DIGEST_BYTES);
        assert_eq!(big.len(), DIGEST_BYTES);
        let text = String::from_utf8(big).expect("utf-8");
        assert!(text.contains("more form(s) not listed"), "{text}");
        assert!(text.contains("This message has the same size"), "{text}");
        assert!(empty.split(|b| *b == b'\n').all(|line| line.len() <= 78));
    }

    #[test]
    fn a_few_forms_are_all_listed_with_their_counts() {
        let summary = Summary {
            day: "2026-12-07".into(),
            at: "07:00".into(),
            forms: vec![
                form(1, 3),
                FormCount {
                    form: None,
                    new: 0,
                    unread: 2,
                    oldest_unread: Some("2026-11-30".into()),
                },
            ],
            ..Summary::default()
        };
        let text = String::from_utf8(render(&summary)).expect("utf-8");
        let name = format!("{}1", "f".repeat(60));
        assert!(
            text.contains(&format!(
                "  {name}: 3 new, 3000 unread, oldest unread 2026-01-01\r\n"
            )),
            "{text}"
        );
        assert!(text.contains("  (form not recorded): 0 new, 2 unread, oldest unread 2026-11-30"));
        assert!(!text.contains("not listed"));
    }
}
