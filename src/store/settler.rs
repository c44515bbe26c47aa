//! The settler: the thread that sets the day again on everything under
//! `index/` once fjall's background workers have finished what the last change
//! to the index set off (a memtable written out as a table file, tables
//! merged). Those writes come at moments of the workers' own, after the
//! change that caused them had its day set; the settler must leave no file
//! under `index/` with a time finer than the day for longer than about
//! [`POLL`] once the workers are idle.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use super::index::Index;
use super::{StoreError, io_err, start_of_day, times};

/// How often the settler looks at the workers while it waits.
const POLL: Duration = Duration::from_millis(250);

/// Looks after the workers have been found idle this many times in a row,
/// [`POLL`] apart: a worker may take a merge from its queue just after a
/// write-out ended.
const QUIET_LOOKS: u32 = 2;

/// The settler thread and how to tell it of a change.
pub(super) struct Settler {
    nudger: Nudger,
    thread: JoinHandle<()>,
}

impl Settler {
    /// Starts the settler for `index`.
    pub(super) fn start(index: Arc<Index>) -> Result<Settler, StoreError> {
        let (nudge, nudges) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("index-settler".into())
            .spawn(move || run(&index, &nudges))
            .map_err(io_err(
                "starting the settler for",
                std::path::Path::new("index"),
            ))?;
        Ok(Settler {
            nudger: Nudger(nudge),
            thread,
        })
    }

    /// A handle that tells the settler of a change (for the committer).
    pub(super) fn nudger(&self) -> Nudger {
        Nudger(self.nudger.0.clone())
    }

    /// Tells the settler the index changed.
    pub(super) fn nudge(&self) {
        self.nudger.nudge();
    }

    /// Stops the thread, once every [`Nudger`] is gone (the committer's,
    /// stopped before).
    pub(super) fn stop(self) {
        drop(self.nudger);
        let _ = self.thread.join();
    }
}

/// Tells the settler the index changed; a nudge while one is pending is
/// the same nudge.
pub(super) struct Nudger(mpsc::SyncSender<()>);

impl Nudger {
    pub(super) fn nudge(&self) {
        let _ = self.0.try_send(());
    }
}

fn run(index: &Index, nudges: &mpsc::Receiver<()>) {
    while nudges.recv().is_ok() {
        let mut quiet = 0;
        while quiet < QUIET_LOOKS {
            match nudges.recv_timeout(POLL) {
                // Another change: its own stamp came with it; wait on.
                Ok(()) => {
                    quiet = 0;
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if index.busy() {
                quiet = 0;
                continue;
            }
            let day = start_of_day(SystemTime::now());
            if let Err(e) = times::stamp_tree(&index.dir, day) {
                tracing::warn!(error = %e, "setting the day on the index failed");
            }
            quiet += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Instant, UNIX_EPOCH};

    use crate::receipt::Receipt;
    use crate::store::index::{MEMTABLE_BYTES, put};
    use crate::store::tests::committed;
    use crate::store::{Store, start_of_day};

    use super::*;

    /// Every path under `root` whose access or modification time is not
    /// `day`.
    fn finer_than(root: &Path, day: SystemTime) -> Vec<String> {
        walkdir::WalkDir::new(root)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| {
                let m = e.metadata().expect("metadata");
                m.modified().expect("mtime") != day || m.accessed().expect("atime") != day
            })
            .map(|e| e.path().display().to_string())
            .collect()
    }

    #[test]
    fn what_the_index_worker_writes_after_a_change_gets_the_day_once_it_is_done() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("open");
        let now = SystemTime::now();
        // Copies of a committed record's entry (about 60 bytes as JSON),
        // enough for fjall to write out several memtables as table files and
        // merge them, in its workers, after the commit below.
        let first = committed(&store, now);
        let entry = store.get(&first).expect("get").expect("entry");
        let per_memtable = MEMTABLE_BYTES as usize / 60;
        // Until a commit (which sets the day on what it moved) ends while
        // the worker is still at work: what it writes next is the settler's.
        let caught = (0..20).any(|_| {
            for _ in 0..2 * per_memtable {
                store
                    .index
                    .with(|db| put(db, &Receipt::random(), &entry))
                    .expect("put");
            }
            committed(&store, now);
            store.index.busy()
        });
        assert!(caught, "the worker was never at work after a commit");
        let tables = || {
            walkdir::WalkDir::new(dir.path().join("index"))
                .into_iter()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_file())
                .count()
        };
        let day = start_of_day(SystemTime::now());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = finer_than(&dir.path().join("index"), day);
            if left.is_empty() && !store.index.busy() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "times finer than the day 30 s after the change: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(tables() > 3, "the worker wrote no table file");
        assert_ne!(day, UNIX_EPOCH);
    }
}
