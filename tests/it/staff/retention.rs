//! What stays on disk: `purge` and retention at `serve` start, day-only
//! times after ack and purge, and files readable by their owner only.

use super::*;

#[tokio::test]
async fn purge_with_acked_days_zero_removes_acknowledged_records_only() {
    let (fx, token) = staff_fixture(&[TestKey::Ed25519], "[retention]\nacked_days = 0\n");
    let receipts = submit(&fx, 3).await;
    ack_through_the_api(&fx, &token, &receipts[0]).await;
    assert_eq!(fx.records().len(), 2);
    let out = run_ok(&["purge", "--config", path_str(&fx.config_path())]);
    assert!(
        out.contains("purged 1 acknowledged and 0 unacknowledged"),
        "{out}"
    );
    let out = run_ok(&["purge", "--config", path_str(&fx.config_path())]);
    assert!(
        out.contains("purged 0 acknowledged and 0 unacknowledged"),
        "{out}"
    );
    let app = fx.app();
    let (_, body) = send(
        &app,
        staff_get("/api/v1/staff/submissions?state=all", Some(&token)),
    )
    .await;
    let listing: Value = serde_json::from_slice(&body).expect("json");
    let mut left: Vec<&str> = listing["submissions"]
        .as_array()
        .expect("list")
        .iter()
        .map(|i| i["receipt"].as_str().expect("receipt"))
        .collect();
    left.sort();
    let mut want = vec![receipts[1].as_str(), receipts[2].as_str()];
    want.sort();
    assert_eq!(left, want);
    assert_eq!(fx.records().len(), 2, "unacknowledged records survive");
}

/// Every path under `root`, `root` included, with its access and
/// modification times (seconds, nanoseconds). Directories are listed with
/// `O_NOATIME`: a plain listing is a read, which would move the access time
/// this looks at.
fn times_under(root: &Path) -> Vec<(PathBuf, [(i64, i64); 2])> {
    use rustix::fs::{Dir, Mode, OFlags};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let m = std::fs::symlink_metadata(&p).expect("stat");
        out.push((
            p.clone(),
            [(m.atime(), m.atime_nsec()), (m.mtime(), m.mtime_nsec())],
        ));
        if m.is_dir() {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOATIME | OFlags::CLOEXEC;
            let fd = rustix::fs::open(&p, flags, Mode::empty()).expect("open dir");
            for e in Dir::read_from(&fd).expect("list") {
                let name = e.expect("entry").file_name().to_bytes().to_vec();
                if name != b"." && name != b".." {
                    todo.push(p.join(std::ffi::OsStr::from_bytes(&name)));
                }
            }
        }
    }
    out
}

/// Asserts that every access and modification time under `root` is 00:00
/// UTC of a day.
fn assert_only_days_under(root: &Path, when: &str) {
    let times = times_under(root);
    assert!(times.len() > 8, "{times:?}");
    let finer: Vec<_> = times
        .iter()
        .filter(|(_, t)| t.iter().any(|&(s, ns)| s % 86_400 != 0 || ns != 0))
        .collect();
    assert!(
        finer.is_empty(),
        "{when}: times finer than the day: {finer:#?}"
    );
}

