//! Rate limits: who the client is, and how often it may submit.
//!
//! It owns the client key (an HMAC of the IPv4 address or IPv6 /64 under a
//! per-process random key: the address itself is never stored, logged or
//! kept past the request), the choice of address (the socket peer, the
//! right-most `X-Forwarded-For` hop when the peer is a configured trusted
//! proxy, or the client a PROXY protocol header named), and
//! [`KeyedLimiter`], a governor limiter whose key map has a ceiling. It
//! must never log, store or return an address.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use super::AppState;
use super::error::{ApiError, HttpError, PageError};
use crate::config::{LimitsConfig, Rate};

/// Who a request comes from, as far as rate limits care: an opaque 128-bit
/// HMAC of the client's address (or of its /64 for IPv6). Two processes, or
/// two runs, give the same address different keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey([u8; 16]);

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientKey(..)")
    }
}

/// The client a PROXY protocol header named for this connection, or the
/// peer itself for a header that names none (see `[limits] proxy_protocol`);
/// a request extension, never logged or stored.
#[derive(Clone, Copy)]
pub struct ProxiedClient(pub IpAddr);

impl std::fmt::Debug for ProxiedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProxiedClient(..)")
    }
}

/// Turns addresses into [`ClientKey`]s with a key drawn at start and held
/// only in memory.
pub struct ClientKeyer {
    key: Zeroizing<[u8; 32]>,
    trusted_proxies: Vec<IpAddr>,
}

impl ClientKeyer {
    /// A keyer with a fresh random key; `trusted_proxies` may name the
    /// client in `X-Forwarded-For`.
    pub fn new(trusted_proxies: Vec<IpAddr>) -> ClientKeyer {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut key[..]);
        ClientKeyer {
            key,
            trusted_proxies: trusted_proxies.into_iter().map(canonical).collect(),
        }
    }

    /// The key of an address: IPv4 whole, IPv6 by its /64.
    pub fn key_of(&self, addr: IpAddr) -> ClientKey {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key[..])
            .expect("HMAC takes any key length");
        match canonical(addr) {
            IpAddr::V4(v4) => {
                mac.update(b"4");
                mac.update(&v4.octets());
            }
            IpAddr::V6(v6) => {
                mac.update(b"6");
                mac.update(&v6.octets()[..8]);
            }
        }
        let out = mac.finalize().into_bytes();
        let mut k = [0u8; 16];
        k.copy_from_slice(&out[..16]);
        ClientKey(k)
    }

    /// The key of a whole address, all 128 bits of an IPv6 one: for Tor
    /// circuits, which `HiddenServiceExportCircuitID` numbers in the low 32
    /// bits of addresses in one /64 (`fc00:dead:beef:4dad::/64`), so that
    /// [`ClientKeyer::key_of`] would make them all one client.
    pub fn key_of_whole(&self, addr: IpAddr) -> ClientKey {
        match canonical(addr) {
            IpAddr::V4(v4) => self.key_of(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key[..])
                    .expect("HMAC takes any key length");
                mac.update(b"w");
                mac.update(&v6.octets());
                let out = mac.finalize().into_bytes();
                let mut k = [0u8; 16];
                k.copy_from_slice(&out[..16]);
                ClientKey(k)
            }
        }
    }

    /// The key of the client behind `peer`: the peer itself, or the
    /// right-most `X-Forwarded-For` hop when the peer is a trusted proxy.
    /// A missing peer (in-process tests) is one shared "unknown" client.
    pub fn client_of(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> ClientKey {
        let Some(peer) = peer.map(canonical) else {
            return ClientKey([0; 16]);
        };
        if self.trusted_proxies.contains(&peer) {
            if let Some(forwarded) = rightmost_forwarded_for(headers) {
                return self.key_of(forwarded);
            }
        }
        self.key_of(peer)
    }
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(addr: IpAddr) -> IpAddr {
    addr.to_canonical()
}

/// The last address in the last `X-Forwarded-For` header: the hop the
/// trusted proxy itself appended. Anything left of it is the client's word.
fn rightmost_forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let last = headers.get_all("x-forwarded-for").iter().next_back()?;
    // From the bytes: a proxy that appends to the client's header keeps the
    // client's bytes on the left, and a non-ASCII one there must not make
    // the whole header unreadable (the request would fall back to the
    // proxy's own key).
    let bytes = last.as_bytes();
    let start = bytes.iter().rposition(|&b| b == b',').map_or(0, |i| i + 1);
    let hop = std::str::from_utf8(&bytes[start..]).ok()?.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

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

/// Every limiter and bound of the submission routes.
pub struct Limits {
    keyer: ClientKeyer,
    behind_tor: bool,
    form_client: KeyedLimiter<ClientKey>,
    form_each: Vec<GlobalLimiter>,
    form_global: GlobalLimiter,
    api_client: KeyedLimiter<ClientKey>,
    api_global: GlobalLimiter,
    inflight: Arc<Semaphore>,
    per_client: Arc<Mutex<HashMap<ClientKey, usize>>>,
    max_per_client: usize,
}

/// One client's claim on a submission slot; given back on drop. The map
/// holds only clients with a submission in flight, so it is bounded by
/// `max_inflight_submissions`.
struct ClientSlot {
    map: Arc<Mutex<HashMap<ClientKey, usize>>>,
    key: ClientKey,
}

impl ClientSlot {
    fn take(
        map: &Arc<Mutex<HashMap<ClientKey, usize>>>,
        key: ClientKey,
        max: usize,
    ) -> Option<ClientSlot> {
        let mut m = map.lock().ok()?;
        let n = m.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            map: Arc::clone(map),
            key,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.map.lock() {
            if let Some(n) = m.get_mut(&self.key) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.key);
                }
            }
        }
    }
}

