//! One conformance suite for both backends of the record store: every test
//! below runs against the embedded store (spool files and fjall in a temp
//! dir) and against a real PostgreSQL (`pg.rs`), through the one interface
//! the server uses (`sealform::store::RecordStore`). `store_conformance/
//! http.rs` runs the real server on PostgreSQL end to end.

mod http;
mod tls;

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use sealform::config::{SslMode, StoreBackend, StoreConfig};
use sealform::receipt::Receipt;
use sealform::replies::{AnswerId, MailboxId, Mailboxes, Put, ReplyError};
use sealform::store::postgres::{CHUNK, PgStore};
use sealform::store::{
    Imported, IndexEntry, Indexing, RecordState, RecordStore, Store, day_string,
};

use crate::pg::Postgres;

/// A store under test and what must outlive it (its directory or its
/// server).
pub struct Backend {
    pub store: RecordStore,
    /// The PostgreSQL server, for the tests that look into it.
    pub pg: Option<Postgres>,
    /// The data_dir (the embedded store's, or one the database's store
    /// leaves empty).
    dir: tempfile::TempDir,
}

impl Backend {
    /// The reply store that goes with this backend, `max` answers a mailbox.
    fn mailboxes(&self, max: usize) -> Mailboxes {
        Mailboxes::open(&self.store, self.dir.path(), max).expect("open the reply store")
    }
}

fn fs() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = Store::open(dir.path(), 1 << 20, |_| Vec::new()).expect("open fs store");
    Backend {
        store: RecordStore::Fs(store),
        pg: None,
        dir,
    }
}

/// The `[store]` table of a backend on `pg`.
pub fn pg_config(pg: &Postgres) -> StoreConfig {
    StoreConfig {
        backend: StoreBackend::Postgres,
        url: Some(pg.url()),
        url_file: None,
        pool_size: 24,
        sslmode: SslMode::Disable,
        ca_file: None,
    }
}

fn postgres() -> Backend {
    let pg = Postgres::start();
    let store = PgStore::open(&pg_config(&pg)).expect("open the PostgreSQL store");
    Backend {
        store: RecordStore::Postgres(store),
        pg: Some(pg),
        dir: tempfile::tempdir().expect("tempdir"),
    }
}

/// Runs each named test against both backends: `fs::name` and
/// `postgres::name`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_fs {
            $( #[test] fn $name() { super::$name(super::fs()) } )*
        }
        mod on_postgres {
            $( #[test] fn $name() { super::$name(super::postgres()) } )*
        }
    };
}

conformance!(
    a_committed_record_is_listed_with_its_day_size_form_and_recipients,
    a_record_streams_out_byte_identical_across_chunk_boundaries,
    mark_exported_changes_only_a_new_record,
    ack_deletes_the_ciphertext_and_keeps_the_row_with_its_day,
    purge_deletes_by_whole_days_as_configured,
    concurrent_commits_are_all_stored_and_readable,
    a_64_mib_record_goes_in_and_out_in_chunks,
    a_record_dropped_before_its_commit_leaves_nothing,
    an_import_keeps_the_records_identity_and_runs_again_harmlessly,
    answers_to_a_mailbox_are_kept_bounded_listed_oldest_first_and_deleted_at_once,
    answers_expire_by_whole_days_after_their_push,
    concurrent_pushes_to_one_mailbox_keep_its_bound,
);

const DAY: Duration = Duration::from_secs(86_400);

fn indexing() -> Indexing {
    Indexing {
        form: Some("tip".into()),
        recipients: vec!["AAAA".into(), "BBBB".into()],
    }
}

/// Deterministic bytes that do not repeat with any short period.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Stores `data` as a record received at `now`, written in pieces of odd
/// sizes.
fn put(store: &RecordStore, data: &[u8], now: SystemTime) -> Receipt {
    let mut pending = store.create().expect("create");
    for piece in data.chunks(77_777) {
        pending.write_all(piece).expect("write");
    }
    let (receipt, entry) = store.commit(pending, indexing(), now).expect("commit");
    assert_eq!(entry.size, data.len() as u64);
    receipt
}

