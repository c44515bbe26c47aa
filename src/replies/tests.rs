//! Unit tests of the replies library: derivation, sealing and opening
//! (with the real `gpg`), and the reply store.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sequoia_openpgp as openpgp;

use openpgp::cert::Preferences;
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::SerializeInto;

use super::*;

const DAY: u64 = 86_400;

fn test_cert(name: &str) -> openpgp::Cert {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    openpgp::Cert::from_file(path).expect("test cert")
}

#[test]
fn one_code_derives_the_same_certificate_byte_for_byte_and_another_code_another() {
    let code = ReplyCode::generate();
    let again = ReplyCode::parse(code.expose()).expect("parse");
    let (a, b) = (
        code.derive().expect("derive"),
        again.derive().expect("derive"),
    );
    assert_eq!(a.mailbox, b.mailbox);
    assert_eq!(
        a.cert().to_vec().expect("bytes"),
        b.cert().to_vec().expect("bytes")
    );
    assert_eq!(a.cert_armored(), b.cert_armored());
    let other = ReplyCode::generate().derive().expect("derive");
    assert_ne!(other.mailbox, a.mailbox);
    assert_ne!(other.cert().fingerprint(), a.cert().fingerprint());
    assert_eq!(
        format!("{a:?} {:?}", a.mailbox),
        "Derived(..) MailboxId(..)"
    );
    let text = a.mailbox.to_string();
    assert_eq!(text.len(), 32);
    assert_eq!(text.parse::<MailboxId>(), Ok(a.mailbox.clone()));
    for bad in [&text.to_uppercase(), &text[..31], "../../etc/passwd", ""] {
        assert!(bad.parse::<MailboxId>().is_err(), "{bad}");
    }
}

#[test]
fn the_certificate_is_a_valid_v4_key_with_one_cv25519_encryption_subkey_and_no_secret() {
    let d = ReplyCode::generate().derive().expect("derive");
    let cert = openpgp::Cert::from_bytes(d.cert_armored().as_bytes()).expect("armored parses");
    assert!(!cert.is_tsk());
    assert_eq!(cert.primary_key().key().version(), 4);
    let p = StandardPolicy::new();
    let vc = cert
        .with_policy(&p, None)
        .expect("valid under the standard policy");
    assert_eq!(
        vc.primary_key().key().creation_time(),
        UNIX_EPOCH + Duration::from_secs(1_577_836_800)
    );
    let enc: Vec<_> = vc
        .keys()
        .subkeys()
        .for_storage_encryption()
        .for_transport_encryption()
        .collect();
    assert_eq!(enc.len(), 1);
    assert!(
        vc.features()
            .is_some_and(|f| f.supports_seipdv1() && !f.supports_seipdv2())
    );
    // The same code gives the same certificate in every version: BIP39's
    // zero vector, pinned. A change here strands every reply code handed out.
    let zero = ReplyCode::parse(
        "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon \
         abandon about",
    )
    .expect("vector")
    .derive()
    .expect("derive");
    assert_eq!(
        zero.cert().fingerprint().to_hex(),
        "40E44DF03F46ACBC404676BCED6E70E482E62DEB"
    );
    assert_eq!(zero.mailbox.to_string(), "2xp7fuhh57nkgchbvkyukwishe2ld5ma");
    // Every signature carries the derived salt, not a random one.
    let again = ReplyCode::parse("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about")
        .expect("vector");
    let fixed = again
        .derive()
        .expect("derive")
        .cert()
        .fingerprint()
        .to_hex();
    assert_eq!(
        fixed,
        ReplyCode::parse("ABANDON abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about")
            .expect("vector")
            .derive()
            .expect("derive")
            .cert()
            .fingerprint()
            .to_hex()
    );
}

