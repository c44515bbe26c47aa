//! Acceptance of the sealed record itself (issue 2, points 1, 2 and 4):
//! who can read it, what format it is in, and what its size and bytes tell
//! an observer.
//!
//! Every record is read back twice: by the real `gpg` (one home per secret
//! key, so each recipient is shown to decrypt alone) and by Sequoia's
//! `PacketParser`, which names the packets and the session key's algorithm.

use std::path::Path;

use axum::http::StatusCode;
use sequoia_openpgp as openpgp;
use serde_json::json;

use openpgp::cert::prelude::*;
use openpgp::crypto::SessionKey;
use openpgp::packet::{Packet, Tag};
use openpgp::parse::{PacketParser, PacketParserResult, Parse};
use openpgp::policy::StandardPolicy;
use openpgp::serialize::SerializeInto;
use openpgp::types::SymmetricAlgorithm;
use openpgp::{Fingerprint, KeyID};

use crate::support::*;

/// The default forms, with `tip` routed explicitly to the two gpg-made keys.
fn forms_to(keys: &[TestKey]) -> String {
    let list: Vec<String> = keys
        .iter()
        .map(|k| format!("\"{}\"", k.fingerprint()))
        .collect();
    DEFAULT_FORMS.replacen(
        "description = \"Test form\"",
        &format!(
            "description = \"Test form\"\nrecipients = [{}]",
            list.join(", ")
        ),
        1,
    )
}

/// A deployment with three certificates in `keys_dir`, of which `tip` names
/// two: the third must not be able to read anything.
fn two_recipient_fixture() -> Fixture {
    Fixture::new(
        &[TestKey::Ed25519, TestKey::Rsa, TestKey::Protected],
        &forms_to(&[TestKey::Ed25519, TestKey::Rsa]),
        "",
    )
}

#[test]
fn a_recipient_named_twice_is_routed_once() {
    // Not next to each other, and once by a lowercase fingerprint.
    let ed = TestKey::Ed25519.fingerprint().to_string();
    let forms = DEFAULT_FORMS.replacen(
        "description = \"Test form\"",
        &format!(
            "description = \"Test form\"\nrecipients = [\"{ed}\", \"{}\", \"{}\"]",
            TestKey::Rsa.fingerprint(),
            ed.to_lowercase()
        ),
        1,
    );
    let fx = Fixture::new(&[TestKey::Ed25519, TestKey::Rsa], &forms, "");
    let config = sealform::config::Config::load(&fx.config_path()).expect("config");
    let (intake, _) =
        sealform::intake::Intake::open(config, std::time::SystemTime::now()).expect("intake");
    let to = intake.keyring.for_form("tip").expect("route");
    let certs: Vec<String> = to.certs.iter().map(Fingerprint::to_hex).collect();
    assert_eq!(
        certs,
        [TestKey::Ed25519.fingerprint(), TestKey::Rsa.fingerprint()]
    );
    assert_eq!(to.keys.len(), 2, "one encryption key per certificate");
}

/// What Sequoia sees in a record, decrypting it with `secret`.
#[derive(Debug)]
struct Shape {
    /// Packet tags at depth 0, then inside the encryption container.
    top: Vec<Tag>,
    inner: Vec<Tag>,
    recipients: Vec<KeyID>,
    seip_version: Option<u8>,
    algo: Option<SymmetricAlgorithm>,
    literal_filename: Option<Vec<u8>>,
    literal_date: Option<std::time::SystemTime>,
}

fn shape(record: &Path, secret: &Path) -> Shape {
    let p = StandardPolicy::new();
    let tsk = openpgp::Cert::from_file(secret).expect("secret key parses");
    let mut pairs: Vec<_> = tsk
        .keys()
        .with_policy(&p, None)
        .secret()
        .for_storage_encryption()
        .for_transport_encryption()
        .map(|ka| ka.key().clone().into_keypair().expect("keypair"))
        .collect();
    assert!(
        !pairs.is_empty(),
        "{} has an encryption key",
        secret.display()
    );
    let mut s = Shape {
        top: vec![],
        inner: vec![],
        recipients: vec![],
        seip_version: None,
        algo: None,
        literal_filename: None,
        literal_date: None,
    };
    let mut session: Option<(Option<SymmetricAlgorithm>, SessionKey)> = None;
    let mut ppr = PacketParser::from_file(record).expect("record parses");
    while let PacketParserResult::Some(mut pp) = ppr {
        if pp.recursion_depth() == 0 {
            s.top.push(pp.packet.tag());
        } else {
            s.inner.push(pp.packet.tag());
        }
        let mut decrypt_now = false;
        match &pp.packet {
            Packet::PKESK(pkesk) => {
                let handle = pkesk.recipient().expect("recipients are not hidden");
                s.recipients.push(KeyID::from(handle));
                for pair in &mut pairs {
                    if session.is_none() {
                        session = pkesk.decrypt(pair, None);
                    }
                }
            }
            Packet::SEIP(seip) => {
                s.seip_version = Some(seip.version());
                decrypt_now = true;
            }
            Packet::Literal(l) => {
                s.literal_filename = l.filename().map(<[u8]>::to_vec);
                s.literal_date = l.date();
            }
            _ => {}
        }
        if decrypt_now {
            let (algo, key) = session.as_ref().expect("a PKESK for this key");
            s.algo = *algo;
            pp.decrypt(*algo, key).expect("session key opens the SEIPD");
        }
        ppr = pp.recurse().expect("next packet").1;
    }
    s
}

