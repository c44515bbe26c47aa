//! The commands that hold secrets (`decrypt`, `keygen`, `pull`, `ack`) run
//! with core dumps off and not dumpable, checked from outside the process:
//! its `/proc/<pid>/limits`, and the owner of `/proc/<pid>/status`, which
//! the kernel gives to root for a process that is not dumpable.
//!
//! Each command is started with a FIFO where it reads a secret first (the
//! passphrase, the key, the token), so it waits there, after it hardened
//! itself and before it did anything else. As root, the command runs as
//! `nobody` (via `setpriv`), so that a root-owned `status` means something.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a command may take to reach its FIFO.
const REACH_FIFO: Duration = Duration::from_secs(20);

/// What `/proc` says about a process.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    /// The file its `exe` link points to, last part.
    exe: String,
    /// `Max core file size`: soft and hard.
    core: (String, String),
    /// Owner of `/proc/<pid>/status`.
    status_owner: u32,
}

fn seen(pid: u32) -> Option<Seen> {
    let proc = Path::new("/proc").join(pid.to_string());
    let exe = std::fs::read_link(proc.join("exe")).ok()?;
    let limits = std::fs::read_to_string(proc.join("limits")).ok()?;
    let core = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max core file size"))?;
    let mut parts = core.split_whitespace();
    let core = (parts.next()?.to_owned(), parts.next()?.to_owned());
    Some(Seen {
        exe: exe.file_name()?.to_string_lossy().into_owned(),
        core,
        status_owner: std::fs::metadata(proc.join("status")).ok()?.uid(),
    })
}

/// Our own uid (that of `/proc/self`).
fn my_uid() -> u32 {
    std::fs::metadata("/proc/self").expect("/proc/self").uid()
}

/// `sealform args…`, as `nobody` when we are root.
fn start(args: &[&str]) -> Child {
    let bin = env!("CARGO_BIN_EXE_sealform");
    let mut cmd = if my_uid() == 0 {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--",
            bin,
        ]);
        c
    } else {
        Command::new(bin)
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sealform")
}

/// A folder `nobody` can enter, holding a FIFO it can read.
fn fifo_dir() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let fifo = dir.path().join("secret");
    let made = Command::new("mkfifo")
        .args(["-m", "0644"])
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    (dir, fifo.to_str().expect("utf-8").to_owned())
}

/// Starts the command and waits, while it waits at its FIFO, until `/proc`
/// shows it hardened; panics with what was seen if it never is.
fn assert_hardened(args: &[&str]) {
    let mut child = start(args);
    let pid = child.id();
    let want_owner = 0;
    let deadline = Instant::now() + REACH_FIFO;
    let mut last = None;
    let hardened = loop {
        let now = seen(pid);
        if let Some(s) = &now {
            // Until `sealform` runs (setpriv first), what /proc says is
            // about another program.
            if s.exe == "sealform"
                && s.core == ("0".into(), "0".into())
                && s.status_owner == want_owner
            {
                break true;
            }
        }
        last = now;
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        hardened,
        "sealform {args:?} is not hardened (core limits soft and hard \"0\", /proc status owned \
         by uid 0 while it runs as uid {}): last seen {last:?}",
        if my_uid() == 0 { 65534 } else { my_uid() }
    );
}

#[test]
fn keygen_runs_without_core_dumps_and_undumpable() {
    let (dir, fifo) = fifo_dir();
    let out = dir.path().join("keys");
    assert_hardened(&[
        "keygen",
        "--name",
        "Test <test@example.org>",
        "--out",
        out.to_str().expect("utf-8"),
        "--passphrase-file",
        &fifo,
    ]);
}

#[test]
fn decrypt_runs_without_core_dumps_and_undumpable() {
    let (dir, fifo) = fifo_dir();
    let out = dir.path().join("out");
    let input = dir.path().join("in.pgp");
    assert_hardened(&[
        "decrypt",
        "--key",
        &fifo,
        "--out",
        out.to_str().expect("utf-8"),
        input.to_str().expect("utf-8"),
    ]);
}

#[test]
fn pull_and_ack_run_without_core_dumps_and_undumpable() {
    let (dir, fifo) = fifo_dir();
    let bundle = dir.path().join("bundle");
    let bundle = bundle.to_str().expect("utf-8");
    assert_hardened(&[
        "pull",
        "--url",
        "http://127.0.0.1:9",
        "--token-file",
        &fifo,
        "--out",
        bundle,
    ]);
    assert_hardened(&[
        "ack",
        "--all-readers",
        "--url",
        "http://127.0.0.1:9",
        "--token-file",
        &fifo,
        bundle,
    ]);
}

/// `--for` may name a secret key file: it is read after hardening.
#[test]
fn pull_and_ack_are_hardened_before_they_read_a_for_key_file() {
    let (dir, fifo) = fifo_dir();
    let token = dir.path().join("token");
    std::fs::write(&token, "sealform_x").expect("token file");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let token = token.to_str().expect("utf-8");
    let bundle = dir.path().join("bundle");
    let bundle = bundle.to_str().expect("utf-8");
    assert_hardened(&[
        "pull",
        "--url",
        "http://127.0.0.1:9",
        "--token-file",
        token,
        "--out",
        bundle,
        "--ack-after-verify",
        "--for",
        &fifo,
    ]);
    assert_hardened(&[
        "ack",
        "--for",
        &fifo,
        "--url",
        "http://127.0.0.1:9",
        "--token-file",
        token,
        bundle,
    ]);
}
