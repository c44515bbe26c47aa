//! The `[replies]` table: how long staff answers to tipsters are kept, how
//! many a mailbox holds and how large one may be (`src/replies.rs`). Which
//! forms give reply codes is `replies = true` in their `[[forms]]` table.

use serde::Deserialize;

use super::Problem;

/// The `[replies]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepliesConfig {
    /// Delete an answer this many midnights (UTC) after it was pushed; 0:
    /// at the next purge.
    #[serde(default = "default_keep_days")]
    pub keep_days: u32,
    /// Most answers one mailbox holds; a push beyond it is refused (422).
    #[serde(default = "default_max_per_mailbox")]
    pub max_per_mailbox: usize,
    /// Largest answer (the OpenPGP message) a push may upload, in bytes.
    #[serde(default = "default_max_answer_bytes")]
    pub max_answer_bytes: u64,
}

impl Default for RepliesConfig {
    fn default() -> RepliesConfig {
        RepliesConfig {
            keep_days: default_keep_days(),
            max_per_mailbox: default_max_per_mailbox(),
            max_answer_bytes: default_max_answer_bytes(),
        }
    }
}

fn default_keep_days() -> u32 {
    30
}

fn default_max_per_mailbox() -> usize {
    20
}

fn default_max_answer_bytes() -> u64 {
    1 << 20
}

/// The largest `max_answer_bytes`: an answer is read into memory whole,
/// on the server and on the tipster's page.
pub const MAX_ANSWER_BYTES_LIMIT: u64 = 16 << 20;

/// The most one read of a full mailbox may hold: `max_per_mailbox` ×
/// `max_answer_bytes` (a read holds every answer's ciphertext, then its
/// plaintext beside it).
pub const MAX_MAILBOX_BYTES: u64 = 64 << 20;

impl RepliesConfig {
    /// Every value out of range, each with its key and the fix.
    pub(super) fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.keep_days > super::retention::MAX_DAYS {
            problems.push(Problem::new(
                "replies.keep_days",
                format!(
                    "must be at most {} (a hundred years)",
                    super::retention::MAX_DAYS
                ),
            ));
        }
        if self.max_per_mailbox == 0 || self.max_per_mailbox > 1000 {
            problems.push(Problem::new(
                "replies.max_per_mailbox",
                "must be between 1 and 1000",
            ));
        }
        if !(1024..=MAX_ANSWER_BYTES_LIMIT).contains(&self.max_answer_bytes) {
            problems.push(Problem::new(
                "replies.max_answer_bytes",
                format!("must be between 1024 and {MAX_ANSWER_BYTES_LIMIT}"),
            ));
        } else if (self.max_per_mailbox as u64).saturating_mul(self.max_answer_bytes)
            > MAX_MAILBOX_BYTES
        {
            problems.push(Problem::new(
                "replies.max_answer_bytes",
                format!(
                    "times max_per_mailbox must be at most {MAX_MAILBOX_BYTES} (64 MiB): a read \
                     of a full mailbox holds every answer in memory; lower one of them"
                ),
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{MINIMAL, parse};

    #[test]
    fn replies_out_of_range_and_forms_that_cannot_take_follow_ups_are_refused() {
        let replies_on = MINIMAL.replace(
            "title = \"Send a tip\"",
            "title = \"Send a tip\"\nreplies = true",
        );
        parse(&replies_on).expect("a replies form with a message field is fine");
        let cases = [
            (
                format!("{MINIMAL}\n[replies]\nmax_per_mailbox = 0\n"),
                "replies.max_per_mailbox",
            ),
            (
                format!("{MINIMAL}\n[replies]\nkeep_days = 4000000000\n"),
                "replies.keep_days",
            ),
            (
                format!("{MINIMAL}\n[retention]\nacked_days = 36501\n"),
                "retention.acked_days",
            ),
            (
                format!("{MINIMAL}\n[replies]\nmax_answer_bytes = 100\n"),
                "replies.max_answer_bytes",
            ),
            (
                format!(
                    "{MINIMAL}\n[replies]\nmax_per_mailbox = 100\nmax_answer_bytes = 1048576\n"
                ),
                "replies.max_answer_bytes",
            ),
            (
                MINIMAL
                    .replace(
                        "title = \"Send a tip\"",
                        "title = \"Send a tip\"\nreplies = true",
                    )
                    .replace("name = \"message\"", "name = \"text\""),
                "forms[0].replies",
            ),
            (
                format!(
                    "{}\n[[forms.fields]]\nname = \"consent\"\nlabel = \"C\"\nkind = \"checkbox\"\nrequired = true\n",
                    MINIMAL.replace(
                        "title = \"Send a tip\"",
                        "title = \"Send a tip\"\nreplies = true"
                    )
                ),
                "forms[0].replies",
            ),
        ];
        for (text, key) in cases {
            let e = parse(&text).expect_err(key).to_string();
            assert!(e.contains(key), "expected {key} in {e}");
        }
    }
}
