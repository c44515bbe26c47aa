//! `multipart/form-data` submissions, on `POST /forms/{form}` and
//! `POST /api/v1/forms/{form}/submissions`, streamed into the sealer.
//!
//! The handlers here take both routes: a multipart body is read part by part
//! and forwarded as [`UploadEvent`]s through a bounded channel to
//! [`Intake::submit_stream`](crate::intake::Intake::submit_stream); any other body goes
//! to the urlencoded (pages) or JSON (api) handler as before, under the usual
//! `max_body_bytes` limit.
//!
//! Before a body is read, a post to an unknown form, in a content type the
//! route does not take or from another site is refused with
//! `Connection: close` (the body is never read), and a post takes its
//! in-flight slots. An upload takes an upload slot ([`super::slots`]) when
//! its sealer starts: at once on the API, and on an HTML form only once its
//! form token and honeypot have passed and it has been charged to the rate
//! budgets. When every slot is taken, the upload furthest behind
//! `upload_min_bytes_per_sec` is stopped (408) to make room.
//!
//! Limits are enforced while the body streams: a file over `max_file_bytes`,
//! files over `max_total_bytes` or more than `max_files` files stop the
//! request with 413 at once; a body that pauses longer than
//! `upload_stall_secs`, falls below `upload_min_bytes_per_sec` on average
//! after that grace, or takes longer than `upload_timeout_secs` gets 408;
//! a broken body gets 400; free space under `min_free_bytes` (before or
//! while writing) gets 503. In every case the channel is closed, the sealer
//! drops its pending record (deleting the temp file), and the handler waits
//! for that before it answers. If the client goes away, the handler future
//! is dropped, which closes the channel the same way.
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::error::{ApiError, HttpError, join_failure};
use super::form_tokens::{HONEYPOT_FIELD, TOKEN_FIELD};
use super::limits::{Budget, Client, ClientKey, Refused};
use super::slots::{Eviction, NoSlot};
use super::{AppState, Segment, api, closing, media_type, pages};
use crate::config::{FieldKind, FormConfig, MAX_FILENAME_LEN};
use crate::intake::{UploadError, UploadEvent, available_space};
use crate::receipt::Receipt;
use crate::submission::{RawValue, Rejection};

/// Chunks in flight between the HTTP reader and the sealer, per upload.
/// Chunks are at most a few hundred KiB (hyper's read buffer), so this bounds
/// an upload's buffered plaintext to a few MiB.
const CHANNEL_CHUNKS: usize = 8;

/// Bytes the multipart parser may hold beyond what it has handed on as
/// field data: preamble, part headers, boundaries. The parser itself would
/// buffer a body without a boundary whole.
const FRAMING_SLACK: u64 = 8 * 1024 * 1024;

/// What the parser may read with nothing to show for it (no new part, no
/// field data): a preamble, or one part's headers and boundary, at most
/// this many bytes in at most this many chunks. A browser's are under 2 KiB
/// in one or two chunks. The parser searches its whole buffer again for
/// every chunk it is given, so without these bounds a preamble sent in
/// 1-byte chunks cost quadratic time: 600 KB of chunked body kept a core
/// busy for 7.8 s.
const FRAMING_GAP_BYTES: u64 = 32 * 1024;
const FRAMING_GAP_CHUNKS: u32 = 64;

/// Most parts one upload may have: every text field at most once, every
/// file, and room for the empty parts browsers send for empty file inputs.
fn max_parts(form: &FormConfig) -> usize {
    form.fields.len() * 2 + form.max_files
}

/// The routes that take uploads.
const UPLOAD_ROUTES: [&str; 2] = ["/forms/{form}", "/api/v1/forms/{form}/submissions"];

