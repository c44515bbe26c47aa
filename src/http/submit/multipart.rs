//! `multipart/form-data` submissions, on either route, streamed into the
//! sealer: the body is read part by part ([`receive`]) and forwarded as
//! [`UploadEvent`]s through a bounded channel to
//! [`Intake::submit_stream`](crate::intake::Intake::submit_stream).
//!
//! An upload takes an upload slot ([`crate::http::slots`]) when its sealer
//! starts: at once on the API, and on an HTML form only once its form token
//! and honeypot have passed and it has been charged to the rate budgets
//! (its gate, [`Gate`]). When every slot is taken, the upload furthest
//! behind `upload_min_bytes_per_sec` is stopped (408) to make room.
//!
//! Limits are enforced while the body streams: a file over
//! `max_file_bytes`, files over `max_total_bytes` or more than `max_files`
//! files stop the request with 413 at once; a body that pauses longer than
//! `upload_stall_secs`, falls below `upload_min_bytes_per_sec` on average
//! after that grace, or takes longer than `upload_timeout_secs` gets 408
//! (`http/submit/pace.rs`); a broken body gets 400; free space under `min_free_bytes`
//! (before or while writing) gets 503. In every case the channel is closed,
//! the sealer drops its pending record (deleting the temp file), and the
//! handler waits for that before it answers. If the client goes away, the
//! handler future is dropped, which closes the channel the same way.
//!
//! Sizes at the edges: a file of exactly `max_file_bytes` is stored and one
//! byte more is 413; a named empty file is stored as an empty attachment; an
//! empty part without a file name (what a browser sends for a file input
//! left empty) is no file at all. More than `max_files` files, or files
//! summing to more than `max_total_bytes`, is 413; so is a `Content-Length`
//! over `max_total_bytes + max_body_bytes`, before anything is read.
//!
//! Nothing here logs or echoes a field value, a file name or a byte of a
//! file; client-chosen part names are never echoed either.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::gate;
use super::metered::Metered;
use super::outcome::{Accepted, Failure, reply_for};
use super::pace::{Pace, broken};
use super::parts::filename_of;
use crate::api::error::ErrorCode;
use crate::config::{FieldKind, FormConfig, MAX_FILENAME_LEN, ServerConfig};
use crate::http::AppState;
use crate::http::error::{HttpError, join_failure};
use crate::http::form_tokens::{HONEYPOT_FIELD, TOKEN_FIELD};
use crate::http::limits::{Budget, ClientKey};
use crate::http::refusal::Refusal;
use crate::http::secret_body::ZeroizingBuf;
use crate::http::slots::{Eviction, NoSlot};
use crate::intake::{IntakeError, UploadError, UploadEvent, available_space};
use crate::receipt::Receipt;
use crate::replies::Derived;
use crate::submission::{RawValue, Rejection};

/// Chunks in flight between the HTTP reader and the sealer, per upload.
/// Chunks are at most a few hundred KiB (hyper's read buffer), so this bounds
/// an upload's buffered plaintext to a few MiB.
const CHANNEL_CHUNKS: usize = 8;

/// Most parts one upload may have: every text field at most once, every
/// file, and room for the empty parts browsers send for empty file inputs.
fn max_parts(form: &FormConfig) -> usize {
    form.fields.len() * 2 + form.max_files
}

/// Why feeding the sealer stopped early.
enum Halt {
    /// The client's fault (or a limit): answer this.
    Client(Failure),
    /// The sealer hung up: its own result says why.
    SealerGone,
}

impl<E: Into<Failure>> From<E> for Halt {
    fn from(e: E) -> Halt {
        Halt::Client(e.into())
    }
}

/// Which abuse checks an upload passes before its first field is accepted.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// An HTML form post: form token and honeypot (sent before the fields,
    /// as a browser sends them in page order).
    FormPage,
    /// The JSON API's multipart twin: rate limits only.
    Api,
}