fn key_id(hex_fpr: &str) -> KeyID {
    KeyID::from(Fingerprint::from_hex(hex_fpr).expect("fingerprint"))
}

/// The `text/plain` part of a decrypted record, quoted-printable decoded,
/// with `\n` line ends.
fn text_part(eml: &[u8]) -> String {
    let text = std::str::from_utf8(eml).expect("record is ASCII MIME");
    let after = text
        .split(
            "Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n",
        )
        .nth(1)
        .expect("record has a text part");
    let qp = after.split("\r\n--sealform-").next().expect("part end");
    let qp = qp.replace("=\r\n", "");
    let mut out = Vec::new();
    let b = qp.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' && i + 2 < b.len() {
            let h = std::str::from_utf8(&b[i + 1..i + 3]).expect("hex");
            out.push(u8::from_str_radix(h, 16).expect("qp escape"));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .expect("utf-8 text part")
        .replace("\r\n", "\n")
}

const MESSAGE: &str = "Zwei Empfänger — erste Zeile\nsecond line, \"quoted\" = sign\ttab";
const CONTACT: &str = "Ünïcødé contact +1 555 0100";
const EMAIL: &str = "source.person@example.org";

fn check_decrypted_content(eml: &[u8], expect_receipt: &str, via: &str) {
    let j = json_part(eml);
    assert_eq!(j["form"], "tip", "{via}");
    assert_eq!(j["receipt"], expect_receipt, "{via}");
    assert_eq!(j["fields"]["message"], MESSAGE, "{via}");
    assert_eq!(j["fields"]["contact"], CONTACT, "{via}");
    assert_eq!(j["fields"]["email"], EMAIL, "{via}");
    assert_eq!(j["fields"]["topic"], "schools", "{via}");
    assert_eq!(j["fields"]["publish"], true, "{via}");
    let text = text_part(eml);
    let want = "Send a tip\n\n\
                Message: Zwei Empfänger — erste Zeile\n  second line, \"quoted\" = sign\ttab\n\
                Contact: Ünïcødé contact +1 555 0100\n\
                Email: source.person@example.org\n\
                Topic: schools\n\
                May publish: yes\n";
    assert_eq!(text, want, "{via}: text part");
}

