//! The sealing workers: the intake pipeline's own fixed set of threads, one
//! per CPU slot (`server.max_concurrent_seals`), that run queued sealing jobs
//! back to back. Private to [`crate::intake`]: only [`Intake::submit`]
//! queues work here.
//!
//! Sealing is CPU work, so more sealing threads than cores only adds
//! context switches and cache misses (measured: 4 threads on 2 cores seal
//! about 10 % less than 2), and fewer leaves cores idle. A semaphore in
//! front of a growing thread pool bounds the first but not the second: each
//! released slot has to go through an async task and a thread wake-up before
//! the next seal starts. Here a thread that finishes a job takes the next
//! one from the queue at once. Jobs must not wait for the disk: a job hands
//! its fsync to a blocking thread (see [`Intake::submit`]).
//!
//! The queue is bounded ([`QUEUED_PER_THREAD`] jobs per thread): enough
//! that a thread always finds its next job waiting, few enough that a job
//! rarely waits long. A submitter waits for room without holding a thread
//! (an async semaphore), as it waited for a sealing slot before.
//!
//! [`Intake::submit`]: super::Intake::submit

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use tokio::sync::Semaphore;

/// One unit of sealing work.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// Jobs that may wait in the queue, per sealing thread.
pub(super) const QUEUED_PER_THREAD: usize = 2;

/// The sealing threads and their queue. Dropping it closes the queue; the
/// threads finish the jobs already queued and end. Outside an async runtime
/// the drop also waits for that; inside one (where the last handle on the
/// app is often dropped) it does not, so that no runtime worker blocks. Nor
/// does a sealing thread wait for itself: a job holds the [`Intake`] that
/// owns these threads, and may drop the last handle on it.
///
/// [`Intake`]: super::Intake
pub(super) struct SealingWorkers {
    queue: Option<Sender<Job>>,
    /// Room in the queue: a job holds one until a thread starts it.
    room: Arc<Semaphore>,
    threads: Vec<JoinHandle<()>>,
}

/// The sealing threads are gone (they stop only when the
/// [`SealingWorkers`] are dropped, so in practice never while they are
/// used).
#[derive(Debug, thiserror::Error)]
#[error("the sealing threads have stopped")]
pub(super) struct Stopped;

