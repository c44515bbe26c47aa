//! Gathering a batch: the records the committer waits a little for
//! ([`Anticipated`]) and the wait itself. It owns only the count and the
//! wake-up; it must never hold a batch open longer than `GATHER`, nor wait
//! when no record is anticipated.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, Instant};

/// A batch is cut at this many records so that the first of them is not kept
/// waiting behind an unbounded rename loop.
pub(super) const MAX_BATCH: usize = 512;

/// How long the committer may wait for [`Anticipated`] records (in their fsync,
/// or waiting for a sealing thread) before it commits the ones it has. Every
/// batch costs a directory fsync and an index flush; at a few thousand
/// records a second these made up an eighth of all the server's CPU time
/// when batches held one or two records. The wait only happens while records
/// are anticipated (a lone submission is committed at once), and this bounds it
/// on a slow disk or behind a long seal.
pub(super) const GATHER: Duration = Duration::from_millis(2);

/// The batch that starts with `first`: every job already queued, and those
/// that arrive while more are [`Anticipated`], up to `wait` after `first` was
/// taken or [`MAX_BATCH`] jobs. While it waits the committer sleeps: jobs
/// arriving do not wake it one by one; the last anticipated record does (or
/// the deadline), and it then takes all that came.
pub(super) fn gather<T>(
    first: T,
    jobs: &mpsc::Receiver<T>,
    anticipated: &Anticipations,
    wait: Duration,
) -> Vec<T> {
    let deadline = Instant::now() + wait;
    let mut batch = vec![first];
    // Set before the count is read, and the drop reads it after taking the
    // count down (all SeqCst): either this sees the count at zero, or that
    // drop sees this flag and wakes the thread. Outside `gather` no drop
    // wakes the committer, so a lone submission costs no extra wake-up.
    anticipated.gathering.store(true, Ordering::SeqCst);
    loop {
        // Read before draining: a record queued and then no longer anticipated
        // in between is in the queue when it is drained.
        let more = anticipated.count.load(Ordering::SeqCst) > 0;
        let mut closed = false;
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        let now = Instant::now();
        if batch.len() >= MAX_BATCH || !more || closed || now >= deadline {
            anticipated.gathering.store(false, Ordering::SeqCst);
            return batch;
        }
        // Woken early by the drop that takes the count to zero; a wake-up
        // for another reason only makes this look again.
        std::thread::park_timeout(deadline - now);
    }
}

/// A record the committer will soon have, counted while this lives: when it
/// forms a batch and the queue is empty, the committer waits for such
/// records (`GATHER`, 2 ms at most) instead of committing a batch of one.
///
/// Two kinds are anticipated: a record in its fsync
/// ([`Store::enqueue_then`](super::Store::enqueue_then) holds one), and a
/// submission waiting for a sealing thread (`Intake::submit` in
/// `src/intake.rs` holds one from the moment it asks for a sealing thread
/// until the job starts).
/// The second kind means that every sealing thread is busy: holding a batch
/// open then costs latency, not throughput, and it takes the index flushes
/// (each one a write and an fsync of the index's journal) from about two records each to
/// six or more. A record being *sealed* is not anticipated: at moderate load
/// one nearly always is, so every batch would wait the full 2 ms and the
/// clients, waiting for their answers, would send the next submissions too
/// late to keep the sealing threads busy (measured: −30 % at 8 connections).
#[must_use = "a record is anticipated only while its guard lives"]
pub struct Anticipated(Arc<Anticipations>);

/// The count of [`Anticipated`] records and whom to wake when it drops to zero.
#[derive(Default)]
pub(super) struct Anticipations {
    pub(super) count: AtomicUsize,
    /// The committer is in [`gather`], waiting for the count to reach zero.
    pub(super) gathering: AtomicBool,
    /// The committer thread (set when it starts).
    pub(super) committer: OnceLock<std::thread::Thread>,
}

impl Anticipations {
    pub(super) fn anticipate(this: &Arc<Anticipations>) -> Anticipated {
        this.count.fetch_add(1, Ordering::SeqCst);
        Anticipated(Arc::clone(this))
    }
}

impl Drop for Anticipated {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1
            && self.0.gathering.load(Ordering::SeqCst)
            && let Some(committer) = self.0.committer.get()
        {
            committer.unpark();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    use crate::store::Store;
    #[test]
    fn a_record_is_no_longer_expected_once_queued() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("open");
        let p = store.create().expect("create");
        assert_eq!(store.anticipated(), 0);
        let committing = store.enqueue(p, vec![], SystemTime::now());
        assert_eq!(store.anticipated(), 0);
        committing.wait().expect("commit");

        let (first, second) = (store.anticipate(), store.anticipate());
        assert_eq!(store.anticipated(), 2);
        drop(first);
        assert_eq!(store.anticipated(), 1);
        drop(second);
        assert_eq!(store.anticipated(), 0);
    }

    #[test]
    fn gathering_takes_what_is_queued_and_waits_only_while_records_are_expected() {
        let long = Duration::from_secs(30);
        let (tx, rx) = mpsc::channel();
        let anticipations = Arc::new(Anticipations::default());
        anticipations
            .committer
            .set(std::thread::current())
            .expect("set once");

        // Nothing anticipated: what is queued, at once.
        tx.send(2).expect("received");
        tx.send(3).expect("received");
        let started = Instant::now();
        assert_eq!(gather(1, &rx, &anticipations, long), vec![1, 2, 3]);
        assert!(started.elapsed() < long / 2, "waited with nothing coming");

        // Two anticipated (in their fsync, or waiting for a sealing thread):
        // waits for both, queued then no longer counted as
        // `Store::enqueue_then` does; the last one's drop wakes the gathering thread.
        let (first, second) = (
            Anticipations::anticipate(&anticipations),
            Anticipations::anticipate(&anticipations),
        );
        let late = {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for (job, guard) in [(5, first), (6, second)] {
                    std::thread::sleep(Duration::from_millis(100));
                    tx.send(job).expect("received");
                    drop(guard);
                }
            })
        };
        let started = Instant::now();
        assert_eq!(gather(4, &rx, &anticipations, long), vec![4, 5, 6]);
        assert!(started.elapsed() < long / 2, "not woken by the last one");
        late.join().expect("joined");

        // It never comes: the wait is bounded.
        let never = Anticipations::anticipate(&anticipations);
        let started = Instant::now();
        assert_eq!(
            gather(7, &rx, &anticipations, Duration::from_millis(100)),
            vec![7]
        );
        assert!(started.elapsed() >= Duration::from_millis(100));
        drop(never);

        // A batch is cut at MAX_BATCH.
        for i in 0..MAX_BATCH + 10 {
            tx.send(i).expect("received");
        }
        assert_eq!(gather(0, &rx, &anticipations, long).len(), MAX_BATCH);
        assert_eq!(gather(0, &rx, &anticipations, long).len(), 12);
    }
}