/// `POST /forms/{form}`: multipart here, urlencoded in [`pages::submit`].
///
/// What costs nothing is checked first, before the body is read: the form
/// is known, the content type is one the route takes, the post is not
/// cross-site; a refusal here says `Connection: close` and the body is never
/// read. Then the post takes its in-flight slots and its body is read; it is
/// charged to the rate budgets only once its form token and honeypot pass
/// (in [`pages::submit`], or when an upload's gate opens).
pub async fn page_submit(
    State(state): State<AppState>,
    Segment(id): Segment,
    Client(client): Client,
    req: Request,
) -> Response {
    let query = req.uri().query().map(str::to_owned);
    let headers = req.headers().clone();
    let config = &state.intake().config;
    let Some(form_index) = config.form_index(&id) else {
        return closing(pages::unknown_form_response(&headers, query.as_deref()));
    };
    let multipart = is_multipart(&headers);
    if !multipart && media_type(&headers).as_deref() != Some("application/x-www-form-urlencoded") {
        return closing(pages::unsupported_response(
            &state,
            form_index,
            &headers,
            query.as_deref(),
        ));
    }
    let abuse = &config.abuse;
    if abuse.check_origin && pages::is_cross_site(&headers, abuse.public_origin()) {
        return closing(pages::cross_site_response(
            &state,
            client,
            form_index,
            &headers,
            query.as_deref(),
        ));
    }
    let _in_flight = match state.limits().enter(client) {
        Ok(f) => f,
        Err(refused) => return refused.into_response(false),
    };
    if !multipart {
        let body = Bytes::from_request(req, &state).await;
        // A body refused while it was read (over max_body_bytes, or
        // broken): the rest of it is not read.
        let unread = body.is_err();
        let res = match pages::submit(&state, form_index, client, &headers, query.as_deref(), body)
            .await
        {
            Ok(r) => r,
            Err(e) => e.into_response(),
        };
        return if unread { closing(res) } else { res };
    }
    let mut kept = Vec::new();
    let outcome = receive(&state, form_index, req, Gate::FormPage, client, &mut kept).await;
    let failed = outcome.is_err();
    let res = pages::upload_response(
        &state,
        form_index,
        client,
        &headers,
        query.as_deref(),
        outcome,
        kept,
    );
    // A failed upload may have stopped with its body half read.
    if failed { closing(res) } else { res }
}

/// `POST /api/v1/forms/{form}/submissions`: multipart here (201
/// `{"receipt"}`), JSON in [`api::submit`].
///
/// The API has no form token: a post is charged to its client's and the
/// global API budgets once the form is known, the content type is one the
/// route takes, (multipart) it is not cross-site and it has its in-flight
/// slots, before its body is read. A refusal before the body says
/// `Connection: close`.
pub async fn api_submit(
    State(state): State<AppState>,
    Segment(id): Segment,
    Client(client): Client,
    req: Request,
) -> Response {
    let config = &state.intake().config;
    let Some(form_index) = config.form_index(&id) else {
        return closing(ApiError(HttpError::unknown_form()).into_response());
    };
    let multipart = is_multipart(req.headers());
    let abuse = &config.abuse;
    if multipart {
        // A browser may send a multipart post cross-site without a CORS
        // preflight (JSON needs one): refuse it as the HTML form route
        // does, so no web page can make its visitors submit here.
        if abuse.check_origin && pages::is_cross_site(req.headers(), abuse.public_origin()) {
            return closing(
                ApiError(HttpError::new(
                    StatusCode::FORBIDDEN,
                    "cross_site",
                    "the request came from another web site; nothing was stored",
                ))
                .into_response(),
            );
        }
    } else if media_type(req.headers()).as_deref() != Some("application/json") {
        return closing(
            ApiError(HttpError::unsupported_media_type(
                "application/json or multipart/form-data",
            ))
            .into_response(),
        );
    }
    // In flight first: a post turned away for the in-flight caps is not
    // charged, as on the HTML route.
    let _in_flight = match state.limits().enter(client) {
        Ok(f) => f,
        Err(refused) => return refused.into_response(true),
    };
    if let Err(refused) = state.limits().charge(client, Budget::Api) {
        return refused.into_response(true);
    }
    if !multipart {
        let body = Bytes::from_request(req, &state).await;
        // A body refused while it was read (over max_body_bytes, or
        // broken): the rest of it is not read.
        let unread = body.is_err();
        let res = match api::submit(&state, form_index, body).await {
            Ok(r) => r.into_response(),
            Err(e) => e.into_response(),
        };
        return if unread { closing(res) } else { res };
    }
    match receive(&state, form_index, req, Gate::Api, client, &mut Vec::new()).await {
        Ok(receipt) => (
            StatusCode::CREATED,
            Json(json!({ "receipt": receipt.to_string() })),
        )
            .into_response(),
        Err(Failed::Refused(refused)) => refused.into_response(true),
        Err(failed) => closing(ApiError(failed.into()).into_response()),
    }
}

