//! The PROXY protocol header (HAProxy's, v1 text and v2 binary) that a front
//! end writes at the start of each connection when `[limits] proxy_protocol`
//! is on: Tor's `HiddenServiceExportCircuitID haproxy` (one address per
//! circuit), HAProxy, nginx's `proxy_protocol on`.
//!
//! It owns reading that header: within a deadline, at most
//! [`MAX_HEADER_BYTES`], parsed by the `ppp` crate, and handing back the
//! bytes read past it (the start of the HTTP request). A connection
//! without a valid header is refused; the reason it gives never holds the
//! header's bytes or an address.

use std::net::IpAddr;
use std::time::Duration;

use ppp::PartialResult as _;
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;

/// The most bytes read while looking for the header. A v1 header is at most
/// 107 bytes (Tor's is one); a v2 header with its addresses is at most 232,
/// and the rest of this room is for the TLVs some proxies add.
pub const MAX_HEADER_BYTES: usize = 536;

/// Why a connection was refused before its first request.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    /// No whole header arrived within the deadline.
    #[error("no PROXY protocol header within {0:?}")]
    TimedOut(Duration),
    /// The peer closed the connection before a whole header arrived.
    #[error("the connection closed before a whole PROXY protocol header arrived")]
    Closed,
    /// The connection does not start with a PROXY protocol header (a
    /// client that reached the port directly, or a front end not set up to
    /// send one).
    #[error("the connection does not start with a valid PROXY protocol header")]
    Invalid,
    /// More than [`MAX_HEADER_BYTES`] without a whole header.
    #[error("no whole PROXY protocol header in the first {MAX_HEADER_BYTES} bytes")]
    TooLong,
    /// Reading from the socket failed.
    #[error("reading the PROXY protocol header failed: {0}")]
    Io(#[from] std::io::Error),
}

/// What the header said, and what came after it.
pub struct ProxyHeader {
    /// The client's address as the front end gives it; `None` when the
    /// header names none (v1 `UNKNOWN`, v2 `LOCAL` or a non-IP family: the
    /// front end's own connection, e.g. a health check).
    pub client: Option<IpAddr>,
    /// Bytes read past the header: the start of the first request.
    pub rest: Vec<u8>,
}

/// Reads and parses the header at the start of `stream`, waiting at most
/// `within` for all of it.
pub async fn read(
    stream: &mut TcpStream,
    within: Duration,
) -> Result<ProxyHeader, ProxyHeaderError> {
    match tokio::time::timeout(within, read_header(stream)).await {
        Ok(result) => result,
        Err(_) => Err(ProxyHeaderError::TimedOut(within)),
    }
}

async fn read_header(stream: &mut TcpStream) -> Result<ProxyHeader, ProxyHeaderError> {
    let mut buf = [0u8; MAX_HEADER_BYTES];
    let mut filled = 0;
    loop {
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Err(ProxyHeaderError::Closed);
        }
        filled += n;
        if let Some(parsed) = parse(&buf[..filled])? {
            return Ok(parsed);
        }
        if filled == buf.len() {
            return Err(ProxyHeaderError::TooLong);
        }
    }
}

/// The twelve bytes a v2 header starts with.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// The longest v1 line, CRLF included.
const V1_MAX_BYTES: usize = 107;