#[test]
fn after_ack_and_purge_data_dir_holds_only_days_and_no_byte_of_a_purged_receipt() {
    let (fx, token) = staff_fixture(&[TestKey::Ed25519], "[retention]\nacked_days = 0\n");
    let server = Server::start(&fx);
    let client = reqwest::blocking::Client::new();
    let receipts = submit_to(&server, &client, 6);
    let (purged, kept) = receipts.split_at(3);
    // A download reads a spool file: that must not move its access time.
    let res = client
        .get(server.url(&format!("/api/v1/staff/submissions/{}", kept[0])))
        .bearer_auth(&token)
        .send()
        .expect("download");
    assert_eq!(res.status().as_u16(), 200);
    assert!(!res.bytes().expect("body").is_empty());
    for r in purged {
        let res = client
            .post(server.url(&format!("/api/v1/staff/submissions/{r}/ack")))
            .bearer_auth(&token)
            .send()
            .expect("ack");
        assert_eq!(res.status().as_u16(), 200);
    }
    assert_only_days_under(&fx.data_dir(), "after commits and acks, serve running");
    assert!(server.terminate().success());
    assert_only_days_under(&fx.data_dir(), "after serve stopped");
    let out = run_ok(&["purge", "--config", path_str(&fx.config_path())]);
    assert!(
        out.contains("purged 3 acknowledged and 0 unacknowledged"),
        "{out}"
    );
    assert_only_days_under(&fx.data_dir(), "after purge");

    // Every encoding of a receipt the store uses: its text (file names),
    // upper case, and its 16 bytes (the index's key).
    let encodings = |r: &str| -> Vec<Vec<u8>> {
        let raw = data_encoding::BASE32_NOPAD
            .decode(r.to_ascii_uppercase().as_bytes())
            .expect("base32");
        vec![
            r.as_bytes().to_vec(),
            r.to_ascii_uppercase().into_bytes(),
            raw,
        ]
    };
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let stored = fx.all_stored_bytes();
    for r in purged {
        for needle in encodings(r) {
            for (path, bytes) in &stored {
                assert!(
                    !contains(bytes, &needle),
                    "{} holds a purged receipt",
                    path.display()
                );
            }
        }
    }
    // The search can find what is there: each kept receipt's key is in the
    // index.
    for r in kept {
        let key = encodings(r).pop().expect("raw");
        assert!(
            stored
                .iter()
                .any(|(p, b)| p.starts_with(fx.data_dir().join("index")) && contains(b, &key)),
            "a kept receipt is not in the index"
        );
    }
}

#[tokio::test]
async fn serve_applies_retention_when_it_starts() {
    let (fx, token) = staff_fixture(&[TestKey::Ed25519], "[retention]\nacked_days = 0\n");
    let receipts = submit(&fx, 2).await;
    ack_through_the_api(&fx, &token, &receipts[0]).await;
    let server = Server::start(&fx);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log_text().contains("retention applied") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let listing: Value = reqwest::Client::new()
        .get(server.url("/api/v1/staff/submissions?state=all"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let left: Vec<&str> = listing["submissions"]
        .as_array()
        .expect("list")
        .iter()
        .map(|i| i["receipt"].as_str().expect("receipt"))
        .collect();
    assert_eq!(left, vec![receipts[1].as_str()]);
    assert!(
        server.log_text().contains("acked=1 unacked=0"),
        "{}",
        server.log_text()
    );
}

/// Every directory under `root` (itself included) is 0700 and every file
/// 0600, where `files` says which files to check.
fn assert_private_tree(root: &Path, files: impl Fn(&Path) -> bool) {
    use std::os::unix::fs::PermissionsExt;
    let mut checked = 0;
    for entry in walkdir::WalkDir::new(root) {
        let entry = entry.expect("walk");
        let mode = entry.metadata().expect("metadata").permissions().mode() & 0o777;
        if entry.file_type().is_dir() {
            assert_eq!(mode, 0o700, "{}", entry.path().display());
        } else if files(entry.path()) {
            assert_eq!(mode, 0o600, "{}", entry.path().display());
            checked += 1;
        }
    }
    assert!(checked > 0, "no file checked under {}", root.display());
}

#[test]
fn spool_bundle_and_decrypted_records_are_readable_by_their_owner_only() {
    let (fx, _token) = staff_fixture(&[TestKey::Ed25519], "");
    let server = Server::start(&fx);
    let client = reqwest::blocking::Client::new();
    submit_to(&server, &client, 3);
    let work = tempfile::tempdir().expect("tempdir");
    let bundle = work.path().join("bundle");
    run_ok(&[
        "pull",
        "--url",
        &server.url(""),
        "--token-file",
        path_str(&fx.path().join("token")),
        "--out",
        path_str(&bundle),
    ]);
    let plain = work.path().join("plain");
    run_ok(&[
        "decrypt",
        "--key",
        path_str(&TestKey::Ed25519.secret()),
        "--out",
        path_str(&plain),
        "--csv",
        path_str(&bundle),
    ]);
    drop(server);

    // fjall's own files are its business; the directory around them is ours.
    let data = fx.data_dir();
    assert_private_tree(&data.join("spool"), |_| true);
    for dir in [&data, &data.join("index")] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir).expect("metadata").permissions(),
        );
        assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
    }
    assert_private_tree(&bundle, |_| true);
    assert_private_tree(&plain, |_| true);
}
