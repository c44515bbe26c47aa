//! Shared test helpers: fixtures (temp dirs with keys and config), an
//! in-process app, the real server binary on port 0, and a real `gpg` in a
//! throwaway home.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use sealform::config::Config;
use sealform::http::form_tokens::TokenKey;
use sealform::http::{AppState, router};
use sealform::intake::Intake;
use tower::ServiceExt;

/// A test-only certificate committed under `tests/data/`.
#[derive(Clone, Copy, Debug)]
pub enum TestKey {
    /// gpg-made ed25519 + cv25519, no passphrase.
    Ed25519,
    /// gpg-made rsa3072 + rsa3072 encryption subkey, no passphrase.
    Rsa,
    /// gpg-made ed25519 + cv25519, passphrase `test-only-passphrase`.
    Protected,
}

impl TestKey {
    fn stem(self) -> &'static str {
        match self {
            TestKey::Ed25519 => "ed25519",
            TestKey::Rsa => "rsa",
            TestKey::Protected => "protected",
        }
    }
    /// Path of the armored public certificate.
    pub fn public(self) -> PathBuf {
        data_dir().join(format!("test-only-{}-public.asc", self.stem()))
    }
    /// Path of the armored secret key.
    pub fn secret(self) -> PathBuf {
        data_dir().join(format!("test-only-{}-secret.asc", self.stem()))
    }
    /// Primary fingerprint.
    pub fn fingerprint(self) -> &'static str {
        match self {
            TestKey::Ed25519 => "1FD3E026AC63061BD85EA7DF271ED4D0AB3251AA",
            TestKey::Rsa => "9A3BCA9D2F0AE0C786E2B28EACCBCFA0D5EA194E",
            TestKey::Protected => "D6897EE20E7B15F1D6E1AC05CBFD8BBC477DD544",
        }
    }
    /// Fingerprint of the encryption subkey.
    pub fn encryption_subkey(self) -> &'static str {
        match self {
            TestKey::Ed25519 => "018E0127AF8BA6F424ABFBA36FC1AC8D4467ED38",
            TestKey::Rsa => "62CAA443AC7CA39AAAC898C1531696B5B99D9BBF",
            TestKey::Protected => "8ED9A2AAEEF800E62570EE59FF8405DFED875123",
        }
    }
}

/// `tests/data/`.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// The forms every fixture has unless told otherwise: `tip` (to every
/// cert) with a required textarea, an optional text, an email, a select and
/// a checkbox.
pub const DEFAULT_FORMS: &str = r#"
[[forms]]
id = "tip"
title = "Send a tip"
description = "Test form"

  [[forms.fields]]
  name = "message"
  label = "Message"
  kind = "textarea"
  required = true
  max_len = 5000

  [[forms.fields]]
  name = "contact"
  label = "Contact"
  kind = "text"
  max_len = 200

  [[forms.fields]]
  name = "email"
  label = "Email"
  kind = "email"

  [[forms.fields]]
  name = "topic"
  label = "Topic"
  kind = "select"
  options = ["police", "schools", "other"]

  [[forms.fields]]
  name = "publish"
  label = "May publish"
  kind = "checkbox"
"#;

/// The `[limits]`/`[abuse]` tables every fixture gets unless it passes its
/// own to [`Fixture::with_tables`]: form tokens off (tests post forms by
/// hand) and rate limits far above anything a test sends.
pub const TEST_TABLES: &str = r#"
[limits]
form_client = { burst = 100000, per_minute = 100000 }
form_each = { burst = 100000, per_minute = 100000 }
form_global = { burst = 100000, per_minute = 100000 }
api_client = { burst = 100000, per_minute = 100000 }
api_global = { burst = 100000, per_minute = 100000 }

[abuse]
form_tokens = false
"#;

