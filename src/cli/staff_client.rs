//! The client side of the staff API (`http/staff.rs`), for `pull`, `ack`
//! and `push`: lists, downloads, marks exported and acknowledges records
//! and uploads answers to tipsters (`http/staff_replies.rs`) over HTTP,
//! reading the answers into the same types the server writes them from
//! ([`crate::api::staff`]).
//!
//! The HTTP client is reqwest's blocking client without TLS (the crate was
//! already in the build for the tests, so it adds no new dependency tree):
//! the staff API is meant to be reached over loopback, an SSH tunnel, a VPN
//! or an authenticated onion service, never directly over the open internet. It
//! ignores proxy settings from the environment, so the token goes only to
//! `--url`. Records are streamed, never held in memory, and a listing is
//! read only up to a bound.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use zeroize::Zeroizing;

use crate::api::staff::{PushOutcome, PushedAnswer, StaffList, StaffRecord};
use crate::receipt::Receipt;
use crate::replies::{AnswerId, MailboxId};

/// A staff API at one base URL, with the token it is reached with.
pub(super) struct StaffClient {
    client: reqwest::blocking::Client,
    base: String,
    token: Zeroizing<String>,
}

impl StaffClient {
    /// A client for the staff API at `url` (plain `http://`), with the token
    /// in `token_file`; `stall` bounds each wait for the server.
    pub(super) fn new(
        url: &str,
        token_file: &Path,
        stall: Duration,
    ) -> anyhow::Result<StaffClient> {
        if !url.to_ascii_lowercase().starts_with("http://") {
            bail!(
                "--url must start with http:// (got {url:?}): pull and ack speak plain HTTP, and \
                 the staff API is reached over loopback, an SSH tunnel, a VPN or an onion \
                 service, which do the encrypting (README, \"Once: a token for the staff API\")"
            );
        }
        let token = Zeroizing::new(
            std::fs::read_to_string(token_file)
                .with_context(|| format!("while reading {}", token_file.display()))?,
        );
        let token = Zeroizing::new(token.trim().to_owned());
        if token.is_empty() {
            bail!(
                "{} is empty; put the staff token in it",
                token_file.display()
            );
        }
        // The timeout bounds each wait (for an answer, each read of a body),
        // not a whole download: a 2.8 GiB record over an onion service takes
        // far longer than any total limit would allow. No proxy from the
        // environment: the token must go only where --url says (for an
        // onion service, run the command under `torsocks`).
        let client = reqwest::blocking::Client::builder()
            .timeout(stall)
            .connect_timeout(CONNECT)
            .no_proxy()
            .build()
            .context("while setting up the HTTP client")?;
        Ok(StaffClient {
            client,
            base: url.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// Sends `method` to `path` under `/api/v1/staff/`; any answer but a
    /// 2xx is an error that says what to check.
    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> anyhow::Result<reqwest::blocking::Response> {
        self.request_with(method, path, None)
    }

    /// [`StaffClient::request`] with a body (`application/pgp-encrypted`).
    fn request_with(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<reqwest::blocking::Response> {
        let mut req = self
            .client
            .request(method, format!("{}/api/v1/staff/{path}", self.base))
            .bearer_auth(self.token.as_str());
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/pgp-encrypted")
                .body(body);
        }
        let res = req.send().context("while contacting the staff API")?;
        match res.status().as_u16() {
            200..=299 => Ok(res),
            401 => bail!(
                "the server refused the token (401): check --token-file and the server's staff.tokens"
            ),
            403 => bail!(
                "the token may not do this (403): its scope in the server's staff.tokens (can) \
                 leaves it out"
            ),
            404 if path == "submissions" || path.starts_with("submissions?") => {
                bail!(
                    "there is no staff API at this URL (404): `sealform check` on the server says where it is \
                     served (staff.listen, or staff.on_public_listener = true for server.listen), if at all"
                )
            }
            429 => bail!("too many failed token attempts (429): wait a minute and try again"),
            409 => bail!("the server holds other bytes under this answer's id (409)"),
            413 => bail!("the answer is larger than the server's [replies] max_answer_bytes (413)"),
            422 => bail!(
                "the mailbox is full (422): it holds [replies] max_per_mailbox answers until \
                 older ones expire"
            ),
            s => bail!("the staff API answered {s}"),
        }
    }

    /// The stored records: new ones, or `all` of them.
    pub(super) fn list(&self, all: bool) -> anyhow::Result<Vec<StaffRecord>> {
        let state = if all { "all" } else { "new" };
        let res = self.request(reqwest::Method::GET, &format!("submissions?state={state}"))?;
        let mut body = Vec::new();
        res.take(MAX_LISTING_BYTES + 1)
            .read_to_end(&mut body)
            .context("while reading the listing")?;
        if body.len() as u64 > MAX_LISTING_BYTES {
            bail!(
                "the listing is larger than {MAX_LISTING_BYTES} bytes; is --url a sealform staff API?"
            );
        }
        let listing: StaffList =
            serde_json::from_slice(&body).context("while reading the listing")?;
        Ok(listing.submissions)
    }

    /// The record's bytes, as a stream, and their SHA-256 if the server
    /// sent it.
    pub(super) fn fetch(
        &self,
        receipt: &Receipt,
    ) -> anyhow::Result<(reqwest::blocking::Response, Option<String>)> {
        let res = self.request(reqwest::Method::GET, &format!("submissions/{receipt}"))?;
        let sha = res
            .headers()
            .get("x-sealform-sha256")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((res, sha))
    }

    /// Marks the record copied into a bundle.
    pub(super) fn mark_exported(&self, receipt: &Receipt) -> anyhow::Result<()> {
        self.request(
            reqwest::Method::POST,
            &format!("submissions/{receipt}/exported"),
        )?;
        Ok(())
    }

    /// Acknowledges the record: the server deletes its copy.
    pub(super) fn ack(&self, receipt: &Receipt) -> anyhow::Result<()> {
        self.request(reqwest::Method::POST, &format!("submissions/{receipt}/ack"))?;
        Ok(())
    }
}

impl StaffClient {
    /// Uploads one answer to a tipster's mailbox.
    pub(super) fn put_answer(
        &self,
        mailbox: &MailboxId,
        id: &AnswerId,
        ciphertext: Vec<u8>,
    ) -> anyhow::Result<PushOutcome> {
        let res = self.request_with(
            reqwest::Method::PUT,
            &format!("mailboxes/{mailbox}/replies/{id}"),
            Some(ciphertext),
        )?;
        let mut body = Vec::new();
        res.take(64 * 1024)
            .read_to_end(&mut body)
            .context("while reading the answer")?;
        let pushed: PushedAnswer =
            serde_json::from_slice(&body).context("while reading the answer")?;
        Ok(pushed.outcome)
    }
}

/// The longest wait for the staff API, for an answer or for the next bytes
/// of a body, unless `pull --stall-secs` says otherwise.
pub(super) const STALL: Duration = Duration::from_secs(300);

/// The longest wait to connect (an onion service can take a minute to
/// reach; a server that is down should not cost five).
const CONNECT: Duration = Duration::from_secs(90);

/// Whether `e` is a failure of the connection to the staff API (refused,
/// timed out, reset, cut off mid-answer, or no bytes for the stall time)
/// rather than the server refusing one record, which it does with a status
/// code: then the run stops instead of trying every record in turn. A body
/// read error reaches us as an `io::Error` that wraps reqwest's error, which
/// the error chain does not show, so that is looked into too.
pub(super) fn server_gone(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        let wrapped = cause
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<reqwest::Error>());
        cause
            .downcast_ref::<reqwest::Error>()
            .or(wrapped)
            .is_some_and(|r| r.status().is_none())
    })
}

/// A larger listing is refused rather than read into memory (a listing
/// entry takes about 200 bytes: this is some 300,000 records).
const MAX_LISTING_BYTES: u64 = 64 << 20;