impl SealingWorkers {
    /// Starts `threads` sealing threads (at least one).
    pub(super) fn start(threads: usize) -> std::io::Result<SealingWorkers> {
        let threads = threads.max(1);
        let (queue, jobs) = channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        let room = Arc::new(Semaphore::new(threads * QUEUED_PER_THREAD));
        let threads = (0..threads)
            .map(|i| {
                let jobs = Arc::clone(&jobs);
                std::thread::Builder::new()
                    .name(format!("sealer-{i}"))
                    .spawn(move || run(&jobs))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(SealingWorkers {
            queue: Some(queue),
            room,
            threads,
        })
    }

    /// Waits (without holding a thread) for room in the queue, then queues
    /// `job` for the next free sealing thread. If the returned future is
    /// dropped while it waits, nothing is queued.
    pub(super) async fn submit(&self, job: impl FnOnce() + Send + 'static) -> Result<(), Stopped> {
        let room = Arc::clone(&self.room)
            .acquire_owned()
            .await
            .map_err(|_| Stopped)?;
        let queue = self.queue.as_ref().ok_or(Stopped)?;
        queue
            .send(Box::new(move || {
                drop(room);
                job();
            }))
            .map_err(|_| Stopped)
    }
}

impl Drop for SealingWorkers {
    fn drop(&mut self) {
        self.queue = None;
        if tokio::runtime::Handle::try_current().is_ok() {
            return;
        }
        let this = std::thread::current().id();
        for t in self.threads.drain(..) {
            if t.thread().id() == this {
                // Dropped by one of its own jobs: this thread ends once the
                // job returns and finds the queue closed.
                continue;
            }
            // A thread only ends by panicking outside a job, which `run`
            // does not do; nothing to report either way.
            let _ = t.join();
        }
    }
}

/// A sealing thread: takes jobs until the queue is closed and empty.
fn run(jobs: &Mutex<Receiver<Job>>) {
    loop {
        // Only an idle thread waits here; the lock is held while waiting so
        // that the other idle threads queue up behind it, not on the channel.
        let next = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = next else { return };
        // A panicking job drops its answer channel (its waiter gets an
        // error); the thread itself stays for the next job. The payload is
        // not logged here: it could quote a value.
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!("a sealing job panicked; its submission was not acknowledged");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc::sync_channel;
    use std::time::Duration;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn runs_every_job_on_a_fixed_set_of_threads() {
        let workers = SealingWorkers::start(2).expect("threads start");
        let (done, results) = channel();
        block_on(async {
            for i in 0..100 {
                let done = done.clone();
                workers
                    .submit(move || {
                        let name = std::thread::current().name().expect("named").to_owned();
                        done.send((i, name)).expect("received");
                    })
                    .await
                    .expect("queued");
            }
        });
        drop(done);
        let mut seen: Vec<(i32, String)> = results.iter().collect();
        seen.sort();
        assert_eq!(seen.len(), 100);
        assert!(seen.iter().enumerate().all(|(i, (j, _))| i as i32 == *j));
        assert!(seen.iter().all(|(_, n)| n == "sealer-0" || n == "sealer-1"));
    }

    #[test]
    fn as_many_jobs_run_at_once_as_there_are_threads_and_no_more() {
        let workers = SealingWorkers::start(3).expect("threads start");
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (done, finished) = channel();
        block_on(async {
            for _ in 0..30 {
                let (running, most, done) = (Arc::clone(&running), Arc::clone(&most), done.clone());
                workers
                    .submit(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        // Wait (boundedly) for company, so that three threads
                        // really overlap if there are three.
                        let deadline = std::time::Instant::now() + Duration::from_secs(5);
                        while most.load(Ordering::SeqCst) < 3
                            && std::time::Instant::now() < deadline
                        {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        std::thread::sleep(Duration::from_millis(1));
                        running.fetch_sub(1, Ordering::SeqCst);
                        done.send(()).expect("received");
                    })
                    .await
                    .expect("queued");
            }
        });
        drop(done);
        assert_eq!(finished.iter().count(), 30);
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn the_queue_is_bounded_and_a_submitter_waits_for_room() {
        let workers = SealingWorkers::start(1).expect("threads start");
        let (release, released) = sync_channel::<()>(0);
        let (started, first_started) = sync_channel::<()>(1);
        block_on(async {
            // The one thread is busy with this until `release`.
            workers
                .submit(move || {
                    started.send(()).expect("received");
                    released.recv().expect("sent");
                })
                .await
                .expect("queued");
            first_started.recv().expect("sent");
            // The queue takes QUEUED_PER_THREAD more...
            for _ in 0..QUEUED_PER_THREAD {
                workers.submit(|| {}).await.expect("queued");
            }
            // ...and then has no room,
            let waiting = tokio::time::timeout(Duration::from_millis(200), workers.submit(|| {}));
            assert!(waiting.await.is_err(), "queued beyond the bound");
            // until a queued job starts.
            release.send(()).expect("received");
            tokio::time::timeout(Duration::from_secs(10), workers.submit(|| {}))
                .await
                .expect("room again")
                .expect("queued");
        });
    }

    #[test]
    fn a_panicking_job_does_not_stop_its_thread() {
        let workers = SealingWorkers::start(1).expect("threads start");
        let (done, answer) = sync_channel(1);
        block_on(async {
            workers.submit(|| panic!("boom")).await.expect("queued");
            workers
                .submit(move || done.send(7).expect("received"))
                .await
                .expect("queued");
        });
        assert_eq!(answer.recv_timeout(Duration::from_secs(10)), Ok(7));
    }

    #[test]
    fn dropping_it_finishes_the_queued_jobs() {
        let workers = SealingWorkers::start(1).expect("threads start");
        let ran = Arc::new(AtomicUsize::new(0));
        let (release, released) = sync_channel::<()>(0);
        block_on(async {
            // The thread is held by the first job while the others queue.
            workers
                .submit(move || released.recv().expect("sent"))
                .await
                .expect("queued");
            for _ in 0..QUEUED_PER_THREAD {
                let ran = Arc::clone(&ran);
                workers
                    .submit(move || {
                        ran.fetch_add(1, Ordering::SeqCst);
                    })
                    .await
                    .expect("queued");
            }
        });
        let dropping = std::thread::spawn(move || drop(workers));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(ran.load(Ordering::SeqCst), 0, "a queued job ran early");
        release.send(()).expect("received");
        dropping.join().expect("dropped");
        assert_eq!(ran.load(Ordering::SeqCst), QUEUED_PER_THREAD);
    }

    #[test]
    fn a_job_may_drop_the_workers_that_run_it() {
        // As a job holding the last handle on the `Intake` does.
        let slot: Arc<Mutex<Option<SealingWorkers>>> = Arc::default();
        let workers = SealingWorkers::start(2).expect("threads start");
        let (release, released) = sync_channel::<()>(0);
        let (done, answer) = sync_channel(1);
        let held = Arc::clone(&slot);
        block_on(workers.submit(move || {
            released.recv().expect("sent");
            drop(held.lock().expect("not poisoned").take());
            done.send(()).expect("received");
        }))
        .expect("queued");
        *slot.lock().expect("not poisoned") = Some(workers);
        release.send(()).expect("received");
        assert_eq!(answer.recv_timeout(Duration::from_secs(10)), Ok(()));
    }
}
