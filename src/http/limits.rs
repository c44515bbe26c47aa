//! Rate limits: who the client is, and how often it may submit.
//!
//! It owns the client key (an HMAC of the IPv4 address or IPv6 /64 under a
//! per-process random key: the address itself is never stored, logged or
//! kept past the request), the choice of address (the socket peer, the
//! right-most `X-Forwarded-For` hop when the peer is a configured trusted
//! proxy, or the client a PROXY protocol header named), [`KeyedLimiter`], a governor limiter whose key map has a
//! ceiling, and the submission routes' budgets and in-flight caps
//! ([`Limits`]). The handlers call [`Limits::charge`] themselves, once a post
//! has passed the checks that cost nothing (so a post refused anyway never
//! spends a budget real senders share), and [`Limits::enter`] before they
//! read a body. It must never log, store or return an address.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
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

#[cfg(test)]
impl ClientKey {
    /// A key for unit tests.
    pub(crate) fn test(n: u8) -> ClientKey {
        ClientKey([n; 16])
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

/// The /64 in which Tor's `HiddenServiceExportCircuitID haproxy` names
/// circuits: `fc00:dead:beef:4dad::/64`.
const TOR_CIRCUITS: [u16; 4] = [0xfc00, 0xdead, 0xbeef, 0x4dad];

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

    /// The key of a Tor circuit's address, whole: Tor's
    /// `HiddenServiceExportCircuitID` numbers circuits in the low 32 bits of
    /// addresses in one /64 (`fc00:dead:beef:4dad::/64`), so [`ClientKeyer::key_of`]
    /// would make them all one client. Any other address is keyed by
    /// [`ClientKeyer::key_of`]: a front end wrongly set up as Tor must not let
    /// a client escape its limits by changing addresses inside its /64.
    pub fn key_of_circuit(&self, addr: IpAddr) -> ClientKey {
        match canonical(addr) {
            IpAddr::V6(v6) if v6.segments()[..4] == TOR_CIRCUITS => {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key[..])
                    .expect("HMAC takes any key length");
                mac.update(b"w");
                mac.update(&v6.octets());
                let out = mac.finalize().into_bytes();
                let mut k = [0u8; 16];
                k.copy_from_slice(&out[..16]);
                ClientKey(k)
            }
            other => self.key_of(other),
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
    token_client: KeyedLimiter<ClientKey>,
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
            token_client: KeyedLimiter::new(config.form_page_client, config.max_tracked_clients),
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
        self.form_client.len() + self.token_client.len() + self.api_client.len()
    }

    /// Forgets idle clients; called periodically by the server.
    pub fn retain_recent(&self) {
        self.form_client.retain_recent();
        self.token_client.retain_recent();
        self.api_client.retain_recent();
    }

    /// The client-address keyer (for other limiters, e.g. the staff API).
    pub fn keyer(&self) -> &ClientKeyer {
        &self.keyer
    }
}

/// The rate budgets a submission is charged to.
#[derive(Clone, Copy)]
pub enum Budget {
    /// An HTML form post to the form of this index: per client, per form
    /// and global.
    Form(usize),
    /// A JSON API submission: per client and global.
    Api,
}

/// Why a submission may not go ahead now, and when to send it again.
pub struct Refused {
    /// What to answer.
    pub error: HttpError,
    wait: Duration,
}

impl Refused {
    fn rate_limited(wait: Duration) -> Refused {
        Refused {
            error: HttpError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many submissions; nothing was stored, please wait a little and send again",
            ),
            wait,
        }
    }

    /// `error`, to be sent again in `wait`.
    pub fn new(error: HttpError, wait: Duration) -> Refused {
        Refused { error, wait }
    }

    /// The answer: JSON on the API, a page elsewhere, with `Retry-After`
    /// (whole seconds) and `Connection: close` (the body, if any, is not
    /// read: hyper closes the connection rather than drain it).
    pub fn into_response(self, api: bool) -> Response {
        let mut res = if api {
            ApiError(self.error).into_response()
        } else {
            PageError(self.error).into_response()
        };
        let wait = self.wait;
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        super::closing(res)
    }
}

/// A submission's claim on the in-flight caps (global, and its client's);
/// given back when dropped.
pub struct InFlight {
    _permit: tokio::sync::OwnedSemaphorePermit,
    _slot: Option<ClientSlot>,
}

