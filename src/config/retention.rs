//! The `[retention]` table: how long records are kept. Nothing is deleted
//! unless asked.

use serde::Deserialize;

use super::Problem;

/// The `[retention]` table. Nothing is deleted unless asked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Delete the index entries of acknowledged records this many days after
    /// they were acknowledged (their files are already gone).
    #[serde(default)]
    pub acked_days: Option<u32>,
    /// Delete records never acknowledged this many days after they arrived.
    /// Off by default: an unread tip is never deleted unless the operator
    /// asks.
    #[serde(default)]
    pub unacked_days: Option<u32>,
}

/// The most days any retention setting may give (`[retention]`,
/// `[replies] keep_days`): a hundred years, far inside the calendar the
/// day arithmetic handles.
pub const MAX_DAYS: u32 = 36_500;

impl RetentionConfig {
    /// Every value out of range, each with its key and the fix.
    pub(super) fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.unacked_days == Some(0) {
            problems.push(Problem::new(
                "retention.unacked_days",
                "0 would delete unread records at the first midnight after they arrive; leave \
                 the key out to keep unread records, or give the days to keep them (at least 1)",
            ));
        }
        for (key, days) in [
            ("retention.acked_days", self.acked_days),
            ("retention.unacked_days", self.unacked_days),
        ] {
            if days.is_some_and(|d| d > MAX_DAYS) {
                problems.push(Problem::new(
                    key,
                    format!("must be at most {MAX_DAYS} (a hundred years)"),
                ));
            }
        }
        problems
    }
}