fn is_multipart(headers: &HeaderMap) -> bool {
    media_type(headers).as_deref() == Some("multipart/form-data")
}

/// Whether `req` is an upload: a multipart POST to an upload route.
pub fn is_upload(req: &Request) -> bool {
    req.method() == axum::http::Method::POST
        && is_multipart(req.headers())
        && req
            .extensions()
            .get::<MatchedPath>()
            .is_some_and(|m| UPLOAD_ROUTES.contains(&m.as_str()))
}

/// Why feeding the sealer stopped early.
enum Stop {
    /// The client's fault (or a limit): answer this.
    Client(Failed),
    /// The sealer hung up: its own result says why.
    SealerGone,
}

/// Why an upload was not stored.
pub enum Failed {
    /// A field broke the form's rules: an HTML form comes back with it
    /// marked (422).
    Invalid(Rejection),
    /// A rate limit or the upload slots: answered with `Retry-After`.
    Refused(Refused),
    /// Anything else, answered as it is.
    Other(HttpError),
}

impl From<HttpError> for Failed {
    fn from(e: HttpError) -> Failed {
        Failed::Other(e)
    }
}

impl From<Failed> for HttpError {
    fn from(f: Failed) -> HttpError {
        match f {
            Failed::Invalid(r) => r.into(),
            Failed::Refused(r) => r.error,
            Failed::Other(e) => e,
        }
    }
}

impl From<HttpError> for Stop {
    fn from(e: HttpError) -> Stop {
        Stop::Client(Failed::Other(e))
    }
}

impl From<Refused> for Stop {
    fn from(r: Refused) -> Stop {
        Stop::Client(Failed::Refused(r))
    }
}

impl From<Rejection> for Stop {
    fn from(r: Rejection) -> Stop {
        Stop::Client(Failed::Invalid(r))
    }
}

/// Which abuse checks an upload passes before its first field is accepted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Gate {
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
    sealer: Option<tokio::task::JoinHandle<Result<Receipt, UploadError>>>,
}

impl Starter<'_> {
    /// Takes a slot (making room if one upload is behind the minimum rate)
    /// and starts the sealer in a task of its own; the slot is given back
    /// when the sealer is done.
    fn start(&mut self) -> Result<(), Stop> {
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
        self.sealer = Some(tokio::spawn(async move {
            let _slot = slot;
            intake.submit_stream(form_index, events).await
        }));
        Ok(())
    }
}

fn no_slot(no: NoSlot) -> Refused {
    match no {
        NoSlot::Full => {
            tracing::warn!(
                "refusing an upload: max_concurrent_uploads are in progress, none behind the minimum rate"
            );
            Refused::new(HttpError::unavailable(), Duration::from_secs(5))
        }
        NoSlot::ClientFull => Refused::new(
            HttpError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_uploads",
                "too many uploads from you at once; nothing was stored, please wait for the others to finish",
            ),
            Duration::from_secs(5),
        ),
    }
}