impl Limits {
    /// The client behind a request, as the per-client limits know it; `None`
    /// when clients cannot be told apart (behind Tor without a PROXY
    /// header: every peer is the tor daemon, and one key for all would let
    /// one circuit lock everyone out).
    pub fn client(&self, extensions: &Extensions, headers: &HeaderMap) -> Option<ClientKey> {
        let proxied = extensions.get::<ProxiedClient>().map(|c| c.0);
        match (proxied, self.behind_tor) {
            // Each Tor circuit its own client.
            (Some(addr), true) => Some(self.keyer.key_of_circuit(addr)),
            // A proxy in front that speaks the PROXY protocol: its word for
            // the client, keyed like any address (X-Forwarded-For is not
            // read then).
            (Some(addr), false) => Some(self.keyer.key_of(addr)),
            (None, true) => None,
            (None, false) => {
                let peer = extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip());
                Some(self.keyer.client_of(peer, headers))
            }
        }
    }

    /// Charges one submission to `budget`: per client first (so a client
    /// over its own limit does not use up everyone else's), then per form,
    /// then globally. Called by the handlers once a post has passed every
    /// check that costs nothing to make (form known, media type, origin;
    /// for an HTML post also its form token and honeypot): a post refused
    /// anyway spends no budget, so a flood of them cannot close a form.
    pub fn charge(&self, client: Option<ClientKey>, budget: Budget) -> Result<(), Refused> {
        if let Some(client) = client {
            match budget {
                Budget::Form(_) => self.form_client.check(&client),
                Budget::Api => self.api_client.check(&client),
            }
            .map_err(Refused::rate_limited)?;
        }
        if let Budget::Form(i) = budget {
            if let Some(each) = self.form_each.get(i) {
                each.check().map_err(Refused::rate_limited)?;
            }
        }
        match budget {
            Budget::Form(_) => self.form_global.check(),
            Budget::Api => self.api_global.check(),
        }
        .map_err(Refused::rate_limited)
    }

    /// Charges one rendered form (a fresh form token) to its client's
    /// budget. Posts without a valid token cost nothing, so the tokens
    /// themselves are what a client must be limited in.
    pub fn issue_token(&self, client: Option<ClientKey>) -> Result<(), Refused> {
        match client {
            Some(client) => self.token_client.check(&client).map_err(|wait| {
                Refused::new(
                    HttpError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limited",
                        "too many forms opened; please wait a little and open the form again",
                    ),
                    wait,
                )
            }),
            None => Ok(()),
        }
    }

    /// A slot under `max_inflight_submissions` and one of the client's
    /// `max_inflight_per_client`, taken before a body is read.
    pub fn enter(&self, client: Option<ClientKey>) -> Result<InFlight, Refused> {
        let Ok(permit) = Arc::clone(&self.inflight).try_acquire_owned() else {
            return Err(Refused::new(
                HttpError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "the server is busy; nothing was stored, please send again in a moment",
                ),
                Duration::from_secs(5),
            ));
        };
        let slot = match client {
            Some(key) => match ClientSlot::take(&self.per_client, key, self.max_per_client) {
                Some(slot) => Some(slot),
                None => {
                    return Err(Refused::new(
                        HttpError::new(
                            StatusCode::TOO_MANY_REQUESTS,
                            "too_many_at_once",
                            "too many submissions from you at once; nothing was stored, please wait for the others to finish",
                        ),
                        Duration::from_secs(5),
                    ));
                }
            },
            None => None,
        };
        Ok(InFlight {
            _permit: permit,
            _slot: slot,
        })
    }
}

/// The client of a request, as the per-client limits know it (`None`
/// behind Tor).
pub struct Client(pub Option<ClientKey>);

impl axum::extract::FromRequestParts<AppState> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Client, Self::Rejection> {
        Ok(Client(
            state.limits().client(&parts.extensions, &parts.headers),
        ))
    }
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
    fn tor_circuits_get_keys_of_their_own_and_other_addresses_are_keyed_by_their_slash_64() {
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
        assert_ne!(k.key_of_circuit(circuit(1)), k.key_of_circuit(circuit(2)));
        assert_ne!(
            k.key_of_circuit(circuit(1)),
            k.key_of_circuit(circuit(0x1_0001))
        );
        assert_eq!(k.key_of_circuit(circuit(7)), k.key_of_circuit(circuit(7)));
        let v4: IpAddr = "203.0.113.5".parse().expect("ip");
        assert_eq!(k.key_of_circuit(v4), k.key_of(v4));
        // Outside Tor's /64, an address is keyed by its /64 as usual.
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2::2".parse().expect("ip");
        assert_eq!(k.key_of_circuit(a), k.key_of_circuit(b));
        assert_eq!(k.key_of_circuit(a), k.key_of(a));
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