fn read_all(store: &RecordStore, receipt: &Receipt) -> Vec<u8> {
    let mut out = Vec::new();
    store
        .open_record(receipt)
        .expect("open")
        .expect("the record is there")
        .read_to_end(&mut out)
        .expect("read");
    out
}

fn a_committed_record_is_listed_with_its_day_size_form_and_recipients(b: Backend) {
    let now = SystemTime::now();
    let r = put(&b.store, b"ciphertext", now);
    let listed = b.store.list().expect("list");
    assert_eq!(listed.len(), 1);
    let (receipt, entry) = &listed[0];
    assert_eq!(receipt, &r);
    assert_eq!(entry.day, day_string(now));
    assert_eq!(entry.size, 10);
    assert_eq!(entry.state, RecordState::New);
    assert_eq!(entry.form.as_deref(), Some("tip"));
    assert_eq!(entry.recipients, vec!["AAAA".to_owned(), "BBBB".to_owned()]);
    assert_eq!(entry.acked_day, None);
    assert_eq!(b.store.get(&r).expect("get").as_ref(), Some(entry));
    assert_eq!(b.store.get(&Receipt::random()).expect("get"), None);
}

fn a_record_streams_out_byte_identical_across_chunk_boundaries(b: Backend) {
    let data = bytes(1, 3 * CHUNK + 12_345);
    let r = put(&b.store, &data, SystemTime::now());
    assert_eq!(read_all(&b.store, &r), data);
    // Read, rewind, read again (as the download route does), and seek
    // into the middle of a chunk.
    let mut reader = b.store.open_record(&r).expect("open").expect("there");
    let mut first = vec![0u8; CHUNK + 10];
    reader.read_exact(&mut first).expect("read");
    reader.rewind().expect("rewind");
    let mut again = Vec::new();
    reader.read_to_end(&mut again).expect("read");
    assert_eq!(again, data);
    let at = 2 * CHUNK as u64 + 99;
    assert_eq!(reader.seek(SeekFrom::Start(at)).expect("seek"), at);
    let mut tail = Vec::new();
    reader.read_to_end(&mut tail).expect("read");
    assert_eq!(tail, data[at as usize..]);
    assert!(
        b.store
            .open_record(&Receipt::random())
            .expect("open")
            .is_none()
    );
}

fn mark_exported_changes_only_a_new_record(b: Backend) {
    let now = SystemTime::now();
    let r = put(&b.store, b"one", now);
    let e = b.store.mark_exported(&r).expect("mark").expect("known");
    assert_eq!(e.state, RecordState::Exported);
    assert_eq!(
        b.store.get(&r).expect("get").expect("known").state,
        RecordState::Exported
    );
    let acked = put(&b.store, b"two", now);
    b.store.ack(&acked, now).expect("ack");
    let e = b.store.mark_exported(&acked).expect("mark").expect("known");
    assert_eq!(e.state, RecordState::Acked, "an acked record stays acked");
    assert_eq!(
        b.store.mark_exported(&Receipt::random()).expect("mark"),
        None
    );
}

fn ack_deletes_the_ciphertext_and_keeps_the_row_with_its_day(b: Backend) {
    let now = SystemTime::now();
    let r = put(&b.store, &bytes(2, CHUNK + 1), now - 3 * DAY);
    let e = b.store.ack(&r, now).expect("ack").expect("known");
    assert_eq!(e.state, RecordState::Acked);
    assert_eq!(e.acked_day.as_deref(), Some(day_string(now).as_str()));
    assert_eq!(e.day, day_string(now - 3 * DAY));
    assert!(
        b.store.open_record(&r).expect("open").is_none(),
        "ciphertext gone"
    );
    let twice = b.store.ack(&r, now + DAY).expect("ack").expect("known");
    assert_eq!(twice.acked_day, e.acked_day, "a second ack changes nothing");
    assert_eq!(b.store.ack(&Receipt::random(), now).expect("ack"), None);
    if let Some(pg) = &b.pg {
        let left = pg.count("SELECT count(*) FROM chunks");
        assert_eq!(left, 0, "no chunk of an acknowledged record is left");
    }
}

