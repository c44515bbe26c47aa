//! Private files and durable writes: every directory the program creates for
//! its data is 0700, every file that holds a record, a key or a token is
//! 0600 (and new, where an existing file must never be followed or
//! replaced), and an fsync of a file or directory is one call.
//!
//! Everything here returns a plain [`io::Error`]: each caller maps it into its
//! own error, under its own message, since those messages are what the
//! operator (and the tests) read. Nothing here logs or names a path itself.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Creates `dir` and any missing parents, mode 0700 (before the umask);
/// fine if it exists already.
pub fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Creates `dir`, mode 0700 (before the umask); an error if it exists.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().mode(0o700).create(dir)
}

/// Creates a new file for writing with `mode` (before the umask); an error
/// if anything, a symlink included, is at `path` already.
pub fn create_new_file(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

/// Creates a new file only its owner can read (0600); an error if anything
/// is at `path` already.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    create_new_file(path, 0o600)
}

/// Creates a file only its owner can read (0600), or truncates the one at
/// `path`: for a leftover of an interrupted run, under a name only this
/// program writes.
pub fn replace_private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// fsyncs the file or directory at `path`. For a directory that makes the
/// creation, rename or removal of an entry in it durable.
pub fn sync_path(path: &Path) -> io::Result<()> {
    File::open(path).and_then(|f| f.sync_all())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn private_directories_and_files_are_for_their_owner_only() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let deep = tmp.path().join("a/b");
        create_private_dir_all(&deep).expect("dir all");
        create_private_dir_all(&deep).expect("dir all again");
        assert_eq!(mode(&deep), 0o700);
        let one = tmp.path().join("one");
        create_private_dir(&one).expect("dir");
        assert_eq!(mode(&one), 0o700);
        assert!(create_private_dir(&one).is_err());

        let file = deep.join("f");
        create_private_file(&file).expect("file");
        assert_eq!(mode(&file), 0o600);
        assert_eq!(
            create_private_file(&file).map(drop).map_err(|e| e.kind()),
            Err(io::ErrorKind::AlreadyExists)
        );
        std::fs::write(&file, b"old").expect("write");
        replace_private_file(&file).expect("replace");
        assert_eq!(std::fs::read(&file).expect("read"), b"");
        sync_path(&file).expect("sync file");
        sync_path(&deep).expect("sync dir");
    }

    #[test]
    fn a_new_file_never_follows_a_symlink() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let target = tmp.path().join("target");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(create_private_file(&link).is_err());
        assert!(!target.exists());
    }
}
