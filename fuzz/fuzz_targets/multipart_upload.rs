//! Fuzzes the multipart path end to end, in process: arbitrary bodies are
//! posted as `multipart/form-data` to the real router (multer, the limits
//! enforced while streaming, the bounded channel, the sealer thread, the
//! spool), for a form with text and file fields.
//!
//! Property: nothing panics and no body gets a 5xx; nothing is left in
//! `spool/tmp/` after an answer.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::SystemTime;

use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;
use sealform::config::Config;
use sealform::http::{AppState, router};
use sealform::intake::Intake;
use tower::ServiceExt;

struct World {
    rt: tokio::runtime::Runtime,
    app: axum::Router,
    tmp: PathBuf,
    spool: PathBuf,
    _dir: tempfile::TempDir,
}

const CONFIG: &str = r#"
[server]
data_dir = "data"
keys_dir = "keys"
min_free_bytes = 0

[limits]
api_client = { burst = 1000000, per_minute = 60000000 }
api_global = { burst = 1000000, per_minute = 60000000 }
max_inflight_per_client = 1000

[[forms]]
id = "f"
title = "Fuzz"
max_file_bytes = 4096
max_total_bytes = 8192
max_files = 3

  [[forms.fields]]
  name = "t"
  label = "T"
  kind = "text"
  max_len = 50

  [[forms.fields]]
  name = "a"
  label = "A"
  kind = "file"
  multiple = true
"#;

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("keys")).expect("keys");
        let key = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/data/test-only-ed25519-public.asc");
        std::fs::copy(key, dir.path().join("keys/k.asc")).expect("key");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, CONFIG).expect("config");
        let config = Config::load(&path).expect("config loads");
        let (intake, _) = Intake::open(config, SystemTime::now()).expect("intake");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let spool = dir.path().join("data/spool");
        World {
            app: router(AppState::new(
                intake,
                sealform::http::form_tokens::TokenKey::random(),
            )),
            rt,
            tmp: spool.join("tmp"),
            spool,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let req = Request::post("/api/v1/forms/f/submissions")
        .header("content-type", "multipart/form-data; boundary=X")
        .body(Body::from(data.to_vec()))
        .expect("request");
    let res = w.rt.block_on(w.app.clone().oneshot(req)).expect("infallible");
    assert!(!res.status().is_server_error(), "status {}", res.status());
    assert_eq!(std::fs::read_dir(&w.tmp).map_or(0, |d| d.count()), 0, "a temp file was left");
    // Keep the disk flat over a long run: accepted records are not needed.
    if res.status().is_success() {
        for e in std::fs::read_dir(&w.spool).expect("spool").flatten() {
            if e.path().extension().is_some_and(|x| x == "pgp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
});
