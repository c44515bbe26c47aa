//! A real PostgreSQL for the tests: Debian's server binaries, `initdb` into
//! a temporary directory and `pg_ctl` on a free port of 127.0.0.1 (and a
//! socket in that directory), with `fsync` and `synchronous_commit` on. Run
//! as root, the cluster belongs to the unprivileged `postgres` user (the
//! server refuses root) and every server command runs as that user. There
//! is no skipping: without the binaries a test fails and says what to
//! install.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The database, role and what `url()` connects as.
const DB: &str = "sealform";

/// A PostgreSQL server of the test's own; stopped (`-m immediate`) and
/// deleted when dropped.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// The unprivileged user the server runs as (when the tests run as
    /// root).
    user: Option<String>,
}

impl Postgres {
    /// Creates a cluster in a temporary directory, starts it, creates the
    /// database. Panics (never skips) if PostgreSQL is not installed.
    pub fn start() -> Postgres {
        let bin = server_binaries();
        let dir = tempfile::Builder::new()
            .prefix("sealform-pg-")
            .tempdir()
            .expect("temp dir");
        let root = rustix::process::geteuid().is_root();
        let user = root.then(|| {
            let name = "postgres";
            let id = Command::new("id").arg("-u").arg(name).output().expect("id");
            assert!(
                id.status.success(),
                "the tests run as root and PostgreSQL refuses root: create the unprivileged \
                 `postgres` user (Debian's postgresql package does; scripts/setup --test \
                 installs it)"
            );
            let chown = Command::new("chown")
                .arg(format!("{name}:"))
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(chown.success(), "chown of the cluster's directory");
            name.to_owned()
        });
        let pg = Postgres {
            dir,
            bin,
            port: free_port(),
            user,
        };
        pg.run_ok(
            "initdb",
            &[
                "-D",
                &pg.data().display().to_string(),
                "-U",
                DB,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pg.start_again();
        pg.run_ok(
            "createdb",
            &["-h", "127.0.0.1", "-p", &pg.port.to_string(), "-U", DB, DB],
        );
        pg
    }

    /// The connection string of the test database (no TLS, trust auth).
    pub fn url(&self) -> String {
        format!(
            "postgresql://{DB}@127.0.0.1:{}/{DB}?sslmode=disable",
            self.port
        )
    }

    /// A client of the test database, to look at or change what the store
    /// wrote.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).expect("connect to the test db")
    }

    /// The one number `sql` selects (a count).
    pub fn count(&self, sql: &str) -> i64 {
        self.client()
            .query_one(sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// Stops the server as a crash would (`pg_ctl stop -m immediate`).
    pub fn stop_immediate(&self) {
        let out = self.stop();
        assert!(out.status.success(), "pg_ctl stop: {out:?}");
    }

    fn stop(&self) -> Output {
        let data = self.data().display().to_string();
        self.run("pg_ctl", &["stop", "-D", &data, "-m", "immediate", "-w"])
    }

    /// Starts the server (again) on the same port and data directory; it
    /// recovers from its WAL after [`Postgres::stop_immediate`].
    pub fn start_again(&self) {
        // fsync is on by default and not set here, so that a test can turn it
        // off with ALTER SYSTEM (a command-line setting would win).
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c synchronous_commit=on \
             -c log_statement=none -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.run_ok(
            "pg_ctl",
            &[
                "start",
                "-D",
                &self.data().display().to_string(),
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "-o",
                &options,
            ],
        );
    }

    /// Turns TLS on with the PEM certificate chain `cert` and key `key`
    /// (kept in the cluster's directory, readable by the server only) and
    /// restarts the server. Connections without TLS are still accepted.
    pub fn enable_tls(&self, cert: &[u8], key: &[u8]) {
        use std::os::unix::fs::PermissionsExt as _;
        let (cert_file, key_file) = (
            self.dir.path().join("server.crt"),
            self.dir.path().join("server.key"),
        );
        std::fs::write(&cert_file, cert).expect("write the certificate");
        std::fs::write(&key_file, key).expect("write the key");
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))
            .expect("chmod the key");
        if let Some(user) = &self.user {
            let chown = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(&cert_file)
                .arg(&key_file)
                .status()
                .expect("chown");
            assert!(chown.success(), "chown of the certificate and key");
        }
        let mut client = self.client();
        // One statement at a time: ALTER SYSTEM refuses a transaction block.
        for sql in [
            format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert_file.display()),
            format!("ALTER SYSTEM SET ssl_key_file = '{}'", key_file.display()),
            "ALTER SYSTEM SET ssl = on".to_owned(),
        ] {
            client
                .batch_execute(&sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        drop(client);
        self.stop_immediate();
        self.start_again();
    }

    /// The server's log, for a failing test to show.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs server program `program` (as the unprivileged user when root).
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let path = self.bin.join(program);
        let mut cmd = match &self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(user).arg("--").arg(&path);
                c
            }
            None => Command::new(&path),
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", path.display()))
    }

    fn run_ok(&self, program: &str, args: &[&str]) {
        let out = self.run(program, args);
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.data().join("postmaster.pid").exists() {
            let _ = self.stop();
        }
    }
}

/// The directory of Debian's server binaries (`initdb`, `pg_ctl`,
/// `createdb`): the newest `/usr/lib/postgresql/*/bin`, or `$PG_BIN`.
fn server_binaries() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
        .collect();
    found.sort_by_key(|p| version_of(p));
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server is not installed (no /usr/lib/postgresql/*/bin/initdb): \
             install Debian's `postgresql` package (scripts/setup --test does), or set PG_BIN \
             to the directory holding initdb and pg_ctl"
        )
    })
}

fn version_of(bin: &Path) -> u32 {
    bin.parent()
        .and_then(|v| v.file_name())
        .and_then(|v| v.to_str())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A port of 127.0.0.1 free a moment ago.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn the_harness_starts_crashes_and_restarts_a_real_postgresql() {
    let pg = Postgres::start();
    let mut c = pg.client();
    let row = c
        .query_one("SHOW synchronous_commit", &[])
        .expect("show synchronous_commit");
    assert_eq!(row.get::<_, String>(0), "on");
    let row = c.query_one("SHOW fsync", &[]).expect("show fsync");
    assert_eq!(row.get::<_, String>(0), "on");
    c.batch_execute("CREATE TABLE kept (n integer); INSERT INTO kept VALUES (7)")
        .expect("write");
    drop(c);
    pg.stop_immediate();
    assert!(
        postgres::Client::connect(&pg.url(), postgres::NoTls).is_err(),
        "the server is down"
    );
    pg.start_again();
    let n: i32 = pg
        .client()
        .query_one("SELECT n FROM kept", &[])
        .expect("read after the crash")
        .get(0);
    assert_eq!(n, 7, "a committed row survives an immediate stop");
}
