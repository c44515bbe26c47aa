//! The in-process ceiling for `scripts/bench-load`: how many submissions per
//! second this machine can decode, validate, wrap in an envelope and seal,
//! with no HTTP and no disk.
//!
//! Usage: `cargo run --release --example seal-throughput -- CONFIG BODY.json
//! [--form tip] [--threads 2] [--seconds 5] [--primitives]`
//!
//! Loads the keys and forms of CONFIG as `serve` does, then on each thread
//! repeatedly turns BODY (an API body, `{"fields": {...}}`) into a sealed
//! record in memory, exactly as the server would before writing it. Prints
//! `seal-only: <n> submissions/s (<threads> threads, <seconds> s)`.
//!
//! With `--primitives`, first measures for as long what the cryptographic
//! primitives of such a seal cost alone (two X25519 operations, AES-256-CFB
//! and SHA-1 over the same padded envelope, through the OpenSSL that Sequoia
//! links; see `primitives`) and prints `primitives: <n> seals/s (...)`: the
//! ratio of the two lines is how close the seal comes to its cryptography.
//!
//! The ciphertext is dropped; the plaintext exists only in the same
//! zeroized buffers the server uses.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use openssl::derive::Deriver;
use openssl::pkey::{Id, PKey};
use openssl::sha::Sha1;
use openssl::symm::{Cipher, Crypter, Mode};
use sealform::config::{Config, FormConfig};
use sealform::keys::{Keyring, Recipients};
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
    primitives: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut positional = Vec::new();
    let mut form = "tip".to_owned();
    let mut threads = 2;
    let mut seconds = 5;
    let mut primitives = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--form" => form = value("--form")?,
            "--threads" => threads = value("--threads")?.parse()?,
            "--seconds" => seconds = value("--seconds")?.parse()?,
            "--primitives" => primitives = true,
            _ => positional.push(PathBuf::from(a)),
        }
    }
    let [config, body] = <[PathBuf; 2]>::try_from(positional).map_err(|_| {
        anyhow::anyhow!(
            "usage: seal-throughput CONFIG BODY.json [--form ID] [--threads N] [--seconds S] [--primitives]"
        )
    })?;
    Ok(Args {
        config,
        body,
        form,
        threads,
        seconds,
        primitives,
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

    let job = Job {
        form,
        recipients: &recipients,
        body: &body,
    };
    if args.primitives {
        let padded = job.padded_len()?;
        let rate = measure(args.threads, args.seconds, || {
            let peer = PKey::generate_x25519()?.raw_public_key()?;
            let mut buf = vec![0u8; padded];
            let mut out = vec![0u8; padded + 32];
            Ok(move || primitives(&peer, &mut buf, &mut out))
        })?;
        println!(
            "primitives: {rate:.0} seals/s ({} threads, {} s; 2 x X25519 + AES-256-CFB + SHA-1 over {padded} bytes)",
            args.threads, args.seconds
        );
    }
    let job = &job;
    let rate = measure(args.threads, args.seconds, || {
        let mut ciphertext = Vec::with_capacity(64 << 10);
        Ok(move || job.seal_one(&mut ciphertext))
    })?;
    println!(
        "seal-only: {rate:.0} submissions/s ({} threads, {} s)",
        args.threads, args.seconds
    );
    Ok(ExitCode::SUCCESS)
}

/// One submission of the benchmark: what the server seals for it.
struct Job<'a> {
    form: &'a FormConfig,
    recipients: &'a Recipients,
    body: &'a [u8],
}

impl Job<'_> {
    /// Decodes, validates, envelopes and seals the body once, into `ciphertext`.
    fn seal_one(&self, ciphertext: &mut Vec<u8>) -> anyhow::Result<()> {
        ciphertext.clear();
        seal(ciphertext, self.recipients, |w| self.envelope(w))?;
        Ok(())
    }

    /// The padded length of the envelope this body makes: what the cipher
    /// and the MDC's hash go over.
    fn padded_len(&self) -> anyhow::Result<usize> {
        Ok(usize::try_from(self.envelope(&mut std::io::sink())?)?)
    }

    /// Decodes and validates the body and writes its envelope to `w`, as the
    /// server does; returns the envelope's padded length.
    fn envelope(&self, w: &mut dyn Write) -> io::Result<u64> {
        let raw = decode_json(self.body).map_err(|r| io::Error::other(r.to_string()))?;
        let submission =
            Submission::validate(self.form, raw).map_err(|r| io::Error::other(r.to_string()))?;
        let receipt = Receipt::random().to_string();
        let head = Head {
            form: &self.form.id,
            title: &self.form.title,
            receipt: &receipt,
            received_at: chrono::Utc::now(),
            reply: None,
        };
        let fields = submission.envelope_fields(self.form);
        let mut envelope = EnvelopeWriter::start(w, &head)?;
        envelope.text_part(&self.form.title, &fields)?;
        envelope.json_part(&head, &fields)?;
        Ok(envelope.finish()?.1)
    }
}

/// What a seal to one cv25519 recipient costs in primitives, with the
/// OpenSSL that Sequoia links: an ephemeral X25519 key (one scalar
/// multiplication) and the shared secret with the recipient (another), then
/// AES-256-CFB and SHA-1 (the MDC) over the padded envelope. Everything else a
/// seal does (the KDF and AES key wrap of the session key, packet framing, the
/// MIME writer) is not counted.
fn primitives(peer: &[u8], buf: &mut [u8], out: &mut [u8]) -> anyhow::Result<()> {
    let ephemeral = PKey::generate_x25519()?;
    std::hint::black_box(ephemeral.raw_public_key()?);
    let peer = PKey::public_key_from_raw_bytes(peer, Id::X25519)?;
    let mut deriver = Deriver::new(&ephemeral)?;
    deriver.set_peer(&peer)?;
    let shared = deriver.derive_to_vec()?;
    let key = openssl::sha::sha256(&shared);
    let iv = [0u8; 16];
    let mut crypter = Crypter::new(Cipher::aes_256_cfb128(), Mode::Encrypt, &key, Some(&iv))?;
    let n = crypter.update(buf, out)?;
    crypter.finalize(&mut out[n..])?;
    let mut sha1 = Sha1::new();
    sha1.update(buf);
    std::hint::black_box(sha1.finish());
    buf[0] = out[0];
    Ok(())
}

/// Runs `threads` workers for `seconds`, each repeating the step that
/// `make` returns for it; returns steps per second over all of them.
fn measure<M, S>(threads: usize, seconds: u64, make: M) -> anyhow::Result<f64>
where
    M: Fn() -> anyhow::Result<S> + Sync,
    S: FnMut() -> anyhow::Result<()>,
{
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        let mut workers = Vec::new();
        for _ in 0..threads {
            workers.push(s.spawn(|| -> anyhow::Result<()> {
                let mut step = make()?;
                while !stop.load(Ordering::Relaxed) {
                    step()?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }));
        }
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
        workers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| anyhow::anyhow!("a worker panicked"))?)
    })?;
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}
