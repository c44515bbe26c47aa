//! Slow clients and connection slots: read deadlines, each client's share
//! of the slots, the connection cap, SIGTERM with a submission in flight,
//! and posts refused without reading their body.

use super::*;

/// Writes `bytes` one at a time, `gap` apart, until the server closes the
/// connection or `give_up` passes; returns how long the server took to cut
/// it off (None if it never did) and what it answered.
fn dribble(
    addr: &str,
    head: &[u8],
    bytes: &[u8],
    gap: Duration,
    give_up: Duration,
) -> (Option<Duration>, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let start = Instant::now();
    s.write_all(head).expect("head");
    let mut answer = Vec::new();
    let mut i = 0;
    let mut next_write = Instant::now();
    while start.elapsed() < give_up {
        if Instant::now() >= next_write && i < bytes.len() {
            if s.write_all(&bytes[i..=i]).is_err() {
                return (
                    Some(start.elapsed()),
                    String::from_utf8_lossy(&answer).into_owned(),
                );
            }
            i += 1;
            next_write += gap;
        }
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(0) => {
                return (
                    Some(start.elapsed()),
                    String::from_utf8_lossy(&answer).into_owned(),
                );
            }
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                return (
                    Some(start.elapsed()),
                    String::from_utf8_lossy(&answer).into_owned(),
                );
            }
        }
    }
    (None, String::from_utf8_lossy(&answer).into_owned())
}

#[test]
fn slow_clients_are_cut_off_within_the_deadlines_while_submissions_succeed() {
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        DEFAULT_FORMS,
        "",
        &tables(
            "header_timeout_secs = 2\nbody_timeout_secs = 2\napi_client = { burst = 100, per_minute = 60 }",
            "",
        ),
    );
    let server = Server::start(&fx);
    let addr = server.addr.clone();
    let give_up = Duration::from_secs(10);
    let second = Duration::from_secs(1);

    let slowloris = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let head = b"POST /api/v1/forms/tip/submissions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
            dribble(&addr, b"", head, second, give_up)
        })
    };
    let slow_body = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let head = b"POST /api/v1/forms/tip/submissions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
            dribble(&addr, head, &[b' '; 100], second, give_up)
        })
    };
    let idle = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            dribble(
                &addr,
                b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                b"",
                second,
                give_up,
            )
        })
    };

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let url = server.url("/api/v1/forms/tip/submissions");
    rt.block_on(async {
        let client = reqwest::Client::new();
        for i in 0..10 {
            let res = client
                .post(&url)
                .json(&json!({"fields": {"message": MESSAGE}}))
                .send()
                .await
                .expect("submission");
            assert_eq!(
                res.status().as_u16(),
                201,
                "submission {i} during the slow clients"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });

    let (t, _) = slowloris.join().expect("slowloris");
    let t = t.expect("the slowloris client is cut off");
    eprintln!("slowloris cut off after {t:?} (header timeout 2 s)");
    assert!(
        t >= Duration::from_millis(1500) && t < Duration::from_secs(4),
        "{t:?}"
    );

    let (t, answer) = slow_body.join().expect("slow body");
    let t = t.expect("the slow-body client is cut off");
    eprintln!("slow body cut off after {t:?} (body timeout 2 s)");
    assert!(
        t >= Duration::from_millis(1500) && t < Duration::from_secs(4),
        "{t:?}"
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    let (t, answer) = idle.join().expect("idle");
    let t = t.expect("the idle keep-alive connection is closed");
    eprintln!("idle keep-alive connection closed after {t:?}");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(t < Duration::from_secs(4), "{t:?}");
    assert_eq!(fx.records().len(), 10);
    assert!(server.terminate().success());
}

#[test]
fn a_submission_in_flight_at_sigterm_is_answered_and_durable() {
    let fx = Fixture::standard();
    let server = Server::start(&fx);
    let body = json!({"fields": {"message": MESSAGE}}).to_string();
    let mut s = TcpStream::connect(&server.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let head = format!(
        "POST /api/v1/forms/tip/submissions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("head");
    s.write_all(&body.as_bytes()[..10])
        .expect("part of the body");
    std::thread::sleep(Duration::from_millis(300));
    let pid = server.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(&body.as_bytes()[10..])
        .expect("rest of the body");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let receipt = answer
        .split("\"receipt\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("receipt")
        .to_owned();
    assert!(server.terminate().success());
    assert_eq!(fx.records(), vec![fx.record(&receipt)]);
}

#[test]
fn one_client_cannot_hold_more_than_its_share_of_submission_slots() {
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        DEFAULT_FORMS,
        "",
        &tables(
            "body_timeout_secs = 5\nmax_inflight_per_client = 2\ntrusted_proxies = [\"127.0.0.1\"]",
            "",
        ),
    );
    let server = Server::start(&fx);
    let head = b"POST /api/v1/forms/tip/submissions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    // Two slow bodies from 127.0.0.1 hold that client's two slots.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(&server.addr).expect("connect");
        s.write_all(head).expect("head");
        held.push(s);
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut third = TcpStream::connect(&server.addr).expect("connect");
    third
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    third.write_all(head).expect("head");
    let mut buf = [0u8; 512];
    let n = third.read(&mut buf).expect("an answer before the body");
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 5"),
        "{answer}"
    );

    // Another client is not affected.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let status = rt.block_on(async {
        reqwest::Client::new()
            .post(server.url("/api/v1/forms/tip/submissions"))
            .header("x-forwarded-for", "203.0.113.20")
            .json(&json!({"fields": {"message": MESSAGE}}))
            .send()
            .await
            .expect("other client")
            .status()
    });
    assert_eq!(status.as_u16(), 201);
    drop(held);
    assert!(server.terminate().success());
}

#[test]
fn connections_beyond_the_cap_wait_until_a_slot_frees_up() {
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        DEFAULT_FORMS,
        "",
        &tables("max_connections = 2\nheader_timeout_secs = 2", ""),
    );
    let server = Server::start(&fx);
    // Two silent connections take both slots until the header timeout.
    let idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(&server.addr).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    let mut third = TcpStream::connect(&server.addr).expect("the kernel queues it");
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut answer = String::new();
    third.read_to_string(&mut answer).expect("answer");
    let waited = start.elapsed();
    eprintln!("third connection answered after {waited:?}");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(5),
        "served only once a slot was free: {waited:?}"
    );
    drop(idle);
    assert!(server.terminate().success());
}