#[tokio::test]
async fn json_and_form_submissions_each_make_one_record_that_either_recipient_decrypts_alone() {
    let fx = two_recipient_fixture();
    let app = fx.app();
    let ed = Gpg::with_secret_keys(&[&TestKey::Ed25519.secret()]);
    let rsa = Gpg::with_secret_keys(&[&TestKey::Rsa.secret()]);
    let outsider = Gpg::with_secret_keys(&[&TestKey::Protected.secret()]);

    let api = api_post(
        "tip",
        &json!({"fields": {
            "message": MESSAGE, "contact": CONTACT, "email": EMAIL,
            "topic": "schools", "publish": true,
        }}),
    );
    let form = form_post(
        "tip",
        &urlencode(&[
            ("message", MESSAGE),
            ("contact", CONTACT),
            ("email", EMAIL),
            ("topic", "schools"),
            ("publish", "on"),
        ]),
    );
    let mut seen = Vec::new();
    for (via, req) in [("api", api), ("form", form)] {
        let before = fx.records();
        let (res, body) = send(&app, req).await;
        let receipt = match via {
            "api" => {
                assert_eq!(res.status(), StatusCode::CREATED, "{via}");
                serde_json::from_slice::<serde_json::Value>(&body).expect("json")["receipt"]
                    .as_str()
                    .expect("receipt")
                    .to_owned()
            }
            _ => {
                assert_eq!(res.status(), StatusCode::OK, "{via}");
                crate::wire::receipt_in_page(&body).expect("receipt on the page")
            }
        };
        let after = fx.records();
        let new: Vec<_> = after.iter().filter(|p| !before.contains(p)).collect();
        assert_eq!(
            new,
            vec![&fx.record(&receipt)],
            "{via}: exactly one new record"
        );
        assert_eq!(fx.partials(), 0, "{via}: nothing left in spool/tmp");
        let record = fx.record(&receipt);

        for (who, gpg) in [("ed25519", &ed), ("rsa", &rsa)] {
            let eml = gpg
                .decrypt(&record)
                .unwrap_or_else(|e| panic!("{via}: gpg with only the {who} key: {e}"));
            check_decrypted_content(&eml, &receipt, &format!("{via}/{who}"));
        }
        assert!(
            outsider.decrypt(&record).is_err(),
            "{via}: a key in keys_dir that the form does not name cannot decrypt"
        );

        // The PKESKs name exactly the two configured encryption subkeys.
        for secret in [TestKey::Ed25519.secret(), TestKey::Rsa.secret()] {
            let s = shape(&record, &secret);
            let mut got = s.recipients.clone();
            got.sort();
            let mut want = vec![
                key_id(TestKey::Ed25519.encryption_subkey()),
                key_id(TestKey::Rsa.encryption_subkey()),
            ];
            want.sort();
            assert_eq!(got, want, "{via}: PKESK recipients");
            assert_eq!(s.top, [Tag::PKESK, Tag::PKESK, Tag::SEIP], "{via}");
            assert_eq!(s.seip_version, Some(1), "{via}: SEIPDv1, not AEAD");
            assert_eq!(s.algo, Some(SymmetricAlgorithm::AES256), "{via}");
            assert_eq!(s.inner, [Tag::Literal, Tag::MDC], "{via}: no compression");
            assert_eq!(s.literal_filename, None, "{via}: empty file name");
            assert_eq!(s.literal_date, None, "{via}: literal date 0");
        }

        // The same, in gpg's words.
        let listing = ed.list_packets(&record);
        let pubkey_lines: Vec<&str> = listing
            .lines()
            .filter(|l| l.starts_with(":pubkey enc packet:"))
            .collect();
        assert_eq!(pubkey_lines.len(), 2, "{via}: {listing}");
        for k in [TestKey::Ed25519, TestKey::Rsa] {
            let id = &k.encryption_subkey()[24..];
            assert!(
                pubkey_lines.iter().any(|l| l.contains(id)),
                "{via}: gpg lists a PKESK for {id}: {listing}"
            );
        }
        assert!(listing.contains(":encrypted data packet:"), "{listing}");
        assert!(listing.contains("mdc_method: 2"), "{listing}");
        assert!(!listing.contains(":aead encrypted packet:"), "{listing}");
        assert!(!listing.contains(":compressed packet:"), "{listing}");
        assert!(
            listing.contains("created 0, name=\"\""),
            "{via}: literal packet with date 0 and empty name: {listing}"
        );
        let verbose = ed
            .cmd()
            .args(["--verbose", "--decrypt", "--output", "/dev/null"])
            .arg(&record)
            .output()
            .expect("gpg");
        let stderr = String::from_utf8_lossy(&verbose.stderr);
        assert!(
            stderr.contains("AES256"),
            "{via}: gpg reports AES256: {stderr}"
        );
        seen.push(receipt);
    }
    assert_eq!(fx.records().len(), 2);
    assert_ne!(seen[0], seen[1]);
}

/// A fixture with `keys` and the public part of `cert` in `keys/`.
fn with_sequoia_cert(
    keys: &[TestKey],
    forms: &str,
    server_extra: &str,
    cert: &openpgp::Cert,
) -> Fixture {
    let fx = Fixture::new(keys, forms, server_extra);
    std::fs::write(
        fx.keys_dir().join("sequoia-made.asc"),
        cert.armored().to_vec().expect("armor"),
    )
    .expect("write cert");
    fx
}

