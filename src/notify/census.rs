//! What the digest counts, from the store's index and nothing else: per
//! form the records that arrived since the last digest and those still
//! unread, the oldest unread day; free space in `data_dir`; failures logged.
//! No record is opened (there is no plaintext to open), and the index holds
//! nothing finer than the day, so neither does a census.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::config::Config;
use crate::receipt::Receipt;
use crate::store::{IndexEntry, RecordState};

/// One form's line of the digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormCount {
    /// The form's id; `None` for records indexed without their form (before
    /// `[notify]` was set, or indexed again from their spool file).
    pub form: Option<String>,
    /// Records that arrived since the last digest.
    pub new: u64,
    /// Records not acknowledged yet (new or exported).
    pub unread: u64,
    /// The day of the oldest of those, `YYYY-MM-DD`.
    pub oldest_unread: Option<String>,
}

/// Which records count as arrived since the last digest.
pub enum Since<'a> {
    /// Those not among the receipts the last digest of this process saw.
    Seen(&'a HashSet<Receipt>),
    /// Without a last digest in memory (the first one after a start, or
    /// `sealform notify --now`): those of this day or later, the day of the
    /// previous slot; the index knows no finer time.
    Day(String),
}

impl Since<'_> {
    fn includes(&self, receipt: &Receipt, entry: &IndexEntry) -> bool {
        match self {
            Since::Seen(seen) => !seen.contains(receipt),
            Since::Day(day) => entry.day.as_str() >= day.as_str(),
        }
    }
}

/// Counts `entries` per form: every form of `config` in its order (a form
/// without records too), then forms no longer configured, then records
/// without a form.
pub fn count_forms(
    config: &Config,
    entries: &[(Receipt, IndexEntry)],
    since: &Since<'_>,
) -> Vec<FormCount> {
    let mut by_form: BTreeMap<Option<&str>, FormCount> = BTreeMap::new();
    for (receipt, e) in entries {
        let form = e.form.as_deref();
        let c = by_form.entry(form).or_insert_with(|| FormCount {
            form: form.map(str::to_owned),
            new: 0,
            unread: 0,
            oldest_unread: None,
        });
        if since.includes(receipt, e) {
            c.new += 1;
        }
        if e.state != RecordState::Acked {
            c.unread += 1;
            if c.oldest_unread.as_ref().is_none_or(|d| e.day < *d) {
                c.oldest_unread = Some(e.day.clone());
            }
        }
    }
    let mut out: Vec<FormCount> = config
        .forms
        .iter()
        .map(|f| {
            by_form
                .remove(&Some(f.id.as_str()))
                .unwrap_or_else(|| FormCount {
                    form: Some(f.id.clone()),
                    new: 0,
                    unread: 0,
                    oldest_unread: None,
                })
        })
        .collect();
    let unformed = by_form.remove(&None);
    out.extend(by_form.into_values());
    out.extend(unformed);
    out
}

/// Free and total bytes of the file system holding `dir`.
pub fn free_space(dir: &Path) -> Option<(u64, u64)> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some((
        s.f_bavail.saturating_mul(s.f_frsize),
        s.f_blocks.saturating_mul(s.f_frsize),
    ))
}

/// Errors and warnings logged by this process (all of its failures are
/// logged once, where they are handled), counted by [`FailureCounter`].
static ERRORS: AtomicU64 = AtomicU64::new(0);
static WARNINGS: AtomicU64 = AtomicU64::new(0);

/// A `tracing` layer that counts the errors and warnings logged, so the
/// digest can say how many failures there were since the last one without
/// keeping any of their text. Installed by the CLI's logging set-up.
pub struct FailureCounter;

impl<S: Subscriber> Layer<S> for FailureCounter {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        match *event.metadata().level() {
            Level::ERROR => ERRORS.fetch_add(1, Ordering::Relaxed),
            Level::WARN => WARNINGS.fetch_add(1, Ordering::Relaxed),
            _ => return,
        };
    }
}

/// Errors and warnings logged so far: (errors, warnings).
pub fn logged_failures() -> (u64, u64) {
    (
        ERRORS.load(Ordering::Relaxed),
        WARNINGS.load(Ordering::Relaxed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(day: &str, state: RecordState, form: Option<&str>) -> IndexEntry {
        IndexEntry {
            day: day.into(),
            size: 4096,
            state,
            recipients: Vec::new(),
            form: form.map(str::to_owned),
            acked_day: None,
        }
    }

    #[test]
    fn records_are_counted_per_form_with_the_oldest_unread_day() {
        let config = crate::config::Config::parse(
            include_str!("../../config.example.toml"),
            Path::new("c.toml"),
        )
        .expect("example config");
        let first = config.forms[0].id.clone();
        let entries = vec![
            (
                Receipt::random(),
                entry("2026-01-02", RecordState::New, Some(&first)),
            ),
            (
                Receipt::random(),
                entry("2026-01-01", RecordState::Exported, Some(&first)),
            ),
            (
                Receipt::random(),
                entry("2025-12-01", RecordState::Acked, Some(&first)),
            ),
            (
                Receipt::random(),
                entry("2026-01-02", RecordState::New, Some("gone")),
            ),
            (
                Receipt::random(),
                entry("2025-01-01", RecordState::New, None),
            ),
        ];
        let counts = count_forms(&config, &entries, &Since::Day("2026-01-02".into()));
        assert_eq!(counts.len(), config.forms.len() + 2);
        assert_eq!(
            counts[0],
            FormCount {
                form: Some(first),
                new: 1,
                unread: 2,
                oldest_unread: Some("2026-01-01".into()),
            }
        );
        assert!(counts[1..config.forms.len()].iter().all(|c| c.unread == 0));
        assert_eq!(counts[config.forms.len()].form.as_deref(), Some("gone"));
        let last = counts.last().expect("unformed");
        assert_eq!((last.form.as_deref(), last.new, last.unread), (None, 0, 1));
        // With the receipts of a last digest, what it saw is not new.
        let seen: HashSet<Receipt> = entries[..1].iter().map(|(r, _)| *r).collect();
        let counts = count_forms(&config, &entries, &Since::Seen(&seen));
        assert_eq!(counts[0].new, 2);
    }
}
