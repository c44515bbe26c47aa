//! The SMTP side of the digest tests: a real SMTP server on loopback
//! (Debian's aiosmtpd, run by `tests/smtp/sink.py` with `/usr/bin/python3`)
//! and a throwaway CA made with the `openssl` CLI for its TLS modes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How the sink speaks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No TLS.
    Plain,
    /// STARTTLS, required.
    StartTls,
    /// TLS from the start.
    Smtps,
}

/// A throwaway CA and a server certificate for 127.0.0.1 it signed.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("pki dir");
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        run(&[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "2",
                "-subj",
                "/CN=test-only CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        ]
        .concat());
        run(&[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=localhost",
                "-keyout",
                "srv.key",
                "-out",
                "srv.csr",
            ],
        ]
        .concat());
        std::fs::write(
            dir.path().join("ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .expect("ext");
        run(&[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext",
            "-out",
            "srv.pem",
        ]);
        Pki { dir }
    }
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

/// The SMTP sink, killed when dropped.
pub struct Sink {
    child: Child,
}

impl Sink {
    /// Starts the sink on `port`, writing what it gets under `out`.
    pub fn start(port: u16, out: &Path, mode: Mode, pki: Option<&Pki>) -> Sink {
        std::fs::create_dir_all(out).expect("sink dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp/sink.py");
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(script).arg(port.to_string()).arg(out);
        if let Some(pki) = pki {
            let flag = if mode == Mode::Smtps {
                "--smtps"
            } else {
                "--starttls"
            };
            cmd.arg(flag)
                .arg(pki.dir.path().join("srv.pem"))
                .arg(pki.dir.path().join("srv.key"));
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "start /usr/bin/python3 tests/smtp/sink.py (python3-aiosmtpd, see scripts/setup)",
            );
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("read");
        assert_eq!(
            line.trim(),
            "ready",
            "the SMTP sink did not start (is python3-aiosmtpd installed?)"
        );
        Sink { child }
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message as the sink got it.
pub struct Mail {
    pub rcpt: String,
    pub raw: Vec<u8>,
}

/// The messages under `out`, in arrival order.
pub fn messages(out: &Path) -> Vec<Mail> {
    let mut n: Vec<u32> = std::fs::read_dir(out)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".eml")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    n.sort_unstable();
    n.into_iter()
        .map(|i| Mail {
            rcpt: std::fs::read_to_string(out.join(format!("{i}.rcpt"))).expect("rcpt"),
            raw: std::fs::read(out.join(format!("{i}.eml"))).expect("eml"),
        })
        .collect()
}

/// Waits (at most `secs`) until `out` holds `n` messages.
pub fn wait_for(out: &Path, n: usize, secs: u64) -> Vec<Mail> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let m = messages(out);
        if m.len() >= n || Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}
