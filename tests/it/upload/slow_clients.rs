//! Uploading clients that drop, stall or trickle, and the upload slots:
//! honest uploads get through while trickling ones hold every slot.

use super::*;

/// Sends the head of an upload of `total` declared bytes over a raw socket.
async fn raw_upload_head(server: &Server, total: usize) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(&server.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /api/v1/forms/big/submissions HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\nContent-Length: {total}\r\n\r\n",
        server.addr,
        content_type()
    );
    s.write_all(head.as_bytes()).await.expect("write head");
    s
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_client_that_drops_the_connection_mid_upload_leaves_nothing_and_others_are_served() {
    let fx = fixture("");
    let server = Server::start(&fx);
    let size: u64 = 24 * 1024 * 1024;
    let body_head = Multipart::new().file_head("file", "half.bin").body;
    let mut s = raw_upload_head(&server, body_head.len() + size as usize + 64).await;
    s.write_all(&body_head).await.expect("write");
    for chunk in Noise::new(3, size / 2) {
        s.write_all(&chunk).await.expect("write");
    }
    // The record is being written...
    wait_until("a temp file in spool/tmp", || fx.partials() == 1).await;
    // ...and the client goes away.
    drop(s);
    wait_until("spool/tmp to be empty", || fx.partials() == 0).await;

    let res = reqwest::Client::new()
        .post(server.url("/api/v1/forms/upload/submissions"))
        .json(&serde_json::json!({"fields": {"message": "still here"}}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::CREATED);
    assert!(server.terminate().success());
    assert_eq!(fx.records().len(), 1);
    assert_eq!(fx.partials(), 0);
    let (store, _) =
        sealform::store::Store::open(&fx.data_dir(), 1 << 20, |_| vec![]).expect("store");
    assert_eq!(store.list().expect("index").len(), 1, "one index entry");
}

#[tokio::test]
async fn a_client_that_stalls_mid_upload_gets_408_and_leaves_nothing() {
    let fx = fixture("upload_stall_secs = 1");
    let server = Server::start(&fx);
    let body_head = Multipart::new().file_head("file", "slow.bin").body;
    let mut s = raw_upload_head(&server, body_head.len() + 1_000_000).await;
    s.write_all(&body_head).await.expect("write");
    s.write_all(&[0u8; 10_000]).await.expect("write");
    wait_until("a temp file in spool/tmp", || fx.partials() == 1).await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut answer))
        .await
        .expect("the server answers")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(fx.partials(), 0);
    assert!(fx.records().is_empty());
}

#[tokio::test]
async fn a_client_that_trickles_below_the_minimum_rate_gets_408_and_leaves_nothing() {
    // Never a pause as long as upload_stall_secs, but 1000 bytes/s against
    // a minimum of 2000: behind after the 1 s grace plus 1000 t / 2000 s,
    // that is about 2 s in.
    let fx = fixture("upload_stall_secs = 1\nupload_min_bytes_per_sec = 2000");
    let server = Server::start(&fx);
    let body_head = Multipart::new().file_head("file", "slow.bin").body;
    let s = raw_upload_head(&server, body_head.len() + 1_000_000).await;
    let started = Instant::now();
    let (mut reader, mut writer) = s.into_split();
    writer.write_all(&body_head).await.expect("write");
    let trickle = tokio::spawn(async move {
        while writer.write_all(&[0u8; 250]).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), reader.read_to_end(&mut answer))
        .await
        .expect("the server answers")
        .expect("read");
    let took = started.elapsed();
    trickle.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        took > Duration::from_millis(1500) && took < Duration::from_secs(10),
        "refused when behind, not before: {took:?}"
    );
    wait_until("the temp file is removed", || fx.partials() == 0).await;
    assert!(fx.records().is_empty());
}

/// Tables for the slot tests: clients told apart by `X-Forwarded-For`.
const PROXIED: &str =
    "[limits]\ntrusted_proxies = [\"127.0.0.1\"]\n\n[abuse]\nform_tokens = false\n";

