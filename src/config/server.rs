//! The `[server]` table: the listening address, where records and keys
//! live, body and upload bounds, the sealing threads.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::Problem;

/// The `[server]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Directory for the spool and the index; relative paths are resolved
    /// against the directory holding the config file.
    pub data_dir: PathBuf,
    /// Directory of recipient certificates (`*.asc`, `*.pgp`, `*.gpg`);
    /// relative paths are resolved like `data_dir`.
    pub keys_dir: PathBuf,
    /// Largest request body accepted on any route, in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Memory the index (fjall) may use for its block cache, in bytes.
    #[serde(default = "default_index_cache_bytes")]
    pub index_cache_bytes: u64,
    /// Refuse certificates and message formats GnuPG 2.2 cannot read.
    #[serde(default = "default_true")]
    pub gnupg_compat: bool,
    /// Submissions sealed at the same time: the number of sealing threads
    /// (default: one per CPU core); more wait their turn. Uploads have
    /// their own slots (`max_concurrent_uploads`).
    #[serde(default = "default_max_concurrent_seals")]
    pub max_concurrent_seals: usize,
    /// The longest pause, in seconds, between two pieces of an upload's
    /// (`multipart/form-data`) body before it gets 408. Other bodies have
    /// `limits.body_timeout_secs` for the whole of them.
    #[serde(default = "default_upload_stall_secs")]
    pub upload_stall_secs: u64,
    /// Seconds a client has to send a whole `multipart/form-data` upload
    /// before it gets 408.
    #[serde(default = "default_upload_timeout_secs")]
    pub upload_timeout_secs: u64,
    /// The slowest an upload may arrive on average, in bytes of its fields
    /// and files per second, counted from `upload_stall_secs` after it
    /// started; 408 when it falls behind. It keeps a client that sends a
    /// byte now and then from holding an upload slot for
    /// `upload_timeout_secs`. When every upload slot is taken, the upload
    /// furthest behind this rate (counted from one second after its start)
    /// makes room for a newcomer (408). 0 turns both off.
    #[serde(default = "default_upload_min_bytes_per_sec")]
    pub upload_min_bytes_per_sec: u64,
    /// Free space (bytes) that must remain in `data_dir`: an upload that would
    /// leave less is refused or stopped with 503 and its partial file removed.
    /// Only for the embedded store (`[store] backend = "fs"`).
    #[serde(default = "default_min_free_bytes")]
    pub min_free_bytes: u64,
    /// Uploads (`multipart/form-data`) in progress at the same time; one more
    /// gets 503. They do not take the sealing slots of small submissions.
    #[serde(default = "default_max_concurrent_uploads")]
    pub max_concurrent_uploads: usize,
    /// Uploads one client (IPv4 address or IPv6 /64) may have in progress
    /// at once; one more gets 429. Not applied behind Tor without the PROXY
    /// protocol (no client is told apart there).
    #[serde(default = "default_max_uploads_per_client")]
    pub max_uploads_per_client: usize,
}

impl ServerConfig {
    /// Every value out of range, each with its key and the fix.
    pub(super) fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if !(1024..=MAX_BODY_LIMIT).contains(&self.max_body_bytes) {
            problems.push(Problem::new(
                "server.max_body_bytes",
                format!(
                    "must be from 1024 to {MAX_BODY_LIMIT} (64 MiB): such a body is held in \
                     memory; files go through file fields, which max_file_bytes bounds"
                ),
            ));
        }
        if self.index_cache_bytes < 1 << 20 {
            problems.push(Problem::new(
                "server.index_cache_bytes",
                "must be at least 1048576 (1 MiB)",
            ));
        }
        if !(1..=MAX_SEALING_THREADS).contains(&self.max_concurrent_seals) {
            problems.push(Problem::new(
                "server.max_concurrent_seals",
                format!("must be from 1 to {MAX_SEALING_THREADS} (one thread each)"),
            ));
        }
        // Bounded so that no deadline or semaphore can overflow.
        const WEEK: u64 = 7 * 86_400;
        let ranges = [
            ("server.upload_stall_secs", self.upload_stall_secs, WEEK),
            ("server.upload_timeout_secs", self.upload_timeout_secs, WEEK),
            (
                "server.max_concurrent_uploads",
                self.max_concurrent_uploads as u64,
                1_000_000,
            ),
            (
                "server.max_uploads_per_client",
                self.max_uploads_per_client as u64,
                1_000_000,
            ),
        ];
        for (key, n, max) in ranges {
            if !(1..=max).contains(&n) {
                problems.push(Problem::new(key, format!("must be from 1 to {max}")));
            }
        }
        problems
    }
}

pub(super) fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_body_bytes() -> usize {
    256 * 1024
}
fn default_index_cache_bytes() -> u64 {
    16 * 1024 * 1024
}
pub(super) fn default_true() -> bool {
    true
}
/// The most sealing threads a config may ask for.
const MAX_SEALING_THREADS: usize = 1024;

fn default_max_concurrent_seals() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}
fn default_upload_stall_secs() -> u64 {
    30
}
fn default_upload_min_bytes_per_sec() -> u64 {
    16 * 1024
}
fn default_upload_timeout_secs() -> u64 {
    3600
}
fn default_min_free_bytes() -> u64 {
    512 * 1024 * 1024
}
fn default_max_concurrent_uploads() -> usize {
    16
}
fn default_max_uploads_per_client() -> usize {
    2
}
/// Largest `server.max_body_bytes`: a non-file body is read into memory
/// whole before it is checked.
pub const MAX_BODY_LIMIT: usize = 64 << 20;
