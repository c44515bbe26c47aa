//! The digest task `serve` runs: it sleeps until the daily slot
//! (`notify.at`, UTC), prepares the round on a blocking thread (never in the
//! way of a submission), sends it, and retries what failed with backoff
//! until the next slot. What it keeps is in memory only: the receipts the
//! last digest saw, and per reader the time of the last successful digest
//! (the [`Ledger`], owned by the server's state in `src/http.rs`, which
//! hands it to [`spawn`] and to the staff status route).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Channel, Failures, Since, attempt, census, deliveries, prepare};
use crate::api::staff::ReaderStatus;
use crate::config::NotifyConfig;
use crate::intake::Intake;
use crate::keys::canonical_fingerprint;
use crate::receipt::Receipt;
use crate::store::{day_string, start_of_day};

/// The first retry of a failed delivery comes this long after it.
const FIRST_RETRY: Duration = Duration::from_secs(2);
/// Retries back off, doubling, up to this long between two.
const MAX_RETRY: Duration = Duration::from_secs(300);
/// Seconds in a day.
const DAY: u64 = 86_400;

/// The first slot strictly after `now`, for a slot `slot_secs` after
/// 00:00 UTC.
pub fn next_slot(now: SystemTime, slot_secs: u32) -> SystemTime {
    let last = last_slot(now, slot_secs);
    last + Duration::from_secs(DAY)
}

/// The last slot at or before `now`.
pub fn last_slot(now: SystemTime, slot_secs: u32) -> SystemTime {
    let today = start_of_day(now) + Duration::from_secs(u64::from(slot_secs));
    if today <= now {
        today
    } else {
        let yesterday = today.checked_sub(Duration::from_secs(DAY));
        yesterday.unwrap_or(UNIX_EPOCH).max(UNIX_EPOCH)
    }
}

/// The digest's state per reader, in memory only.
pub struct Ledger {
    readers: Mutex<Vec<ReaderStatus>>,
}

impl Ledger {
    /// Every reader of `notify` with no digest yet (created with the
    /// server's state, `src/http.rs`, and handed to [`spawn`]).
    pub fn new(notify: &NotifyConfig) -> Ledger {
        let readers = notify
            .readers
            .iter()
            .enumerate()
            .map(|(reader, r)| ReaderStatus {
                reader,
                fingerprint: r.fingerprint.as_deref().map(canonical_fingerprint),
                last_digest: None,
                problem: None,
            })
            .collect();
        Ledger {
            readers: Mutex::new(readers),
        }
    }

