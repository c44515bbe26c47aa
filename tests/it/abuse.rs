//! Abuse resistance and metadata: rate limits, slow clients, form tokens,
//! security headers, and what the server writes about its clients.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use serde_json::json;

use crate::support::*;

/// Tables for a fixture with form tokens on and the given extra lines.
fn tables(limits: &str, abuse: &str) -> String {
    format!("[limits]\n{limits}\n\n[abuse]\n{abuse}\n")
}

fn from_peer(mut req: Request<Body>, peer: &str) -> Request<Body> {
    let addr: SocketAddr = peer.parse().expect("socket address");
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

fn with_header(mut req: Request<Body>, name: &'static str, value: &str) -> Request<Body> {
    req.headers_mut()
        .append(name, value.parse().expect("header value"));
    req
}

async fn fresh_token(app: &axum::Router) -> String {
    let (res, body) = send(
        app,
        Request::get("/forms/tip").body(Body::empty()).expect("req"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    token_in(&body)
}

const MESSAGE: &str = "a message that is long enough";

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        DEFAULT_FORMS,
        "",
        &tables(
            "api_client = { burst = 1, per_minute = 1 }",
            "public_url = \"https://tips.example.org\"",
        ),
    );
    let app = fx.app();
    let fpr = TestKey::Ed25519.fingerprint();
    let api = || api_post("tip", &json!({"fields": {"message": MESSAGE}}));
    let get = |p: &str| Request::get(p).body(Body::empty()).expect("req");
    let cases: Vec<(&str, Request<Body>, StatusCode)> = vec![
        ("index", get("/"), StatusCode::OK),
        ("form", get("/forms/tip"), StatusCode::OK),
        ("unknown form", get("/forms/nope"), StatusCode::NOT_FOUND),
        (
            "form post without token",
            form_post("tip", "message=hello"),
            StatusCode::BAD_REQUEST,
        ),
        ("keys", get("/keys"), StatusCode::OK),
        ("key file", get(&format!("/keys/{fpr}.asc")), StatusCode::OK),
        ("stylesheet", get("/static/style.css"), StatusCode::OK),
        ("health", get("/healthz"), StatusCode::OK),
        ("schemas", get("/api/v1/forms"), StatusCode::OK),
        ("api submission", api(), StatusCode::CREATED),
        ("api rate limited", api(), StatusCode::TOO_MANY_REQUESTS),
        ("nowhere", get("/nowhere"), StatusCode::NOT_FOUND),
        (
            "wrong method",
            Request::delete("/forms/tip")
                .body(Body::empty())
                .expect("req"),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ];
    for (name, req, status) in cases {
        let (res, _) = send(&app, req).await;
        assert_eq!(res.status(), status, "{name}");
        let h = res.headers();
        let expect = [
            (
                "content-security-policy",
                "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
            ("referrer-policy", "no-referrer"),
            ("x-content-type-options", "nosniff"),
            ("cross-origin-opener-policy", "same-origin"),
            (
                "strict-transport-security",
                "max-age=63072000; includeSubDomains",
            ),
        ];
        for (header, value) in expect {
            assert_eq!(
                h.get(header).and_then(|v| v.to_str().ok()),
                Some(value),
                "{name}: {header}"
            );
        }
        let pp = h
            .get("permissions-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            pp.contains("camera=()") && pp.contains("geolocation=()"),
            "{name}: {pp}"
        );
        let cache = h
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if name == "stylesheet" {
            assert!(cache.starts_with("public"), "{name}: {cache}");
        } else {
            assert_eq!(cache, "no-store", "{name}");
        }
        assert!(h.get("server").is_none(), "{name}: server header");
        assert!(h.get("x-request-id").is_none(), "{name}: request id");
        if status == StatusCode::TOO_MANY_REQUESTS {
            let secs: u64 = h
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .expect("429 has a Retry-After in seconds");
            assert!((1..=60).contains(&secs), "{secs}");
        }
    }
}

#[tokio::test]
async fn hsts_is_sent_only_when_the_public_address_is_https() {
    let fx = Fixture::with_tables(&[TestKey::Ed25519], DEFAULT_FORMS, "", &tables("", ""));
    let (res, _) = send(
        &fx.app(),
        Request::get("/").body(Body::empty()).expect("req"),
    )
    .await;
    assert!(res.headers().get("strict-transport-security").is_none());
}

#[tokio::test]
async fn bad_form_tokens_cross_site_posts_and_a_filled_honeypot_are_refused_and_store_nothing() {
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        DEFAULT_FORMS,
        "",
        &tables(
            "form_client = { burst = 100, per_minute = 60 }",
            "min_fill_secs = 1\ntoken_lifetime_secs = 3",
        ),
    );
    let app = fx.app();
    let mut t = Vec::new();
    for _ in 0..7 {
        t.push(fresh_token(&app).await);
    }
    let post = |token: Option<&str>, extra: &[(&str, &str)]| {
        let mut pairs = vec![("message", MESSAGE)];
        if let Some(tok) = token {
            pairs.push(("sf.token", tok));
        }
        pairs.extend_from_slice(extra);
        form_post("tip", &urlencode(&pairs))
    };
    let started = Instant::now();

    // Sent at once: faster than a person types.
    let (res, body) = send(&app, post(Some(&t[0]), &[])).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let page = String::from_utf8_lossy(&body);
    assert!(page.contains("faster than a person"), "{page}");
    assert!(
        page.contains("name=\"sf.token\""),
        "the refusal offers the form again"
    );
    // What was written comes back with a fresh token, and the page says so.
    assert!(page.contains(MESSAGE), "the refusal keeps what was written");
    assert!(page.contains("still in the form"), "{page}");

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let evil = [("origin", "https://evil.example")];
    let cross = [("sec-fetch-site", "cross-site")];
    // (name, request, status, the page says, the page keeps what was written)
    let cases: Vec<(&str, Request<Body>, StatusCode, &str, bool)> = vec![
        (
            "missing token",
            post(None, &[]),
            StatusCode::BAD_REQUEST,
            "did not come from",
            true,
        ),
        (
            "forged token",
            post(
                Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                &[],
            ),
            StatusCode::BAD_REQUEST,
            "did not come from",
            true,
        ),
        (
            "honeypot filled",
            post(Some(&t[1]), &[("sf.homepage", "http://spam.example")]),
            StatusCode::BAD_REQUEST,
            "must stay empty",
            true,
        ),
        (
            "cross-site origin",
            evil.iter()
                .fold(post(Some(&t[2]), &[]), |r, (k, v)| with_header(r, k, v)),
            StatusCode::FORBIDDEN,
            "another web site",
            false,
        ),
        (
            "cross-site fetch metadata",
            cross
                .iter()
                .fold(post(Some(&t[3]), &[]), |r, (k, v)| with_header(r, k, v)),
            StatusCode::FORBIDDEN,
            "another web site",
            false,
        ),
    ];
    for (name, req, status, says, kept) in cases {
        let (res, body) = send(&app, req).await;
        let page = String::from_utf8_lossy(&body);
        assert_eq!(res.status(), status, "{name}: {page}");
        assert!(page.contains(says), "{name}: {page}");
        // Never for another site's post: its values are that site's words.
        assert_eq!(page.contains(MESSAGE), kept, "{name}: {page}");
        assert!(
            page.contains("name=\"sf.token\""),
            "{name}: form offered again"
        );
    }
    assert!(fx.records().is_empty(), "nothing refused was stored");

    // A good post, as a browser sends it from our own no-referrer page.
    let good = with_header(
        with_header(post(Some(&t[4]), &[("sf.homepage", "")]), "origin", "null"),
        "sec-fetch-site",
        "same-origin",
    );
    let (res, body) = send(&app, good).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(
        res.headers().get("cache-control").map(|v| v.as_bytes()),
        Some(&b"no-store"[..]),
        "the receipt page is never cached"
    );
    assert_eq!(fx.records().len(), 1);

    let (res, body) = send(&app, post(Some(&t[4]), &[])).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let page = String::from_utf8_lossy(&body);
    assert!(page.contains("already sent once"), "{page}");
    // A replay's values reached the server before (here: stored).
    assert!(!page.contains(MESSAGE), "a replay is not offered again");

    // The JSON API needs no token.
    let (res, _) = send(
        &app,
        api_post("tip", &json!({"fields": {"message": MESSAGE}})),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);

    let wait = Duration::from_millis(3300).saturating_sub(started.elapsed());
    tokio::time::sleep(wait).await;
    let (res, body) = send(&app, post(Some(&t[5]), &[])).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let page = String::from_utf8_lossy(&body);
    assert!(page.contains("expired"), "{page}");
    assert!(
        page.contains(MESSAGE),
        "a page left open too long keeps its text"
    );
    assert_eq!(
        fx.records().len(),
        2,
        "only the good post and the API call stored"
    );
}

#[tokio::test]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        DEFAULT_FORMS,
        "",
        &tables("api_client = { burst = 2, per_minute = 1 }", ""),
    );
    let app = fx.app();
    let api = |spoof: &str| {
        let req = api_post("tip", &json!({"fields": {"message": MESSAGE}}));
        with_header(from_peer(req, "127.0.0.1:50000"), "x-forwarded-for", spoof)
    };
    let statuses = [
        send(&app, api("198.51.100.1")).await.0.status(),
        send(&app, api("198.51.100.2")).await.0.status(),
        send(&app, api("198.51.100.3")).await.0.status(),
    ];
    assert_eq!(
        statuses,
        [
            StatusCode::CREATED,
            StatusCode::CREATED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // Another peer address is another client.
    let other = from_peer(
        api_post("tip", &json!({"fields": {"message": MESSAGE}})),
        "127.0.0.2:50000",
    );
    assert_eq!(send(&app, other).await.0.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn clients_behind_a_trusted_proxy_are_told_apart_by_the_right_most_hop() {
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        DEFAULT_FORMS,
        "",
        &tables(
            "api_client = { burst = 1, per_minute = 1 }\ntrusted_proxies = [\"127.0.0.1\"]",
            "",
        ),
    );
    let app = fx.app();
    let api = |xff: &str| {
        let req = api_post("tip", &json!({"fields": {"message": MESSAGE}}));
        with_header(from_peer(req, "127.0.0.1:50000"), "x-forwarded-for", xff)
    };
    let cases = [
        ("203.0.113.1", StatusCode::CREATED),
        ("203.0.113.2", StatusCode::CREATED),
        // A client-supplied left part does not make a new client.
        ("10.9.9.9, 203.0.113.2", StatusCode::TOO_MANY_REQUESTS),
        ("2001:db8::1", StatusCode::CREATED),
        // Same IPv6 /64.
        ("2001:db8::2", StatusCode::TOO_MANY_REQUESTS),
    ];
    for (xff, want) in cases {
        assert_eq!(send(&app, api(xff)).await.0.status(), want, "{xff}");
    }
}

#[tokio::test]
async fn behind_tor_only_the_per_form_and_global_limits_apply() {
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        DEFAULT_FORMS,
        "",
        &tables(
            "api_client = { burst = 1, per_minute = 1 }\napi_global = { burst = 3, per_minute = 1 }\nbehind_tor = true",
            "",
        ),
    );
    let app = fx.app();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let req = from_peer(
            api_post("tip", &json!({"fields": {"message": MESSAGE}})),
            "127.0.0.1:9050",
        );
        statuses.push(send(&app, req).await.0.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::CREATED,
            StatusCode::CREATED,
            StatusCode::CREATED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
}

#[tokio::test]
async fn five_thousand_client_addresses_do_not_grow_the_limiter_past_its_ceiling() {
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        DEFAULT_FORMS,
        "",
        &tables(
            // The global limit refuses all but the first, after the
            // per-client limiter has seen each address.
            "api_global = { burst = 1, per_minute = 1 }\nmax_tracked_clients = 500\ntrusted_proxies = [\"127.0.0.1\"]",
            "",
        ),
    );
    let (app, state) = fx.app_and_state();
    let mut limited = 0;
    for i in 0..5000u32 {
        let xff = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
        let req = with_header(
            from_peer(
                api_post("tip", &json!({"fields": {"message": MESSAGE}})),
                "127.0.0.1:50000",
            ),
            "x-forwarded-for",
            &xff,
        );
        if send(&app, req).await.0.status() == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        }
    }
    assert_eq!(limited, 4999);
    let tracked = state.limits().tracked_clients();
    eprintln!("tracked client keys after 5000 addresses: {tracked} (ceiling 500)");
    assert!(tracked <= 500, "{tracked}");
    assert_eq!(fx.records().len(), 1);
}

/// Reads `/proc/<pid>/status` field `name` in kB.
fn proc_kb(pid: u32, name: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("field")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_client_gets_429s_while_another_client_keeps_submitting() {
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        DEFAULT_FORMS,
        "",
        &tables(
            "api_client = { burst = 5, per_minute = 1 }\ntrusted_proxies = [\"127.0.0.1\"]",
            "",
        ),
    );
    let server = Server::start(&fx);
    let pid = server.child.id();
    let url = server.url("/api/v1/forms/tip/submissions");
    let body = json!({"fields": {"message": MESSAGE}}).to_string();
    let hwm_before = proc_kb(pid, "VmHWM:");

    let flood = |part: usize| {
        let url = url.clone();
        let body = body.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let (mut ok, mut limited) = (0u32, 0u32);
            for _ in 0..2500 {
                let res = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-forwarded-for", "198.51.100.66")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("flood request");
                match res.status().as_u16() {
                    201 => ok += 1,
                    429 => {
                        assert!(res.headers().contains_key("retry-after"));
                        limited += 1
                    }
                    s => panic!("flood part {part}: unexpected {s}"),
                }
            }
            (ok, limited)
        })
    };
    let parts: Vec<_> = (0..4).map(flood).collect();

    let client = reqwest::Client::new();
    for i in 0..5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let res = client
            .post(&url)
            .header("content-type", "application/json")
            .header("x-forwarded-for", "203.0.113.9")
            .body(body.clone())
            .send()
            .await
            .expect("second client");
        assert_eq!(res.status().as_u16(), 201, "second client, submission {i}");
    }
    let (mut ok, mut limited) = (0, 0);
    for p in parts {
        let (o, l) = p.await.expect("flood task");
        ok += o;
        limited += l;
    }
    assert_eq!((ok, limited), (5, 9995));
    let hwm = proc_kb(pid, "VmHWM:");
    let rss = proc_kb(pid, "VmRSS:");
    eprintln!(
        "server memory: VmHWM {hwm_before} kB before, {hwm} kB after 10,000 requests; VmRSS {rss} kB"
    );
    assert!(hwm < 256 * 1024, "VmHWM {hwm} kB");
    assert_eq!(fx.records().len(), 10);
    assert!(server.terminate().success());
}

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