#[tokio::test]
async fn gpg_decrypts_a_record_sealed_to_a_sequoia_made_cert_that_advertises_seipdv2() {
    let (cert, _rev) = CertBuilder::general_purpose(Some("Sequoia Made <sq@example.org>"))
        .generate()
        .expect("generate");
    let p = StandardPolicy::new();
    let features = cert
        .with_policy(&p, None)
        .expect("valid")
        .features()
        .expect("features");
    assert!(
        features.supports_seipdv2(),
        "the premise: Sequoia's CertBuilder advertises SEIPDv2"
    );
    let fx = with_sequoia_cert(&[], DEFAULT_FORMS, "", &cert);
    let app = fx.app();
    let (res, body) = send(
        &app,
        api_post(
            "tip",
            &json!({"fields": {"message": "to a Sequoia-made key"}}),
        ),
    )
    .await;
    let receipt = created(&res, &body);

    let tsk = tempfile::NamedTempFile::new().expect("tsk file");
    std::fs::write(tsk.path(), cert.as_tsk().armored().to_vec().expect("tsk")).expect("write");
    let gpg = Gpg::with_secret_keys(&[tsk.path()]);
    let eml = gpg
        .decrypt(&fx.record(&receipt))
        .expect("gpg 2.2 decrypts (SEIPDv1 was forced)");
    assert_eq!(
        json_part(&eml)["fields"]["message"],
        "to a Sequoia-made key"
    );
    let listing = gpg.list_packets(&fx.record(&receipt));
    assert!(listing.contains("mdc_method: 2"), "{listing}");
}

/// The version of the SEIPD packet of `record`, and its PKESKs' recipients
/// (`None`: the wildcard).
fn seipd_version_and_recipients(record: &Path) -> (Option<u8>, Vec<Option<KeyID>>) {
    let mut version = None;
    let mut recipients = Vec::new();
    let mut ppr = PacketParser::from_file(record).expect("parses");
    while let PacketParserResult::Some(pp) = ppr {
        match &pp.packet {
            Packet::PKESK(p) => recipients.push(
                p.recipient()
                    .map(KeyID::from)
                    .filter(|id| *id != KeyID::wildcard()),
            ),
            Packet::SEIP(seip) => version = Some(seip.version()),
            _ => {}
        }
        ppr = pp.next().expect("next").1;
    }
    (version, recipients)
}

