//! Reaching PostgreSQL: the connection string (from `url` or `url_file`),
//! TLS through OpenSSL (`postgres-openssl`), the timeouts that keep a
//! database that went away from hanging a request, the pool, and the checks
//! of the server's settings at start. Errors from the client are turned
//! into [`StoreError`]s here without the server's `DETAIL` (which can quote
//! a row's values).

use std::io;
use std::time::Duration;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres::Client;
use postgres_openssl::MakeTlsConnector;
use r2d2_postgres::PostgresConnectionManager;
use r2d2_postgres::r2d2;

use crate::config::{SslMode, StoreConfig};
use crate::store::StoreError;

/// The pool of connections to the database.
pub(crate) type Pool = r2d2::Pool<PostgresConnectionManager<MakeTlsConnector>>;

/// A connection taken from the [`Pool`]; it goes back when dropped.
pub(crate) type Conn = r2d2::PooledConnection<PostgresConnectionManager<MakeTlsConnector>>;

/// How long a new connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a request waits for a connection of the pool.
const POOL_WAIT: Duration = Duration::from_secs(5);

/// How long one statement may run on the server (a 1 MiB chunk, a listing).
const STATEMENT_TIMEOUT_MS: u32 = 30_000;

/// How long sent data may stay unacknowledged by the server's host, and how
/// soon an idle connection is probed: a host that vanished is noticed.
const TCP_TIMEOUT: Duration = Duration::from_secs(20);

/// Builds the pool `config` describes. Connects to nothing yet.
pub(super) fn pool(config: &StoreConfig) -> Result<Pool, StoreError> {
    let (pg, tls) = client_config(config)?;
    let manager = PostgresConnectionManager::new(pg, tls);
    r2d2::Pool::builder()
        .max_size(config.pool_size)
        .min_idle(Some(0))
        .connection_timeout(POOL_WAIT)
        .error_handler(Box::new(r2d2::NopErrorHandler))
        .build(manager)
        .map_err(|e| StoreError::Unavailable(e.to_string()))
}

