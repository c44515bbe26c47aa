//! The `[store]` table: which backend keeps the records (the embedded spool
//! and index under `data_dir`, or PostgreSQL) and how to reach the database.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Problem;

/// Which backend keeps the records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// Spool files and an index (fjall) under `server.data_dir` (the default).
    #[default]
    Fs,
    /// A PostgreSQL database, which several nodes may share.
    Postgres,
}

/// How the connection to PostgreSQL is protected (libpq's `sslmode` names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plain TCP (or a Unix socket).
    Disable,
    /// TLS when the server offers it, unverified; plain otherwise.
    #[default]
    Prefer,
    /// TLS always, certificate not verified.
    Require,
    /// TLS always, the certificate verified against `ca_file` (or the
    /// system's roots) and the host name checked.
    VerifyFull,
}

/// The `[store]` table. Its `Debug` leaves the connection string out: it
/// may hold the database password.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `fs` (default) or `postgres`.
    #[serde(default)]
    pub backend: StoreBackend,
    /// The connection string (`postgresql://user@host:port/db` or
    /// `host=... dbname=...`). Prefer `url_file`, which keeps a password
    /// out of this file.
    #[serde(default)]
    pub url: Option<String>,
    /// A file holding the connection string (read at start); relative to the
    /// configuration file.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// Connections in the pool. Every upload in flight holds one while it
    /// streams in; other records hold one only for their commit.
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// TLS to the database: `disable`, `prefer` (default), `require` or
    /// `verify-full`.
    #[serde(default)]
    pub sslmode: SslMode,
    /// PEM file of the certificate authorities trusted with `verify-full`
    /// (the system's roots when unset); relative to the configuration file.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_pool_size() -> u32 {
    32
}

/// Connections kept for everything but uploads (records' commits, the
/// replay set, the answers to tipsters, the staff API): `pool_size` must exceed
/// `server.max_concurrent_uploads` by this many, so that uploads streaming
/// in slowly cannot take every connection.
pub const POOL_SPARE: usize = 4;

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("backend", &self.backend)
            .field("url", &self.url.as_ref().map(|_| "(not shown)"))
            .field("url_file", &self.url_file)
            .field("pool_size", &self.pool_size)
            .field("sslmode", &self.sslmode)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl Default for StoreConfig {
    /// The embedded store; the database settings at their defaults.
    fn default() -> StoreConfig {
        StoreConfig {
            backend: StoreBackend::Fs,
            url: None,
            url_file: None,
            pool_size: default_pool_size(),
            sslmode: SslMode::default(),
            ca_file: None,
        }
    }
}

impl StoreConfig {
    /// Every value out of range or missing, each with its key and the fix;
    /// `max_concurrent_uploads` is `server.max_concurrent_uploads` (every
    /// upload in flight holds a connection of the pool).
    pub(super) fn validate(&self, max_concurrent_uploads: usize) -> Vec<Problem> {
        let mut problems = Vec::new();
        let postgres = self.backend == StoreBackend::Postgres;
        match (&self.url, &self.url_file) {
            (Some(_), Some(_)) => problems.push(Problem::new(
                "store.url",
                "give the connection string once: either `url` or `url_file`, not both",
            )),
            (None, None) if postgres => problems.push(Problem::new(
                "store.url",
                "backend = \"postgres\" needs the connection string: `url_file` (a file \
                 holding it, which keeps the password out of this file) or `url`",
            )),
            _ => {}
        }
        if self.pool_size == 0 || self.pool_size > 1024 {
            problems.push(Problem::new(
                "store.pool_size",
                "give between 1 and 1024 connections",
            ));
        } else if postgres && (self.pool_size as usize) < max_concurrent_uploads + POOL_SPARE {
            problems.push(Problem::new(
                "store.pool_size",
                format!(
                    "every upload in flight holds a connection while it streams in: give at \
                     least server.max_concurrent_uploads + {POOL_SPARE} ({}) connections, or \
                     lower server.max_concurrent_uploads",
                    max_concurrent_uploads + POOL_SPARE
                ),
            ));
        }
        if self.ca_file.is_some() && self.sslmode != SslMode::VerifyFull {
            problems.push(Problem::new(
                "store.ca_file",
                "a CA file is only used with sslmode = \"verify-full\"; set that, or remove \
                 ca_file",
            ));
        }
        if !postgres && (self.url.is_some() || self.url_file.is_some()) {
            problems.push(Problem::new(
                "store.backend",
                "a connection string is given but the backend is \"fs\"; set backend = \
                 \"postgres\" or remove the url",
            ));
        }
        problems
    }

    /// Resolves `url_file` and `ca_file` against `base`, the configuration
    /// file's directory.
    pub(super) fn resolve_paths(&mut self, base: &Path) {
        for path in [&mut self.url_file, &mut self.ca_file]
            .into_iter()
            .flatten()
        {
            *path = base.join(&*path);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{MINIMAL, parse};

    /// `MINIMAL` with a `[store]` on PostgreSQL of `pool_size` connections
    /// and `uploads` uploads in flight at most.
    fn with_pool(pool_size: u32, uploads: usize) -> String {
        MINIMAL.replace(
            "keys_dir = \"keys\"\n",
            &format!(
                "keys_dir = \"keys\"\nmax_concurrent_uploads = {uploads}\n\n[store]\n\
                 backend = \"postgres\"\nurl = \"postgresql://sealform@db/sealform\"\n\
                 pool_size = {pool_size}\n"
            ),
        )
    }

    #[test]
    fn a_pool_that_uploads_could_fill_is_refused_naming_the_least_size() {
        let text = parse(&with_pool(16, 16)).expect_err("refused").to_string();
        assert!(text.contains("store.pool_size"), "{text}");
        assert!(text.contains("(20)"), "{text}");
        parse(&with_pool(20, 16)).expect("valid");
        // The default pool leaves room beside the default upload slots.
        parse(&MINIMAL.replace(
            "keys_dir = \"keys\"\n",
            "keys_dir = \"keys\"\n\n[store]\nbackend = \"postgres\"\nurl = \"postgresql://db/s\"\n",
        ))
        .expect("valid");
    }

    #[test]
    fn the_debug_form_of_the_store_table_leaves_the_password_out() {
        let config = parse(&with_pool(32, 16).replace("sealform@db", "sealform:hunter2-secret@db"))
            .expect("valid");
        let shown = format!("{:?}", config.store);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("not shown"), "{shown}");
    }
}