/// An upload to `big` from `xff` that sends 512 bytes every 250 ms (2 KiB/s)
/// until the server answers; resolves to the answer.
async fn trickle(server: &Server, xff: &str) -> tokio::task::JoinHandle<String> {
    paced(server, xff, 512, 512, Duration::from_millis(250)).await
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_upload_gets_201_while_trickling_uploads_hold_every_slot() {
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        UPLOAD_FORMS,
        "max_concurrent_uploads = 4",
        PROXIED,
    );
    let server = Server::start(&fx);
    // Two clients hold two slots each, the most one client may hold...
    let mut held = Vec::new();
    for xff in [
        "198.51.100.1",
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.2",
    ] {
        held.push(trickle(&server, xff).await);
    }
    wait_until("four uploads in progress", || fx.partials() == 4).await;
    // ...and a third from one of them is refused.
    let third = trickle(&server, "198.51.100.1").await.await.expect("third");
    assert!(third.starts_with("HTTP/1.1 429"), "{third}");
    assert!(third.contains("too_many_uploads"), "{third}");
    assert!(
        third.to_ascii_lowercase().contains("retry-after: 5"),
        "{third}"
    );

    // Past their head start (a second), they fall behind 16 KiB/s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Every slot is taken, by uploads far behind 16 KiB/s: an honest one
    // still gets in.
    let len: u64 = 2 * 1024 * 1024;
    let head = Multipart::new()
        .text("note", "honest")
        .file_head("file", "honest.bin")
        .body;
    let mut body = head;
    for chunk in Noise::new(7, len) {
        body.extend_from_slice(&chunk);
    }
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/forms/big/submissions"))
        .header("content-type", content_type())
        .header("x-forwarded-for", "203.0.113.9")
        .body(body)
        .send()
        .await
        .expect("honest upload");
    let status = res.status();
    let answer = res.bytes().await.expect("answer");
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let plain = decrypt(&fx, &receipt_of(&answer));
    let message = MessageParser::default().parse(&plain).expect("MIME parses");
    let file = message
        .attachments()
        .find(|p| p.attachment_name() == Some("honest.bin"))
        .expect("attachment");
    assert_eq!(
        data_encoding::HEXLOWER.encode(&Sha256::digest(file.contents())),
        Noise::sha256(7, len)
    );

    // The trickler that made room got 408, and nothing of it stayed.
    wait_until("one trickler is stopped", || {
        held.iter().filter(|h| h.is_finished()).count() == 1
    })
    .await;
    let i = held.iter().position(|h| h.is_finished()).expect("finished");
    let evicted = held.remove(i).await.expect("evicted");
    assert!(evicted.starts_with("HTTP/1.1 408"), "{evicted}");
    assert!(evicted.contains("made room for another"), "{evicted}");
    assert!(
        evicted.to_ascii_lowercase().contains("connection: close"),
        "{evicted}"
    );
    wait_until("three uploads in progress", || fx.partials() == 3).await;
    for h in &held {
        h.abort();
    }
    wait_until("spool/tmp is empty", || fx.partials() == 0).await;
    assert!(server.terminate().success());
    assert_eq!(fx.records().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_upload_without_a_form_token_takes_no_upload_slot() {
    // One slot, held by an upload that is never evicted (no minimum rate):
    // a form upload without a token is refused for its token (400), not for
    // want of a slot (503).
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        UPLOAD_FORMS,
        "max_concurrent_uploads = 1\nupload_min_bytes_per_sec = 0",
        "[limits]\ntrusted_proxies = [\"127.0.0.1\"]\n",
    );
    let server = Server::start(&fx);
    let holder = trickle(&server, "198.51.100.1").await;
    wait_until("an upload in progress", || fx.partials() == 1).await;
    let body = Multipart::new()
        .text("message", "no token")
        .file("documents", "a.txt", "text/plain", b"a")
        .finish();
    let res = reqwest::Client::new()
        .post(server.url("/forms/upload"))
        .header("content-type", content_type())
        .header("x-forwarded-for", "203.0.113.9")
        .body(body)
        .send()
        .await
        .expect("post");
    let status = res.status();
    let page = res.text().await.expect("page");
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("did not come from"), "{page}");
    holder.abort();
    wait_until("spool/tmp is empty", || fx.partials() == 0).await;
    assert!(fx.records().is_empty());
    assert!(server.terminate().success());
}