/// Why a connection to the database of `config` fails, every cause told
/// (the pool keeps only the outermost, such as "error performing TLS
/// handshake", not which check of the certificate failed): one direct
/// attempt, for the error that stops `serve` at start. `None` if it
/// connects now.
pub(super) fn why_unreachable(config: &StoreConfig) -> Option<String> {
    let (pg, tls) = client_config(config).ok()?;
    let e = pg.connect(tls).err()?;
    if e.as_db_error().is_some() {
        // The server's own refusal (authentication, no such database):
        // without its DETAIL.
        return Some(db_err(e).to_string());
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    Some(text)
}

/// The client settings of `config`: the connection string with sealform's
/// timeouts and options, and the TLS connector of `sslmode`.
fn client_config(config: &StoreConfig) -> Result<(postgres::Config, MakeTlsConnector), StoreError> {
    let url = match (&config.url, &config.url_file) {
        (Some(url), _) => url.clone(),
        (None, Some(file)) => read_url_file(file)?,
        (None, None) => {
            return Err(StoreError::Refused(
                "[store] backend = \"postgres\" needs url or url_file".into(),
            ));
        }
    };
    let mut pg: postgres::Config = url.parse().map_err(|_| {
        // The parser's message can quote the string, password and all.
        StoreError::Refused(
            "store.url (or the content of store.url_file) is not a PostgreSQL connection \
             string (postgresql://user@host:port/db or key=value pairs)"
                .into(),
        )
    })?;
    pg.ssl_mode(match config.sslmode {
        SslMode::Disable => postgres::config::SslMode::Disable,
        SslMode::Prefer => postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyFull => postgres::config::SslMode::Require,
    });
    pg.connect_timeout(CONNECT_TIMEOUT)
        .tcp_user_timeout(TCP_TIMEOUT)
        .keepalives_idle(TCP_TIMEOUT);
    let timeout = format!("-c statement_timeout={STATEMENT_TIMEOUT_MS}");
    let options = match pg.get_options() {
        Some(given) if !given.is_empty() => format!("{given} {timeout}"),
        _ => timeout,
    };
    pg.options(&options);
    Ok((pg, tls(config)?))
}

/// The connection string in `file`, which must not be open to other users:
/// it holds the database password.
fn read_url_file(file: &std::path::Path) -> Result<String, StoreError> {
    use std::io::Read as _;
    use std::os::unix::fs::PermissionsExt as _;
    let io = |source| StoreError::Io {
        action: "reading store.url_file",
        path: file.to_owned(),
        source,
    };
    let mut f = std::fs::File::open(file).map_err(io)?;
    let mode = f.metadata().map_err(io)?.permissions().mode();
    if mode & 0o007 != 0 {
        return Err(StoreError::Refused(format!(
            "store.url_file {}: other users may read or change it (mode {:o}), and it holds the \
             database's password; make it readable by sealform only: chmod 600 (or 640 with a \
             group of its own)",
            file.display(),
            mode & 0o7777
        )));
    }
    let mut text = String::new();
    f.read_to_string(&mut text).map_err(io)?;
    Ok(text.trim().to_owned())
}

/// The TLS connector of `sslmode`: with `verify-full` the server's
/// certificate is checked against `ca_file` (or the system's roots) and its
/// name against the host; below that, TLS without verification.
fn tls(config: &StoreConfig) -> Result<MakeTlsConnector, StoreError> {
    let refused = |what: &str, e: openssl::error::ErrorStack| {
        StoreError::Refused(format!("TLS to the database: {what}: {e}"))
    };
    let mut builder =
        SslConnector::builder(SslMethod::tls()).map_err(|e| refused("OpenSSL setup", e))?;
    let verify = config.sslmode == SslMode::VerifyFull;
    if verify {
        if let Some(ca) = &config.ca_file {
            builder
                .set_ca_file(ca)
                .map_err(|e| refused("reading store.ca_file", e))?;
        }
        builder.set_verify(SslVerifyMode::PEER);
    } else {
        builder.set_verify(SslVerifyMode::NONE);
    }
    let mut connector = MakeTlsConnector::new(builder.build());
    if !verify {
        connector.set_callback(|c, _| {
            c.set_verify_hostname(false);
            Ok(())
        });
    }
    Ok(connector)
}

/// A connection of `pool`; [`StoreError::Unavailable`] when none comes in
/// time (the database is down, unreachable, or every connection is busy).
pub(super) fn take(pool: &Pool) -> Result<Conn, StoreError> {
    pool.get()
        .map_err(|e| StoreError::Unavailable(format!("no database connection: {e}")))
}

/// Refuses a server whose settings break the durability contract (a commit
/// that answers before it is flushed, a flush that is not one: `fsync`,
/// `full_page_writes`) or the metadata promise (a commit
/// time kept per transaction), naming the setting.
pub(super) fn check_settings(client: &mut Client) -> Result<(), StoreError> {
    let show = |client: &mut Client, name: &str| -> Result<String, StoreError> {
        let row = client
            .query_one(&format!("SHOW {name}"), &[])
            .map_err(db_err)?;
        Ok(row.get(0))
    };
    let sync = show(client, "synchronous_commit")?;
    if matches!(sync.as_str(), "off" | "local") {
        return Err(StoreError::Refused(format!(
            "PostgreSQL's synchronous_commit is \"{sync}\" for sealform's role: a commit could \
             answer before it is durable (or, with a standby, before the standby has it). Set \
             synchronous_commit = on in postgresql.conf, and remove any per-role or per-database \
             setting (ALTER ROLE ... RESET synchronous_commit; ALTER DATABASE ... RESET \
             synchronous_commit)"
        )));
    }
    for setting in ["fsync", "full_page_writes"] {
        if show(client, setting)? != "on" {
            return Err(StoreError::Refused(format!(
                "PostgreSQL's {setting} is off: a crash of the database's host could lose or \
                 corrupt committed records. Set {setting} = on in postgresql.conf and reload \
                 PostgreSQL"
            )));
        }
    }
    let track = show(client, "track_commit_timestamp")?;
    if track != "off" {
        return Err(StoreError::Refused(
            "PostgreSQL's track_commit_timestamp is on: it keeps the time of every commit, \
             which would date each record to the second. Set track_commit_timestamp = off in \
             postgresql.conf and restart PostgreSQL"
                .into(),
        ));
    }
    Ok(())
}

/// `e` as a [`StoreError`]: [`StoreError::Unavailable`] when the database
/// cannot be reached or is going away (so the client hears 503 and may
/// retry), [`StoreError::Database`] otherwise. Only the SQLSTATE, severity
/// and message are kept, never the `DETAIL`, which can quote values.
pub(crate) fn db_err(e: postgres::Error) -> StoreError {
    let text = match e.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => match std::error::Error::source(&e) {
            Some(cause) if cause.is::<io::Error>() => format!("{e}: {cause}"),
            _ => e.to_string(),
        },
    };
    if is_unavailable(&e) {
        StoreError::Unavailable(text)
    } else {
        StoreError::Database(text)
    }
}

/// Whether `e` says the database is unreachable or going away, or the
/// statement was cut short (a timeout, a conflict to retry).
fn is_unavailable(e: &postgres::Error) -> bool {
    if let Some(code) = e.code() {
        let code = code.code();
        // 08: connection exception; 57P0x: shutdown, crash, cannot connect
        // now; 57014: statement timeout; 53: insufficient resources; 40:
        // serialization failure or deadlock (to retry).
        return ["08", "57P", "53", "40"]
            .iter()
            .any(|class| code.starts_with(class))
            || code == "57014";
    }
    e.is_closed()
        || std::error::Error::source(e).is_some_and(|c| c.is::<io::Error>())
        || matches!(
            e.to_string().as_str(),
            "error connecting to server"
                | "timeout waiting for server"
                | "error performing TLS handshake"
                | "error communicating with the server"
        )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn config_with_url_file(mode: u32) -> (tempfile::TempDir, StoreConfig) {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("db-url");
        std::fs::write(
            &file,
            "postgresql://sealform:hunter2-secret@127.0.0.1:1/sealform\n",
        )
        .expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let config = StoreConfig {
            backend: crate::config::StoreBackend::Postgres,
            url_file: Some(file),
            sslmode: SslMode::Disable,
            ..StoreConfig::default()
        };
        (dir, config)
    }

    #[test]
    fn a_url_file_other_users_can_read_is_refused_without_showing_the_password() {
        let (_dir, config) = config_with_url_file(0o644);
        let text = client_config(&config).err().expect("refused").to_string();
        assert!(
            text.contains("store.url_file") && text.contains("chmod 600"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
        for mode in [0o600, 0o640] {
            let (_dir, config) = config_with_url_file(mode);
            let (pg, _) = client_config(&config).expect("a private url_file is read");
            assert_eq!(pg.get_dbname(), Some("sealform"));
        }
    }
}