/// Reads the multipart body of `req` into a sealed, committed record. The
/// text fields read are copied into `kept` (for an HTML form to show them
/// again if the upload is not stored).
async fn receive(
    state: &AppState,
    form_index: usize,
    req: Request,
    gate: Gate,
    client: Option<ClientKey>,
    kept: &mut Vec<(String, RawValue)>,
) -> Result<Receipt, Failed> {
    let intake = state.intake_arc();
    let server = &intake.config.server;
    let form = &intake.config.forms[form_index];
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            "the multipart/form-data body has no usable boundary",
        )
    })?;
    let declared: Option<u64> = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    // Room for the text fields and the multipart framing on top of the files.
    let largest = form
        .max_total_bytes
        .saturating_add(server.max_body_bytes as u64);
    if declared.is_some_and(|n| n > largest) {
        return Err(too_large(
            "upload_too_large",
            "the upload is larger than this form accepts",
        )
        .into());
    }
    match available_space(&server.data_dir) {
        Ok(free) if free >= server.min_free_bytes.saturating_add(declared.unwrap_or(0)) => {}
        Ok(_) => {
            tracing::warn!("refusing an upload: free space in data_dir is under min_free_bytes");
            return Err(HttpError::unavailable().into());
        }
        Err(e) => return Err(HttpError::internal(&e).into()),
    }

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
        sealer: None,
    };
    if gate == Gate::Api {
        match starter.start() {
            Ok(()) => {}
            Err(Stop::Client(failed)) => return Err(failed),
            Err(Stop::SealerGone) => return Err(HttpError::unavailable().into()),
        }
    }
    let limits = Limits {
        started,
        body_deadline: started + Duration::from_secs(server.upload_timeout_secs),
        idle: Duration::from_secs(server.upload_stall_secs),
        min_rate: server.upload_min_bytes_per_sec,
        delivered: Arc::clone(&delivered),
        progress: Arc::clone(&progress),
        eviction,
    };
    let body = Metered {
        inner: req.into_body().into_data_stream(),
        consumed: 0,
        delivered: Arc::clone(&delivered),
        progress: Arc::clone(&progress),
        seen_progress: 0,
        since_progress: (0, 0),
        just_read: false,
    };
    let mut multipart = multer::Multipart::new(body, boundary);
    let gate = match gate {
        Gate::FormPage => Some(state),
        Gate::Api => None,
    };
    let fed = match feed(form, &mut multipart, &tx, &limits, gate, &mut starter, kept).await {
        Ok(()) => tx
            .send(UploadEvent::End)
            .await
            .map_err(|_| Stop::SealerGone),
        Err(stop) => Err(stop),
    };
    drop(tx);
    drop(multipart);
    let sealed = match starter.sealer.take() {
        Some(sealer) => Some(sealer.await),
        None => None,
    };
    if let Err(Stop::Client(failed)) = fed {
        // The sealer (if it started) saw the channel close and removed its
        // temp file.
        return Err(failed);
    }
    let Some(sealed) = sealed else {
        return Err(HttpError::internal(&"an upload ended before its sealer started").into());
    };
    match sealed {
        Ok(Ok(receipt)) => Ok(receipt),
        Ok(Err(UploadError::Rejected(r))) => Err(Failed::Invalid(r)),
        Ok(Err(UploadError::Intake(e))) if e.is_storage_full() => {
            tracing::error!(error = %e, "cannot store an upload: storage is full");
            Err(HttpError::unavailable().into())
        }
        Ok(Err(e)) => Err(HttpError::internal(&e).into()),
        Err(join) => Err(HttpError::internal(&join_failure(&join)).into()),
    }
}

struct Limits {
    started: Instant,
    body_deadline: Instant,
    idle: Duration,
    /// `upload_min_bytes_per_sec`: 0 for no minimum.
    min_rate: u64,
    /// Bytes of fields and files received so far.
    delivered: Arc<AtomicU64>,
    /// Parts begun and chunks of field data received so far: what
    /// [`Metered`] counts the framing gap from.
    progress: Arc<AtomicU64>,
    /// Set when the upload must make room for another.
    eviction: Arc<Eviction>,
}

