//! Micro benchmarks of the CPU side of intake: the envelope writer alone,
//! and OpenPGP sealing of envelopes carrying 1 KiB, 64 KiB and 16 MiB to 1
//! and 3 recipients with cv25519 and RSA-4096 keys.
//!
//! The 1 KiB and 64 KiB cases are a message field (it appears twice in the
//! envelope, as text and as JSON; the smallest padded envelope is 8 KiB);
//! the 16 MiB case is an attachment (base64) next to a short message, since
//! no text field is that long. Throughput is counted in envelope bytes.
//!
//! Run with `cargo bench --bench seal`; `cargo test --all-targets` runs each
//! benchmark once as a smoke test. The certificates are generated here with
//! Sequoia's `CertBuilder` (public parts only are sealed to), so nothing
//! depends on key files. Ciphertext goes to `io::sink()`: disk cost is the
//! `spool` benchmark's business.

use std::hint::black_box;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sealform::keys::{Recipients, validate};
use sealform::mime::{EnvelopeField, EnvelopeWriter, FieldValue, Head};
use sealform::seal::seal;
use sequoia_openpgp as openpgp;

use openpgp::cert::{CertBuilder, CipherSuite};
use openpgp::types::KeyFlags;

const SIZES: [(&str, usize); 3] = [
    ("1KiB-message", 1 << 10),
    ("64KiB-message", 64 << 10),
    ("16MiB-attachment", 16 << 20),
];

/// Above this, the content goes in as an attachment.
const ATTACHMENT_FROM: usize = 1 << 20;

/// The content sizes to run: all of them under `cargo bench`, the small
/// ones when `cargo test` runs each benchmark once (unoptimized, a 16 MiB
/// envelope would take most of the suite's time for no information).
fn sizes() -> Vec<(&'static str, usize)> {
    let full = full_run();
    SIZES
        .into_iter()
        .filter(|&(_, len)| full || len <= ATTACHMENT_FROM)
        .collect()
}

/// Whether this is a real `cargo bench` run (criterion's test mode otherwise).
fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// `n` recipient certificates whose encryption subkeys are of `suite`, as
/// the recipients of one form. The primary keys are ed25519 whatever the
/// suite: only the encryption subkey matters for sealing, and RSA-4096 key
/// generation is slow. In test mode one certificate stands for all `n`.
fn recipients(suite: CipherSuite, n: usize) -> Recipients {
    let now = SystemTime::now();
    let distinct = if full_run() { n } else { 1 };
    let mut made = Vec::new();
    for i in 0..distinct {
        let (cert, _revocation) = CertBuilder::new()
            .add_userid(format!("bench {i}"))
            .set_cipher_suite(CipherSuite::Cv25519)
            .set_creation_time(now - Duration::from_secs(60))
            .add_subkey(
                KeyFlags::empty()
                    .set_transport_encryption()
                    .set_storage_encryption(),
                None,
                suite,
            )
            .generate()
            .expect("generate a certificate");
        let public = cert.strip_secret_key_material();
        let (checked, _) =
            validate(public, Path::new("bench"), now, true).expect("a usable certificate");
        made.push(checked);
    }
    let chosen: Vec<_> = made.iter().cycle().take(n).collect();
    Recipients {
        keys: chosen
            .iter()
            .flat_map(|c| c.encryption_keys.iter().cloned())
            .collect(),
        certs: chosen.iter().map(|c| c.fingerprint()).collect(),
        hidden: false,
        seipdv1_only: true,
    }
}

fn head(receipt: &str) -> Head<'_> {
    Head {
        form: "tip",
        title: "Send a tip",
        receipt,
        received_at: chrono::Utc::now(),
        reply: None,
    }
}

/// A message of `len` printable bytes (ASCII, with line breaks).
fn message(len: usize) -> String {
    let line = "The quick brown fox jumps over the lazy dog, again and again.\n";
    line.repeat(len / line.len() + 1)[..len].to_owned()
}

/// Writes a whole envelope carrying `content` to `out`: as the message
/// field (text and JSON parts, as in a real record), or as an attachment
/// when it is larger than [`ATTACHMENT_FROM`]. Returns the padded length.
fn write_envelope(out: &mut dyn Write, content: &str) -> io::Result<u64> {
    let attach = content.len() > ATTACHMENT_FROM;
    let msg = if attach {
        "see the attachment"
    } else {
        content
    };
    let fields = [
        EnvelopeField {
            name: "message",
            label: "Message",
            value: FieldValue::Text(msg),
        },
        EnvelopeField {
            name: "publish",
            label: "May publish",
            value: FieldValue::Checked(false),
        },
    ];
    let head = head("aaaaaaaaaaaaaaaaaaaaaaaaaa");
    let mut envelope = EnvelopeWriter::start(out, &head)?;
    envelope.text_part(head.title, &fields)?;
    if attach {
        let mut a = envelope.attachment("file", "evidence.txt", "text/plain")?;
        a.write_all(content.as_bytes())?;
        a.finish()?;
    }
    envelope.json_part(&head, &fields)?;
    let (_, len) = envelope.finish()?;
    Ok(len)
}

fn envelope_writer(c: &mut Criterion) {
    let mut group = c.benchmark_group("envelope");
    for (name, len) in sizes() {
        let msg = message(len);
        let envelope_len = write_envelope(&mut io::sink(), &msg).expect("envelope");
        group.sample_size(if len > ATTACHMENT_FROM { 10 } else { 50 });
        group.throughput(Throughput::Bytes(envelope_len));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| write_envelope(&mut io::sink(), black_box(&msg)).expect("envelope"))
        });
    }
    group.finish();
}

fn sealing(c: &mut Criterion) {
    for (suite, suite_name) in [
        (CipherSuite::Cv25519, "cv25519"),
        (CipherSuite::RSA4k, "rsa4096"),
    ] {
        let all = recipients(suite, 3);
        for n in [1, 3] {
            let to = Recipients {
                keys: all.keys[..n].to_vec(),
                certs: all.certs[..n].to_vec(),
                hidden: false,
                seipdv1_only: true,
            };
            let mut group = c.benchmark_group(format!("seal/{suite_name}/{n}-recipient"));
            for (name, len) in sizes() {
                // The envelope is prepared once: this measures encryption.
                let mut plaintext = Vec::new();
                write_envelope(&mut plaintext, &message(len)).expect("envelope");
                group.sample_size(if len > ATTACHMENT_FROM { 10 } else { 50 });
                group.throughput(Throughput::Bytes(plaintext.len() as u64));
                group.bench_function(BenchmarkId::from_parameter(name), |b| {
                    b.iter(|| {
                        seal(&mut io::sink(), &to, |w| w.write_all(black_box(&plaintext)))
                            .expect("seal")
                    })
                });
            }
            group.finish();
        }
    }
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
        targets = envelope_writer, sealing
    }
}
criterion_main!(group::benches);