impl Limits {
    /// The limiters `config` describes, for `forms` forms.
    pub fn new(config: &LimitsConfig, forms: usize) -> Limits {
        Limits {
            keyer: ClientKeyer::new(config.trusted_proxies.clone()),
            behind_tor: config.behind_tor,
            form_client: KeyedLimiter::new(config.form_client, config.max_tracked_clients),
            form_each: (0..forms)
                .map(|_| GlobalLimiter::new(config.form_each))
                .collect(),
            form_global: GlobalLimiter::new(config.form_global),
            api_client: KeyedLimiter::new(config.api_client, config.max_tracked_clients),
            api_global: GlobalLimiter::new(config.api_global),
            inflight: Arc::new(Semaphore::new(config.max_inflight_submissions)),
            per_client: Arc::new(Mutex::new(HashMap::new())),
            max_per_client: config.max_inflight_per_client,
        }
    }

    /// Client keys remembered by the form and API limiters.
    pub fn tracked_clients(&self) -> usize {
        self.form_client.len() + self.api_client.len()
    }

    /// Forgets idle clients; called periodically by the server.
    pub fn retain_recent(&self) {
        self.form_client.retain_recent();
        self.api_client.retain_recent();
    }

    /// The client-address keyer (for other limiters, e.g. the staff API).
    pub fn keyer(&self) -> &ClientKeyer {
        &self.keyer
    }

    /// Who sent `req`, or `None` when clients cannot be told apart (behind
    /// Tor without a PROXY header: every peer is the tor daemon, and one
    /// key for all would let one circuit lock everyone out).
    fn client_of(&self, req: &Request) -> Option<ClientKey> {
        let proxied = req.extensions().get::<ProxiedClient>().map(|c| c.0);
        match (proxied, self.behind_tor) {
            // Each Tor circuit its own client.
            (Some(addr), true) => Some(self.keyer.key_of_whole(addr)),
            // A proxy in front that speaks the PROXY protocol: its word
            // for the client, keyed like any address (X-Forwarded-For is
            // not read then).
            (Some(addr), false) => Some(self.keyer.key_of(addr)),
            (None, true) => None,
            (None, false) => {
                let peer = req
                    .extensions()
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip());
                Some(self.keyer.client_of(peer, req.headers()))
            }
        }
    }
}

/// Which submission route a request is for.
enum Route {
    Form(Option<usize>),
    Api,
}

/// Whether the handler refuses this post without storing or sealing
/// anything: an unknown form, a content type the route does not take, or a
/// post a browser says came from another site (where the route checks
/// that). Such posts pass uncharged: any web page can make its visitors'
/// browsers send them (no CORS preflight), each visitor a different client,
/// and charging them would spend the per-form and global budgets of real
/// senders.
fn refused_anyway(state: &AppState, route: &Route, headers: &HeaderMap) -> bool {
    let media = super::media_type(headers);
    let multipart = media.as_deref() == Some("multipart/form-data");
    let (known, takes, origin_checked) = match route {
        Route::Form(form) => (
            form.is_some(),
            multipart || media.as_deref() == Some("application/x-www-form-urlencoded"),
            true,
        ),
        Route::Api => (
            true,
            multipart || media.as_deref() == Some("application/json"),
            multipart,
        ),
    };
    let abuse = &state.intake().config.abuse;
    !known
        || !takes
        || (origin_checked
            && abuse.check_origin
            && super::pages::is_cross_site(headers, abuse.public_origin()))
}

