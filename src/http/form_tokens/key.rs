//! The form-token key and clock: a random key per process by default, or
//! the key in `[abuse] form_token_secret_file`, which every node behind one
//! load balancer reads, so a form opened on one node is accepted by another.
//!
//! The secret is read once at start, checked (private to its owner, long
//! enough) and held only in memory, zeroized on drop; neither it nor any
//! part of it is ever logged or put in an error.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use data_encoding::HEXLOWER_PERMISSIVE;
use rand::RngCore as _;
use zeroize::Zeroizing;

/// The fewest secret bytes a shared key file must hold.
pub const MIN_SECRET_BYTES: usize = 32;

/// The most bytes read from a key file: a key is not a document.
const MAX_FILE_BYTES: u64 = 4096;

/// Why `[abuse] form_token_secret_file` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// The file cannot be opened or read.
    #[error("abuse.form_token_secret_file {path}: cannot read it: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Other users may read or write it.
    #[error(
        "abuse.form_token_secret_file {path}: other users may read or change it (mode {mode:o}); \
         make it readable by sealform only: chmod 600 (or 640 with a group of its own)"
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Fewer secret bytes than [`MIN_SECRET_BYTES`], or more than a key file holds.
    #[error(
        "abuse.form_token_secret_file {path}: holds {len} secret bytes; it needs from 32 to 4096 \
         random bytes, raw or as hex (e.g. `openssl rand -hex 32 > {path}`)"
    )]
    WrongLength {
        /// The file.
        path: PathBuf,
        /// The secret bytes found (after hex decoding, if it was hex).
        len: usize,
    },
}

/// The HMAC key of form tokens and the clock their issue time is read
/// from.
pub struct TokenKey {
    pub(super) secret: Zeroizing<Vec<u8>>,
    pub(super) clock: TokenClock,
}

impl TokenKey {
    /// A fresh random key, known to this process only, with its monotonic
    /// clock (the default).
    pub fn random() -> TokenKey {
        let mut secret = Zeroizing::new(vec![0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut secret[..]);
        TokenKey {
            secret,
            clock: TokenClock::Process(Instant::now()),
        }
    }

    /// The key `path` holds, shared with the other nodes, read with the
    /// wall clock (the nodes' clocks must agree: NTP).
    pub fn from_file(path: &Path) -> Result<TokenKey, SecretFileError> {
        let unreadable = |source| SecretFileError::Unreadable {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(unreadable)?;
        let mode = file.metadata().map_err(unreadable)?.permissions().mode();
        if mode & 0o007 != 0 {
            return Err(SecretFileError::Exposed {
                path: path.to_owned(),
                mode: mode & 0o7777,
            });
        }
        let mut raw = Zeroizing::new(Vec::new());
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut raw)
            .map_err(unreadable)?;
        let secret = decode_secret(&raw);
        if secret.len() < MIN_SECRET_BYTES || raw.len() as u64 > MAX_FILE_BYTES {
            return Err(SecretFileError::WrongLength {
                path: path.to_owned(),
                len: secret.len(),
            });
        }
        Ok(TokenKey {
            secret,
            clock: TokenClock::Wall,
        })
    }

    /// The key `[abuse]` asks for: the shared file's, or a random one.
    pub fn for_config(abuse: &crate::config::AbuseConfig) -> Result<TokenKey, SecretFileError> {
        match &abuse.form_token_secret_file {
            Some(path) => TokenKey::from_file(path),
            None => Ok(TokenKey::random()),
        }
    }

    /// Whether other processes holding the same file accept this one's
    /// tokens.
    pub fn is_shared(&self) -> bool {
        matches!(self.clock, TokenClock::Wall)
    }
}

/// A file's secret: hex decoded when the file is hex (surrounding white
/// space ignored), else its bytes as they are.
fn decode_secret(raw: &[u8]) -> Zeroizing<Vec<u8>> {
    let trimmed = raw.trim_ascii();
    let hex =
        !trimmed.is_empty() && trimmed.len() % 2 == 0 && trimmed.iter().all(u8::is_ascii_hexdigit);
    if hex {
        if let Ok(bytes) = HEXLOWER_PERMISSIVE.decode(trimmed) {
            return Zeroizing::new(bytes);
        }
    }
    Zeroizing::new(raw.to_vec())
}

/// Where a token's issue time is counted from.
pub(super) enum TokenClock {
    /// Milliseconds since this process started (a monotonic clock, immune
    /// to changes of the time of day): tokens are good on this process only.
    Process(Instant),
    /// Milliseconds since the Unix epoch, which every node reads alike.
    Wall,
}

impl TokenClock {
    /// Now, in this clock's milliseconds.
    pub(super) fn now_ms(&self) -> u64 {
        match self {
            TokenClock::Process(started) => started.elapsed().as_millis() as u64,
            TokenClock::Wall => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(bytes: &[u8], mode: u32) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(f.path(), bytes).expect("write");
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).expect("chmod");
        f
    }

    #[test]
    fn hex_and_raw_secrets_are_read() {
        let hex = file_with(format!("{}\n", "ab".repeat(32)).as_bytes(), 0o600);
        let key = TokenKey::from_file(hex.path()).expect("hex key");
        assert_eq!(&key.secret[..], &[0xab; 32][..]);
        assert!(key.is_shared());
        let raw: Vec<u8> = (0..48u8).map(|b| b.wrapping_mul(97)).collect();
        let raw_file = file_with(&raw, 0o640);
        let key = TokenKey::from_file(raw_file.path()).expect("raw key");
        assert_eq!(&key.secret[..], &raw[..]);
    }

    #[test]
    fn short_exposed_or_missing_secret_files_are_refused() {
        let short_hex = file_with("ab".repeat(31).as_bytes(), 0o600);
        let short_raw = file_with(b"too short to be a key", 0o600);
        let huge = file_with(&vec![7u8; 5000], 0o600);
        let exposed = file_with("ab".repeat(32).as_bytes(), 0o644);
        let cases = [
            (short_hex.path().to_owned(), "holds 31 secret bytes"),
            (short_raw.path().to_owned(), "holds 21 secret bytes"),
            (huge.path().to_owned(), "from 32 to 4096"),
            (exposed.path().to_owned(), "other users may read"),
            (PathBuf::from("/nonexistent/secret"), "cannot read it"),
        ];
        for (path, want) in cases {
            let err = TokenKey::from_file(&path)
                .err()
                .expect("refused")
                .to_string();
            assert!(err.contains(want), "{want} in {err}");
            assert!(err.contains("abuse.form_token_secret_file"), "{err}");
            assert!(!err.contains("abab"), "no secret in the error: {err}");
        }
    }
}