/// The `sf.token` of a freshly rendered `/forms/{form}`.
async fn page_token(server: &Server, form: &str, xff: &str) -> String {
    let page = reqwest::Client::new()
        .get(server.url(&format!("/forms/{form}")))
        .header("x-forwarded-for", xff)
        .send()
        .await
        .expect("get form")
        .bytes()
        .await
        .expect("page");
    token_in(&page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_upload_refused_for_its_token_evicts_no_upload() {
    // The set of used tokens holds one: after one stored post, a post with
    // another good token is refused (busy). It must be refused before it
    // takes an upload slot, so the one upload in progress, behind the
    // minimum rate and so the one to make room, goes on.
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        UPLOAD_FORMS,
        "max_concurrent_uploads = 1",
        "[limits]\ntrusted_proxies = [\"127.0.0.1\"]\n\n[abuse]\nmin_fill_secs = 0\nmax_tracked_tokens = 1\n",
    );
    let server = Server::start(&fx);
    let post = |token: &str, xff: &str| {
        let body = Multipart::new()
            .text("sf.token", token)
            .text("message", "hello")
            .file("documents", "a.txt", "text/plain", b"a")
            .finish();
        reqwest::Client::new()
            .post(server.url("/forms/upload"))
            .header("content-type", content_type())
            .header("x-forwarded-for", xff.to_owned())
            .body(body)
            .send()
    };
    let first = page_token(&server, "upload", "203.0.113.9").await;
    let second = page_token(&server, "upload", "203.0.113.9").await;
    let res = post(&first, "203.0.113.9").await.expect("first post");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(fx.records().len(), 1);

    let holder = trickle(&server, "198.51.100.1").await;
    wait_until("an upload in progress", || fx.partials() == 1).await;
    // A second in, it is 16 KiB due and about 2 KiB sent: far behind.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let res = post(&second, "203.0.113.9").await.expect("second post");
    let status = res.status();
    let page = res.text().await.expect("page");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{page}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!holder.is_finished(), "{}", holder.await.expect("holder"));
    assert_eq!(fx.partials(), 1);
    holder.abort();
    wait_until("spool/tmp is empty", || fx.partials() == 0).await;
    assert_eq!(fx.records().len(), 1);
    assert!(server.terminate().success());
}

/// The pace of [`paced`] uploads in the eviction test.
const TENTH: Duration = Duration::from_millis(100);

/// An upload to `big` from `xff` that sends `first` bytes of its file at
/// once, then `every` bytes each `period` until the server answers;
/// resolves to the answer.
async fn paced(
    server: &Server,
    xff: &str,
    first: usize,
    every: usize,
    period: Duration,
) -> tokio::task::JoinHandle<String> {
    let mut s = tokio::net::TcpStream::connect(&server.addr)
        .await
        .expect("connect");
    let body_head = Multipart::new().file_head("file", "paced.bin").body;
    let head = format!(
        "POST /api/v1/forms/big/submissions HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\nX-Forwarded-For: {xff}\r\nContent-Length: {}\r\n\r\n",
        server.addr,
        content_type(),
        body_head.len() + 10_000_000
    );
    s.write_all(head.as_bytes()).await.expect("head");
    s.write_all(&body_head).await.expect("body head");
    let (mut reader, mut writer) = s.into_split();
    tokio::spawn(async move {
        let _writing = AbortOnDrop(tokio::spawn(async move {
            let _ = writer.write_all(&vec![b'x'; first]).await;
            loop {
                tokio::time::sleep(period).await;
                if writer.write_all(&vec![b'x'; every]).await.is_err() {
                    break;
                }
            }
        }));
        let mut answer = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(60), reader.read_to_end(&mut answer)).await;
        String::from_utf8_lossy(&answer).into_owned()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_keeps_the_minimum_rate_is_not_evicted_in_its_first_moments() {
    // Two slots. One upload is well ahead of 16 KiB/s; another sends
    // 40 KiB/s, its first bytes 100 ms after its head (a round trip). A
    // newcomer in its first 100 ms must not push it out: both keep the
    // rate, so the newcomer gets 503.
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        UPLOAD_FORMS,
        "max_concurrent_uploads = 2",
        PROXIED,
    );
    let server = Server::start(&fx);
    let ahead = paced(&server, "198.51.100.1", 64 * 1024, 4096, TENTH).await;
    wait_until("one upload in progress", || fx.partials() == 1).await;
    let honest = paced(&server, "198.51.100.2", 0, 4096, TENTH).await;
    wait_until("two uploads in progress", || fx.partials() == 2).await;
    let newcomer = paced(&server, "198.51.100.3", 0, 4096, TENTH).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!honest.is_finished(), "{}", honest.await.expect("honest"));
    assert!(!ahead.is_finished(), "{}", ahead.await.expect("ahead"));
    assert!(newcomer.is_finished(), "the newcomer is still in");
    let answer = newcomer.await.expect("newcomer");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    honest.abort();
    ahead.abort();
    wait_until("spool/tmp is empty", || fx.partials() == 0).await;
    assert!(fx.records().is_empty());
    assert!(server.terminate().success());
}