impl Limits {
    /// Awaits `fut` unless the body stalls, falls behind the minimum rate
    /// or passes its deadline (408).
    async fn timed<T>(&self, fut: impl Future<Output = T>) -> Result<T, HttpError> {
        let until = self.body_deadline.min(Instant::now() + self.idle);
        let until = until.min(self.behind_at().unwrap_or(until));
        tokio::select! {
            biased;
            () = self.eviction.evicted() => Err(HttpError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the upload arrived more slowly than the server's minimum rate while every \
                 upload slot was taken, and made room for another; nothing was stored",
            )),
            timed = tokio::time::timeout_at(until, fut) => timed.map_err(|_| {
                HttpError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "the request body arrived too slowly; nothing was stored",
                )
            }),
        }
    }

    /// Counts `n` bytes of fields and files received.
    fn count(&self, n: usize) {
        self.delivered.fetch_add(n as u64, Ordering::Relaxed);
        self.progress.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a part begun.
    fn part_begun(&self) {
        self.progress.fetch_add(1, Ordering::Relaxed);
    }

    /// When the body falls behind `min_rate` unless more of it arrives: it
    /// must have delivered `min_rate` bytes for every second after the first
    /// `idle` ones (the grace that lets a slow start or a short server-side
    /// wait pass). `None` without a minimum.
    fn behind_at(&self) -> Option<Instant> {
        let rate = self.min_rate;
        if rate == 0 {
            return None;
        }
        let bytes = self.delivered.load(Ordering::Relaxed);
        let covered = Duration::from_secs(bytes / rate)
            + Duration::from_nanos((bytes % rate).saturating_mul(1_000_000_000) / rate);
        self.idle
            .checked_add(covered)
            .and_then(|d| self.started.checked_add(d))
    }
}

/// Opens an HTML form upload's gate: its form token and honeypot pass and
/// the token is taken for it (a refusal carries the reason as its code,
/// `refused:…`, for the page to explain), then it is charged to the rate
/// budgets and takes an upload slot, and only then is its token used up (a
/// person refused by a limit or for want of a slot gets it back and can send
/// the same form again).
fn open_gate(
    state: &AppState,
    form: &FormConfig,
    pairs: &mut Vec<(String, RawValue)>,
    starter: &mut Starter<'_>,
) -> Result<(), Stop> {
    let refused = |(status, why): (StatusCode, crate::i18n::Msg)| {
        Stop::from(HttpError {
            status,
            code: pages::refusal_code(why),
            message: "the form post was refused; nothing was stored".into(),
            field: None,
        })
    };
    // A refusal below drops the pass, which gives the token back.
    let pass = pages::gate_form_post(state, form, pairs).map_err(refused)?;
    state
        .limits()
        .charge(starter.client, Budget::Form(starter.form_index))?;
    starter.start()?;
    pass.spend();
    Ok(())
}

fn too_large(code: &'static str, message: &'static str) -> HttpError {
    HttpError::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
}

fn broken(_: multer::Error) -> HttpError {
    // multer's messages may quote client-chosen names: never pass them on.
    HttpError::new(
        StatusCode::BAD_REQUEST,
        "malformed",
        "the multipart/form-data body is malformed or incomplete",
    )
}