/// Longest value the token or honeypot part may have.
const GATE_VALUE_CAP: usize = 1024;

/// The sealer of an upload, started (with the upload's slot taken) once
/// its gate is open: at once on the API, after the form token and the rate
/// budgets on an HTML form, so posts refused by those take no slot.
struct Starter<'a> {
    state: &'a AppState,
    form_index: usize,
    client: Option<ClientKey>,
    started: std::time::Instant,
    delivered: Arc<AtomicU64>,
    eviction: Arc<Eviction>,
    events: Option<mpsc::Receiver<UploadEvent>>,
    /// The reply mailbox and certificate the record carries (a form with
    /// replies), handed to the sealer when it starts.
    reply: Option<Derived>,
    sealer: Option<tokio::task::JoinHandle<Result<Receipt, UploadError>>>,
}

impl Starter<'_> {
    /// Takes a slot (making room if one upload is behind the minimum rate)
    /// and starts the sealer in a task of its own; the slot is given back
    /// when the sealer is done.
    fn start(&mut self) -> Result<(), Refusal> {
        let Some(events) = self.events.take() else {
            return Ok(());
        };
        let slot = self
            .state
            .upload_slots()
            .take(
                self.client,
                self.started,
                Arc::clone(&self.delivered),
                Arc::clone(&self.eviction),
            )
            .map_err(no_slot)?;
        let intake = self.state.intake_arc();
        let form_index = self.form_index;
        let reply = self.reply.take();
        self.sealer = Some(tokio::spawn(async move {
            let _slot = slot;
            intake.submit_stream(form_index, events, reply).await
        }));
        Ok(())
    }
}

fn no_slot(no: NoSlot) -> Refusal {
    match no {
        NoSlot::Full => Refusal::NoUploadSlot,
        NoSlot::ClientFull => Refusal::TooManyUploads,
    }
}

/// Reads the multipart body of `req` into a sealed, committed record. The
/// text fields read are copied into `kept` (for an HTML form to show them
/// again if the upload is not stored).
pub async fn receive(
    state: &AppState,
    form_index: usize,
    req: Request,
    gate: Gate,
    client: Option<ClientKey>,
    kept: &mut Vec<(String, RawValue)>,
) -> Result<Accepted, Failure> {
    let intake = state.intake_arc();
    let server = &intake.config.server;
    let form = &intake.config.forms[form_index];
    let boundary = check_before_reading(
        form,
        server,
        intake.config.stores_in_data_dir(),
        req.headers(),
    )?;
    let (reply_code, reply) = reply_for(form)?.unzip();
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let delivered = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(AtomicU64::new(0));
    let eviction = Arc::new(Eviction::default());
    let started = Instant::now();
    let mut starter = Starter {
        state,
        form_index,
        client,
        started: started.into_std(),
        delivered: Arc::clone(&delivered),
        eviction: Arc::clone(&eviction),
        events: Some(rx),
        reply,
        sealer: None,
    };
    if gate == Gate::Api {
        starter.start()?;
    }
    let pace = Pace::new(
        server,
        started,
        Arc::clone(&delivered),
        Arc::clone(&progress),
        eviction,
    );
    let body = Metered::new(req.into_body().into_data_stream(), delivered, progress);
    let mut multipart = multer::Multipart::new(body, boundary);
    let mut feeder = Feeder::new(form, &tx, &pace, gate == Gate::FormPage, kept);
    let fed = match feeder.feed(&mut multipart, &mut starter).await {
        Ok(()) => tx
            .send(UploadEvent::End)
            .await
            .map_err(|_| Halt::SealerGone),
        Err(halt) => Err(halt),
    };
    drop(feeder);
    drop(tx);
    drop(multipart);
    let sealed = match starter.sealer.take() {
        Some(sealer) => Some(sealer.await),
        None => None,
    };
    if let Err(Halt::Client(failed)) = fed {
        // The sealer (if it started) saw the channel close and removed its
        // temp file.
        return Err(failed);
    }
    match sealed {
        Some(Ok(sealed)) => sealed_outcome(sealed).map(|receipt| Accepted {
            receipt,
            reply_code,
        }),
        Some(Err(join)) => Err(HttpError::internal(&join_failure(&join)).into()),
        None => Err(HttpError::internal(&"an upload ended before its sealer started").into()),
    }
}

