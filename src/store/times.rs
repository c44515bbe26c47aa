//! The day, and nothing finer, on every time a program can set under
//! `data_dir`: the access and modification times of every file and
//! directory are set to 00:00 UTC of a day.
//!
//! The kernel moves them on every write, rename, unlink and (with the
//! default `relatime` mount option) the first read after a change, so they
//! are set back after each change the store makes. The third time, the
//! inode's change time (ctime), cannot be set by any program; setting the
//! other two moves it to the moment they were set, which is why a walk of
//! the whole tree leaves every ctime at the moment of that walk.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, CWD, OFlags, Timespec, Timestamps, utimensat};

/// Both settable times of `at` for `day` (a time already at 00:00 UTC).
fn timestamps(day: SystemTime) -> Timestamps {
    let secs = day
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Sets the access and modification times of `path` (a file or a
/// directory, not followed if a symlink) to `day`. A path that vanished
/// meanwhile (a record acknowledged, a write in flight abandoned) is no
/// error: there is nothing left to stamp.
pub(crate) fn stamp(path: &Path, day: SystemTime) -> io::Result<()> {
    match utimensat(CWD, path, &timestamps(day), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::NOENT => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// [`stamp`] on `root` and everything under it; a directory after its
/// contents, since listing it is a read that may move its access time.
pub(crate) fn stamp_tree(root: &Path, day: SystemTime) -> io::Result<()> {
    for entry in walkdir::WalkDir::new(root).contents_first(true) {
        match entry.map_err(without_path) {
            Ok(e) => stamp(e.path(), day)?,
            // Removed while the walk ran (a record acknowledged, a write in
            // flight finished): nothing left to stamp.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The I/O error of a failed step of a walk, without the path walkdir adds
/// to its message: a spool file's name is a receipt, which must never reach
/// a log.
pub(crate) fn without_path(e: walkdir::Error) -> io::Error {
    e.into_io_error()
        .unwrap_or_else(|| io::Error::other("a symbolic link loop"))
}

/// Opens `path` for reading without moving its access time when the
/// kernel allows it (`O_NOATIME` needs the file's owner, or a process with
/// `CAP_FOWNER`), plainly otherwise.
pub(crate) fn open_unread(path: &Path) -> io::Result<File> {
    let noatime = OpenOptions::new()
        .read(true)
        .custom_flags(OFlags::NOATIME.bits() as i32)
        .open(path);
    match noatime {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) => {
            File::open(path)
        }
        other => other,
    }
}