/// Reads every part and forwards it, enforcing the form's limits; with a
/// `gate` (an HTML form), text fields are also copied into `kept`.
async fn feed(
    form: &FormConfig,
    multipart: &mut multer::Multipart<'_>,
    tx: &mpsc::Sender<UploadEvent>,
    limits: &Limits,
    gate: Option<&AppState>,
    starter: &mut Starter<'_>,
    kept: &mut Vec<(String, RawValue)>,
) -> Result<(), Stop> {
    let mut gate_pairs: Vec<(String, RawValue)> = Vec::new();
    let mut gate_open = gate.is_none();
    let mut parts = 0usize;
    let mut text_seen = vec![false; form.fields.len()];
    let mut files_of = vec![0usize; form.fields.len()];
    let mut files = 0usize;
    let mut total: u64 = 0;
    while let Some(mut part) = limits
        .timed(multipart.next_field())
        .await?
        .map_err(broken)?
    {
        limits.part_begun();
        parts += 1;
        if parts > max_parts(form) {
            return Err(HttpError {
                status: StatusCode::BAD_REQUEST,
                code: Rejection::TooManyFields.code(),
                message: format!(
                    "the upload has more parts than this form takes (at most {})",
                    max_parts(form)
                )
                .into(),
                field: None,
            }
            .into());
        }
        if let Some(state) = gate {
            let gate_name = part
                .name()
                .filter(|n| *n == TOKEN_FIELD || *n == HONEYPOT_FIELD)
                .map(str::to_owned);
            if let Some(name) = gate_name {
                if gate_open {
                    return Err(Rejection::DuplicateField(name).into());
                }
                let mut value = ZeroizingBuf::new(GATE_VALUE_CAP);
                while let Some(chunk) = limits.timed(part.chunk()).await?.map_err(broken)? {
                    limits.count(chunk.len());
                    if value.len() + chunk.len() > GATE_VALUE_CAP {
                        return Err(Rejection::Malformed("an oversized form control").into());
                    }
                    value.push(&chunk);
                }
                let value = value.into_string().ok_or(Rejection::InvalidUtf8)?;
                gate_pairs.push((name, RawValue::Text(value)));
                continue;
            }
            if !gate_open {
                open_gate(state, form, &mut gate_pairs, starter)?;
                gate_open = true;
            }
        }
        let index = part
            .name()
            .and_then(|n| form.fields.iter().position(|f| f.name == n))
            .ok_or(Rejection::UnknownField)?;
        let field = &form.fields[index];
        if field.kind != FieldKind::File {
            if std::mem::replace(&mut text_seen[index], true) {
                return Err(Rejection::DuplicateField(field.name.clone()).into());
            }
            // A character is at most 4 bytes of UTF-8.
            let cap = field.max_len().saturating_mul(4);
            let mut value = ZeroizingBuf::new(cap.min(16 * 1024));
            while let Some(chunk) = limits.timed(part.chunk()).await?.map_err(broken)? {
                limits.count(chunk.len());
                if value.len() + chunk.len() > cap {
                    return Err(Rejection::TooLong(field.name.clone(), field.max_len()).into());
                }
                value.push(&chunk);
            }
            let value = value.into_string().ok_or(Rejection::InvalidUtf8)?;
            if gate.is_some() {
                kept.push((field.name.clone(), RawValue::Text(value.clone())));
            }
            tx.send(UploadEvent::Text {
                field: index,
                value,
            })
            .await
            .map_err(|_| Stop::SealerGone)?;
            continue;
        }
        let filename = filename_of(part.headers(), part.file_name())?;
        if filename.chars().count() > MAX_FILENAME_LEN {
            let too_long = Rejection::TooLong(field.name.clone(), MAX_FILENAME_LEN);
            return Err(HttpError {
                message: format!(
                    "a file name in field `{}` is longer than {MAX_FILENAME_LEN} characters",
                    field.name
                )
                .into(),
                ..too_long.into()
            }
            .into());
        }
        let content_type = part
            .content_type()
            .map_or_else(|| "application/octet-stream".to_owned(), |m| m.to_string());
        // A browser sends an empty, nameless part for a file input left
        // empty: that is no file. A named empty file is a file.
        let mut start = Some(UploadEvent::FileStart {
            field: index,
            filename,
            content_type,
        });
        let mut size: u64 = 0;
        loop {
            let chunk = limits.timed(part.chunk()).await?.map_err(broken)?;
            let named = matches!(&start, Some(UploadEvent::FileStart { filename, .. }) if !filename.is_empty());
            let begins = match &chunk {
                Some(c) => !c.is_empty(),
                None => named,
            };
            if begins {
                if let Some(ev) = start.take() {
                    files += 1;
                    files_of[index] += 1;
                    if files > form.max_files {
                        return Err(too_large(
                            "too_many_files",
                            "the upload has more files than this form accepts",
                        )
                        .into());
                    }
                    if files_of[index] > 1 && !field.multiple {
                        return Err(Rejection::DuplicateField(field.name.clone()).into());
                    }
                    tx.send(ev).await.map_err(|_| Stop::SealerGone)?;
                }
            }
            let Some(chunk) = chunk else { break };
            if chunk.is_empty() {
                continue;
            }
            limits.count(chunk.len());
            size += chunk.len() as u64;
            total += chunk.len() as u64;
            if size > form.max_file_bytes {
                return Err(
                    too_large("file_too_large", "a file is larger than this form accepts").into(),
                );
            }
            if total > form.max_total_bytes {
                return Err(too_large(
                    "upload_too_large",
                    "the files together are larger than this form accepts",
                )
                .into());
            }
            tx.send(UploadEvent::Data(chunk))
                .await
                .map_err(|_| Stop::SealerGone)?;
        }
        if start.is_none() {
            tx.send(UploadEvent::FileEnd)
                .await
                .map_err(|_| Stop::SealerGone)?;
        }
    }
    if let (Some(state), false) = (gate, gate_open) {
        open_gate(state, form, &mut gate_pairs, starter)?;
    }
    Ok(())
}

