//! Who a request comes from, as the rate limits know it: the client key
//! ([`ClientKey`], an HMAC of the IPv4 address or IPv6 /64 under a
//! per-process random key: the address itself is never stored, logged or
//! kept past the request) and the choice of address ([`ClientKeyer`]: the
//! socket peer, the right-most `X-Forwarded-For` hop when the peer is a
//! configured trusted proxy, or the client a PROXY protocol header named,
//! [`ProxiedClient`]). It must never log, store or return an address.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

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
}