#[test]
fn posts_refused_before_their_body_are_answered_without_reading_it() {
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        DEFAULT_FORMS,
        "",
        &tables("", "public_url = \"http://tips.example.org\""),
    );
    let server = Server::start(&fx);
    // (path, content type, extra header, status): a body of max_body_bytes
    // is announced; 64 KiB of it is sent.
    let cases: [(&str, &str, &str, &str); 6] = [
        (
            "/forms/nope",
            "application/x-www-form-urlencoded",
            "",
            "404",
        ),
        ("/forms/tip", "text/plain", "", "415"),
        (
            "/forms/tip",
            "application/x-www-form-urlencoded",
            "Origin: https://evil.example\r\n",
            "403",
        ),
        (
            "/forms/tip",
            "application/x-www-form-urlencoded",
            "Origin: null\r\n",
            "403",
        ),
        (
            "/api/v1/forms/nope/submissions",
            "application/json",
            "",
            "404",
        ),
        ("/api/v1/forms/tip/submissions", "text/plain", "", "415"),
    ];
    // Many at once: read whole, they would take max_connections ×
    // max_body_bytes of memory.
    let threads: Vec<_> = (0..48)
        .map(|i| {
            let (path, ct, extra, status) = cases[i % cases.len()];
            let addr = server.addr.clone();
            std::thread::spawn(move || {
                let head = format!(
                    "POST {path} HTTP/1.1\r\nHost: tips.example.org\r\nContent-Type: {ct}\r\n{extra}Content-Length: 262144\r\n\r\n"
                );
                let started = Instant::now();
                let answer = answer_to_part_of_a_body(&addr, &head, &[b'a'; 64 * 1024]);
                assert!(
                    answer.starts_with(&format!("http/1.1 {status}")),
                    "{path} {ct}: {answer}"
                );
                assert!(answer.contains("connection: close"), "{answer}");
                started.elapsed()
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for t in threads {
        let waited = t.join().expect("client");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        slowest = slowest.max(waited);
    }
    eprintln!("48 refused posts, 64 KiB of 256 KiB sent each: answered within {slowest:?}");
    assert!(fx.records().is_empty());
    assert!(server.terminate().success());
}

/// Sends `head` and then `part` of the body it announces on a new
/// connection, and reads the head of the answer (lowercased), which must
/// come without the rest of the body.
fn answer_to_part_of_a_body(addr: &str, head: &str, part: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(head.as_bytes()).expect("head");
    s.write_all(part).expect("part of the body");
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => panic!("{head}: no answer before the body: {e}"),
        }
    }
    String::from_utf8_lossy(&answer).to_ascii_lowercase()
}

#[test]
fn posts_to_no_form_at_all_are_answered_without_reading_their_body() {
    // A form id that is not UTF-8, an address under no route, a method the
    // route does not take: refused like an unknown form, before the body.
    let fx = Fixture::with_tables(&[TestKey::Ed25519], DEFAULT_FORMS, "", &tables("", ""));
    let server = Server::start(&fx);
    let cases: [(&str, &str, &str); 5] = [
        ("POST", "/forms/%FF", "404"),
        ("POST", "/api/v1/forms/%FF/submissions", "404"),
        ("POST", "/forms/tip/more", "404"),
        ("POST", "/api/v1/nowhere", "404"),
        ("PUT", "/forms/tip", "405"),
    ];
    for (method, path, status) in cases {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 262144\r\n\r\n"
        );
        let answer = answer_to_part_of_a_body(&server.addr, &head, &[b'a'; 64 * 1024]);
        assert!(
            answer.starts_with(&format!("http/1.1 {status}")),
            "{method} {path}: {answer}"
        );
        assert!(
            answer.contains("connection: close"),
            "{method} {path}: {answer}"
        );
    }
    assert!(fx.records().is_empty());
    assert!(server.terminate().success());
}

