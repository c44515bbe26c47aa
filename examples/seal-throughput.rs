//! The in-process ceiling for `scripts/bench-load`: how many submissions per
//! second this machine can decode, validate, wrap in an envelope and seal,
//! with no HTTP and no disk.
//!
//! Usage: `cargo run --release --example seal-throughput -- CONFIG BODY.json
//! [--form tip] [--threads 2] [--seconds 5]`
//!
//! Loads the keys and forms of CONFIG as `serve` does, then on each thread
//! repeatedly turns BODY (an API body, `{"fields": {...}}`) into a sealed
//! record in memory, exactly as the server would before writing it. Prints
//! `seal-only: <n> submissions/s (<threads> threads, <seconds> s)`.
//!
//! The ciphertext is dropped; the plaintext exists only in the same
//! zeroized buffers the server uses.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use sealform::config::Config;
use sealform::keys::Keyring;
use sealform::mime::{EnvelopeWriter, Head};
use sealform::receipt::Receipt;
use sealform::seal::seal;
use sealform::submission::{Submission, decode_json};

// The same allocator as the `sealform` binary (see src/main.rs), so that the
// ceiling and the server differ only in what the server does besides sealing.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

struct Args {
    config: PathBuf,
    body: PathBuf,
    form: String,
    threads: usize,
    seconds: u64,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut positional = Vec::new();
    let mut form = "tip".to_owned();
    let mut threads = 2;
    let mut seconds = 5;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--form" => form = value("--form")?,
            "--threads" => threads = value("--threads")?.parse()?,
            "--seconds" => seconds = value("--seconds")?.parse()?,
            _ => positional.push(PathBuf::from(a)),
        }
    }
    let [config, body] = <[PathBuf; 2]>::try_from(positional).map_err(|_| {
        anyhow::anyhow!(
            "usage: seal-throughput CONFIG BODY.json [--form ID] [--threads N] [--seconds S]"
        )
    })?;
    Ok(Args {
        config,
        body,
        form,
        threads,
        seconds,
    })
}

fn main() -> anyhow::Result<ExitCode> {
    let args = parse_args()?;
    let config = Config::load(&args.config)?;
    let (keyring, _warnings) = Keyring::load(&config, SystemTime::now())
        .map_err(|p| anyhow::anyhow!("{} key problem(s)", p.len()))?;
    let Some(form) = config.forms.iter().find(|f| f.id == args.form) else {
        bail!("no form `{}` in the config", args.form);
    };
    let recipients = keyring.for_form(&form.id).context("form has no route")?;
    let body = std::fs::read(&args.body).context("while reading the body")?;
    // Refuse a body the server would refuse: the ceiling must be for real work.
    Submission::validate(
        form,
        decode_json(&body).map_err(|r| anyhow::anyhow!("{r}"))?,
    )
    .map_err(|r| anyhow::anyhow!("{r}"))?;

    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        let mut workers = Vec::new();
        for _ in 0..args.threads {
            workers.push(s.spawn(|| -> anyhow::Result<()> {
                let mut ciphertext = Vec::with_capacity(64 << 10);
                while !stop.load(Ordering::Relaxed) {
                    let raw = decode_json(&body).map_err(|r| anyhow::anyhow!("{r}"))?;
                    let submission =
                        Submission::validate(form, raw).map_err(|r| anyhow::anyhow!("{r}"))?;
                    let receipt = Receipt::random().to_string();
                    let head = Head {
                        form: &form.id,
                        title: &form.title,
                        receipt: &receipt,
                        received_at: chrono::Utc::now(),
                        reply: None,
                    };
                    let fields = submission.envelope_fields(form);
                    ciphertext.clear();
                    seal(&mut ciphertext, &recipients, |w| {
                        let mut envelope = EnvelopeWriter::start(w, &head)?;
                        envelope.text_part(&form.title, &fields)?;
                        envelope.json_part(&head, &fields)?;
                        envelope.finish()?;
                        Ok(())
                    })?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }));
        }
        std::thread::sleep(Duration::from_secs(args.seconds));
        stop.store(true, Ordering::Relaxed);
        workers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| anyhow::anyhow!("a worker panicked"))?)
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!(
        "seal-only: {:.0} submissions/s ({} threads, {:.1} s)",
        n as f64 / elapsed,
        args.threads,
        elapsed
    );
    Ok(ExitCode::SUCCESS)
}