#[tokio::test]
async fn no_log_line_or_stored_file_holds_a_client_address_user_agent_or_receipt() {
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        DEFAULT_FORMS,
        "",
        &tables(
            "trusted_proxies = [\"127.0.0.1\"]",
            "min_fill_secs = 0\naccess_log = true",
        ),
    );
    let server = Server::start(&fx);
    let pid = server.child.id();
    let canary_ip = "203.0.113.77";
    let canary_ua = "CanaryBrowser/9.9 (xyzzy-4711)";
    let client = reqwest::Client::builder()
        .user_agent(canary_ua)
        .build()
        .expect("client");
    let mut receipts = Vec::new();
    for via_proxy in [true, false] {
        let with_xff = |r: reqwest::RequestBuilder| {
            if via_proxy {
                r.header("x-forwarded-for", canary_ip)
            } else {
                r
            }
        };
        let page = with_xff(
            client
                .get(server.url("/forms/tip"))
                .query(&[("q", canary_ip)]),
        )
        .send()
        .await
        .expect("form page")
        .bytes()
        .await
        .expect("body");
        let token = token_in(&page);
        let res = with_xff(client.post(server.url("/forms/tip")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(urlencode(&[("message", MESSAGE), ("sf.token", &token)]))
            .send()
            .await
            .expect("form post");
        assert_eq!(res.status().as_u16(), 200);
        let page = res.text().await.expect("page");
        let receipt = fx
            .records()
            .into_iter()
            .map(|p| p.file_stem().expect("stem").to_string_lossy().into_owned())
            .find(|r| page.contains(r.as_str()) && !receipts.contains(r))
            .expect("the page shows the new receipt");
        receipts.push(receipt);
        let res = with_xff(client.post(server.url("/api/v1/forms/tip/submissions")))
            .json(&json!({"fields": {"message": MESSAGE}}))
            .send()
            .await
            .expect("api post");
        assert_eq!(res.status().as_u16(), 201);
        let v: serde_json::Value = res.json().await.expect("json");
        receipts.push(v["receipt"].as_str().expect("receipt").to_owned());
        let res = with_xff(client.get(server.url("/nowhere?who=203.0.113.77")))
            .send()
            .await
            .expect("404");
        assert_eq!(res.status().as_u16(), 404);
    }
    // Any token is a method to hyper; the log names only the standard ones.
    let odd = reqwest::Method::from_bytes(b"CANARYMETHOD").expect("method");
    let res = client
        .request(odd, server.url("/forms/tip"))
        .send()
        .await
        .expect("odd method");
    assert_eq!(res.status().as_u16(), 405);
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("core line");
    assert!(
        core.split_whitespace().skip(4).take(2).all(|v| v == "0"),
        "core dumps are off: {core}"
    );
    let log = std::sync::Arc::clone(&server.log);
    assert!(server.terminate().success());
    let log = String::from_utf8_lossy(&log.lock().expect("log")).into_owned();

    let access_lines = log.lines().filter(|l| l.contains("route=")).count();
    assert!(
        access_lines >= 8,
        "the access log is on and written:\n{log}"
    );
    // A line names the route's pattern, never the path or the query.
    for line in [
        "method=POST route=/api/v1/forms/{form}/submissions status=201",
        "method=POST route=/forms/{form} status=200",
        "method=GET route=(unmatched) status=404",
        "method=other route=/forms/{form} status=405",
    ] {
        assert!(log.contains(line), "no access line like {line}:\n{log}");
    }
    for line in log.lines() {
        assert!(
            !line.contains(canary_ip),
            "client address in the log: {line}"
        );
        assert!(!line.contains("xyzzy"), "user agent in the log: {line}");
        assert!(!line.contains("who="), "query string in the log: {line}");
        assert!(
            !line.contains("CANARY"),
            "a client's method in the log: {line}"
        );
        if !line.contains("listening on http://127.0.0.1:") {
            assert!(
                !line.contains("127.0.0.1"),
                "peer address in the log: {line}"
            );
        }
        for r in &receipts {
            assert!(!line.contains(r.as_str()), "receipt in the log: {line}");
        }
    }
    let needles: [&[u8]; 4] = [
        canary_ip.as_bytes(),
        b"xyzzy",
        b"127.0.0.1",
        &[203, 0, 113, 77],
    ];
    let files = fx.all_stored_bytes();
    assert!(files.len() >= 4);
    for (path, bytes) in files {
        for n in needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n),
                "{} holds {n:?}",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn by_default_requests_leave_no_log_line_but_start_and_stop_do() {
    // The fixture's tables say nothing about the access log: the default.
    let fx = Fixture::standard();
    let server = Server::start(&fx);
    let client = reqwest::Client::new();
    let res = client
        .post(server.url("/api/v1/forms/tip/submissions"))
        .json(&json!({"fields": {"message": MESSAGE}}))
        .send()
        .await
        .expect("api post");
    assert_eq!(res.status().as_u16(), 201);
    let res = client
        .get(server.url("/nowhere"))
        .send()
        .await
        .expect("404");
    assert_eq!(res.status().as_u16(), 404);
    let log = std::sync::Arc::clone(&server.log);
    assert!(server.terminate().success());
    let log = String::from_utf8_lossy(&log.lock().expect("log")).into_owned();
    assert!(
        log.contains("listening on") && log.contains("stopped"),
        "{log}"
    );
    assert!(!log.contains("route="), "{log}");
    assert!(!log.contains("status="), "{log}");
}

#[tokio::test]
async fn with_access_log_off_requests_leave_no_log_line() {
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        DEFAULT_FORMS,
        "",
        &tables("", "access_log = false"),
    );
    let server = Server::start(&fx);
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/forms/tip/submissions"))
        .json(&json!({"fields": {"message": MESSAGE}}))
        .send()
        .await
        .expect("api post");
    assert_eq!(res.status().as_u16(), 201);
    let log = std::sync::Arc::clone(&server.log);
    assert!(server.terminate().success());
    let log = String::from_utf8_lossy(&log.lock().expect("log")).into_owned();
    assert!(log.contains("listening on"), "{log}");
    assert!(!log.contains("route="), "{log}");
    assert!(!log.contains("status="), "{log}");
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

#[tokio::test]
async fn a_percent_encoded_form_address_meets_the_same_per_form_limit() {
    let tables = r#"
[limits]
form_client = { burst = 100000, per_minute = 100000 }
form_each = { burst = 2, per_minute = 1 }
form_global = { burst = 100000, per_minute = 100000 }

[abuse]
form_tokens = false
"#;
    let fx = Fixture::with_tables(&[TestKey::Ed25519], DEFAULT_FORMS, "", tables);
    let app = fx.app();
    let mut statuses = Vec::new();
    for path in ["tip", "tip", "%74ip", "%74%69%70"] {
        let (res, _) = send(&app, form_post(path, "message=hello")).await;
        statuses.push(res.status().as_u16());
    }
    // `/forms/%74ip` is the `tip` form (the router decodes it), so it may
    // not slip past `tip`'s own limit.
    assert_eq!(statuses, [200, 200, 429, 429]);
    assert_eq!(fx.records().len(), 2);
}

#[tokio::test]
async fn a_cross_site_multipart_post_to_the_api_is_refused() {
    let fx = Fixture::standard();
    let app = fx.app();
    let body = "--b\r\nContent-Disposition: form-data; name=\"message\"\r\n\r\nhello\r\n--b--\r\n";
    let req = axum::http::Request::post("/api/v1/forms/tip/submissions")
        .header("content-type", "multipart/form-data; boundary=b")
        .header("sec-fetch-site", "cross-site")
        .body(axum::body::Body::from(body))
        .expect("request");
    let (res, _) = send(&app, req).await;
    assert_eq!(res.status(), axum::http::StatusCode::FORBIDDEN);
    assert!(fx.records().is_empty());
}

#[tokio::test]
async fn posts_refused_anyway_do_not_spend_the_shared_budgets() {
    // Any web page can make its visitors' browsers send these (no CORS
    // preflight), each visitor a different client: charged, they would
    // spend the per-form and global budgets and real senders would get 429.
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        DEFAULT_FORMS,
        "",
        &tables(
            "form_each = { burst = 2, per_minute = 1 }\napi_global = { burst = 2, per_minute = 1 }",
            "form_tokens = false",
        ),
    );
    let app = fx.app();
    let body = urlencode(&[("message", MESSAGE)]);
    for i in 0..5 {
        let peer = format!("198.51.100.{i}:1234");
        let cross = with_header(form_post("tip", &body), "sec-fetch-site", "cross-site");
        let (res, _) = send(&app, from_peer(cross, &peer)).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        let plain = Request::post("/forms/tip")
            .header("content-type", "text/plain")
            .body(Body::from(body.clone()))
            .expect("request");
        let (res, _) = send(&app, from_peer(plain, &peer)).await;
        assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let api_plain = Request::post("/api/v1/forms/tip/submissions")
            .header("content-type", "text/plain")
            .body(Body::from(format!(
                "{{\"fields\":{{\"message\":\"{MESSAGE}\"}}}}"
            )))
            .expect("request");
        let (res, _) = send(&app, from_peer(api_plain, &peer)).await;
        assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    // The budgets are whole: two real posts on each route are stored, and
    // the third is limited (they are still charged).
    for i in 0..3 {
        let peer = format!("203.0.113.{i}:1234");
        let (form, _) = send(&app, from_peer(form_post("tip", &body), &peer)).await;
        let (api, _) = send(
            &app,
            from_peer(
                api_post("tip", &json!({"fields": {"message": MESSAGE}})),
                &peer,
            ),
        )
        .await;
        let want = if i < 2 {
            (StatusCode::OK, StatusCode::CREATED)
        } else {
            (StatusCode::TOO_MANY_REQUESTS, StatusCode::TOO_MANY_REQUESTS)
        };
        assert_eq!((form.status(), api.status()), want, "post {i}");
    }
    assert_eq!(fx.records().len(), 4);
}

/// 500 token-less posts (and a few with the honeypot filled) from one
/// attacker, then an honest post with a form token: the honest post is
/// stored. `spread`: the attacker's posts come from the 32 /64s of one IPv6
/// /59 and the honest sender is another address (through a trusted proxy);
/// otherwise everyone is the one peer, as behind Tor.
async fn a_token_less_flood_leaves_the_form_open(fx: &Fixture, spread: bool) {
    let flood_xff = move |n: usize| spread.then(|| format!("2001:db8:0:{}::1", n % 32));
    let honest_xff = spread.then_some("203.0.113.9");
    let server = Server::start(fx);
    let url = server.url("/forms/tip");
    let client = reqwest::Client::new();
    let with_xff = |req: reqwest::RequestBuilder, xff: Option<&str>| match xff {
        Some(x) => req.header("x-forwarded-for", x),
        None => req,
    };
    // The honest sender opens the form before the flood...
    let page = with_xff(client.get(&url), honest_xff)
        .send()
        .await
        .expect("form page");
    assert_eq!(page.status().as_u16(), 200);
    let token = token_in(&page.bytes().await.expect("page"));
    let flood_token = token_in(
        &with_xff(client.get(&url), flood_xff(0).as_deref())
            .send()
            .await
            .expect("form page")
            .bytes()
            .await
            .expect("page"),
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let mut tasks = Vec::new();
    for part in 0..10 {
        let (client, url) = (client.clone(), url.clone());
        let flood_token = flood_token.clone();
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..50 {
                let body = if part == 0 && i < 5 {
                    urlencode(&[
                        ("message", MESSAGE),
                        ("sf.token", &flood_token),
                        ("sf.homepage", "http://spam.example"),
                    ])
                } else {
                    urlencode(&[("message", MESSAGE)])
                };
                let mut req = client
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body);
                if let Some(x) = flood_xff(part * 50 + i) {
                    req = req.header("x-forwarded-for", x);
                }
                statuses.push(req.send().await.expect("flood post").status().as_u16());
            }
            statuses
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.extend(t.await.expect("flood task"));
    }
    assert_eq!(statuses.len(), 500);
    let refused = statuses.iter().filter(|s| **s == 400).count();
    eprintln!(
        "flood: {refused} answered 400 (refused for the token or the honeypot), {} 429 (no more forms for that client)",
        500 - refused
    );
    // Refused (400), or past the client's budget of rendered forms (429):
    // never stored.
    assert!(
        statuses.iter().all(|s| *s == 400 || *s == 429),
        "{statuses:?}"
    );
    assert!(fx.records().is_empty());

    // ...and sends it after: stored.
    let res = with_xff(
        client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(urlencode(&[("message", MESSAGE), ("sf.token", &token)])),
        honest_xff,
    )
    .send()
    .await
    .expect("honest post");
    let status = res.status().as_u16();
    let page = res.text().await.expect("page");
    assert_eq!(status, 200, "{page}");
    assert_eq!(fx.records().len(), 1);
    assert!(server.terminate().success());
}

/// Budgets a flood would close the form with, were it charged: a form
/// budget of 20, a global one of 30.
const SMALL_FORM_BUDGETS: &str =
    "form_each = { burst = 20, per_minute = 1 }\nform_global = { burst = 30, per_minute = 1 }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_posts_without_a_form_token_cannot_make_an_honest_post_fail() {
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        DEFAULT_FORMS,
        "",
        &tables(
            &format!("{SMALL_FORM_BUDGETS}\ntrusted_proxies = [\"127.0.0.1\"]"),
            "min_fill_secs = 1",
        ),
    );
    a_token_less_flood_leaves_the_form_open(&fx, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_tor_a_flood_of_posts_without_a_form_token_cannot_make_an_honest_post_fail() {
    // Without PROXY protocol every post comes from the tor daemon: one
    // client, no per-client limits.
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        DEFAULT_FORMS,
        "",
        &tables(
            &format!("{SMALL_FORM_BUDGETS}\nbehind_tor = true"),
            "min_fill_secs = 1",
        ),
    );
    a_token_less_flood_leaves_the_form_open(&fx, false).await;
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

#[tokio::test]
async fn a_post_refused_by_a_rate_limit_keeps_its_form_token() {
    // One post a second for the form: the second of two at once gets 429,
    // and its token, not used up, is good a second later.
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        DEFAULT_FORMS,
        "",
        &tables(
            "form_each = { burst = 1, per_minute = 60 }",
            "min_fill_secs = 1",
        ),
    );
    let app = fx.app();
    let (first, second) = (fresh_token(&app).await, fresh_token(&app).await);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let post = |token: &str| {
        form_post(
            "tip",
            &urlencode(&[("message", MESSAGE), ("sf.token", token)]),
        )
    };
    assert_eq!(send(&app, post(&first)).await.0.status(), StatusCode::OK);
    let (res, _) = send(&app, post(&second)).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (res, body) = send(&app, post(&second)).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(fx.records().len(), 2);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_post_refused_for_the_in_flight_cap_spends_no_budget() {
    // One submission in flight at most, one API submission a minute: a post
    // turned away while the slot is held (503) must leave the minute's
    // submission to the next post.
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        DEFAULT_FORMS,
        "",
        &tables(
            "api_global = { burst = 1, per_minute = 1 }\nmax_inflight_submissions = 1",
            "",
        ),
    );
    let server = Server::start(&fx);
    // A form post whose body never comes holds the one slot.
    let mut holder = TcpStream::connect(&server.addr).expect("connect");
    holder
        .write_all(
            b"POST /forms/tip HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nmessage=",
        )
        .expect("holder");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = reqwest::Client::new();
    let post = || {
        client
            .post(server.url("/api/v1/forms/tip/submissions"))
            .json(&json!({ "fields": { "message": MESSAGE } }))
            .send()
    };
    let res = post().await.expect("post while busy");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    drop(holder);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let res = post().await.expect("post");
    let status = res.status();
    let body = res.text().await.expect("body");
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(fx.records().len(), 1);
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