#[test]
fn posts_over_max_body_bytes_are_refused_without_reading_the_rest() {
    // Announced by Content-Length (refused before any of it is read), or
    // found while reading a chunked body: 413 with Connection: close.
    let fx = Fixture::with_tables(&[TestKey::Ed25519], DEFAULT_FORMS, "", &tables("", ""));
    let server = Server::start(&fx);
    let cases: [(&str, &str, bool); 4] = [
        ("/forms/tip", "application/x-www-form-urlencoded", false),
        ("/api/v1/forms/tip/submissions", "application/json", false),
        ("/forms/tip", "application/x-www-form-urlencoded", true),
        ("/api/v1/forms/tip/submissions", "application/json", true),
    ];
    for (path, ct, chunked) in cases {
        let length = if chunked {
            "Transfer-Encoding: chunked"
        } else {
            "Content-Length: 1048576"
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {ct}\r\n{length}\r\n\r\n"
        );
        let sent = if chunked {
            // One chunk of 1 MiB, 320 KiB of it sent: over max_body_bytes.
            let mut chunk = b"100000\r\n".to_vec();
            chunk.extend_from_slice(&[b'a'; 320 * 1024]);
            chunk
        } else {
            vec![b'a'; 64 * 1024]
        };
        let answer = answer_to_part_of_a_body(&server.addr, &head, &sent);
        assert!(
            answer.starts_with("http/1.1 413"),
            "{path} {chunked}: {answer}"
        );
        assert!(
            answer.contains("connection: close"),
            "{path} {chunked}: {answer}"
        );
    }
    assert!(fx.records().is_empty());
    assert!(server.terminate().success());
}
