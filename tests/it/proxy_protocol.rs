//! Behind Tor with `HiddenServiceExportCircuitID haproxy`: every connection
//! starts with a PROXY protocol header naming its circuit, and with
//! `[limits] proxy_protocol = true` each circuit is a client of its own, so
//! one circuit's flood meets the per-client limits and in-flight cap while
//! other circuits keep submitting. The headers are written by hand here, as
//! Tor (v1) and HAProxy (v2) write them, over raw TCP to the real server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

/// Tables with form tokens, the default rates, Tor and the PROXY protocol.
fn tor_tables(limits: &str) -> String {
    format!(
        "[limits]\nbehind_tor = true\nproxy_protocol = true\n{limits}\n\n[abuse]\nmin_fill_secs = 0\n"
    )
}

/// The address Tor gives a circuit: its 32-bit id in the low bits of
/// `fc00:dead:beef:4dad::/64`.
fn circuit_addr(circuit: u32) -> std::net::Ipv6Addr {
    let [a, b, c, d] = circuit.to_be_bytes();
    std::net::Ipv6Addr::new(
        0xfc00,
        0xdead,
        0xbeef,
        0x4dad,
        0,
        0,
        u16::from_be_bytes([a, b]),
        u16::from_be_bytes([c, d]),
    )
}

/// A v1 header as Tor writes it for `circuit`.
fn v1(circuit: u32) -> Vec<u8> {
    format!(
        "PROXY TCP6 {} ::1 {} 443\r\n",
        circuit_addr(circuit),
        circuit & 0xffff
    )
    .into_bytes()
}

/// A v2 header (PROXY, TCP over IPv6) for the same address.
fn v2(circuit: u32) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x21, 0, 36]);
    h.extend_from_slice(&circuit_addr(circuit).octets());
    h.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    h.extend_from_slice(&[0x30, 0x39, 0x01, 0xbb]);
    h
}

/// One request on a new connection that starts with `header`: (status,
/// body), or status 0 when the server closed without an answer.
fn exchange(addr: &str, header: &[u8], request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(request);
    // The server may close first (no valid header): only the answer counts.
    let _ = s.write_all(&bytes);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()
}