#[test]
fn an_answer_sealed_to_the_mailbox_opens_with_its_code_and_not_with_another() {
    let d = ReplyCode::generate().derive().expect("derive");
    let staff = test_cert("test-only-ed25519-public.asc");
    let now = SystemTime::now();
    let plain = answer_plaintext(
        Some("tips"),
        Some(ReplyStatus::InProgress),
        "¿Dónde?".as_bytes(),
    );
    let sealed = seal_answer(d.cert(), &[staff], &plain, now).expect("seal");
    let answer = d.open(&sealed).expect("open");
    assert_eq!(answer.form.as_deref(), Some("tips"));
    assert_eq!(answer.status, Some(ReplyStatus::InProgress));
    let written = answer.written.expect("when it was written");
    let age = now.duration_since(written).unwrap_or_default();
    assert!(age < Duration::from_secs(5), "{age:?}");
    assert_eq!(answer.message.as_str(), "¿Dónde?");
    assert!(!format!("{answer:?}").contains("Dónde"));
    check_encrypted(&sealed).expect("an encrypted message");
    // Wildcard key IDs: the answer names neither the mailbox's key nor the
    // staff member's.
    let file = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(file.path(), &sealed).expect("write");
    let named = crate::seal::record_recipients(file.path()).expect("pkesks");
    assert_eq!(named.len(), 2);
    assert!(named.iter().all(Option::is_none), "{named:?}");
    for not in [&plain[..], b"", d.cert_armored().as_bytes()] {
        assert!(check_encrypted(not).is_err());
    }
    let other = ReplyCode::generate().derive().expect("derive");
    assert!(matches!(other.open(&sealed), Err(ReplyError::Open(_))));
    assert!(matches!(d.open(b"not openpgp"), Err(ReplyError::Open(_))));
    // Padded like a record: a short and a longer message seal to one size.
    let longer = answer_plaintext(Some("tips"), None, &[b'x'; 3000]);
    let sealed2 = seal_answer(d.cert(), &[], &longer, now).expect("seal");
    let sealed1 = seal_answer(d.cert(), &[], &plain, now).expect("seal");
    assert_eq!(sealed1.len(), sealed2.len());
    assert_eq!(d.open(&sealed2).expect("open").message.len(), 3000);
}

#[test]
fn a_plaintext_without_a_header_block_is_all_message() {
    let d = ReplyCode::generate().derive().expect("derive");
    for text in [
        "Thank you, we read it.",
        "Sealform-Form: x\nno blank line",
        "",
    ] {
        let sealed = seal_answer(d.cert(), &[], text.as_bytes(), SystemTime::now()).expect("seal");
        let a = d.open(&sealed).expect("open");
        assert_eq!((a.form, a.status, a.written), (None, None, None));
        assert_eq!(a.message.as_str(), text);
    }
    assert_eq!("in-progress".parse(), Ok(ReplyStatus::InProgress));
    assert!("done".parse::<ReplyStatus>().is_err());
    assert_eq!(
        serde_json::to_string(&ReplyStatus::InProgress).expect("json"),
        "\"in-progress\""
    );
}