/// A temporary deployment: `dir/config.toml`, `dir/keys/`, `dir/data/`.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    /// Keys `keys` in `keys/`, `forms` (TOML `[[forms]]` tables) and
    /// `server_extra` (more `[server]` lines).
    pub fn new(keys: &[TestKey], forms: &str, server_extra: &str) -> Fixture {
        Fixture::with_tables(keys, forms, server_extra, TEST_TABLES)
    }

    /// Like [`Fixture::new`], with `tables` (e.g. `[limits]`, `[abuse]`)
    /// instead of [`TEST_TABLES`].
    pub fn with_tables(keys: &[TestKey], forms: &str, server_extra: &str, tables: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("keys")).expect("keys dir");
        for k in keys {
            std::fs::copy(
                k.public(),
                dir.path().join("keys").join(format!("{}.asc", k.stem())),
            )
            .expect("copy key");
        }
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"data\"\nkeys_dir = \"keys\"\n{server_extra}\n{forms}\n{tables}"
        );
        std::fs::write(dir.path().join("config.toml"), config).expect("config");
        Fixture { dir }
    }

    /// The usual fixture: both gpg-made keys, the default forms.
    pub fn standard() -> Fixture {
        Fixture::new(&[TestKey::Ed25519, TestKey::Rsa], DEFAULT_FORMS, "")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn config_path(&self) -> PathBuf {
        self.path().join("config.toml")
    }
    pub fn keys_dir(&self) -> PathBuf {
        self.path().join("keys")
    }
    pub fn data_dir(&self) -> PathBuf {
        self.path().join("data")
    }
    pub fn spool_dir(&self) -> PathBuf {
        self.data_dir().join("spool")
    }
    /// The committed records, `spool/*.pgp`.
    pub fn records(&self) -> Vec<PathBuf> {
        let Ok(rd) = std::fs::read_dir(self.spool_dir()) else {
            return Vec::new();
        };
        let mut v: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "pgp"))
            .collect();
        v.sort();
        v
    }
    /// The record with this receipt.
    pub fn record(&self, receipt: &str) -> PathBuf {
        self.spool_dir().join(format!("{receipt}.pgp"))
    }
    /// Files left in `spool/tmp/`.
    pub fn partials(&self) -> usize {
        std::fs::read_dir(self.spool_dir().join("tmp")).map_or(0, |rd| rd.count())
    }

    /// The in-process app (keys validated now, store opened).
    pub fn app(&self) -> axum::Router {
        self.app_and_state().0
    }

    /// The in-process app and its state (to look at limiters, tokens…).
    pub fn app_and_state(&self) -> (axum::Router, AppState) {
        let config = Config::load(&self.config_path()).expect("config loads");
        let key = TokenKey::for_config(&config.abuse).expect("form-token key");
        let (intake, _warnings) = Intake::open(config, SystemTime::now()).expect("intake opens");
        let state = AppState::new(intake, key);
        (router(state.clone()), state)
    }

    /// Every file under `data_dir`, recursively, as bytes.
    pub fn all_stored_bytes(&self) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if let Ok(b) = std::fs::read(&p) {
                    out.push((p, b));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.data_dir(), &mut out);
        out
    }
}

/// Sends `req` through `app` and returns status, headers and body.
pub async fn send(app: &axum::Router, req: Request<Body>) -> (Response<()>, Vec<u8>) {
    let res = app.clone().oneshot(req).await.expect("infallible");
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes().to_vec();
    (Response::from_parts(parts, ()), bytes)
}

/// A urlencoded POST to `/forms/{form}`.
/// The receipt of a 201 answer (the whole answer in the panic otherwise).
pub fn created(res: &Response<()>, body: &[u8]) -> String {
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(body)
    );
    serde_json::from_slice::<serde_json::Value>(body).expect("json")["receipt"]
        .as_str()
        .expect("receipt")
        .to_owned()
}

pub fn form_post(form: &str, body: &str) -> Request<Body> {
    Request::post(format!("/forms/{form}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body.to_owned()))
        .expect("request")
}

/// A JSON POST to the API.
pub fn api_post(form: &str, json: &serde_json::Value) -> Request<Body> {
    Request::post(format!("/api/v1/forms/{form}/submissions"))
        .header("content-type", "application/json")
        .body(Body::from(json.to_string()))
        .expect("request")
}

/// The `sf.token` value in a rendered form.
pub fn token_in(page: &[u8]) -> String {
    let page = String::from_utf8_lossy(page);
    let at = page
        .find("name=\"sf.token\" value=\"")
        .expect("the form carries a token");
    let rest = &page[at + "name=\"sf.token\" value=\"".len()..];
    rest[..rest.find('"').expect("end of value")].to_owned()
}

/// `application/x-www-form-urlencoded` encoding of pairs.
pub fn urlencode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                percent_encoding::utf8_percent_encode(k, percent_encoding::NON_ALPHANUMERIC),
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The real `sealform serve` on a free port, with its stderr captured.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub log: Arc<Mutex<Vec<u8>>>,
}

impl Server {
    /// Starts `sealform serve --config <fixture> --listen 127.0.0.1:0` and
    /// waits until it listens.
    pub fn start(fixture: &Fixture) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sealform"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(fixture.config_path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sealform");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = String::new();
            let mut tx = Some(tx);
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        sink.lock().expect("log").extend_from_slice(line.as_bytes());
                        if let Some(i) = line.find("listening on http://") {
                            let rest = &line[i + "listening on http://".len()..];
                            let addr = rest.trim().trim_end_matches('/').to_owned();
                            if let Some(tx) = tx.take() {
                                let _ = tx.send(addr);
                            }
                        }
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "server did not start; log:\n{}",
                    String::from_utf8_lossy(&log.lock().expect("log"))
                )
            });
        Server { child, addr, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything the server wrote to stderr so far.
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().expect("log")).into_owned()
    }

    /// SIGTERM, then wait (at most 30 s) for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("server did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `sealform <args>` to completion: (exit code, stdout, stderr).
