//! The daily digest to staff (`[notify]`): once a day, at a fixed time,
//! every reader gets a message saying what arrived, encrypted to their
//! certificate alone, of the same size whatever it says, also when nothing
//! arrived (so its absence is the alarm). The mail provider learns that a
//! digest was sent each day and its fixed size; nothing else.
//!
//! This module owns one round of digests ([`prepare`], then [`attempt`]);
//! its parts are `census.rs` (counting from the store's index),
//! `digest.rs` (the padded plaintext), `readers.rs` (each reader's
//! certificate, validated at the time of the digest), `mail.rs` (the
//! PGP/MIME message, the relay, the webhook) and `schedule.rs` (the task
//! `serve` runs: the daily slot, retries, the status staff see). It never
//! sees a submission's content: there is none outside the ciphertext, and
//! the counts come from the index, which knows days, states and forms.

mod census;
mod digest;
mod mail;
mod readers;
mod schedule;

use std::collections::HashSet;
use std::time::SystemTime;

use crate::config::{Config, NotifyConfig};
use crate::receipt::Receipt;
use crate::store::{RecordStore, day_string};

pub use census::{FailureCounter, Since};
pub use digest::Failures;
pub use readers::{Skipped, check_lines};
pub use schedule::{Ledger, last_slot, spawn};

/// One reader's digest of a round, ready to send.
pub struct Letter {
    /// The reader's position in `notify.readers`.
    pub reader: usize,
    /// The certificate it is encrypted to.
    pub fingerprint: String,
    /// The reader's address (never logged).
    pub address: String,
    /// The ciphertext, ASCII-armored (the webhook's body).
    pub armored: String,
    /// The PGP/MIME message around it.
    pub message: lettre::Message,
}

/// One slot's digests: a letter per reader whose certificate is usable,
/// and the readers skipped.
pub struct Round {
    /// The letters.
    pub letters: Vec<Letter>,
    /// The readers who get nothing, and why.
    pub skipped: Vec<Skipped>,
    /// Every receipt the census counted (what is not new next time).
    pub seen: HashSet<Receipt>,
}

/// Where a letter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// To the reader's address, through the relay.
    Mail,
    /// To `notify.webhook_url`.
    Webhook,
}

impl Channel {
    /// For the log.
    pub fn name(self) -> &'static str {
        match self {
            Channel::Mail => "mail",
            Channel::Webhook => "webhook",
        }
    }
}

/// Counts the store's records and builds each reader's digest for the slot
/// at `slot`. Blocking (the index, the keys, encryption): call it from a
/// blocking thread.
pub fn prepare(
    config: &Config,
    notify: &NotifyConfig,
    store: &RecordStore,
    since: &Since<'_>,
    failures: Failures,
    slot: SystemTime,
) -> Result<Round, String> {
    let now = SystemTime::now();
    let entries = store
        .list()
        .map_err(|e| format!("reading the index: {e}"))?;
    let resolved = readers::resolve(config, notify, now);
    let summary = digest::Summary {
        day: day_string(slot),
        at: notify.at.clone(),
        forms: census::count_forms(config, &entries, since),
        expiring: resolved.expiring,
        space: census::free_space(&config.server.data_dir),
        failures,
    };
    let plaintext = zeroize::Zeroizing::new(digest::render(&summary));
    let mut letters = Vec::new();
    for r in resolved.readers {
        let fingerprint = r.cert.fingerprint().to_hex();
        let armored = mail::encrypt(&plaintext, &r.cert)
            .map_err(|e| format!("encrypting to {fingerprint}: {e}"))?;
        let message = mail::message(notify, &r.address, &armored, slot)
            .map_err(|e| format!("notify.readers[{}]: {e}", r.index))?;
        letters.push(Letter {
            reader: r.index,
            fingerprint,
            address: r.address,
            armored,
            message,
        });
    }
    Ok(Round {
        letters,
        skipped: resolved.skipped,
        seen: entries.into_iter().map(|(r, _)| r).collect(),
    })
}

/// What a round sends: each letter by mail, and to the webhook when there
/// is one.
pub fn deliveries(notify: &NotifyConfig, round: &Round) -> Vec<(usize, Channel)> {
    let channels: &[Channel] = if notify.webhook_url.is_some() {
        &[Channel::Mail, Channel::Webhook]
    } else {
        &[Channel::Mail]
    };
    (0..round.letters.len())
        .flat_map(|i| channels.iter().map(move |c| (i, *c)))
        .collect()
}

/// Tries each of `pending` (letter index, channel) once; returns those that
/// failed with the reason, addresses hidden.
pub async fn attempt(
    notify: &NotifyConfig,
    round: &Round,
    pending: &[(usize, Channel)],
) -> Vec<(usize, Channel, String)> {
    let hide: Vec<&str> = round
        .letters
        .iter()
        .map(|l| l.address.as_str())
        .chain([notify.from.as_str()])
        .collect();
    let transport = pending
        .iter()
        .any(|(_, c)| *c == Channel::Mail)
        .then(|| mail::transport(notify));
    let mut failed = Vec::new();
    for &(i, channel) in pending {
        let letter = &round.letters[i];
        let outcome = match (channel, &transport, &notify.webhook_url) {
            (Channel::Mail, Some(Ok(t)), _) => mail::send(t, letter.message.clone(), &hide).await,
            (Channel::Mail, Some(Err(e)), _) => Err(e.clone()),
            (Channel::Webhook, _, Some(url)) => mail::post_webhook(url, &letter.armored).await,
            _ => Ok(()),
        };
        if let Err(e) = outcome {
            failed.push((i, channel, mail::redact(&e, &hide)));
        }
    }
    failed
}