fn purge_deletes_by_whole_days_as_configured(b: Backend) {
    let now = SystemTime::now();
    let s = &b.store;
    let old_new = put(s, b"a", now - 10 * DAY);
    let recent_new = put(s, b"b", now - DAY);
    let five_days_new = put(s, b"e", now - 5 * DAY);
    let acked_5 = put(s, b"c", now - 20 * DAY);
    s.ack(&acked_5, now - 5 * DAY).expect("ack");
    let acked_3 = put(s, b"f", now - 20 * DAY);
    s.ack(&acked_3, now - 3 * DAY).expect("ack");
    let acked_today = put(s, b"d", now - 20 * DAY);
    s.ack(&acked_today, now).expect("ack");
    let purged = s.purge(Some(3), Some(5), now).expect("purge");
    assert_eq!((purged.acked, purged.unacked), (2, 1));
    let mut left: Vec<Receipt> = s
        .list()
        .expect("list")
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    left.sort();
    let mut kept = vec![recent_new, five_days_new, acked_today];
    kept.sort();
    assert_eq!(
        left, kept,
        "{old_new} {acked_5} {acked_3} purged, the rest kept"
    );
    let again = s.purge(Some(3), Some(5), now).expect("purge again");
    assert_eq!((again.acked, again.unacked), (0, 0));
    let none = s
        .purge(None, None, now + 400 * DAY)
        .expect("purge with nothing set");
    assert_eq!((none.acked, none.unacked), (0, 0));
    assert_eq!(s.list().expect("list").len(), 3);
}