/// What costs nothing before the body is read: a usable boundary, a
/// `Content-Length` (if any) the form can take, and, with `watch_space`
/// (records go to `data_dir`), room on the disk for it. Returns the
/// boundary.
fn check_before_reading(
    form: &FormConfig,
    server: &ServerConfig,
    watch_space: bool,
    headers: &HeaderMap,
) -> Result<String, Failure> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::Malformed,
            "the multipart/form-data body has no usable boundary",
        )
    })?;
    let declared: Option<u64> = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    // Room for the text fields and the multipart framing on top of the files.
    let largest = form
        .max_total_bytes
        .saturating_add(server.max_body_bytes as u64);
    if declared.is_some_and(|n| n > largest) {
        return Err(too_large(
            ErrorCode::UploadTooLarge,
            "the upload is larger than this form accepts",
        )
        .into());
    }
    if !watch_space {
        return Ok(boundary);
    }
    match available_space(&server.data_dir) {
        Ok(free) if free >= server.min_free_bytes.saturating_add(declared.unwrap_or(0)) => {
            Ok(boundary)
        }
        Ok(_) => Err(HttpError::unavailable()
            .warning("refusing an upload: free space in data_dir is under min_free_bytes")
            .into()),
        Err(e) => Err(HttpError::internal(&e).into()),
    }
}

/// The sealer's own result, as the client is answered.
fn sealed_outcome(sealed: Result<Receipt, UploadError>) -> Result<Receipt, Failure> {
    match sealed {
        Ok(receipt) => Ok(receipt),
        Err(UploadError::Rejected(r)) => Err(r.into()),
        // The committer dropped the record in a panic and logged that, so
        // nothing is logged again.
        Err(UploadError::Intake(IntakeError::Unanswered(_))) => Err(HttpError::failed().into()),
        Err(UploadError::Intake(e)) if e.is_storage_full() => Err(HttpError::unavailable()
            .logging("cannot store an upload: storage is full", &e)
            .into()),
        Err(UploadError::Intake(e)) if e.is_store_unavailable() => Err(HttpError::unavailable()
            .logging("cannot store an upload: the database is unavailable", &e)
            .into()),
        Err(e) => Err(HttpError::internal(&e).into()),
    }
}

fn too_large(code: ErrorCode, message: &'static str) -> HttpError {
    HttpError::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
}

/// Reads every part and forwards it, enforcing the form's limits; behind
/// a gate (an HTML form), text fields are also copied into `kept`.
struct Feeder<'f> {
    form: &'f FormConfig,
    tx: &'f mpsc::Sender<UploadEvent>,
    pace: &'f Pace,
    kept: &'f mut Vec<(String, RawValue)>,
    /// An HTML form's upload: its token and honeypot come first.
    gated: bool,
    /// The token and honeypot parts read while the gate is shut.
    gate_pairs: Vec<(String, RawValue)>,
    gate_open: bool,
    parts: usize,
    text_seen: Vec<bool>,
    files_of: Vec<usize>,
    files: usize,
    total: u64,
}

