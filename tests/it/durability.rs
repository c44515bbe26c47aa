//! Acceptance of "a 2xx means durable" (issue 2, point 7): the real server
//! takes submissions from several client threads and is stopped while they
//! are in flight, by SIGKILL (then restarted on the same `data_dir`) or by
//! SIGTERM (graceful). Every receipt a client got a 2xx for must be a record
//! the real gpg decrypts to what that client sent; `spool/tmp/` must be
//! empty; and the index must list exactly the spool's records.

use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sealform::store::{RecordState, Recovery, Store};
use serde_json::json;

use crate::support::*;
use crate::wire;

const CLIENTS: usize = 4;
/// Acknowledged submissions to wait for before stopping the server.
const BEFORE_STOP: usize = 24;

/// What one client thread saw.
#[derive(Default)]
struct ClientLog {
    /// (receipt, message) of every 2xx.
    acked: Vec<(String, String)>,
    /// Requests that failed after the connection was made (in flight when
    /// the server stopped), as opposed to refused connections.
    cut_off: usize,
    /// Non-2xx answers (must not happen).
    refused_with_status: Vec<u16>,
}

/// Starts `CLIENTS` threads submitting in a loop (alternating API and HTML
/// form) until the server stops answering.
fn start_clients(addr: &str, acked: &Arc<AtomicUsize>) -> Vec<JoinHandle<ClientLog>> {
    (0..CLIENTS)
        .map(|t| {
            let addr = addr.to_owned();
            let acked = Arc::clone(acked);
            std::thread::spawn(move || {
                let mut log = ClientLog::default();
                let deadline = Instant::now() + Duration::from_secs(60);
                for i in 0.. {
                    if Instant::now() > deadline {
                        panic!("client {t}: the server never stopped");
                    }
                    let message =
                        format!("durable client {t} number {i} {:x}", rand::random::<u64>());
                    let res = if i % 2 == 0 {
                        wire::post_api(&addr, "tip", &json!({"fields": {"message": message}}))
                    } else {
                        wire::post_form(&addr, "tip", &urlencode(&[("message", &message)]))
                    };
                    match res {
                        Ok(res) => match wire::receipt_of(&res) {
                            Some(r) => {
                                log.acked.push((r, message));
                                acked.fetch_add(1, Ordering::SeqCst);
                            }
                            None => log.refused_with_status.push(res.status),
                        },
                        Err(e) if e.kind() == ErrorKind::ConnectionRefused => return log,
                        Err(_) => log.cut_off += 1,
                    }
                }
                unreachable!()
            })
        })
        .collect()
}

