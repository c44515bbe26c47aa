//! Upload slots: how many uploads (`multipart/form-data` bodies with files)
//! are received at once, and who must make room.
//!
//! It owns the table of uploads in progress: at most
//! `server.max_concurrent_uploads` in all and `server.max_uploads_per_client`
//! from one client (no per-client cap when clients cannot be told apart:
//! behind Tor without the PROXY protocol, where every peer is the tor
//! daemon). When every slot is taken, a newcomer does not get 503 while
//! an upload in progress is behind the minimum rate: the one furthest behind
//! (`upload_min_bytes_per_sec` × the time since [`HEAD_START`] after it
//! started, minus what it has delivered) is told to stop ([`Eviction`]), and
//! the newcomer takes its slot. An upload that keeps the minimum rate is
//! never evicted; when all of them do, the newcomer gets 503. It holds no
//! address, only client keys.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::limits::ClientKey;

/// How long after its start an upload owes nothing to the minimum rate as
/// far as eviction goes: its first bytes are a round trip away (more over
/// Tor, or after `Expect: 100-continue`), and without this a newcomer
/// pushed out an upload at any rate that had just begun. Short next to
/// `upload_stall_secs`, so uploads trickling from their start still make
/// room after a second or two.
pub const HEAD_START: Duration = Duration::from_secs(1);

/// Tells an upload in progress that it was evicted; it stops at its next
/// wait for the client (408).
#[derive(Default)]
pub struct Eviction {
    evicted: AtomicBool,
    notify: Notify,
}

impl Eviction {
    fn evict(&self) {
        self.evicted.store(true, Ordering::SeqCst);
        // Stores a wake-up if nobody waits yet.
        self.notify.notify_one();
    }

    /// Resolves once the upload has been evicted.
    pub async fn evicted(&self) {
        while !self.evicted.load(Ordering::SeqCst) {
            self.notify.notified().await;
        }
    }
}

/// One upload in the table.
struct Entry {
    id: u64,
    client: Option<ClientKey>,
    started: Instant,
    delivered: Arc<AtomicU64>,
    eviction: Arc<Eviction>,
}

impl Entry {
    /// Bytes the upload is behind `min_rate` counted from [`HEAD_START`]
    /// after its start (negative: ahead).
    fn behind(&self, min_rate: u64, now: Instant) -> i128 {
        let elapsed = now
            .saturating_duration_since(self.started)
            .saturating_sub(HEAD_START)
            .as_nanos();
        let due = i128::try_from(elapsed.saturating_mul(u128::from(min_rate)) / 1_000_000_000)
            .unwrap_or(i128::MAX);
        due - i128::from(self.delivered.load(Ordering::Relaxed))
    }
}

#[derive(Default)]
struct Table {
    next_id: u64,
    entries: Vec<Entry>,
}

/// Why an upload got no slot.
#[derive(Debug, PartialEq, Eq)]
pub enum NoSlot {
    /// Its client already has `max_uploads_per_client` in progress.
    ClientFull,
    /// Every slot is taken by an upload that keeps the minimum rate.
    Full,
}

/// The upload slots of one server.
pub struct UploadSlots {
    table: Arc<Mutex<Table>>,
    max: usize,
    per_client: usize,
    min_rate: u64,
}

/// An upload's slot; given back on drop (unless it was evicted, which gave
/// it back already).
pub struct UploadSlot {
    table: Arc<Mutex<Table>>,
    id: u64,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        if let Ok(mut t) = self.table.lock() {
            t.entries.retain(|e| e.id != self.id);
        }
    }
}

impl UploadSlots {
    /// `max` slots, `per_client` of them for one client, evicting uploads
    /// behind `min_rate` bytes a second (0: never).
    pub fn new(max: usize, per_client: usize, min_rate: u64) -> UploadSlots {
        UploadSlots {
            table: Arc::new(Mutex::new(Table::default())),
            max,
            per_client,
            min_rate,
        }
    }

