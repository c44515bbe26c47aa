//! The `[store]` table: which backend keeps the records (the embedded spool
//! and index under `data_dir`, or PostgreSQL) and how to reach the database.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Problem;

/// Which backend keeps the records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// Spool files and a sled index under `server.data_dir` (the default).
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

/// The `[store]` table.
#[derive(Debug, Clone, Deserialize)]
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
    16
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
    /// Every value out of range or missing, each with its key and the fix.
    pub(super) fn validate(&self) -> Vec<Problem> {
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