fn concurrent_commits_are_all_stored_and_readable(b: Backend) {
    let store = &b.store;
    let stored: Vec<(Receipt, Vec<u8>)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..12u64)
            .map(|t| {
                scope.spawn(move || {
                    (0..4u64)
                        .map(|i| {
                            let data = bytes(t * 100 + i, 1000 + (t * 4 + i) as usize * 4099);
                            (put(store, &data, SystemTime::now()), data)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().expect("thread"))
            .collect()
    });
    assert_eq!(store.list().expect("list").len(), 48);
    for (r, data) in &stored {
        assert_eq!(&read_all(store, r), data);
    }
}

fn a_64_mib_record_goes_in_and_out_in_chunks(b: Backend) {
    const SIZE: usize = 64 << 20;
    let piece = bytes(7, 1 << 16);
    let mut pending = b.store.create().expect("create");
    let mut hasher = Sha256::new();
    let mut i = 0u8;
    let mut buf = piece.clone();
    for _ in 0..SIZE / piece.len() {
        // Each piece differs, so a chunk mixed up with another is noticed.
        buf[0] = i;
        i = i.wrapping_add(1);
        pending.write_all(&buf).expect("write");
        hasher.update(&buf);
    }
    let (r, entry) = b
        .store
        .commit(pending, indexing(), SystemTime::now())
        .expect("commit");
    assert_eq!(entry.size, SIZE as u64);
    let mut reader = b.store.open_record(&r).expect("open").expect("there");
    let mut out = Sha256::new();
    let mut chunk = vec![0u8; 1 << 16];
    let mut len = 0;
    loop {
        let n = reader.read(&mut chunk).expect("read");
        if n == 0 {
            break;
        }
        out.update(&chunk[..n]);
        len += n;
    }
    assert_eq!(len, SIZE);
    assert_eq!(out.finalize(), hasher.finalize());
    if let Some(pg) = &b.pg {
        let row = pg
            .client()
            .query_one(
                "SELECT count(*), max(length(data)) FROM chunks WHERE receipt = $1",
                &[&r.to_string()],
            )
            .expect("chunks");
        let (rows, largest): (i64, i32) = (row.get(0), row.get(1));
        assert_eq!(rows, 64, "1 MiB a row");
        assert_eq!(largest as usize, CHUNK);
    }
}

fn a_record_dropped_before_its_commit_leaves_nothing(b: Backend) {
    let mut pending = b.store.create().expect("create");
    pending.write_all(&bytes(3, 2 * CHUNK + 5)).expect("write");
    drop(pending);
    assert!(b.store.list().expect("list").is_empty());
    if let Some(pg) = &b.pg {
        let rows = pg.count("SELECT count(*) FROM chunks");
        assert_eq!(rows, 0, "the transaction was rolled back");
    }
    // The store still takes records afterwards (the connection went back
    // to the pool usable).
    let r = put(&b.store, b"after", SystemTime::now());
    assert_eq!(read_all(&b.store, &r), b"after");
}

fn an_import_keeps_the_records_identity_and_runs_again_harmlessly(b: Backend) {
    let now = SystemTime::now();
    let entry = |state, size, acked_day: Option<String>| IndexEntry {
        day: day_string(now - 10 * DAY),
        size,
        state,
        recipients: vec!["CCCC".into()],
        form: Some("tip".into()),
        acked_day,
    };
    let data = bytes(9, CHUNK + 3);
    let fresh = (
        Receipt::random(),
        entry(RecordState::New, data.len() as u64, None),
    );
    let exported = (Receipt::random(), entry(RecordState::Exported, 5, None));
    let acked = (
        Receipt::random(),
        entry(RecordState::Acked, 700, Some(day_string(now - 2 * DAY))),
    );
    let s = &b.store;
    for want in [Imported::Stored, Imported::AlreadyThere] {
        let runs = [
            s.import(&fresh.0, &fresh.1, &mut &data[..]),
            s.import(&exported.0, &exported.1, &mut &b"12345"[..]),
            s.import(&acked.0, &acked.1, &mut std::io::empty()),
        ];
        let outcomes: Vec<Imported> = runs.into_iter().map(|r| r.expect("import")).collect();
        assert_eq!(outcomes, [want; 3]);
    }
    for (r, e) in [&fresh, &exported, &acked] {
        assert_eq!(s.get(r).expect("get").as_ref(), Some(e), "kept as imported");
    }
    assert_eq!(read_all(s, &fresh.0), data);
    assert_eq!(read_all(s, &exported.0), b"12345");
    assert!(s.open_record(&acked.0).expect("open").is_none());
    // A ciphertext of another size than its entry says is refused, and
    // leaves nothing.
    let short = (Receipt::random(), entry(RecordState::New, 10, None));
    assert!(s.import(&short.0, &short.1, &mut &b"123"[..]).is_err());
    assert_eq!(s.get(&short.0).expect("get"), None);
    assert_eq!(s.list().expect("list").len(), 3);
}

/// Mailbox `n`: a valid address (32 base32 characters; any such string
/// decodes to 20 bytes).
fn mailbox(n: u8) -> MailboxId {
    let first = char::from(b'a' + n % 26);
    format!("{first}{}", "q".repeat(31))
        .parse()
        .expect("a mailbox address")
}

fn answers_to_a_mailbox_are_kept_bounded_listed_oldest_first_and_deleted_at_once(b: Backend) {
    let boxes = b.mailboxes(3);
    let (mine, other) = (mailbox(1), mailbox(2));
    let now = SystemTime::now();
    let ids: Vec<AnswerId> = (0..4).map(|_| AnswerId::random()).collect();
    // Pushed on two days, the newer first.
    assert_eq!(
        boxes.put(&mine, &ids[0], b"second", now).expect("put"),
        Put::Stored
    );
    assert_eq!(
        boxes.put(&mine, &ids[1], b"first", now - DAY).expect("put"),
        Put::Stored
    );
    // The same bytes again: already there; other bytes: refused.
    assert_eq!(
        boxes.put(&mine, &ids[0], b"second", now).expect("put"),
        Put::AlreadyThere
    );
    assert!(matches!(
        boxes.put(&mine, &ids[0], b"other", now),
        Err(ReplyError::Conflict)
    ));
    assert_eq!(
        boxes.put(&mine, &ids[2], b"third", now).expect("put"),
        Put::Stored
    );
    assert!(matches!(
        boxes.put(&mine, &ids[3], b"fourth", now),
        Err(ReplyError::Full)
    ));
    // Another mailbox has its own bound and its own answers.
    boxes.put(&other, &ids[3], b"elsewhere", now).expect("put");

    let listed = boxes.list(&mine).expect("list");
    let days: Vec<&str> = listed.iter().map(|a| a.day.as_str()).collect();
    assert_eq!(
        days,
        [day_string(now - DAY), day_string(now), day_string(now)],
        "oldest first"
    );
    assert_eq!(listed[0].ciphertext, b"first");
    assert_eq!(listed[0].id, ids[1]);
    let mut rest: Vec<(AnswerId, Vec<u8>)> = listed[1..]
        .iter()
        .map(|a| (a.id, a.ciphertext.clone()))
        .collect();
    rest.sort();
    let mut want = vec![(ids[0], b"second".to_vec()), (ids[2], b"third".to_vec())];
    want.sort();
    assert_eq!(rest, want);

    boxes.delete(&mine).expect("delete");
    assert!(boxes.list(&mine).expect("list").is_empty());
    boxes
        .delete(&mine)
        .expect("deleting a missing mailbox is harmless");
    assert_eq!(
        boxes.list(&other).expect("list").len(),
        1,
        "the other stays"
    );
    // A deleted mailbox takes answers again, from none.
    assert_eq!(
        boxes.put(&mine, &ids[0], b"again", now).expect("put"),
        Put::Stored
    );
    assert!(boxes.list(&mailbox(3)).expect("list").is_empty());
}

fn answers_expire_by_whole_days_after_their_push(b: Backend) {
    let boxes = b.mailboxes(20);
    let now = SystemTime::now();
    let (a, c) = (mailbox(4), mailbox(5));
    boxes
        .put(&a, &AnswerId::random(), b"three days old", now - 3 * DAY)
        .expect("put");
    boxes
        .put(&a, &AnswerId::random(), b"a day old", now - DAY)
        .expect("put");
    boxes
        .put(&c, &AnswerId::random(), b"today", now)
        .expect("put");
    assert_eq!(boxes.purge(4, now).expect("purge"), 0);
    assert_eq!(boxes.purge(3, now).expect("purge"), 1, "3 midnights ago");
    assert_eq!(boxes.list(&a).expect("list").len(), 1);
    assert_eq!(boxes.purge(1, now).expect("purge"), 1);
    assert!(boxes.list(&a).expect("list").is_empty());
    assert_eq!(boxes.purge(1, now).expect("purge"), 0, "today's stays");
    assert_eq!(boxes.purge(0, now).expect("purge"), 1, "0: every answer");
    assert!(boxes.list(&c).expect("list").is_empty());
}

fn concurrent_pushes_to_one_mailbox_keep_its_bound(b: Backend) {
    let boxes = b.mailboxes(5);
    let target = mailbox(6);
    let now = SystemTime::now();
    let outcomes: Vec<Result<Put, ReplyError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|i| {
                let (boxes, target) = (&boxes, &target);
                scope.spawn(move || {
                    boxes.put(
                        target,
                        &AnswerId::random(),
                        format!("answer {i}").as_bytes(),
                        now,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let stored = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(Put::Stored)))
        .count();
    let full = outcomes
        .iter()
        .filter(|o| matches!(o, Err(ReplyError::Full)))
        .count();
    assert_eq!((stored, full), (5, 7), "5 stored, the rest refused as full");
    assert_eq!(boxes.list(&target).expect("list").len(), 5);
}
