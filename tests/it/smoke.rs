//! The shortest path through everything: one submission each way, decrypted
//! by the real gpg.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn a_json_submission_is_stored_as_one_record_gpg_decrypts() {
    let fx = Fixture::standard();
    let app = fx.app();
    let (res, body) = send(
        &app,
        api_post("tip", &json!({"fields": {"message": "hello from the API"}})),
    )
    .await;
    let receipt = created(&res, &body);
    assert_eq!(fx.records(), vec![fx.record(&receipt)]);
    let gpg = Gpg::with_secret_keys(&[&TestKey::Ed25519.secret()]);
    let plain = gpg.decrypt(&fx.record(&receipt)).expect("gpg decrypts");
    assert_eq!(json_part(&plain)["fields"]["message"], "hello from the API");
}

/// Starts `sealform demo --dir <dir>` (plus `extra`) on a free port, waits
/// until it serves `/healthz`, and stops it.
fn demo_serves(dir: &std::path::Path, extra: &[&str]) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sealform"))
        .args(["demo", "--listen", "127.0.0.1:0", "--dir"])
        .arg(dir)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn demo");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let addr = line
                .split_once("listening on http://")
                .map(|(_, a)| a.trim().trim_end_matches('/').to_owned());
            if tx.send((line, addr)).is_err() {
                break;
            }
        }
    });
    let mut log = String::new();
    let addr = loop {
        match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok((_, Some(addr))) => break addr,
            Ok((line, None)) => log.push_str(&line),
            Err(_) => {
                let _ = child.kill();
                panic!("the demo did not start:\n{log}");
            }
        }
    };
    let res = reqwest::blocking::get(format!("http://{addr}/healthz")).expect("healthz");
    assert_eq!(res.status().as_u16(), 200);
    child.kill().expect("stop the demo");
    child.wait().expect("wait");
}

#[test]
fn demo_makes_and_remakes_its_own_folder_and_never_touches_another() {
    let work = tempfile::tempdir().expect("tempdir");
    let demo = work.path().join("demo");
    demo_serves(&demo, &[]);
    let secret = read(&demo.join("staff-secret.asc"));
    // Again: the same demo is reused; with --fresh it is made anew.
    demo_serves(&demo, &[]);
    assert_eq!(read(&demo.join("staff-secret.asc")), secret);
    demo_serves(&demo, &["--fresh"]);
    assert_ne!(read(&demo.join("staff-secret.asc")), secret);
    let beside: Vec<_> = std::fs::read_dir(work.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(beside, ["demo"], "made aside and renamed into place");
    // An empty folder that exists (the working directory, say) is filled in
    // place, and --fresh empties it rather than removing it.
    let empty = work.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    demo_serves(&empty, &[]);
    let first = read(&empty.join("staff-secret.asc"));
    demo_serves(&empty, &["--fresh"]);
    assert_ne!(read(&empty.join("staff-secret.asc")), first);
    // What an interrupted start left beside a new folder (a throwaway secret
    // key among it) is removed; a look-alike that is not a demo is kept.
    let stale = work.path().join(".next.partial-1");
    let lookalike = work.path().join(".next.partial-2");
    for d in [&stale, &lookalike] {
        std::fs::create_dir(d).expect("mkdir");
        std::fs::write(d.join("staff-secret.asc"), "secret").expect("key");
    }
    std::fs::write(
        stale.join("config.toml"),
        "# Written by `sealform demo` from config.example.toml.\n",
    )
    .expect("config");
    demo_serves(&work.path().join("next"), &[]);
    assert!(!stale.exists(), "a stale half-made demo is removed");
    assert!(lookalike.join("staff-secret.asc").exists());

    // A folder it did not make is neither served, filled nor deleted.
    let other = work.path().join("srv");
    std::fs::create_dir(&other).expect("mkdir");
    std::fs::write(other.join("config.toml"), "[server]\n").expect("config");
    std::fs::write(other.join("notes.txt"), "keep me").expect("notes");
    for extra in [&[][..], &["--fresh"][..]] {
        let mut args = vec!["demo", "--listen", "127.0.0.1:0", "--dir"];
        args.push(other.to_str().expect("utf-8"));
        args.extend_from_slice(extra);
        let (code, out, err) = sealform(&args);
        assert_ne!(code, 0, "{out}{err}");
        assert!(
            err.contains("is not a folder `sealform demo` made"),
            "{err}"
        );
        let mut left: Vec<_> = std::fs::read_dir(&other)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["config.toml", "notes.txt"]);
    }
    std::fs::remove_file(other.join("config.toml")).expect("remove");
    let (code, out, err) = sealform(&["demo", "--dir", other.to_str().expect("utf-8")]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("(it is not empty and has no config.toml)"),
        "{err}"
    );
    assert_eq!(read(&other.join("notes.txt")), b"keep me");
}
