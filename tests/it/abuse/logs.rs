//! What the server writes about its clients: no address, user agent or
//! receipt in any log line or stored file, and no per-request log line by default.

use super::*;

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