/// `Ok(None)`: a header may still follow (read more).
fn parse(bytes: &[u8]) -> Result<Option<ProxyHeader>, ProxyHeaderError> {
    if V2_SIGNATURE.starts_with(&bytes[..bytes.len().min(V2_SIGNATURE.len())]) {
        let parsed = ppp::v2::Header::try_from(bytes);
        if parsed.is_incomplete() {
            return Ok(None);
        }
        let h = parsed.map_err(|_| ProxyHeaderError::Invalid)?;
        let client = match (h.command, h.addresses) {
            (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv4(a)) => {
                Some(IpAddr::V4(a.source_address))
            }
            (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv6(a)) => {
                Some(IpAddr::V6(a.source_address))
            }
            _ => None,
        };
        return Ok(Some(ProxyHeader {
            client,
            rest: bytes[h.len()..].to_vec(),
        }));
    }
    // v1 is a line, parsed once it is whole: ppp takes some cut lines
    // (one that ends in the space after the source port) for wrong ones.
    if !b"PROXY ".starts_with(&bytes[..bytes.len().min(6)]) {
        return Err(ProxyHeaderError::Invalid);
    }
    let Some(end) = bytes.windows(2).position(|w| w == b"\r\n") else {
        return if bytes.len() < V1_MAX_BYTES {
            Ok(None)
        } else {
            Err(ProxyHeaderError::Invalid)
        };
    };
    let line = &bytes[..end + 2];
    let h = ppp::v1::Header::try_from(line).map_err(|_| ProxyHeaderError::Invalid)?;
    let client = match h.addresses {
        ppp::v1::Addresses::Tcp4(a) => Some(IpAddr::V4(a.source_address)),
        ppp::v1::Addresses::Tcp6(a) => Some(IpAddr::V6(a.source_address)),
        ppp::v1::Addresses::Unknown => None,
    };
    Ok(Some(ProxyHeader {
        client,
        rest: bytes[line.len()..].to_vec(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
        h.extend_from_slice(addresses);
        h
    }

    #[test]
    fn headers_of_both_versions_give_the_client_and_the_bytes_after_them() {
        let tor = b"PROXY TCP6 fc00:dead:beef:4dad::0:2a ::1 42 443\r\nGET / HTTP/1.1\r\n";
        let v6: [u8; 36] = {
            let mut a = [0u8; 36];
            a[..16].copy_from_slice(
                &"fc00:dead:beef:4dad::7"
                    .parse::<std::net::Ipv6Addr>()
                    .expect("ip")
                    .octets(),
            );
            a[31] = 1;
            a
        };
        let mut v2_ipv6 = v2(1, 0x21, &v6);
        v2_ipv6.extend_from_slice(b"POST");
        let cases: [(&[u8], Option<&str>, &[u8]); 5] = [
            (tor, Some("fc00:dead:beef:4dad::2a"), b"GET / HTTP/1.1\r\n"),
            (
                b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 80\r\n",
                Some("203.0.113.9"),
                b"",
            ),
            (b"PROXY UNKNOWN\r\nGET", None, b"GET"),
            (&v2_ipv6, Some("fc00:dead:beef:4dad::7"), b"POST"),
            // LOCAL: the proxy's own connection (a health check).
            (&v2(0, 0x00, &[]), None, b""),
        ];
        for (bytes, client, rest) in cases {
            let h = parse(bytes)
                .unwrap_or_else(|e| panic!("{e}"))
                .expect("complete");
            assert_eq!(h.client, client.map(|c| c.parse().expect("ip")));
            assert_eq!(h.rest, rest);
        }
    }

    #[test]
    fn every_cut_of_a_header_asks_for_more_and_anything_else_is_invalid() {
        let tor = b"PROXY TCP6 fc00:dead:beef:4dad::2 ::1 2 443\r\n".to_vec();
        let ipv4 = v2(1, 0x11, &[203, 0, 113, 9, 127, 0, 0, 1, 0x30, 0x39, 0, 80]);
        for whole in [tor, ipv4] {
            for cut in 0..whole.len() {
                assert!(
                    matches!(parse(&whole[..cut]), Ok(None)),
                    "{:?}",
                    String::from_utf8_lossy(&whole[..cut])
                );
            }
            assert!(matches!(parse(&whole), Ok(Some(_))));
        }
        let mut long_line = b"PROXY ".to_vec();
        long_line.resize(V1_MAX_BYTES, b'x');
        for invalid in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            &long_line,
            b"PROXY TCP9 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP6 fc00:dead:beef:4dad::1\r\nGET / HTTP/1.1\r\n",
        ] {
            assert!(
                matches!(parse(invalid), Err(ProxyHeaderError::Invalid)),
                "{invalid:?}"
            );
        }
    }
}
