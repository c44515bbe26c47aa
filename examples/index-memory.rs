//! How much memory the index holds per entry, apart from the rest of the
//! server: issue 24's fifth target (RSS after a load against idle) in
//! BENCHMARKS.md.
//!
//! Usage: `cargo run --release --example index-memory -- CACHE_BYTES ENTRIES`
//!
//! Opens the store's index (fjall, through `IndexDb::open` with the store's
//! settings: block cache CACHE_BYTES, a 1 MiB memtable, one worker) in a
//! temporary directory with the binary's allocator (jemalloc), inserts
//! ENTRIES entries the size of the store's (a 16-byte random key, an
//! `IndexEntry` as JSON with one recipient and a form), persisting every 64
//! as the committer's batches do, and prints the process's RSS every 16,384
//! entries, after the last persist, and after the index is opened again.
//! Until issue 24 the index was sled 0.34.7; this program then measured
//! sled, and its figures are in BENCHMARKS.md.

use std::time::Duration;

use sealform::store::{IndexDb, IndexEntry, RecordState};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(cache), Some(entries)) = (
        args.get(1).and_then(|a| a.parse::<u64>().ok()),
        args.get(2).and_then(|a| a.parse::<usize>().ok()),
    ) else {
        anyhow::bail!("usage: index-memory CACHE_BYTES ENTRIES");
    };
    let dir = tempfile::tempdir()?;
    let db = IndexDb::open(dir.path(), cache)?;
    println!("open, empty: {} KiB", rss_kib());
    let entry = IndexEntry {
        day: "2026-12-07".into(),
        size: 8192,
        state: RecordState::New,
        recipients: vec!["0123456789ABCDEF0123456789ABCDEF01234567".into()],
        form: Some("tip".into()),
        acked_day: None,
    };
    let value = serde_json::to_vec(&entry)?;
    for i in 1..=entries {
        let key: [u8; 16] = rand::random();
        db.insert(&key, value.clone())?;
        if i % 64 == 0 {
            db.persist()?;
        }
        if i % 16_384 == 0 {
            println!("{i} entries: {} KiB", rss_kib());
        }
    }
    db.persist()?;
    std::thread::sleep(Duration::from_secs(3));
    println!("3 s after the last persist: {} KiB", rss_kib());
    drop(db);
    let db = IndexDb::open(dir.path(), cache)?;
    std::thread::sleep(Duration::from_secs(2));
    println!(
        "opened again: {} KiB ({} entries)",
        rss_kib(),
        db.entries().count()
    );
    Ok(())
}
