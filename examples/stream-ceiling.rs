//! The ceiling of one sealed stream (issue 24's fourth target, a 1 GiB
//! upload, in BENCHMARKS.md): what encrypting one SEIPDv1 stream costs in
//! its two primitives alone, on one thread, with no OpenPGP framing, no
//! HTTP and no disk.
//!
//! Usage: `cargo run --release --example stream-ceiling -- [MIB] [RUNS]`
//! (defaults: 256 MiB, 3 runs).
//!
//! A SEIPDv1 message is AES-256 in OpenPGP's CFB mode over the plaintext,
//! and SHA-1 over the same bytes for its modification detection code (MDC).
//! sequoia-openpgp computes every SHA-1 with `sha1collisiondetection`
//! (its `HashAlgorithm::context`), the MDC's included; this measures that
//! implementation with Sequoia's settings, and OpenSSL's SHA-1 beside it.
//! Each line is the median of RUNS passes over MIB MiB in 8 KiB chunks (the
//! size of Sequoia's writes). The two combined lines run both primitives
//! over each chunk in turn, as the encryptor does: they bound what one
//! stream can reach on this machine's core, whatever the rest costs.

use std::time::Instant;

use anyhow::Context as _;
use openssl::symm::{Cipher, Crypter, Mode};

const CHUNK: usize = 8 * 1024;

/// Sequoia's SHA-1 (sequoia-openpgp's `crypto/backend/sha1cd.rs`).
fn sha1cd() -> sha1collisiondetection::Sha1CD {
    sha1collisiondetection::Builder::default()
        .detect_collisions(true)
        .use_ubc(true)
        .safe_hash(true)
        .build()
}

fn cfb() -> anyhow::Result<Crypter> {
    let key = [0x42u8; 32];
    let iv = [0u8; 16];
    Ok(Crypter::new(
        Cipher::aes_256_cfb128(),
        Mode::Encrypt,
        &key,
        Some(&iv),
    )?)
}

/// MB/s of `pass` over `data`, the median of `runs`.
fn rate(
    data: &[u8],
    runs: usize,
    mut pass: impl FnMut(&[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    let mut rates = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        pass(data)?;
        rates.push(data.len() as f64 / 1e6 / started.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    Ok(rates[rates.len() / 2])
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mib: usize = args.first().map_or(Ok(256), |a| a.parse()).context("MIB")?;
    let runs: usize = args.get(1).map_or(Ok(3), |a| a.parse()).context("RUNS")?;
    anyhow::ensure!(mib > 0 && runs > 0, "MIB and RUNS are at least 1");
    let data: Vec<u8> = (0..mib << 20).map(|i| (i * 131 % 251) as u8).collect();
    let mut out = vec![0u8; CHUNK + 16];

    let cd = rate(&data, runs, |d| {
        let mut h = sha1cd();
        d.chunks(CHUNK).for_each(|c| h.update(c));
        h.finalize_cd()
            .map(drop)
            .map_err(|e| anyhow::anyhow!("{e:?}"))
    })?;
    let ossl = rate(&data, runs, |d| {
        let mut h = openssl::sha::Sha1::new();
        d.chunks(CHUNK).for_each(|c| h.update(c));
        h.finish();
        Ok(())
    })?;
    let aes = rate(&data, runs, |d| {
        let mut c = cfb()?;
        for chunk in d.chunks(CHUNK) {
            c.update(chunk, &mut out)?;
        }
        Ok(())
    })?;
    let mut both = |use_cd: bool| {
        rate(&data, runs, |d| {
            let (mut c, mut cd, mut ossl) = (cfb()?, sha1cd(), openssl::sha::Sha1::new());
            for chunk in d.chunks(CHUNK) {
                c.update(chunk, &mut out)?;
                if use_cd {
                    cd.update(chunk)
                } else {
                    ossl.update(chunk)
                }
            }
            Ok(())
        })
    };
    let (sealed_cd, sealed_ossl) = (both(true)?, both(false)?);

    println!("stream ceiling, {mib} MiB in {CHUNK}-byte chunks, median of {runs}, one thread:");
    println!("  SHA-1 with collision detection (Sequoia's): {cd:.0} MB/s");
    println!("  SHA-1 (OpenSSL): {ossl:.0} MB/s");
    println!("  AES-256-CFB (OpenSSL): {aes:.0} MB/s");
    println!("  AES-256-CFB + Sequoia's SHA-1 (a SEIPDv1 stream as sealed): {sealed_cd:.0} MB/s");
    println!("  AES-256-CFB + OpenSSL's SHA-1: {sealed_ossl:.0} MB/s");
    Ok(())
}
