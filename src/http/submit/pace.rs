//! An upload's pace ([`Pace`]): its deadline (`upload_timeout_secs`), the
//! longest pause (`upload_stall_secs`), the minimum average rate after that
//! grace (`upload_min_bytes_per_sec`) and eviction to make room for another
//! upload; each answered 408. It also counts what was delivered, for the
//! rate and for the framing bounds of `http/submit/metered.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use tokio::time::Instant;

use crate::api::error::ErrorCode;
use crate::config::ServerConfig;
use crate::http::error::HttpError;
use crate::http::slots::Eviction;

/// An upload's deadlines and minimum rate.
pub struct Pace {
    started: Instant,
    body_deadline: Instant,
    idle: Duration,
    /// `upload_min_bytes_per_sec`: 0 for no minimum.
    min_rate: u64,
    /// Bytes of fields and files received so far.
    delivered: Arc<AtomicU64>,
    /// Parts begun and chunks of field data received so far: what
    /// `Metered` counts the framing gap from.
    progress: Arc<AtomicU64>,
    /// Set when the upload must make room for another.
    eviction: Arc<Eviction>,
}

impl Pace {
    /// The pace `server` asks of an upload that started at `started`.
    pub fn new(
        server: &ServerConfig,
        started: Instant,
        delivered: Arc<AtomicU64>,
        progress: Arc<AtomicU64>,
        eviction: Arc<Eviction>,
    ) -> Pace {
        Pace {
            started,
            body_deadline: started + Duration::from_secs(server.upload_timeout_secs),
            idle: Duration::from_secs(server.upload_stall_secs),
            min_rate: server.upload_min_bytes_per_sec,
            delivered,
            progress,
            eviction,
        }
    }

    /// Awaits `fut` unless the body stalls, falls behind the minimum rate
    /// or passes its deadline (408).
    pub async fn timed<T>(&self, fut: impl Future<Output = T>) -> Result<T, HttpError> {
        let until = self.body_deadline.min(Instant::now() + self.idle);
        let until = until.min(self.behind_at().unwrap_or(until));
        tokio::select! {
            biased;
            () = self.eviction.evicted() => Err(HttpError::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::RequestTimeout,
                "the upload arrived more slowly than the server's minimum rate while every \
                 upload slot was taken, and made room for another; nothing was stored",
            )),
            timed = tokio::time::timeout_at(until, fut) => timed.map_err(|_| {
                HttpError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    ErrorCode::RequestTimeout,
                    "the request body arrived too slowly; nothing was stored",
                )
            }),
        }
    }

    /// The next chunk of `part`, in time.
    pub async fn chunk(&self, part: &mut multer::Field<'_>) -> Result<Option<Bytes>, HttpError> {
        self.timed(part.chunk()).await?.map_err(broken)
    }

    /// Counts `n` bytes of fields and files received.
    pub fn count(&self, n: usize) {
        self.delivered.fetch_add(n as u64, Ordering::Relaxed);
        self.progress.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a part begun.
    pub fn part_begun(&self) {
        self.progress.fetch_add(1, Ordering::Relaxed);
    }

    /// When the body falls behind `min_rate` unless more of it arrives: it
    /// must have delivered `min_rate` bytes for every second after the first
    /// `idle` ones (the grace that lets a slow start or a short server-side
    /// wait pass). `None` without a minimum.
    fn behind_at(&self) -> Option<Instant> {
        let rate = self.min_rate;
        if rate == 0 {
            return None;
        }
        let bytes = self.delivered.load(Ordering::Relaxed);
        let covered = Duration::from_secs(bytes / rate)
            + Duration::from_nanos((bytes % rate).saturating_mul(1_000_000_000) / rate);
        self.idle
            .checked_add(covered)
            .and_then(|d| self.started.checked_add(d))
    }
}

/// 400 for a body the multipart parser could not read.
pub fn broken(_: multer::Error) -> HttpError {
    // multer's messages may quote client-chosen names: never pass them on.
    HttpError::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::Malformed,
        "the multipart/form-data body is malformed or incomplete",
    )
}