impl<'f> Feeder<'f> {
    fn new(
        form: &'f FormConfig,
        tx: &'f mpsc::Sender<UploadEvent>,
        pace: &'f Pace,
        gated: bool,
        kept: &'f mut Vec<(String, RawValue)>,
    ) -> Feeder<'f> {
        Feeder {
            form,
            tx,
            pace,
            kept,
            gated,
            gate_pairs: Vec::new(),
            gate_open: !gated,
            parts: 0,
            text_seen: vec![false; form.fields.len()],
            files_of: vec![0; form.fields.len()],
            files: 0,
            total: 0,
        }
    }

    async fn feed(
        &mut self,
        multipart: &mut multer::Multipart<'_>,
        starter: &mut Starter<'_>,
    ) -> Result<(), Halt> {
        let form = self.form;
        while let Some(mut part) = self
            .pace
            .timed(multipart.next_field())
            .await?
            .map_err(broken)?
        {
            self.pace.part_begun();
            self.parts += 1;
            if self.parts > max_parts(form) {
                return Err(too_many_parts(form).into());
            }
            if self.gated {
                let gate_name = part
                    .name()
                    .filter(|n| *n == TOKEN_FIELD || *n == HONEYPOT_FIELD)
                    .map(str::to_owned);
                if let Some(name) = gate_name {
                    self.read_gate_part(name, &mut part).await?;
                    continue;
                }
                if !self.gate_open {
                    self.open_gate(starter).await?;
                }
            }
            let index = part
                .name()
                .and_then(|n| form.fields.iter().position(|f| f.name == n))
                .ok_or(Rejection::UnknownField)?;
            if form.fields[index].kind == FieldKind::File {
                self.read_file(index, &mut part).await?;
            } else {
                self.read_text(index, &mut part).await?;
            }
        }
        if self.gated && !self.gate_open {
            self.open_gate(starter).await?;
        }
        Ok(())
    }

    /// A form token or honeypot part, read before the gate opens.
    async fn read_gate_part(
        &mut self,
        name: String,
        part: &mut multer::Field<'_>,
    ) -> Result<(), Halt> {
        if self.gate_open {
            return Err(Rejection::DuplicateField(name).into());
        }
        let mut value = ZeroizingBuf::new(GATE_VALUE_CAP);
        while let Some(chunk) = self.pace.chunk(part).await? {
            self.pace.count(chunk.len());
            if value.len() + chunk.len() > GATE_VALUE_CAP {
                return Err(Rejection::Malformed("an oversized form control").into());
            }
            value.push(&chunk);
        }
        let value = value.into_string().ok_or(Rejection::InvalidUtf8)?;
        self.gate_pairs.push((name, RawValue::Text(value)));
        Ok(())
    }

    /// Opens an HTML form upload's gate: its form token and honeypot pass
    /// and the token is taken for it, then it is charged to the rate budgets
    /// and takes an upload slot, and only then is its token used up (a
    /// person refused by a limit or for want of a slot gets it back and can
    /// send the same form again).
    async fn open_gate(&mut self, starter: &mut Starter<'_>) -> Result<(), Halt> {
        let state = starter.state;
        // A refusal below drops the pass, which gives the token back.
        let pass = gate::check(state, self.form, &mut self.gate_pairs)?;
        state
            .limits()
            .charge(starter.client, Budget::Form(starter.form_index))?;
        starter.start()?;
        pass.spend().await?;
        self.gate_open = true;
        Ok(())
    }

    /// A text field, whole, then sent on.
    async fn read_text(&mut self, index: usize, part: &mut multer::Field<'_>) -> Result<(), Halt> {
        let form = self.form;
        let field = &form.fields[index];
        if std::mem::replace(&mut self.text_seen[index], true) {
            return Err(Rejection::DuplicateField(field.name.clone()).into());
        }
        // A character is at most 4 bytes of UTF-8.
        let cap = field.max_len().saturating_mul(4);
        let mut value = ZeroizingBuf::new(cap.min(16 * 1024));
        while let Some(chunk) = self.pace.chunk(part).await? {
            self.pace.count(chunk.len());
            if value.len() + chunk.len() > cap {
                return Err(Rejection::TooLong(field.name.clone(), field.max_len()).into());
            }
            value.push(&chunk);
        }
        let value = value.into_string().ok_or(Rejection::InvalidUtf8)?;
        if self.gated {
            self.kept
                .push((field.name.clone(), RawValue::Text(value.clone())));
        }
        self.send(UploadEvent::Text {
            field: index,
            value,
        })
        .await
    }

    /// A file, chunk by chunk, within the form's limits. A browser sends an
    /// empty, nameless part for a file input left empty: that is no file. A
    /// named empty file is a file.
    async fn read_file(&mut self, index: usize, part: &mut multer::Field<'_>) -> Result<(), Halt> {
        let form = self.form;
        let field = &form.fields[index];
        let filename = filename_of(part.headers(), part.file_name())?;
        if filename.chars().count() > MAX_FILENAME_LEN {
            return Err(file_name_too_long(&field.name).into());
        }
        let content_type = part
            .content_type()
            .map_or_else(|| "application/octet-stream".to_owned(), |m| m.to_string());
        let named = !filename.is_empty();
        let mut start = Some(UploadEvent::FileStart {
            field: index,
            filename,
            content_type,
        });
        let mut size: u64 = 0;
        loop {
            let chunk = self.pace.chunk(part).await?;
            let begins = match &chunk {
                Some(c) => !c.is_empty(),
                None => named,
            };
            if begins {
                if let Some(ev) = start.take() {
                    self.file_begins(index)?;
                    self.send(ev).await?;
                }
            }
            let Some(chunk) = chunk else { break };
            if chunk.is_empty() {
                continue;
            }
            self.pace.count(chunk.len());
            size += chunk.len() as u64;
            self.total += chunk.len() as u64;
            self.check_file_sizes(size)?;
            self.send(UploadEvent::Data(chunk)).await?;
        }
        if start.is_none() {
            self.send(UploadEvent::FileEnd).await?;
        }
        Ok(())
    }

    /// Counts a file begun in field `index`, within `max_files` and the
    /// field's `multiple`.
    fn file_begins(&mut self, index: usize) -> Result<(), Halt> {
        self.files += 1;
        self.files_of[index] += 1;
        if self.files > self.form.max_files {
            return Err(too_large(
                ErrorCode::TooManyFiles,
                "the upload has more files than this form accepts",
            )
            .into());
        }
        let field = &self.form.fields[index];
        if self.files_of[index] > 1 && !field.multiple {
            return Err(Rejection::DuplicateField(field.name.clone()).into());
        }
        Ok(())
    }

    /// The current file (`size` so far) and all files together within the
    /// form's limits.
    fn check_file_sizes(&self, size: u64) -> Result<(), Halt> {
        if size > self.form.max_file_bytes {
            return Err(too_large(
                ErrorCode::FileTooLarge,
                "a file is larger than this form accepts",
            )
            .into());
        }
        if self.total > self.form.max_total_bytes {
            return Err(too_large(
                ErrorCode::UploadTooLarge,
                "the files together are larger than this form accepts",
            )
            .into());
        }
        Ok(())
    }

    async fn send(&self, event: UploadEvent) -> Result<(), Halt> {
        self.tx.send(event).await.map_err(|_| Halt::SealerGone)
    }
}

/// 400 for an upload with more parts than its form takes.
fn too_many_parts(form: &FormConfig) -> HttpError {
    HttpError::new(StatusCode::BAD_REQUEST, ErrorCode::TooManyFields, "").saying(format!(
        "the upload has more parts than this form takes (at most {})",
        max_parts(form)
    ))
}

/// 422 for a file name longer than [`MAX_FILENAME_LEN`] in field `name`.
fn file_name_too_long(name: &str) -> HttpError {
    HttpError::from(Rejection::TooLong(name.to_owned(), MAX_FILENAME_LEN)).saying(format!(
        "a file name in field `{name}` is longer than {MAX_FILENAME_LEN} characters"
    ))
}