    /// Every reader's status, in `notify.readers` order.
    pub fn snapshot(&self) -> Vec<ReaderStatus> {
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn update(&self, reader: usize, f: impl FnOnce(&mut ReaderStatus)) {
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = readers.get_mut(reader) {
            f(r);
        }
    }
}

/// What the task remembers from one slot to the next.
#[derive(Default)]
struct Memory {
    /// The receipts the last digest every reader got counted (`None`
    /// before the first).
    seen: Option<HashSet<Receipt>>,
    /// Without `seen`: the slot of the first digest that some reader did
    /// not get, whose day the next one counts from, so nothing it counted
    /// as new is lost.
    undelivered_since: Option<SystemTime>,
    /// Errors and warnings logged when the last digest was prepared.
    logged: (u64, u64),
    /// Failed delivery attempts and skipped readers since then.
    deliveries: u64,
    readers_skipped: u64,
    /// (reader, reason) pairs already logged, each logged once.
    reported: HashSet<(usize, String)>,
}

impl Memory {
    /// What the next digest counts as new: after one every reader got,
    /// what it did not count (`counted`); after one some reader missed (`counted` is
    /// `None`), what this one counted too, for everyone, rather than lose
    /// it for that reader: since the receipts of the last digest everyone
    /// got (`previous`), or without those since the day before `since_slot`.
    fn remember(
        &mut self,
        previous: Option<HashSet<Receipt>>,
        counted: Option<HashSet<Receipt>>,
        since_slot: SystemTime,
    ) {
        match (counted, previous) {
            (Some(counted), _) => {
                self.seen = Some(counted);
                self.undelivered_since = None;
            }
            (None, Some(previous)) => self.seen = Some(previous),
            (None, None) => self.undelivered_since = Some(since_slot),
        }
    }
}

/// Starts the digest task of `serve`, when `[notify]` is configured; it
/// writes each reader's state to `ledger`.
pub fn spawn(intake: Arc<Intake>, ledger: Arc<Ledger>) {
    let Some(notify) = intake.config.notify.clone() else {
        return;
    };
    let Ok(slot_secs) = notify.slot_secs() else {
        return; // refused when the config was loaded
    };
    tracing::info!(
        "digest: daily at {} UTC to {} reader(s)",
        notify.at,
        notify.readers.len()
    );
    tokio::spawn(async move {
        let mut memory = Memory {
            logged: census::logged_failures(),
            ..Memory::default()
        };
        loop {
            let slot = next_slot(SystemTime::now(), slot_secs);
            let wait = slot.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::time::sleep(wait).await;
            run_slot(&intake, &notify, slot, &mut memory, &ledger).await;
        }
    });
}

/// One slot: prepare the round, then send it, retrying until the next slot.
async fn run_slot(
    intake: &Arc<Intake>,
    notify: &NotifyConfig,
    slot: SystemTime,
    memory: &mut Memory,
    ledger: &Ledger,
) {
    let logged = census::logged_failures();
    let failures = Failures {
        errors: logged.0.saturating_sub(memory.logged.0),
        warnings: logged.1.saturating_sub(memory.logged.1),
        deliveries: memory.deliveries,
        readers_skipped: memory.readers_skipped,
    };
    let seen = memory.seen.take();
    let since_slot = memory.undelivered_since.unwrap_or(slot);
    let (job_intake, job_notify) = (Arc::clone(intake), notify.clone());
    let prepared = tokio::task::spawn_blocking(move || {
        let previous = day_string(since_slot - Duration::from_secs(DAY));
        let since = seen.as_ref().map_or(Since::Day(previous), Since::Seen);
        let round = prepare(
            &job_intake.config,
            &job_notify,
            &job_intake.store,
            &since,
            failures,
            slot,
        );
        (round, seen)
    })
    .await;
    let (round, seen) = match prepared {
        Ok((Ok(round), seen)) => (round, seen),
        Ok((Err(e), seen)) => {
            memory.remember(seen, None, since_slot);
            tracing::error!(error = %e, "digest: could not be prepared; next try at the next slot");
            return;
        }
        Err(e) => {
            memory.remember(None, None, since_slot);
            tracing::error!(error = %e, "digest: could not be prepared; next try at the next slot");
            return;
        }
    };
    memory.logged = census::logged_failures();
    memory.readers_skipped = round.skipped.len() as u64;
    for s in &round.skipped {
        ledger.update(s.index, |r| r.problem = Some(s.reason.clone()));
        if memory.reported.insert((s.index, s.reason.clone())) {
            tracing::error!(
                "digest: notify.readers[{}] gets nothing: {}",
                s.index,
                s.reason
            );
        }
    }
    for l in &round.letters {
        ledger.update(l.reader, |r| {
            r.fingerprint = Some(l.fingerprint.clone());
            r.problem = None;
        });
    }
    let (attempts, every_mail_delivered) = send_with_retries(notify, &round, slot, ledger).await;
    memory.deliveries = attempts;
    memory.remember(seen, every_mail_delivered.then_some(round.seen), since_slot);
}

/// Sends every delivery of `round`, retrying the failed ones with backoff
/// until the next slot; returns the number of failed attempts, and whether
/// every reader's mail went out in the end.
async fn send_with_retries(
    notify: &NotifyConfig,
    round: &super::Round,
    slot: SystemTime,
    ledger: &Ledger,
) -> (u64, bool) {
    let give_up = slot + Duration::from_secs(DAY) - MAX_RETRY;
    let mut pending = deliveries(notify, round);
    let mut wait = FIRST_RETRY;
    let mut failed_attempts = 0;
    loop {
        let failed = attempt(notify, round, &pending).await;
        let now = SystemTime::now();
        for &(i, channel) in &pending {
            if channel == Channel::Mail && !failed.iter().any(|(j, c, _)| *j == i && *c == channel)
            {
                let at = chrono::DateTime::<chrono::Utc>::from(now)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                ledger.update(round.letters[i].reader, |r| r.last_digest = Some(at));
            }
        }
        if failed.is_empty() {
            tracing::info!("digest: delivered to every reader");
            return (failed_attempts, true);
        }
        failed_attempts += failed.len() as u64;
        let stop = now + wait >= give_up;
        for (i, channel, error) in &failed {
            tracing::warn!(
                "digest: {} to notify.readers[{}] failed ({error}); {}",
                channel.name(),
                round.letters[*i].reader,
                if stop {
                    "giving up until the next slot".to_owned()
                } else {
                    format!("retrying in {} s", wait.as_secs())
                }
            );
        }
        if stop {
            let mail_failed = failed.iter().any(|(_, c, _)| *c == Channel::Mail);
            return (failed_attempts, !mail_failed);
        }
        pending = failed.into_iter().map(|(i, c, _)| (i, c)).collect();
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_RETRY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_reader_missed_is_counted_again_by_the_next_digest() {
        let slot = UNIX_EPOCH + Duration::from_secs(20_000 * DAY);
        let counted: HashSet<Receipt> = [Receipt::random()].into();
        let mut memory = Memory::default();
        // The first digest after a start reaches nobody: the next one counts
        // from the day before it, not from the day before its own slot.
        memory.remember(None, None, slot);
        assert_eq!(
            (memory.seen.is_none(), memory.undelivered_since),
            (true, Some(slot))
        );
        // Delivered: what it counted is not new next time.
        memory.remember(None, Some(counted.clone()), slot);
        assert_eq!(memory.seen.as_ref(), Some(&counted));
        assert_eq!(memory.undelivered_since, None);
        // Missed by a reader: the receipts of the last digest everyone got stay.
        let previous = memory.seen.take();
        memory.remember(previous, None, slot);
        assert_eq!(memory.seen.as_ref(), Some(&counted));
    }

    #[test]
    fn the_slot_is_the_configured_time_of_day_utc() {
        let midnight = UNIX_EPOCH + Duration::from_secs(20_000 * DAY);
        let seven = 7 * 3600;
        let at = |s: u64| midnight + Duration::from_secs(s);
        assert_eq!(next_slot(at(0), seven), at(u64::from(seven)));
        assert_eq!(
            next_slot(at(u64::from(seven)), seven),
            at(DAY + u64::from(seven))
        );
        assert_eq!(last_slot(at(u64::from(seven)), seven), at(u64::from(seven)));
        assert_eq!(
            last_slot(at(3600), seven),
            at(0) - Duration::from_secs(DAY - u64::from(seven))
        );
        assert_eq!(next_slot(at(DAY - 1), 0), at(DAY));
    }
}