/// The request body as the multipart parser reads it, one chunk per poll.
///
/// The parser pulls chunks for as long as they are ready and buffers them,
/// and it keeps a body without a boundary (or with endless part headers)
/// buffered whole. So this stream answers `Pending` (waking itself at once)
/// after every chunk, which lets the parser hand on what it has before it
/// reads more. It fails once it has read [`FRAMING_SLACK`] more than the
/// field data handed on (`delivered`, counted by [`feed`]), or more than
/// [`FRAMING_GAP_BYTES`] or [`FRAMING_GAP_CHUNKS`] since the parser last
/// showed progress (a part begun or field data handed on).
struct Metered<S> {
    inner: S,
    consumed: u64,
    delivered: Arc<AtomicU64>,
    progress: Arc<AtomicU64>,
    /// `progress` when last seen, and the bytes and chunks read since it
    /// changed.
    seen_progress: u64,
    since_progress: (u64, u32),
    just_read: bool,
}

impl<S> futures_util::Stream for Metered<S>
where
    S: futures_util::Stream<Item = Result<Bytes, axum::Error>> + Unpin,
{
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if std::mem::take(&mut self.just_read) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        // The parser has worked on the last chunk: any progress since?
        let progress = self.progress.load(Ordering::Relaxed);
        if progress != self.seen_progress {
            self.seen_progress = progress;
            self.since_progress = (0, 0);
        }
        let (gap_bytes, gap_chunks) = self.since_progress;
        if self.consumed > self.delivered.load(Ordering::Relaxed) + FRAMING_SLACK
            || gap_bytes > FRAMING_GAP_BYTES
            || gap_chunks >= FRAMING_GAP_CHUNKS
        {
            return Poll::Ready(Some(Err(axum::Error::new(std::io::Error::other(
                "multipart framing too large",
            )))));
        }
        let polled = std::pin::Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &polled {
            let n = chunk.len() as u64;
            self.consumed += n;
            self.since_progress.0 += n;
            self.since_progress.1 += 1;
            self.just_read = true;
        }
        polled
    }
}

/// A growable byte buffer that never leaves an unzeroized copy behind: it
/// grows by moving into a bigger zeroizing buffer.
struct ZeroizingBuf(Zeroizing<Vec<u8>>);

impl ZeroizingBuf {
    fn new(capacity: usize) -> Self {
        ZeroizingBuf(Zeroizing::new(Vec::with_capacity(capacity)))
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn push(&mut self, bytes: &[u8]) {
        let need = self.0.len() + bytes.len();
        if need > self.0.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(need.max(self.0.capacity() * 2)));
            bigger.extend_from_slice(&self.0);
            self.0 = bigger;
        }
        self.0.extend_from_slice(bytes);
    }
    fn into_string(mut self) -> Option<Zeroizing<String>> {
        let bytes = std::mem::take(&mut *self.0);
        match String::from_utf8(bytes) {
            Ok(s) => Some(Zeroizing::new(s)),
            Err(e) => {
                drop(Zeroizing::new(e.into_bytes()));
                None
            }
        }
    }
}