/// Middleware on every matched route: limits submissions per client, per
/// form and globally (in that order, so a client over its own limit does not
/// use up everyone else's), and caps submissions in flight. Other requests
/// pass untouched.
pub async fn limit_submissions(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let route = match req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
    {
        Some("/forms/{form}") => {
            // Decoded as the `Path` extractor decodes it: `/forms/%74ip` is
            // the `tip` form and must meet `tip`'s limit.
            let raw = req.uri().path().trim_start_matches("/forms/");
            let id = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
            Route::Form(state.intake().config.form_index(&id))
        }
        Some("/api/v1/forms/{form}/submissions") => Route::Api,
        _ => return next.run(req).await,
    };
    if refused_anyway(&state, &route, req.headers()) {
        return next.run(req).await;
    }
    let limits = state.limits();
    let client = limits.client_of(&req);
    let verdict = if let Some(client) = client {
        match route {
            Route::Form(_) => limits.form_client.check(&client),
            Route::Api => limits.api_client.check(&client),
        }
    } else {
        Ok(())
    }
    .and_then(|()| match route {
        Route::Form(Some(i)) => limits.form_each[i].check(),
        _ => Ok(()),
    })
    .and_then(|()| match route {
        Route::Form(_) => limits.form_global.check(),
        Route::Api => limits.api_global.check(),
    });
    let is_api = matches!(route, Route::Api);
    if let Err(wait) = verdict {
        return refuse(
            is_api,
            HttpError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many submissions; nothing was stored, please wait a little and send again",
            ),
            wait,
        );
    }
    let Ok(_permit) = Arc::clone(&limits.inflight).try_acquire_owned() else {
        return refuse(
            is_api,
            HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the server is busy; nothing was stored, please send again in a moment",
            ),
            Duration::from_secs(5),
        );
    };
    let _slot = match client {
        Some(key) => match ClientSlot::take(&limits.per_client, key, limits.max_per_client) {
            Some(slot) => Some(slot),
            None => {
                return refuse(
                    is_api,
                    HttpError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too_many_at_once",
                        "too many submissions from you at once; nothing was stored, please wait for the others to finish",
                    ),
                    Duration::from_secs(5),
                );
            }
        },
        None => None,
    };
    next.run(req).await
}

fn refuse(is_api: bool, e: HttpError, wait: Duration) -> Response {
    let mut res = if is_api {
        ApiError(e).into_response()
    } else {
        PageError(e).into_response()
    };
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(v).expect("header"));
        h
    }

    #[test]
    fn ipv6_addresses_in_one_slash_64_share_a_key() {
        let k = ClientKeyer::new(vec![]);
        let a = k.key_of("2001:db8:1:2::1".parse().expect("ip"));
        let b = k.key_of("2001:db8:1:2:ffff::9".parse().expect("ip"));
        let c = k.key_of("2001:db8:1:3::1".parse().expect("ip"));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn tor_circuits_in_one_slash_64_get_keys_of_their_own_when_keyed_whole() {
        let k = ClientKeyer::new(vec![]);
        let circuit = |n: u32| -> IpAddr {
            let [a, b, c, d] = n.to_be_bytes();
            format!(
                "fc00:dead:beef:4dad::{:x}:{:x}",
                u16::from_be_bytes([a, b]),
                u16::from_be_bytes([c, d])
            )
            .parse()
            .expect("ip")
        };
        assert_eq!(k.key_of(circuit(1)), k.key_of(circuit(2)), "one /64");
        assert_ne!(k.key_of_whole(circuit(1)), k.key_of_whole(circuit(2)));
        assert_ne!(
            k.key_of_whole(circuit(1)),
            k.key_of_whole(circuit(0x1_0001))
        );
        assert_eq!(k.key_of_whole(circuit(7)), k.key_of_whole(circuit(7)));
        let v4: IpAddr = "203.0.113.5".parse().expect("ip");
        assert_eq!(k.key_of_whole(v4), k.key_of(v4));
    }

    #[test]
    fn two_keyers_give_one_address_different_keys() {
        let ip: IpAddr = "198.51.100.7".parse().expect("ip");
        assert_ne!(
            ClientKeyer::new(vec![]).key_of(ip),
            ClientKeyer::new(vec![]).key_of(ip)
        );
    }

    #[test]
    fn the_forwarded_for_header_counts_only_from_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.1".parse().expect("ip");
        let k = ClientKeyer::new(vec![proxy]);
        let client: IpAddr = "203.0.113.5".parse().expect("ip");
        let cases = [
            // (peer, header, expected address)
            ("10.0.0.1", "203.0.113.5", client),
            ("10.0.0.1", "1.2.3.4, 203.0.113.5", client),
            ("10.0.0.1", "garbage", proxy),
            ("10.0.0.2", "203.0.113.5", "10.0.0.2".parse().expect("ip")),
            ("::ffff:10.0.0.1", "203.0.113.5", client),
        ];
        for (peer, header, want) in cases {
            let peer: IpAddr = peer.parse().expect("ip");
            assert_eq!(
                k.client_of(Some(peer), &xff(header)),
                k.key_of(want),
                "{peer} {header}"
            );
        }
        // The client's own bytes on the left, not ASCII, as a proxy that
        // appends passes them: the proxy's hop still counts.
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff\xfe, 203.0.113.5").expect("header"),
        );
        assert_eq!(k.client_of(Some(proxy), &h), k.key_of(client));
    }

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