pub fn sealform(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sealform"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run sealform");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The real `gpg` with a throwaway home holding the given secret keys.
pub struct Gpg {
    pub home: tempfile::TempDir,
}

impl Gpg {
    pub fn with_secret_keys(keys: &[&Path]) -> Gpg {
        let home = tempfile::tempdir().expect("gnupg home");
        let g = Gpg { home };
        for k in keys {
            let out = g.cmd().args(["--import"]).arg(k).output().expect("run gpg");
            assert!(
                out.status.success(),
                "gpg --import failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        g
    }

    /// `gpg --batch` in this home (loopback pinentry, passphrase from
    /// `--passphrase-file` if the caller adds it).
    pub fn cmd(&self) -> Command {
        let mut c = Command::new("gpg");
        c.arg("--homedir")
            .arg(self.home.path())
            .args([
                "--batch",
                "--no-tty",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .stdin(Stdio::null());
        c
    }

    /// `gpg --decrypt FILE`: Ok(plaintext) or Err(stderr).
    pub fn decrypt(&self, file: &Path) -> Result<Vec<u8>, String> {
        let out = self
            .cmd()
            .arg("--decrypt")
            .arg(file)
            .output()
            .expect("run gpg");
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `gpg --list-packets FILE` output (stdout).
    pub fn list_packets(&self, file: &Path) -> String {
        let out = self
            .cmd()
            .arg("--list-packets")
            .arg(file)
            .output()
            .expect("run gpg");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The JSON part of a decrypted record (base64 under `application/json`;
/// binary attachment parts may come before it).
pub fn json_part(eml: &[u8]) -> serde_json::Value {
    use base64::Engine as _;
    const HEAD: &[u8] =
        b"Content-Type: application/json; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n";
    let at = eml
        .windows(HEAD.len())
        .position(|w| w == HEAD)
        .expect("record has a JSON part");
    let after = std::str::from_utf8(&eml[at + HEAD.len()..]).expect("the JSON part is ASCII");
    let b64: String = after
        .split("\r\n--")
        .next()
        .expect("end")
        .replace("\r\n", "");
    let json = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    serde_json::from_slice(&json).expect("JSON")
}

/// Reads a whole file (test helper that panics with the path).
pub fn read(path: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut v))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    v
}

/// The default `tip` form with Spanish translations of some (not all) of its
/// texts, a hint, and frame ancestors: what the page and browser tests use.
pub const I18N_FORMS: &str = r#"
[[forms]]
id = "tip"
title = "Send a tip"
description = "Test form"
frame_ancestors = ["https://news.example.org"]
[forms.i18n.es]
title = "Envíe una pista"

  [[forms.fields]]
  name = "message"
  label = "Message"
  kind = "textarea"
  required = true
  max_len = 5000
  [forms.fields.i18n.es]
  label = "Mensaje"

  [[forms.fields]]
  name = "contact"
  label = "Contact"
  kind = "text"
  max_len = 200
  hint = "Leave empty to stay anonymous."
  [forms.fields.i18n.es]
  hint = "Déjelo vacío para seguir en el anonimato."

  [[forms.fields]]
  name = "email"
  label = "Email"
  kind = "email"

  [[forms.fields]]
  name = "topic"
  label = "Topic"
  kind = "select"
  options = ["police", "schools", "other"]
  [forms.fields.i18n.es]
  label = "Tema"
  options = ["policía", "escuelas", "otro"]

  [[forms.fields]]
  name = "publish"
  label = "May publish"
  kind = "checkbox"
  required = true

[[forms]]
id = "plain"
title = "Plain"

  [[forms.fields]]
  name = "message"
  label = "Message"
  kind = "textarea"
"#;

/// An answer's text without the `<form>` element when it is a 422: a
/// fixable mistake on the HTML form gives the form back with what was typed
/// in its inputs (as a person expects); everywhere else in the answer, and
/// in every error message, nothing sent may appear.
pub fn outside_refilled_form(text: &str, status: u16) -> String {
    match (text.find("<form "), text.find("</form>")) {
        (Some(a), Some(b)) if status == 422 => format!("{}{}", &text[..a], &text[b..]),
        _ => text.to_owned(),
    }
}

/// A field of `/proc/<pid>/status` in kB (`VmRSS:`, `VmHWM:`).
pub fn proc_kb(pid: u32, name: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("field")
}