    /// A slot for an upload from `client` that started at `started` and has
    /// delivered `delivered` bytes so far; `eviction` is how it is told to
    /// make room for another.
    pub fn take(
        &self,
        client: Option<ClientKey>,
        started: Instant,
        delivered: Arc<AtomicU64>,
        eviction: Arc<Eviction>,
    ) -> Result<UploadSlot, NoSlot> {
        let mut t = self.table.lock().map_err(|_| NoSlot::Full)?;
        if let Some(c) = client {
            if t.entries.iter().filter(|e| e.client == Some(c)).count() >= self.per_client {
                return Err(NoSlot::ClientFull);
            }
        }
        if t.entries.len() >= self.max {
            let now = Instant::now();
            let slowest = t
                .entries
                .iter()
                .enumerate()
                .map(|(i, e)| (i, e.behind(self.min_rate, now)))
                .max_by_key(|&(_, behind)| behind)
                .filter(|&(_, behind)| self.min_rate > 0 && behind > 0);
            let Some((i, _)) = slowest else {
                return Err(NoSlot::Full);
            };
            t.entries.swap_remove(i).eviction.evict();
        }
        let id = t.next_id;
        t.next_id += 1;
        t.entries.push(Entry {
            id,
            client,
            started,
            delivered,
            eviction,
        });
        Ok(UploadSlot {
            table: Arc::clone(&self.table),
            id,
        })
    }

    /// Uploads holding a slot now.
    pub fn in_use(&self) -> usize {
        self.table.lock().map_or(0, |t| t.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(
        slots: &UploadSlots,
        client: Option<ClientKey>,
        age: Duration,
        delivered: u64,
    ) -> (Result<UploadSlot, NoSlot>, Arc<Eviction>) {
        let eviction = Arc::new(Eviction::default());
        let slot = slots.take(
            client,
            Instant::now() - age,
            Arc::new(AtomicU64::new(delivered)),
            Arc::clone(&eviction),
        );
        (slot, eviction)
    }

    #[test]
    fn the_upload_furthest_behind_the_minimum_rate_makes_room() {
        let slots = UploadSlots::new(3, 10, 1000);
        let s = Duration::from_secs(10);
        // 10 s in: due 9,000 bytes (after the head start). Ahead, 8,000
        // behind, 4,000 behind.
        let (a, a_ev) = upload(&slots, None, s, 20_000);
        let (b, b_ev) = upload(&slots, None, s, 1_000);
        let (c, c_ev) = upload(&slots, None, s, 5_000);
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
        let (d, _) = upload(&slots, None, Duration::ZERO, 0);
        assert!(d.is_ok(), "the newcomer gets a slot");
        assert!(b_ev.evicted.load(Ordering::SeqCst), "the slowest goes");
        assert!(!a_ev.evicted.load(Ordering::SeqCst));
        assert!(!c_ev.evicted.load(Ordering::SeqCst));
        assert_eq!(slots.in_use(), 3);
        drop(b);
        assert_eq!(slots.in_use(), 3, "an evicted slot is not given back twice");
        drop(c);
        assert_eq!(slots.in_use(), 2);
    }

    #[test]
    fn uploads_that_keep_the_minimum_rate_are_not_evicted() {
        let slots = UploadSlots::new(2, 10, 1000);
        let s = Duration::from_secs(10);
        let _a = upload(&slots, None, s, 10_000);
        let _b = upload(&slots, None, s, 50_000);
        let (c, _) = upload(&slots, None, Duration::ZERO, 0);
        assert_eq!(c.err(), Some(NoSlot::Full));
        let off = UploadSlots::new(1, 10, 0);
        let _slow = upload(&off, None, s, 0);
        assert_eq!(upload(&off, None, s, 0).0.err(), Some(NoSlot::Full));
    }

    #[test]
    fn an_upload_in_its_head_start_is_not_evicted() {
        let slots = UploadSlots::new(1, 10, 1000);
        let (_fresh, fresh_ev) = upload(&slots, None, HEAD_START / 2, 0);
        assert_eq!(
            upload(&slots, None, Duration::ZERO, 0).0.err(),
            Some(NoSlot::Full)
        );
        assert!(!fresh_ev.evicted.load(Ordering::SeqCst));
        let late = UploadSlots::new(1, 10, 1000);
        let (_stuck, stuck_ev) = upload(&late, None, HEAD_START * 3, 0);
        assert!(upload(&late, None, Duration::ZERO, 0).0.is_ok());
        assert!(stuck_ev.evicted.load(Ordering::SeqCst));
    }

    #[test]
    fn one_client_has_at_most_its_share() {
        let slots = UploadSlots::new(10, 2, 1000);
        let (one, two) = (ClientKey::test(1), ClientKey::test(2));
        let _a = upload(&slots, Some(one), Duration::ZERO, 0);
        let _b = upload(&slots, Some(one), Duration::ZERO, 0);
        assert_eq!(
            upload(&slots, Some(one), Duration::ZERO, 0).0.err(),
            Some(NoSlot::ClientFull)
        );
        assert!(upload(&slots, Some(two), Duration::ZERO, 0).0.is_ok());
        assert!(upload(&slots, None, Duration::ZERO, 0).0.is_ok());
    }
}