#[tokio::test]
async fn without_gnupg_compat_each_record_takes_the_format_its_certificates_advertise() {
    // A Sequoia-made certificate advertises SEIPDv2; the gpg-made test keys
    // advertise SEIPDv1 only. Before, gnupg_compat = false made every
    // submission fail (a SEIPDv2 PKESK named by key ID) and would have
    // given SEIPDv2 to readers that said they read only SEIPDv1.
    let (cert, _rev) = CertBuilder::general_purpose(Some("Sequoia Made <sq@example.org>"))
        .generate()
        .expect("generate");
    let work = tempfile::tempdir().expect("tempdir");
    let tsk = work.path().join("test-only-sequoia-secret.asc");
    std::fs::write(&tsk, cert.as_tsk().armored().to_vec().expect("tsk")).expect("write");
    let hidden = DEFAULT_FORMS.replacen(
        "description = \"Test form\"",
        "description = \"Test form\"\nhide_recipients = true",
        1,
    );
    let sequoia_id = KeyID::from(
        cert.keys()
            .with_policy(&StandardPolicy::new(), None)
            .for_storage_encryption()
            .next()
            .expect("an encryption subkey")
            .key()
            .fingerprint(),
    );
    // (gpg-made keys, the forms, the SEIPD version, the PKESK recipients)
    let cases = [
        (vec![], DEFAULT_FORMS, 2, vec![Some(sequoia_id.clone())]),
        (vec![], hidden.as_str(), 2, vec![None]),
        (
            vec![TestKey::Ed25519],
            DEFAULT_FORMS,
            1,
            vec![
                Some(key_id(TestKey::Ed25519.encryption_subkey())),
                Some(sequoia_id.clone()),
            ],
        ),
    ];
    for (gpg_keys, forms, version, mut want_recipients) in cases {
        let fx = with_sequoia_cert(&gpg_keys, forms, "gnupg_compat = false", &cert);
        let app = fx.app();
        let (res, body) = send(
            &app,
            api_post("tip", &json!({"fields": {"message": "no compat"}})),
        )
        .await;
        drop(app);
        let receipt = created(&res, &body);
        let record = fx.record(&receipt);
        let (got_version, mut got_recipients) = seipd_version_and_recipients(&record);
        got_recipients.sort();
        want_recipients.sort();
        assert_eq!(got_version, Some(version), "{gpg_keys:?} {forms}");
        assert_eq!(got_recipients, want_recipients, "{gpg_keys:?}");
        // Our own decrypt opens every format it writes.
        let out = work.path().join(format!("plain-{receipt}"));
        let (code, stdout, stderr) = sealform(&[
            "decrypt",
            "--key",
            tsk.to_str().expect("utf-8"),
            "--out",
            out.to_str().expect("utf-8"),
            record.to_str().expect("utf-8"),
        ]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        let fields =
            std::fs::read_to_string(out.join(&receipt).join("fields.json")).expect("fields");
        assert!(fields.contains("no compat"), "{fields}");
        // GnuPG 2.2 reads the SEIPDv1 record with its own key.
        if version == 1 {
            let gpg = Gpg::with_secret_keys(&[&TestKey::Ed25519.secret()]);
            let eml = gpg.decrypt(&record).expect("gpg decrypts SEIPDv1");
            assert_eq!(json_part(&eml)["fields"]["message"], "no compat");
        }
    }
}

#[tokio::test]
async fn identical_submissions_differ_and_short_and_long_messages_have_the_same_size() {
    // Only the ed25519 key: an ECDH PKESK always has the same length, while
    // an RSA PKESK's MPI is one byte shorter whenever the encrypted value
    // happens to start with a zero byte (1 time in 256), which would make
    // the record sizes differ for a reason that has nothing to do with the
    // message.
    let fx = Fixture::new(&[TestKey::Ed25519], DEFAULT_FORMS, "");
    let app = fx.app();
    let receipt = |body: Vec<u8>| {
        serde_json::from_slice::<serde_json::Value>(&body).expect("json")["receipt"]
            .as_str()
            .expect("receipt")
            .to_owned()
    };
    let same = json!({"fields": {"message": "exactly the same words"}});
    let (r1, b1) = send(&app, api_post("tip", &same)).await;
    let (r2, b2) = send(&app, api_post("tip", &same)).await;
    assert_eq!(
        (r1.status(), r2.status()),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    let (a, b) = (
        read(&fx.record(&receipt(b1))),
        read(&fx.record(&receipt(b2))),
    );
    assert_ne!(a, b, "identical submissions give different ciphertexts");
    // Not just a different receipt inside: no long run of equal bytes after
    // the PKESK's fixed header (15 bytes: tag, length, version, key ID,
    // algorithm, the point's bit count and its 0x40 prefix). The ephemeral
    // point after it is random: one more equal byte happens once in 256
    // runs, eight more once in 2^64.
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    assert!(common < 15 + 8, "{common} equal leading bytes");

    let short = "ten bytes!";
    let long: String = "abcdefghij".repeat(300);
    assert_eq!((short.len(), long.len()), (10, 3000));
    let mut sizes = Vec::new();
    for m in [short, long.as_str()] {
        let (res, body) = send(&app, api_post("tip", &json!({"fields": {"message": m}}))).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let r = receipt(body);
        sizes.push(std::fs::metadata(fx.record(&r)).expect("record").len());
    }
    assert_eq!(
        sizes[0], sizes[1],
        "a 10-byte and a 3000-byte message give records of one size"
    );
    assert_eq!(sizes[0], a.len() as u64);
}

#[tokio::test]
async fn a_form_with_hidden_recipients_writes_wildcard_key_ids_that_gpg_still_decrypts() {
    let forms = forms_to(&[TestKey::Ed25519, TestKey::Rsa]).replacen(
        "description = \"Test form\"",
        "description = \"Test form\"\nhide_recipients = true",
        1,
    );
    let fx = Fixture::new(&[TestKey::Ed25519, TestKey::Rsa], &forms, "");
    let app = fx.app();
    let (res, body) = send(
        &app,
        api_post("tip", &json!({"fields": {"message": "hidden"}})),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let receipt = serde_json::from_slice::<serde_json::Value>(&body).expect("json")["receipt"]
        .as_str()
        .expect("receipt")
        .to_owned();
    let record = fx.record(&receipt);
    let mut ppr = PacketParser::from_file(&record).expect("parses");
    let mut pkesks = 0;
    while let PacketParserResult::Some(pp) = ppr {
        if let Packet::PKESK(p) = &pp.packet {
            pkesks += 1;
            let id = p.recipient().map(KeyID::from);
            assert!(
                id.is_none() || id == Some(KeyID::wildcard()),
                "a hidden recipient is a wildcard, got {id:?}"
            );
        }
        ppr = pp.next().expect("next").1;
    }
    assert_eq!(pkesks, 2);
    for k in [TestKey::Ed25519, TestKey::Rsa] {
        let gpg = Gpg::with_secret_keys(&[&k.secret()]);
        let eml = gpg
            .decrypt(&record)
            .unwrap_or_else(|e| panic!("{k:?} alone decrypts a hidden-recipient record: {e}"));
        assert_eq!(json_part(&eml)["fields"]["message"], "hidden");
    }
    drop(app);
    // The index does not say who can read it either.
    let (store, _) =
        sealform::store::Store::open(&fx.data_dir(), 1 << 20, |_| vec![]).expect("store opens");
    let entries = store.list().expect("list");
    assert_eq!(entries.len(), 1);
    assert!(entries[0].1.recipients.is_empty());
}