fn wait_for(acked: &AtomicUsize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.load(Ordering::SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "submissions are not being acknowledged"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn join(clients: Vec<JoinHandle<ClientLog>>) -> ClientLog {
    let mut all = ClientLog::default();
    for c in clients {
        let log = c.join().expect("client thread");
        all.acked.extend(log.acked);
        all.cut_off += log.cut_off;
        all.refused_with_status.extend(log.refused_with_status);
    }
    all
}

/// Every acknowledged receipt is a spool record gpg decrypts to what was
/// sent; every spool record is complete; the index lists exactly the spool.
fn assert_durable(fx: &Fixture, log: &ClientLog) {
    assert!(
        log.refused_with_status.is_empty(),
        "{:?}",
        log.refused_with_status
    );
    assert_eq!(fx.partials(), 0, "spool/tmp/ is empty");
    let gpg = Gpg::with_secret_keys(&[&TestKey::Ed25519.secret()]);
    for (receipt, message) in &log.acked {
        let record = fx.record(receipt);
        let eml = gpg
            .decrypt(&record)
            .unwrap_or_else(|e| panic!("acknowledged record {receipt}: {e}"));
        let j = json_part(&eml);
        assert_eq!(j["receipt"], receipt.as_str());
        assert_eq!(j["fields"]["message"], message.as_str());
    }
    // Records committed whose answer was lost are allowed, but they must be
    // whole records too.
    let spool = fx.records();
    for record in &spool {
        // Only the day of arrival shows in the file's time.
        let mtime = std::fs::metadata(record)
            .and_then(|m| m.modified())
            .expect("mtime")
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970");
        assert_eq!(
            mtime.as_nanos() % (86_400 * 1_000_000_000),
            0,
            "{}",
            record.display()
        );
        gpg.decrypt(record)
            .unwrap_or_else(|e| panic!("{} is not a whole record: {e}", record.display()));
    }

    let (store, recovery) =
        Store::open(&fx.data_dir(), 1 << 20, |_| vec![]).expect("the store opens");
    assert_eq!(recovery, Recovery::default(), "nothing was left to repair");
    let mut indexed: Vec<String> = store
        .list()
        .expect("index")
        .into_iter()
        .map(|(r, e)| {
            assert_eq!(e.state, RecordState::New);
            assert_eq!(e.recipients, [TestKey::Ed25519.fingerprint()]);
            r.to_string()
        })
        .collect();
    indexed.sort();
    let mut in_spool: Vec<String> = spool
        .iter()
        .map(|p| {
            p.file_stem()
                .and_then(|s| s.to_str())
                .expect("name")
                .to_owned()
        })
        .collect();
    in_spool.sort();
    assert_eq!(
        indexed, in_spool,
        "the index lists exactly the spool's records"
    );
    for (receipt, _) in &log.acked {
        assert!(indexed.contains(receipt), "{receipt} is indexed");
    }
}

#[test]
fn every_acknowledged_submission_survives_sigkill_and_a_restart() {
    let fx = Fixture::new(&[TestKey::Ed25519], DEFAULT_FORMS, "");
    let server = Server::start(&fx);
    let acked = Arc::new(AtomicUsize::new(0));
    let clients = start_clients(&server.addr, &acked);
    wait_for(&acked, BEFORE_STOP);
    server.kill();
    let log = join(clients);
    assert!(log.acked.len() >= BEFORE_STOP);
    assert!(
        log.cut_off >= 1,
        "at least one request was in flight when the server died"
    );

    // The restart recovers; stop it cleanly, then look at the store.
    let server = Server::start(&fx);
    assert_eq!(fx.partials(), 0, "the restart emptied spool/tmp/");
    let res = wire::post_api(
        &server.addr,
        "tip",
        &json!({"fields": {"message": "after"}}),
    )
    .expect("the restarted server answers");
    assert_eq!(res.status, 201);
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    assert_durable(&fx, &log);
}

#[test]
fn sigterm_lets_in_flight_submissions_finish_and_exits_zero() {
    let fx = Fixture::new(&[TestKey::Ed25519], DEFAULT_FORMS, "");
    let server = Server::start(&fx);
    let acked = Arc::new(AtomicUsize::new(0));
    let clients = start_clients(&server.addr, &acked);
    wait_for(&acked, BEFORE_STOP);
    let status = server.terminate();
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    let log = join(clients);
    assert!(log.acked.len() >= BEFORE_STOP);
    // No restart: a graceful stop leaves nothing to recover.
    assert_durable(&fx, &log);
}

#[test]
fn sigterm_right_after_the_server_says_it_listens_is_a_graceful_stop() {
    // "listening on" is the readiness signal operators and supervisors act
    // on; the stop-signal handlers must already be installed by then.
    let fx = Fixture::new(&[TestKey::Ed25519], DEFAULT_FORMS, "");
    for _ in 0..10 {
        let server = Server::start(&fx);
        let status = server.terminate();
        assert!(status.success(), "{status:?}");
    }
}

/// A submission waiting for a sealing thread holds the committer's batches
/// open (`store::Anticipated`). No such guard may outlive its submission,
/// whether its job ran, was skipped because its client left, or was dropped
/// before it was queued: one left over would make every later batch wait
/// its full gathering time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_submission_stays_expected_by_the_committer_once_answered_or_abandoned() {
    // One sealing thread and two queue places for twelve submissions at once.
    let tables = TEST_TABLES.replace(
        "[abuse]",
        "max_inflight_submissions = 64\nmax_inflight_per_client = 64\n\n[abuse]",
    );
    let fx = Fixture::with_tables(
        &[TestKey::Ed25519],
        DEFAULT_FORMS,
        "max_concurrent_seals = 1",
        &tables,
    );
    let (app, state) = fx.app_and_state();
    let store = &state.intake().store;
    let clients: Vec<_> = (0..12)
        .map(|i| {
            let app = app.clone();
            let body = json!({"fields": {"message": format!("queued submission {i}")}});
            tokio::spawn(async move { send(&app, api_post("tip", &body)).await.0.status() })
        })
        .collect();

    let deadline = Instant::now() + Duration::from_secs(10);
    while store.anticipated() == 0 {
        assert!(Instant::now() < deadline, "no submission was ever expected");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // The last four clients leave while (most likely) still waiting.
    let mut stay = clients;
    for client in stay.split_off(8) {
        client.abort();
    }
    for client in stay {
        let status = client.await;
        assert_eq!(status.ok(), Some(axum::http::StatusCode::CREATED));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.anticipated() != 0 {
        assert!(
            Instant::now() < deadline,
            "{} submission(s) still expected after every client was answered or left",
            store.anticipated()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A client that left may have left after its record was sealed.
    let stored = fx.records().len();
    assert!((8..=12).contains(&stored), "{stored} records");
}

/// An upload waits for the network between its chunks on a blocking thread
/// of its own (`Intake::submit_stream`), never on a sealing thread: with one
/// sealing thread and an upload stalled in the middle of its file, JSON and
/// urlencoded submissions are still sealed and answered. Once its body ends
/// the upload is answered like them, only when its record is durable and
/// indexed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_holds_no_sealing_thread_and_is_stored_like_the_rest() {
    let forms = format!(
        "{DEFAULT_FORMS}\n  [[forms.fields]]\n  name = \"file\"\n  label = \"File\"\n  kind = \"file\"\n"
    );
    let fx = Fixture::new(&[TestKey::Ed25519], &forms, "max_concurrent_seals = 1");
    let (app, state) = fx.app_and_state();
    let boundary = "durability-upload-boundary";
    let (body, chunks) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let stream = futures_util::stream::unfold(chunks, |mut chunks| async move {
        let chunk = chunks.recv().await?;
        Some((Ok::<_, std::io::Error>(chunk), chunks))
    });
    let upload = axum::http::Request::post("/api/v1/forms/tip/submissions")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(axum::body::Body::from_stream(stream))
        .expect("request");
    let uploading = {
        let app = app.clone();
        tokio::spawn(async move {
            let (res, body) = send(&app, upload).await;
            created(&res, &body)
        })
    };
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"message\"\r\n\r\nthe upload\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\nthe first half, "
    );
    body.send(head.into_bytes())
        .await
        .expect("the body is read");
    let deadline = Instant::now() + Duration::from_secs(10);
    while fx.partials() == 0 {
        assert!(
            Instant::now() < deadline,
            "the upload's record never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // The upload's record is open and its client silent; the one sealing
    // thread is free for these.
    let answered = tokio::time::timeout(Duration::from_secs(20), async {
        let json = json!({"fields": {"message": "sealed meanwhile"}});
        let (res, bytes) = send(&app, api_post("tip", &json)).await;
        let by_api = created(&res, &bytes);
        let (res, _) = send(&app, form_post("tip", "message=also+sealed+meanwhile")).await;
        (by_api, res.status())
    })
    .await;
    let (by_api, page_status) = answered.expect("a stalled upload held the only sealing thread");
    assert_eq!(page_status, axum::http::StatusCode::OK);
    assert_eq!(fx.partials(), 1, "the upload's record was not still open");

    let tail = format!("and the rest\r\n--{boundary}--\r\n");
    body.send(tail.into_bytes())
        .await
        .expect("the body is read");
    drop(body);
    let uploaded = uploading.await.expect("the upload's client");
    let listed: Vec<String> = state
        .intake()
        .store
        .list()
        .expect("index")
        .iter()
        .map(|(r, _)| r.to_string())
        .collect();
    for receipt in [&by_api, &uploaded] {
        assert!(listed.contains(receipt), "{receipt} answered, not indexed");
        assert!(
            fx.record(receipt).exists(),
            "{receipt} answered, not in the spool"
        );
    }
    assert_eq!(listed.len(), 3);
    assert_eq!(fx.records().len(), 3);
    assert_eq!(fx.partials(), 0);
}
