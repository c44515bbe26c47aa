//! Micro benchmark of the durable part of intake alone: `Store::create`,
//! writing a record, and `Store::commit` (fsync of the file, rename, fsync
//! of the spool directory, index insert and flush).
//!
//! The store lives under Cargo's target tmp dir, on the same filesystem as
//! the build, not on a tmpfs where fsync would cost nothing. Run with
//! `cargo bench --bench spool`.

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sealform::store::Store;

fn spool_commit(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let (store, _) = Store::open(dir.path(), 16 << 20, |_| Vec::new()).expect("open store");
    let mut group = c.benchmark_group("spool-commit");
    // A 1 KiB message seals to about 8.5 KiB; 160 KiB is a 64 KiB message.
    for (name, len) in [("8KiB", 8 << 10), ("160KiB", 160 << 10)] {
        let ciphertext = vec![0x5a_u8; len];
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                let mut pending = store.create().expect("create");
                pending.write_all(black_box(&ciphertext)).expect("write");
                store
                    .commit(pending, vec!["FPR".into()], SystemTime::now())
                    .expect("commit")
            })
        });
    }
    group.finish();
}

/// The benchmark group (`criterion_group!` makes an undocumented `pub fn`).
#[allow(missing_docs)]
mod group {
    use super::*;

    criterion_group! {
        name = benches;
        config = Criterion::default()
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        targets = spool_commit
    }
}
criterion_main!(group::benches);