/// Runs `gpg --batch` with `args` in the throwaway home `home`; panics
/// with its stderr unless it succeeds.
fn gpg(home: &Path, args: &[&std::ffi::OsStr]) {
    let out = Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args(["--batch", "--quiet", "--no-tty"])
        .args(args)
        .output()
        .expect("run gpg");
    assert!(
        out.status.success(),
        "gpg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn gnupg_imports_the_certificate_and_what_it_encrypts_to_it_opens_with_the_code() {
    let d = ReplyCode::generate().derive().expect("derive");
    let home = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let key = home.path().join("reply-key.asc");
    std::fs::write(&key, d.cert_armored()).expect("write");
    gpg(home.path(), &["--import".as_ref(), key.as_os_str()]);
    let fpr = d.cert().fingerprint().to_hex();
    let msg = home.path().join("msg.txt");
    std::fs::write(&msg, "Can you send the second page?\n").expect("write");
    let enc = home.path().join("msg.pgp");
    let args = ["--trust-model", "always", "--encrypt", "-r", &fpr, "-o"];
    let mut args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    args.extend([enc.as_os_str(), msg.as_os_str()]);
    gpg(home.path(), &args);
    let answer = d.open(&std::fs::read(&enc).expect("read")).expect("open");
    assert_eq!(answer.message.as_str(), "Can you send the second page?\n");
    assert_eq!((answer.form, answer.status), (None, None));
}

fn mtime(path: &Path) -> i64 {
    std::fs::metadata(path).expect("metadata").mtime()
}

#[test]
fn the_store_keeps_answers_durably_bounded_and_dated_to_the_day() {
    let dir = tempfile::tempdir().expect("tempdir");
    let boxes = FsMailboxes::open(dir.path(), 2).expect("open");
    let mailbox = ReplyCode::generate().derive().expect("derive").mailbox;
    let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000 + 12_345);
    let (a, b, c) = (AnswerId::random(), AnswerId::random(), AnswerId::random());
    assert!(boxes.list(&mailbox).expect("list").is_empty());
    assert_eq!(
        boxes.put(&mailbox, &a, b"one", t0).expect("put"),
        Put::Stored
    );
    assert_eq!(
        boxes.put(&mailbox, &a, b"one", t0).expect("put"),
        Put::AlreadyThere
    );
    assert!(matches!(
        boxes.put(&mailbox, &a, b"two", t0),
        Err(ReplyError::Conflict)
    ));
    let t1 = t0 + Duration::from_secs(DAY);
    assert_eq!(
        boxes.put(&mailbox, &b, b"two", t1).expect("put"),
        Put::Stored
    );
    assert!(matches!(
        boxes.put(&mailbox, &c, b"three", t1),
        Err(ReplyError::Full)
    ));
    let listed = boxes.list(&mailbox).expect("list");
    let got: Vec<_> = listed
        .iter()
        .map(|s| (s.id, s.ciphertext.as_slice()))
        .collect();
    assert_eq!(got, vec![(a, &b"one"[..]), (b, &b"two"[..])]);
    assert_eq!(listed[0].day, crate::store::day_string(t0));
    let folder = dir.path().join("replies").join(mailbox.to_string());
    for entry in std::fs::read_dir(&folder).expect("read_dir") {
        let path = entry.expect("entry").path();
        let meta = std::fs::metadata(&path).expect("metadata");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(mtime(&path) % DAY as i64, 0, "day-only time");
        assert_eq!(meta.atime() % DAY as i64, 0, "day-only time");
    }
    assert_eq!(mtime(&folder) % DAY as i64, 0);
    // Reading a mailbox (as /replies does) moves none of its folder's
    // times, not even the change time, which no program can set back (the
    // folder is stamped again first: the test's own listing above moved its
    // access time).
    crate::store::times::stamp(&folder, crate::store::start_of_day(t1)).expect("stamp");
    let times = |p: &Path| {
        let m = std::fs::metadata(p).expect("metadata");
        (m.atime(), m.mtime(), m.ctime(), m.ctime_nsec())
    };
    let before = times(&folder);
    for _ in 0..3 {
        assert_eq!(boxes.list(&mailbox).expect("list").len(), 2);
    }
    assert_eq!(times(&folder), before, "a read moved a time of the folder");
    assert_eq!(before.0 % DAY as i64, 0);
    assert_eq!(
        std::fs::metadata(&folder)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    // Purge counts midnights from the day pushed.
    assert_eq!(boxes.purge(2, t1).expect("purge"), 0);
    assert_eq!(boxes.purge(1, t1).expect("purge"), 1);
    assert_eq!(boxes.list(&mailbox).expect("list").len(), 1);
    assert_eq!(boxes.purge(0, t1).expect("purge"), 1);
    assert!(!folder.exists(), "an emptied mailbox leaves no folder");
}

#[test]
fn a_stray_file_in_one_mailbox_does_not_stop_the_purge_of_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let boxes = FsMailboxes::open(dir.path(), 20).expect("open");
    let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut mailboxes: Vec<MailboxId> = (0..3)
        .map(|_| ReplyCode::generate().derive().expect("derive").mailbox)
        .collect();
    mailboxes.sort();
    for m in &mailboxes {
        boxes.put(m, &AnswerId::random(), b"a", t0).expect("put");
    }
    // The first mailbox in listing order gets a stray file.
    let root = dir.path().join("replies");
    std::fs::write(root.join(mailboxes[0].to_string()).join("stray"), b"?").expect("stray");
    let later = t0 + Duration::from_secs(DAY);
    assert_eq!(boxes.purge(0, later).expect("purge"), 3);
    for m in &mailboxes {
        assert!(!root.join(m.to_string()).exists());
    }
}

#[test]
fn deleting_a_mailbox_removes_it_at_once_and_leftovers_go_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let boxes = FsMailboxes::open(dir.path(), 20).expect("open");
    let keep = ReplyCode::generate().derive().expect("derive").mailbox;
    let gone = ReplyCode::generate().derive().expect("derive").mailbox;
    let now = SystemTime::now();
    boxes
        .put(&keep, &AnswerId::random(), b"k", now)
        .expect("put");
    boxes
        .put(&gone, &AnswerId::random(), b"g", now)
        .expect("put");
    boxes.delete(&gone).expect("delete");
    boxes.delete(&gone).expect("deleting nothing is fine");
    assert!(boxes.list(&gone).expect("list").is_empty());
    assert_eq!(boxes.list(&keep).expect("list").len(), 1);
    let root = dir.path().join("replies");
    let names: Vec<_> = std::fs::read_dir(&root)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    assert_eq!(names, vec![keep.to_string()]);
    // What an interrupted delete or put leaves is removed at open.
    std::fs::create_dir(root.join(".gone-x")).expect("mkdir");
    let partial = root.join(keep.to_string()).join("2020-01-01_x.partial");
    std::fs::write(&partial, b"half").expect("write");
    drop(boxes);
    let _boxes = FsMailboxes::open(dir.path(), 20).expect("reopen");
    assert!(!root.join(".gone-x").exists() && !partial.exists());
    for bad in ["", "AAAAAAAAAAAAAAAAAAAAAAAAAA", "../x"] {
        assert!(bad.parse::<AnswerId>().is_err());
    }
    let id = AnswerId::random();
    assert_eq!(id.to_string().parse::<AnswerId>(), Ok(id));
}
