//! Rate limits: who counts as one client (forwarded-for, trusted proxies,
//! Tor), the limiter's memory ceiling, floods, and what refused posts spend.

use super::*;

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
