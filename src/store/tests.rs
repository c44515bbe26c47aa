//! Tests of the store as a whole: a commit, an abandoned record, an
//! acknowledgement; and the helper other modules' tests commit with.

use super::*;

#[test]
fn a_committed_record_is_in_the_spool_and_index_with_only_its_day() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("open");
    let mut p = store.create().expect("create");
    p.write_all(b"ciphertext").expect("write");
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_123);
    let (r, entry) = store.commit(p, vec!["FPR".into()], now).expect("commit");
    let path = store.path_of(&r);
    assert_eq!(fs::read(&path).expect("read"), b"ciphertext");
    assert_eq!(
        fs::metadata(&path)
            .expect("meta")
            .modified()
            .expect("mtime"),
        UNIX_EPOCH + Duration::from_secs(1_799_971_200)
    );
    assert_eq!(entry.day, "2027-01-15");
    assert_eq!(store.get(&r).expect("get"), Some(entry));
    assert_eq!(
        fs::read_dir(dir.path().join("spool/tmp"))
            .expect("tmp")
            .count(),
        0
    );
}

#[test]
fn an_abandoned_record_leaves_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("open");
    let mut p = store.create().expect("create");
    p.write_all(b"half").expect("write");
    drop(p);
    assert_eq!(
        fs::read_dir(dir.path().join("spool/tmp"))
            .expect("tmp")
            .count(),
        0
    );
    assert!(store.list().expect("list").is_empty());
}

/// Commits a record of a few bytes at `now`.
pub(super) fn committed(store: &Store, now: SystemTime) -> Receipt {
    let mut p = store.create().expect("create");
    p.write_all(b"ciphertext").expect("write");
    store.commit(p, vec![], now).expect("commit").0
}

#[test]
fn acknowledging_records_the_day_durably_and_deletes_the_spool_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("open");
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_123);
    let r = committed(&store, now);
    let e = store.mark_exported(&r).expect("export").expect("known");
    assert_eq!(e.state, RecordState::Exported);
    let e = store.ack(&r, now).expect("ack").expect("known");
    assert_eq!(
        (e.state, e.acked_day.as_deref()),
        (RecordState::Acked, Some("2027-01-15"))
    );
    assert!(!store.path_of(&r).exists());
    // Exporting an acknowledged record does not bring it back.
    let e = store.mark_exported(&r).expect("export").expect("known");
    assert_eq!(e.state, RecordState::Acked);
    assert!(store.ack(&Receipt::random(), now).expect("ack").is_none());
    drop(store);
    let (store, _) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("reopen");
    assert_eq!(
        store.get(&r).expect("get").expect("kept").state,
        RecordState::Acked
    );
}

#[test]
fn an_index_sled_wrote_is_moved_into_fjall_at_open_with_every_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let entry = |state, acked_day: Option<&str>| IndexEntry {
        day: "2026-12-01".into(),
        size: 8192,
        state,
        recipients: vec!["FPR".into()],
        form: Some("tip".into()),
        acked_day: acked_day.map(String::from),
    };
    let (new, exported, acked) = (Receipt::random(), Receipt::random(), Receipt::random());
    let spool = dir.path().join("spool");
    fs::create_dir_all(&spool).expect("spool");
    for r in [new, exported] {
        fs::write(spool.join(format!("{r}.pgp")), b"ciphertext").expect("write");
    }
    // The index as sealform wrote it with sled: receipt -> entry as JSON.
    {
        let sled = sled::Config::new()
            .path(dir.path().join("index"))
            .open()
            .expect("sled");
        for (r, e) in [
            (new, entry(RecordState::New, None)),
            (exported, entry(RecordState::Exported, None)),
            (acked, entry(RecordState::Acked, Some("2026-12-02"))),
        ] {
            sled.insert(r.key(), serde_json::to_vec(&e).expect("json"))
                .expect("insert");
        }
        sled.flush().expect("flush");
    }
    for _ in 0..2 {
        let (store, recovery) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("open");
        assert_eq!(recovery, Recovery::default());
        assert_eq!(
            store.get(&new).expect("get"),
            Some(entry(RecordState::New, None))
        );
        assert_eq!(
            store.get(&exported).expect("get"),
            Some(entry(RecordState::Exported, None))
        );
        assert_eq!(
            store.get(&acked).expect("get"),
            Some(entry(RecordState::Acked, Some("2026-12-02")))
        );
        assert_eq!(store.list().expect("list").len(), 3);
        assert!(!dir.path().join("index/conf").exists(), "sled's files left");
        for leftover in ["index.new", "index.old"] {
            assert!(!dir.path().join(leftover).exists(), "{leftover} left");
        }
    }
}

#[test]
fn an_older_sealform_started_on_an_index_fjall_wrote_is_refused_not_moved_over_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let acked = {
        let (store, _) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("open");
        let r = committed(&store, SystemTime::now());
        store.ack(&r, SystemTime::now()).expect("ack");
        r
    };
    // What sled leaves when an older build opens index/.
    {
        let sled = sled::Config::new()
            .path(dir.path().join("index"))
            .open()
            .expect("sled");
        sled.flush().expect("flush");
    }
    let err = Store::open(dir.path(), 1 << 20, |_| vec![])
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("both sled's files and fjall's"),
        "{err}"
    );
    // Once sled's files are gone, the index fjall wrote is there, whole.
    for name in ["conf", "db", "blobs", "snap.0000000000000000"] {
        let p = dir.path().join("index").join(name);
        let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
    }
    for e in fs::read_dir(dir.path().join("index")).expect("ls") {
        let p = e.expect("entry").path();
        if p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("snap."))
        {
            fs::remove_file(&p).expect("rm snap");
        }
    }
    let (store, _) = Store::open(dir.path(), 1 << 20, |_| vec![]).expect("open");
    assert_eq!(
        store.get(&acked).expect("get").map(|e| e.state),
        Some(RecordState::Acked)
    );
}
