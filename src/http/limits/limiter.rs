//! Rate limiters with bounded memory: [`KeyedLimiter`], a governor
//! limiter per key whose key map has a ceiling ([`BoundedStore`]), and
//! [`GlobalLimiter`], one bucket for everyone.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};

use crate::config::Rate;

/// A governor key map with a ceiling: once it holds `ceiling` keys, new
/// keys share one overflow bucket until idle keys are forgotten.
pub struct BoundedStore<K: Hash + Eq + Clone> {
    map: DashMapStateStore<K>,
    overflow: InMemoryState,
    ceiling: usize,
}

impl<K: Hash + Eq + Clone> StateStore for BoundedStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if self.map.len() < self.ceiling || self.map.contains_key(key) {
            self.map.measure_and_replace(key, f)
        } else {
            self.overflow.measure_and_replace(&NotKeyed::NonKey, f)
        }
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for BoundedStore<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&self.map, drop_below);
    }
    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&self.map);
    }
    fn len(&self) -> usize {
        self.map.len()
    }
    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// A keyed rate limiter with bounded memory, reusable by any route (the
/// staff API keeps its own): [`KeyedLimiter::check`] per request,
/// [`KeyedLimiter::retain_recent`] now and then.
pub struct KeyedLimiter<K: Hash + Eq + Clone> {
    limiter: RateLimiter<
        K,
        BoundedStore<K>,
        DefaultClock,
        NoOpMiddleware<<DefaultClock as Clock>::Instant>,
    >,
    ceiling: usize,
    last_prune: AtomicU64,
    started: Instant,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// A limiter allowing `rate` per key and remembering at most `ceiling`
    /// keys.
    pub fn new(rate: Rate, ceiling: usize) -> KeyedLimiter<K> {
        let store = BoundedStore {
            map: DashMapStateStore::default(),
            overflow: InMemoryState::default(),
            ceiling,
        };
        KeyedLimiter {
            limiter: RateLimiter::new(quota(rate), store, DefaultClock::default()),
            ceiling,
            last_prune: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// `Ok` if `key` may go ahead now, else how long it should wait.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        if self.limiter.len() >= self.ceiling {
            // Full: forget idle keys, at most once a second.
            let now = self.started.elapsed().as_millis() as u64;
            let last = self.last_prune.load(Ordering::Relaxed);
            if now.saturating_sub(last) >= 1000
                && self
                    .last_prune
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                self.retain_recent();
            }
        }
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    /// Forgets keys whose bucket is full again.
    pub fn retain_recent(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Keys remembered now (never much above the ceiling).
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    /// No key is remembered.
    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

/// One bucket for everyone.
pub struct GlobalLimiter {
    limiter: governor::DefaultDirectRateLimiter,
}

impl GlobalLimiter {
    /// A limiter allowing `rate` in total.
    pub fn new(rate: Rate) -> GlobalLimiter {
        GlobalLimiter {
            limiter: RateLimiter::direct(quota(rate)),
        }
    }

    /// `Ok` if one more may go ahead now, else how long to wait.
    pub fn check(&self) -> Result<(), Duration> {
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }
}

fn quota(rate: Rate) -> Quota {
    let per_minute = NonZeroU32::new(rate.per_minute).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_minute(per_minute).allow_burst(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_map_never_grows_past_its_ceiling() {
        let lim: KeyedLimiter<u32> = KeyedLimiter::new(
            Rate {
                burst: 2,
                per_minute: 1,
            },
            100,
        );
        for i in 0..5000 {
            let _ = lim.check(&i);
        }
        assert!(lim.len() <= 100, "{}", lim.len());
    }

    #[test]
    fn a_key_is_refused_after_its_burst_with_a_wait() {
        let lim: KeyedLimiter<u32> = KeyedLimiter::new(
            Rate {
                burst: 3,
                per_minute: 1,
            },
            10,
        );
        for _ in 0..3 {
            assert!(lim.check(&1).is_ok());
        }
        let wait = lim.check(&1).expect_err("over the burst");
        assert!(wait > Duration::from_secs(30) && wait <= Duration::from_secs(60));
        assert!(lim.check(&2).is_ok());
    }
}