/// The file name a part declares: RFC 5987 `filename*=utf-8''…` when present,
/// otherwise `filename="…"` with the escapes browsers use for `"`, CR and LF
/// (`%22`, `%0D`, `%0A`, per the HTML standard) undone. Never used as a path.
fn filename_of(headers: &HeaderMap, plain: Option<&str>) -> Result<Zeroizing<String>, Rejection> {
    let disposition = headers
        .get(header::CONTENT_DISPOSITION)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if let Some(ext) = ext_value(disposition, b"filename*") {
        return decode_ext_value(ext);
    }
    let plain = plain.unwrap_or("");
    let mut out = Zeroizing::new(String::with_capacity(plain.len()));
    let mut rest = plain;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let code = rest.get(i..i + 3);
        let decoded = match code {
            Some("%22") => Some('"'),
            Some("%0D") | Some("%0d") => Some('\r'),
            Some("%0A") | Some("%0a") => Some('\n'),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[i + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The raw value of parameter `name` (an RFC 5987 extended parameter, never
/// quoted) in a `Content-Disposition` value.
fn ext_value<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let lower: Vec<u8> = header.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = lower[from..].windows(name.len()).position(|w| w == name) {
        let at = from + found;
        from = at + name.len();
        let boundary_ok = at == 0 || matches!(lower[at - 1], b';' | b' ' | b'\t');
        let rest = header[from..].trim_ascii_start();
        if !boundary_ok || !rest.starts_with(b"=") {
            continue;
        }
        let rest = rest[1..].trim_ascii_start();
        let end = rest.iter().position(|&b| b == b';').unwrap_or(rest.len());
        return Some(rest[..end].trim_ascii_end());
    }
    None
}

/// `charset'language'percent-encoded` with charset UTF-8.
fn decode_ext_value(v: &[u8]) -> Result<Zeroizing<String>, Rejection> {
    let malformed = || Rejection::Malformed("a file name parameter is not valid RFC 5987");
    let mut pieces = v.splitn(3, |&b| b == b'\'');
    let charset = pieces.next().ok_or_else(malformed)?;
    let _language = pieces.next().ok_or_else(malformed)?;
    let encoded = pieces.next().ok_or_else(malformed)?;
    if !charset.eq_ignore_ascii_case(b"utf-8") {
        return Err(malformed());
    }
    let bytes: Zeroizing<Vec<u8>> =
        Zeroizing::new(percent_encoding::percent_decode(encoded).collect());
    match std::str::from_utf8(&bytes) {
        Ok(s) => Ok(Zeroizing::new(s.to_owned())),
        Err(_) => Err(Rejection::InvalidUtf8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn name_from(disposition: &[u8], plain: Option<&str>) -> Result<String, Rejection> {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_bytes(disposition).expect("header"),
        );
        filename_of(&h, plain).map(|z| z.to_string())
    }

    #[test]
    fn file_names_are_decoded_from_each_form_clients_use() {
        type Case<'a> = (&'a [u8], Option<&'a str>, Result<&'a str, Rejection>);
        let cases: &[Case<'_>] = &[
            (
                b"form-data; name=\"f\"; filename=\"a.txt\"",
                Some("a.txt"),
                Ok("a.txt"),
            ),
            (
                b"form-data; name=\"f\"; filename=\"a%22b%0D%0Ac%25.txt\"",
                Some("a%22b%0D%0Ac%25.txt"),
                Ok("a\"b\r\nc%25.txt"),
            ),
            (
                b"form-data; name=\"f\"; filename*=UTF-8''..%2F%C3%A9t%C3%A9%0A%22.txt",
                None,
                Ok("../\u{e9}t\u{e9}\n\".txt"),
            ),
            (
                b"form-data; name=\"f\"; filename=\"x\"; filename*=utf-8'en'y%20z",
                Some("x"),
                Ok("y z"),
            ),
            (b"form-data; name=\"f\"", None, Ok("")),
            (
                b"form-data; name=\"f\"; filename*=latin1''x",
                None,
                Err(Rejection::Malformed(
                    "a file name parameter is not valid RFC 5987",
                )),
            ),
            (
                b"form-data; name=\"f\"; filename*=utf-8''%FF",
                None,
                Err(Rejection::InvalidUtf8),
            ),
        ];
        for (header, plain, want) in cases {
            let got = name_from(header, *plain);
            assert_eq!(
                got.as_deref().map_err(Clone::clone),
                want.clone(),
                "{}",
                String::from_utf8_lossy(header)
            );
        }
    }

    #[test]
    fn a_zeroizing_buffer_grows_and_keeps_its_bytes() {
        let mut b = ZeroizingBuf::new(2);
        for chunk in [&b"ab"[..], b"cde", b"", b"fghij"] {
            b.push(chunk);
        }
        assert_eq!(b.len(), 10);
        assert_eq!(
            b.into_string().as_deref().map(|s| s.as_str()),
            Some("abcdefghij")
        );
        let mut bad = ZeroizingBuf::new(1);
        bad.push(&[0xff]);
        assert!(bad.into_string().is_none());
    }
}
