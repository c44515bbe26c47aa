//! The request body of an upload as the multipart parser reads it
//! ([`Metered`]): one chunk per poll, and bounded in what the parser may
//! read with nothing to show for it, so neither a body without a boundary
//! nor a preamble sent byte by byte can cost unbounded memory or time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;

/// Bytes the multipart parser may hold beyond what it has handed on as
/// field data: preamble, part headers, boundaries. The parser itself would
/// buffer a body without a boundary whole.
const FRAMING_SLACK: u64 = 8 * 1024 * 1024;

/// What the parser may read with nothing to show for it (no new part, no
/// field data): a preamble, or one part's headers and boundary, at most
/// this many bytes in at most this many chunks. A browser's are under 2 KiB
/// in one or two chunks. The parser searches its whole buffer again for
/// every chunk it is given, so without these bounds a preamble sent in
/// 1-byte chunks cost quadratic time: 600 KB of chunked body kept a core
/// busy for 7.8 s.
const FRAMING_GAP_BYTES: u64 = 32 * 1024;
const FRAMING_GAP_CHUNKS: u32 = 64;

/// The request body as the multipart parser reads it, one chunk per poll.
///
/// The parser pulls chunks for as long as they are ready and buffers them,
/// and it keeps a body without a boundary (or with endless part headers)
/// buffered whole. So this stream answers `Pending` (waking itself at once)
/// after every chunk, which lets the parser hand on what it has before it
/// reads more. It fails once it has read [`FRAMING_SLACK`] more than the
/// field data handed on (`delivered`, counted as the parts are read), or more than
/// [`FRAMING_GAP_BYTES`] or [`FRAMING_GAP_CHUNKS`] since the parser last
/// showed progress (a part begun or field data handed on).
pub struct Metered<S> {
    inner: S,
    consumed: u64,
    delivered: Arc<AtomicU64>,
    progress: Arc<AtomicU64>,
    /// `progress` when last seen, and the bytes and chunks read since it
    /// changed.
    seen_progress: u64,
    since_progress: (u64, u32),
    just_read: bool,
}

impl<S> Metered<S> {
    /// `inner`, metered against `delivered` (bytes of field data handed on)
    /// and `progress` (parts begun and chunks handed on).
    pub fn new(inner: S, delivered: Arc<AtomicU64>, progress: Arc<AtomicU64>) -> Metered<S> {
        Metered {
            inner,
            consumed: 0,
            delivered,
            progress,
            seen_progress: 0,
            since_progress: (0, 0),
            just_read: false,
        }
    }
}

impl<S> futures_util::Stream for Metered<S>
where
    S: futures_util::Stream<Item = Result<Bytes, axum::Error>> + Unpin,
{
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if std::mem::take(&mut self.just_read) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        // The parser has worked on the last chunk: any progress since?
        let progress = self.progress.load(Ordering::Relaxed);
        if progress != self.seen_progress {
            self.seen_progress = progress;
            self.since_progress = (0, 0);
        }
        let (gap_bytes, gap_chunks) = self.since_progress;
        if self.consumed > self.delivered.load(Ordering::Relaxed) + FRAMING_SLACK
            || gap_bytes > FRAMING_GAP_BYTES
            || gap_chunks >= FRAMING_GAP_CHUNKS
        {
            return Poll::Ready(Some(Err(axum::Error::new(std::io::Error::other(
                "multipart framing too large",
            )))));
        }
        let polled = std::pin::Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &polled {
            let n = chunk.len() as u64;
            self.consumed += n;
            self.since_progress.0 += n;
            self.since_progress.1 += 1;
            self.just_read = true;
        }
        polled
    }
}
