//! Micro benchmarks of anonymous replies: what the server spends per code
//! (a fresh code and its derivation at every submission to a form with
//! replies, and at every read of `/replies`), and sealing and opening one
//! answer of a short message (padded to 8 KiB, as `sealform reply` writes
//! it).
//!
//! Run with `cargo bench --bench replies`; `cargo test --all-targets` runs
//! each benchmark once as a smoke test.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use sealform::replies::{ReplyCode, ReplyStatus, answer_plaintext, seal_answer};

fn code_and_derivation(c: &mut Criterion) {
    let mut group = c.benchmark_group("replies");
    group.bench_function("generate", |b| b.iter(|| black_box(ReplyCode::generate())));
    let code = ReplyCode::generate();
    group.bench_function("parse", |b| {
        b.iter(|| black_box(ReplyCode::parse(black_box(code.expose()))))
    });
    group.bench_function("derive", |b| b.iter(|| black_box(code.derive())));
    group.bench_function("cert_armored", |b| {
        let derived = code.derive().expect("derive");
        b.iter(|| black_box(derived.cert_armored()))
    });
    group.finish();
}

fn answers(c: &mut Criterion) {
    let derived = ReplyCode::generate().derive().expect("derive");
    let text = "We read your tip. Can you tell us which office sent the memo?".repeat(8);
    let plain = answer_plaintext(Some("tip"), Some(ReplyStatus::Answered), text.as_bytes());
    let sealed = seal_answer(derived.cert(), &[], &plain, SystemTime::now()).expect("seal");
    let mut group = c.benchmark_group("answer");
    group.bench_function("seal-8KiB", |b| {
        b.iter(|| black_box(seal_answer(derived.cert(), &[], &plain, SystemTime::now())))
    });
    group.bench_function("open-8KiB", |b| b.iter(|| black_box(derived.open(&sealed))));
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
        targets = code_and_derivation, answers
    }
}
criterion_main!(group::benches);