fn form_post(body: &str) -> Vec<u8> {
    format!(
        "POST /forms/tip HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn api_post(body: &str) -> Vec<u8> {
    format!(
        "POST /api/v1/forms/tip/submissions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A fresh form token, fetched over `header`'s circuit.
fn token(addr: &str, header: &[u8]) -> String {
    let (status, page) = exchange(addr, header, &get("/forms/tip"));
    assert_eq!(status, 200, "{page}");
    let at = page
        .find("name=\"sf.token\" value=\"")
        .expect("the form carries a token");
    let rest = &page[at + "name=\"sf.token\" value=\"".len()..];
    rest[..rest.find('"').expect("end of value")].to_owned()
}

/// A valid post of the form over `header`'s circuit: (status, page).
fn honest_post(addr: &str, header: &[u8], message: &str) -> (u16, String) {
    let token = token(addr, header);
    let body = urlencode(&[("message", message), ("sf.token", &token)]);
    exchange(addr, header, &form_post(&body))
}

/// Three other circuits, each with a valid form post once `flood` has sent
/// `after` requests; every one must be answered 200 with its receipt, and
/// the record stored. v1 and v2 headers both.
fn three_honest_circuits_get_through(
    fx: &Fixture,
    server: &Server,
    flood: &Arc<AtomicUsize>,
    after: usize,
) {
    let honest: Vec<_> = (0..3u32)
        .map(|i| {
            let addr = server.addr.clone();
            let flood = Arc::clone(flood);
            std::thread::spawn(move || {
                let circuit = 1000 + i;
                let header = if i % 2 == 0 { v1(circuit) } else { v2(circuit) };
                let deadline = Instant::now() + Duration::from_secs(60);
                while flood.load(Ordering::SeqCst) < after && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                honest_post(&addr, &header, &format!("honest circuit {i}"))
            })
        })
        .collect();
    for (i, h) in honest.into_iter().enumerate() {
        let (status, page) = h.join().expect("honest circuit");
        assert_eq!(status, 200, "honest circuit {i}: {page}");
        let stored = fx
            .records()
            .into_iter()
            .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .any(|receipt| page.contains(&receipt));
        assert!(
            stored,
            "honest circuit {i}: its receipt names a stored record"
        );
    }
}

#[test]
fn behind_tor_one_circuits_flood_of_token_less_posts_does_not_stop_three_other_circuits() {
    let fx = Fixture::with_tables(&[TestKey::Ed25519], DEFAULT_FORMS, "", &tor_tables(""));
    let server = Server::start(&fx);
    let sent = Arc::new(AtomicUsize::new(0));
    let flood = {
        let (addr, sent) = (server.addr.clone(), Arc::clone(&sent));
        std::thread::spawn(move || {
            let mut statuses = Vec::new();
            for _ in 0..500 {
                let (status, _) = exchange(&addr, &v1(7), &form_post("message=spam"));
                statuses.push(status);
                sent.fetch_add(1, Ordering::SeqCst);
            }
            statuses
        })
    };
    // The honest posts go while the flood is well past every burst.
    three_honest_circuits_get_through(&fx, &server, &sent, 100);
    let statuses = flood.join().expect("flood");
    assert_eq!(statuses.len(), 500);
    assert!(
        statuses.iter().all(|s| (400..500).contains(s)),
        "a token-less post is refused: {statuses:?}"
    );
    assert_eq!(fx.records().len(), 3, "only the honest posts are stored");
    assert!(server.terminate().success());
}

#[test]
fn behind_tor_one_circuits_flood_of_valid_posts_meets_its_own_limit_only() {
    // The flooding circuit opens the form 70 times: over the per-client
    // limit on forms rendered (burst 60), which this test is not about.
    let pages = "form_page_client = { burst = 100, per_minute = 100 }";
    let fx = Fixture::with_tables(&[TestKey::Ed25519], DEFAULT_FORMS, "", &tor_tables(pages));
    let server = Server::start(&fx);
    // More valid posts than the per-form burst (60): without per-circuit
    // limits they would use it up for everyone.
    let tokens: Vec<String> = (0..70).map(|_| token(&server.addr, &v2(7))).collect();
    let sent = Arc::new(AtomicUsize::new(0));
    let flood = {
        let (addr, sent) = (server.addr.clone(), Arc::clone(&sent));
        std::thread::spawn(move || {
            let mut statuses = Vec::new();
            for t in tokens {
                let body = urlencode(&[("message", "flood"), ("sf.token", &t)]);
                statuses.push(exchange(&addr, &v2(7), &form_post(&body)).0);
                sent.fetch_add(1, Ordering::SeqCst);
            }
            statuses
        })
    };
    three_honest_circuits_get_through(&fx, &server, &sent, 65);
    let statuses = flood.join().expect("flood");
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    // The default form_client burst is 5 (then 2 a minute).
    assert!(
        (5..=7).contains(&ok) && ok + limited == 70,
        "the flooding circuit meets its own limit: {statuses:?}"
    );
    assert_eq!(fx.records().len(), ok + 3);
    assert!(server.terminate().success());
}

#[test]
fn behind_tor_one_circuit_cannot_hold_every_submission_slot() {
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        DEFAULT_FORMS,
        "",
        &tor_tables(
            "api_client = { burst = 1000, per_minute = 1000 }\nmax_inflight_submissions = 4\n\
             max_inflight_per_client = 2\nbody_timeout_secs = 10",
        ),
    );
    let server = Server::start(&fx);
    // One circuit starts six posts and sends none of their bodies.
    let head = b"POST /api/v1/forms/tip/submissions HTTP/1.1\r\nHost: x\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    let mut slow = Vec::new();
    for _ in 0..6 {
        let mut s = TcpStream::connect(&server.addr).expect("connect");
        s.write_all(&v1(7)).expect("header");
        s.write_all(head).expect("head");
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        slow.push(s);
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    // Its first two hold its share; the other four are refused at once.
    let answers: Vec<String> = slow
        .iter_mut()
        .map(|s| {
            let mut buf = [0u8; 8192];
            let n = s.read(&mut buf).unwrap_or(0);
            String::from_utf8_lossy(&buf[..n]).into_owned()
        })
        .collect();
    let refused = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 429") && a.contains("too_many_at_once"))
        .count();
    assert_eq!(refused, 4, "{answers:?}");
    assert_eq!(answers.iter().filter(|a| a.is_empty()).count(), 2);
    // Three other circuits submit while those two are held.
    for i in 0..3u32 {
        let header = if i % 2 == 0 {
            v1(2000 + i)
        } else {
            v2(2000 + i)
        };
        let (status, body) = exchange(
            &server.addr,
            &header,
            &api_post(&format!("{{\"fields\":{{\"message\":\"honest {i}\"}}}}")),
        );
        assert_eq!(status, 201, "circuit {i}: {body}");
    }
    assert_eq!(fx.records().len(), 3);
    drop(slow);
    assert!(server.terminate().success());
}

#[test]
fn a_connection_without_a_valid_proxy_header_is_closed_and_a_valid_one_is_served() {
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        DEFAULT_FORMS,
        "",
        &tor_tables("header_timeout_secs = 2"),
    );
    let server = Server::start(&fx);
    // A valid header in the same packet as the request, or one byte at a
    // time, and a v2 LOCAL header (the proxy's own health check).
    assert_eq!(exchange(&server.addr, &v1(1), &get("/healthz")).0, 200);
    {
        let mut s = TcpStream::connect(&server.addr).expect("connect");
        for b in v1(2) {
            s.write_all(&[b]).expect("byte");
            s.flush().expect("flush");
            std::thread::sleep(Duration::from_millis(2));
        }
        s.write_all(&get("/healthz")).expect("request");
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("answer");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    assert_eq!(exchange(&server.addr, local, &get("/healthz")).0, 200);

    // Closed without an answer: plain HTTP, a malformed header, one longer
    // than the server reads, and none at all within header_timeout_secs.
    let mut too_long = b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x03\xe8".to_vec();
    too_long.extend_from_slice(&[0u8; 600]);
    let cases: [(&str, Vec<u8>, &[u8]); 4] = [
        ("plain HTTP", Vec::new(), &get("/healthz")),
        (
            "malformed",
            b"PROXY TCP6 fc00:dead:beef:4dad::1\r\n".to_vec(),
            &get("/healthz"),
        ),
        ("too long", too_long, b""),
        ("silent", Vec::new(), b""),
    ];
    for (name, header, request) in cases {
        let start = Instant::now();
        let (status, body) = exchange(&server.addr, &header, request);
        assert_eq!(status, 0, "{name}: closed without an answer: {body}");
        assert!(start.elapsed() < Duration::from_secs(5), "{name}");
    }
    let log = std::sync::Arc::clone(&server.log);
    assert!(server.terminate().success());
    let log = String::from_utf8_lossy(&log.lock().expect("log")).into_owned();
    for reason in [
        "does not start with a valid PROXY protocol header",
        "no whole PROXY protocol header in the first 536 bytes",
        "no PROXY protocol header within 2s",
    ] {
        assert!(log.contains(reason), "no {reason:?} in\n{log}");
    }
    for line in log.lines() {
        assert!(
            !line.contains("fc00"),
            "a circuit's address in the log: {line}"
        );
        if !line.contains("listening on http://127.0.0.1:") {
            assert!(
                !line.contains("127.0.0.1"),
                "peer address in the log: {line}"
            );
        }
    }
}

#[test]
fn check_warns_behind_tor_without_the_proxy_protocol_and_the_staff_listener_needs_no_header() {
    for (limits, warned) in [
        ("behind_tor = true", true),
        ("behind_tor = true\nproxy_protocol = true", false),
    ] {
        let fx = Fixture::with_tables(
            &[TestKey::Ed25519],
            DEFAULT_FORMS,
            "",
            &format!("[limits]\n{limits}\n"),
        );
        let config = fx.config_path();
        let (code, out, err) = sealform(&["check", "--config", config.to_str().expect("utf-8")]);
        assert_eq!(code, 0, "{out}{err}");
        assert_eq!(
            err.contains("limits.behind_tor without limits.proxy_protocol"),
            warned,
            "{limits}: {err}"
        );
    }
    // The staff API's own address is reached directly: no header there.
    let token = sealform::staff_token::mint().to_string();
    let hash = sealform::staff_token::TokenHash::of(&token);
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        DEFAULT_FORMS,
        &format!("[staff]\nlisten = \"127.0.0.1:0\"\ntokens = [\"{hash}\"]\n"),
        &tor_tables(""),
    );
    let server = Server::start(&fx);
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = server.log_text();
        if log.contains("staff API on http://") || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let staff_addr = log
        .split("staff API on http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .expect("staff address in the log")
        .to_owned();
    let request = format!(
        "GET /api/v1/staff/submissions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    );
    assert_eq!(exchange(&staff_addr, b"", request.as_bytes()).0, 200);
    // The public listener closes the same request without a header.
    assert_eq!(exchange(&server.addr, b"", request.as_bytes()).0, 0);
    assert!(server.terminate().success());
}

#[test]
fn a_proxy_header_that_names_no_client_is_keyed_as_the_front_end_never_by_x_forwarded_for() {
    // v2 LOCAL (a health check), v2 PROXY over AF_UNIX, v1 UNKNOWN: the
    // front end's own connection, or one it cannot give an address for.
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec();
    let mut unix = b"\r\n\r\n\0\r\nQUIT\n\x21\x31\x00\xd8".to_vec();
    unix.extend_from_slice(&[0u8; 216]);
    let unknown = b"PROXY UNKNOWN\r\n".to_vec();
    for (limits, front) in [
        // The front end is also a trusted X-Forwarded-For proxy.
        ("trusted_proxies = [\"127.0.0.1\"]", "a proxy"),
        ("behind_tor = true", "tor"),
    ] {
        let fx = Fixture::with_tables(
            &[TestKey::Ed25519],
            DEFAULT_FORMS,
            "",
            &format!(
                "[limits]\nproxy_protocol = true\napi_client = {{ burst = 2, per_minute = 1 }}\n{limits}\n"
            ),
        );
        let server = Server::start(&fx);
        let statuses: Vec<u16> = [&local, &unix, &unknown, &local]
            .iter()
            .enumerate()
            .map(|(i, header)| {
                let body = format!("{{\"fields\":{{\"message\":\"header-less {i}\"}}}}");
                let mut request = api_post(&body);
                // Each with an X-Forwarded-For of its own.
                let at = request
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .expect("end of head");
                let xff = format!("\r\nX-Forwarded-For: 203.0.113.{i}");
                request.splice(at..at, xff.into_bytes());
                exchange(&server.addr, header, &request).0
            })
            .collect();
        // One client, the front end: its burst of two, then 429.
        assert_eq!(statuses, [201, 201, 429, 429], "behind {front}");
        assert_eq!(fx.records().len(), 2, "behind {front}");
        assert!(server.terminate().success());
    }
}

#[test]
fn the_proxy_header_and_the_first_request_head_share_one_header_timeout() {
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        DEFAULT_FORMS,
        "",
        &tor_tables("header_timeout_secs = 2"),
    );
    let server = Server::start(&fx);
    // A client that reaches the port itself sends a valid header just in
    // time, then its request head a byte at a time, never finishing it.
    let mut s = TcpStream::connect(&server.addr).expect("connect");
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    s.write_all(&v1(9)).expect("header");
    let closed = {
        let mut r = s.try_clone().expect("clone");
        std::thread::spawn(move || {
            let mut rest = Vec::new();
            let _ = r.read_to_end(&mut rest);
            start.elapsed()
        })
    };
    for b in get("/healthz").iter().cycle().take(100) {
        if closed.is_finished() || s.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let held = closed.join().expect("reader");
    // The connection's slot is held for header_timeout_secs in all, not
    // that long for the header and as long again for the request head.
    assert!(
        held < Duration::from_millis(2800),
        "closed after {held:?} (header_timeout_secs = 2)"
    );
    assert!(server.terminate().success());
}
