//! The streamed way in: an upload's text fields and files, in any order,
//! sealed into one record while they arrive, in bounded memory. It owns the
//! events an upload is made of ([`UploadEvent`]), the envelope they are
//! written into and the free-space floor; the record's start and commit are
//! those of every submission (`intake/record.rs`).
//!
//! The HTTP layer reads `multipart/form-data` and sends [`UploadEvent`]s
//! through a bounded channel; [`Intake::submit_stream`] runs [`seal_stream`]
//! on a blocking thread, which writes the envelope into a pending spool file
//! as the events come and hands the record to the committer only after
//! [`UploadEvent::End`]. So memory stays bounded by the channel (a few
//! chunks) whatever the size of the files, and the plaintext never exists
//! anywhere but in those chunks.
//!
//! Layout of an upload's envelope (see [`crate::mime`]):
//! 1. text fields that arrive before the first file are kept (each is bounded
//!    by its `max_len`), checked, and written as the text part when the first
//!    file starts;
//! 2. each file becomes an attachment part (its bytes as they are) as they arrive; its name
//!    and content type exist only in that part's headers, inside the
//!    ciphertext;
//! 3. text fields that arrive after a file are kept too, and the fields the
//!    first text part could not show follow the attachments as a second text
//!    part, "(continued)";
//! 4. the JSON part comes last, with every field and the list of attachments,
//!    then the padding, computed over the whole envelope.
//!
//! Browsers send fields in document order, so a form whose file inputs come
//! last yields a single text part. Without any file the envelope is exactly
//! that of a urlencoded submission.
//!
//! Every failure — the channel closing before `End` (client gone, a limit
//! hit, a broken body), a rejected field, a full disk, free space falling
//! under `min_free_bytes` — drops the pending record, which deletes its temp
//! file before [`seal_stream`] returns: nothing is committed or indexed. This
//! module never logs and never puts a submitted byte into an error.
//!
//! [`Intake::submit_stream`]: super::Intake::submit_stream

use std::io::{self, Write};
use std::path::Path;
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use super::record::SealedRecord;
use super::{Intake, IntakeError};
use crate::config::FormConfig;
use crate::mime::{EnvelopeField, EnvelopeWriter, FieldValue, Head};
use crate::replies::Derived;
use crate::store::Pending;
use crate::submission::{RawValue, Rejection, Submission};

/// A growing upload record is synced to disk after this many bytes.
const WRITE_BEHIND_EVERY: u64 = 16 * 1024 * 1024;

/// Free space is checked again after this many bytes of ciphertext.
const SPACE_CHECK_EVERY: u64 = 4 * 1024 * 1024;

/// One step of an upload, in the order the client sent it. No `Debug`: it
/// carries plaintext.
pub enum UploadEvent {
    /// A complete text field: form field number `field` (not a `file` field).
    Text {
        /// Index of the field in the form.
        field: usize,
        /// The value, as sent.
        value: Zeroizing<String>,
    },
    /// A file starts, for form field number `field` (a `file` field).
    FileStart {
        /// Index of the field in the form.
        field: usize,
        /// The client's file name (data, never a path).
        filename: Zeroizing<String>,
        /// The client's content type.
        content_type: String,
    },
    /// The next bytes of the current file.
    Data(Bytes),
    /// The current file is complete.
    FileEnd,
    /// The request is complete: validate and commit.
    End,
}

/// Why an upload was not stored.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The events stopped before [`UploadEvent::End`]: the client went away
    /// or the HTTP layer stopped reading.
    #[error("the upload ended before it was complete")]
    Incomplete,
    /// The events came in an impossible order (a bug in the HTTP layer).
    #[error("upload events out of order")]
    OutOfOrder,
    /// The fields failed the form's rules.
    #[error("the submission was refused: {0}")]
    Rejected(Rejection),
    /// Sealing or storing failed (a full disk or the free-space floor
    /// included: see [`IntakeError::is_storage_full`]).
    #[error(transparent)]
    Intake(#[from] IntakeError),
}

/// The free-space floor was reached while writing.
#[derive(Debug, thiserror::Error)]
#[error("free space in data_dir fell under min_free_bytes")]
struct FloorReached;

/// Bytes available to unprivileged users on the file system holding `dir`.
pub fn available_space(dir: &Path) -> io::Result<u64> {
    let s = rustix::fs::statvfs(dir)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// A writer that stops with a `StorageFull` error once free space, probed
/// every [`SPACE_CHECK_EVERY`] bytes (and before the first), is under
/// `floor`. The error kind makes the HTTP layer answer 503.
struct FloorGuard<W, P> {
    inner: W,
    probe: P,
    floor: u64,
    unchecked: Option<u64>,
}

impl<W: Write, P: FnMut() -> io::Result<u64>> FloorGuard<W, P> {
    /// Guards `inner`; `probe` returns the free space now.
    fn new(inner: W, floor: u64, probe: P) -> Self {
        FloorGuard {
            inner,
            probe,
            floor,
            unchecked: None,
        }
    }

    /// The guarded writer.
    fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write, P: FnMut() -> io::Result<u64>> Write for FloorGuard<W, P> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let due = self.unchecked.is_none_or(|n| n >= SPACE_CHECK_EVERY);
        if due {
            if (self.probe)()? < self.floor {
                return Err(io::Error::new(io::ErrorKind::StorageFull, FloorReached));
            }
            self.unchecked = Some(0);
        }
        let n = self.inner.write(buf)?;
        self.unchecked = Some(self.unchecked.unwrap_or(0) + n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A pending record synced to disk every [`WRITE_BEHIND_EVERY`] bytes, so a
/// large upload does not pile up dirty pages that would slow every other
/// record's fsync and its own commit.
struct WriteBehind {
    pending: Pending,
    unsynced: u64,
}

impl Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.pending.write(buf)?;
        self.unsynced += n as u64;
        if self.unsynced >= WRITE_BEHIND_EVERY {
            self.pending.sync_data()?;
            self.unsynced = 0;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.pending.flush()
    }
}

/// Why writing an upload's envelope stopped: a write failure, or a reason
/// of ours.
enum EnvelopeStop {
    Io(io::Error),
    Upload(UploadError),
}

impl From<io::Error> for EnvelopeStop {
    fn from(e: io::Error) -> EnvelopeStop {
        EnvelopeStop::Io(e)
    }
}

/// Seals the upload whose events arrive on `events` to `form`'s recipients
/// into a pending record, once [`UploadEvent::End`] arrives and the fields
/// pass the form's rules; free space is watched (`min_free_bytes`) and the
/// file synced as it grows. Blocking: run it on a blocking thread. On any
/// error the temp file is gone when this returns.
pub(super) fn seal_stream(
    intake: &Intake,
    form: &FormConfig,
    mut events: mpsc::Receiver<UploadEvent>,
    now: SystemTime,
    reply: Option<&Derived>,
) -> Result<SealedRecord, UploadError> {
    let data_dir = intake.config.server.data_dir.clone();
    let floor = intake.config.server.min_free_bytes;
    // Records in a database take no room in data_dir.
    let watch = intake.config.stores_in_data_dir();
    let guarded = |pending| {
        let synced = WriteBehind {
            pending,
            unsynced: 0,
        };
        FloorGuard::new(synced, floor, move || {
            if watch {
                available_space(&data_dir)
            } else {
                Ok(u64::MAX)
            }
        })
    };
    let unguarded = |guard: FloorGuard<WriteBehind, _>| guard.into_inner().pending;
    let mut stopped = None;
    let sealed = intake.seal_record(form, now, reply, guarded, unguarded, |w, head| {
        write_envelope(w, form, head, &mut events).map_err(|stop| match stop {
            EnvelopeStop::Io(e) => e,
            EnvelopeStop::Upload(e) => {
                stopped = Some(e);
                io::Error::other("upload stopped")
            }
        })
    });
    // The pending record is dropped (its temp file deleted) on any error.
    if let Some(e) = stopped {
        return Err(e);
    }
    Ok(sealed?)
}

fn next(events: &mut mpsc::Receiver<UploadEvent>) -> Result<UploadEvent, EnvelopeStop> {
    events
        .blocking_recv()
        .ok_or(EnvelopeStop::Upload(UploadError::Incomplete))
}

fn rejected(r: Rejection) -> EnvelopeStop {
    EnvelopeStop::Upload(UploadError::Rejected(r))
}

/// Copies raw fields (into fresh zeroizing buffers).
fn copy_raw(raw: &[(String, RawValue)]) -> Vec<(String, RawValue)> {
    raw.iter()
        .map(|(n, v)| {
            let v = match v {
                RawValue::Text(t) => RawValue::Text(t.clone()),
                RawValue::Bool(b) => RawValue::Bool(*b),
                RawValue::Other => RawValue::Other,
            };
            (n.clone(), v)
        })
        .collect()
}

fn reborrow<'a>(f: &EnvelopeField<'a>) -> EnvelopeField<'a> {
    EnvelopeField {
        name: f.name,
        label: f.label,
        value: match f.value {
            FieldValue::Text(t) => FieldValue::Text(t),
            FieldValue::Checked(c) => FieldValue::Checked(c),
        },
    }
}

/// Writes the envelope of the upload whose events arrive on `events`, in
/// the layout the module's documentation describes.
fn write_envelope(
    w: &mut dyn Write,
    form: &FormConfig,
    head: &Head<'_>,
    events: &mut mpsc::Receiver<UploadEvent>,
) -> Result<(), EnvelopeStop> {
    let mut envelope = EnvelopeWriter::start(w, head)?;
    let mut early: Vec<(String, RawValue)> = Vec::new();
    let mut late: Vec<(String, RawValue)> = Vec::new();
    let mut files = vec![0usize; form.fields.len()];
    let mut any_file = false;
    let field_name = |i: usize| {
        form.fields
            .get(i)
            .map(|f| f.name.clone())
            .ok_or(EnvelopeStop::Upload(UploadError::OutOfOrder))
    };
    loop {
        match next(events)? {
            UploadEvent::Text { field, value } => {
                let list = if any_file { &mut late } else { &mut early };
                list.push((field_name(field)?, RawValue::Text(value)));
            }
            UploadEvent::FileStart {
                field,
                filename,
                content_type,
            } => {
                let name = field_name(field)?;
                if !any_file {
                    any_file = true;
                    write_early_fields(&mut envelope, form, &early)?;
                }
                files[field] += 1;
                let mut part = envelope.attachment(&name, &filename, &content_type)?;
                loop {
                    match next(events)? {
                        UploadEvent::Data(chunk) => part.write_all(&chunk)?,
                        UploadEvent::FileEnd => break,
                        _ => return Err(EnvelopeStop::Upload(UploadError::OutOfOrder)),
                    }
                }
                part.finish()?;
            }
            UploadEvent::End => break,
            UploadEvent::Data(_) | UploadEvent::FileEnd => {
                return Err(EnvelopeStop::Upload(UploadError::OutOfOrder));
            }
        }
    }
    let early_names: Vec<String> = early.iter().map(|(n, _)| n.clone()).collect();
    let mut all = early;
    all.append(&mut late);
    let submission = Submission::validate_with_files(form, all, &files).map_err(rejected)?;
    let fields = submission.envelope_fields(form);
    if !any_file {
        envelope.text_part(&form.title, &fields)?;
    } else {
        let rest: Vec<EnvelopeField<'_>> = fields
            .iter()
            .filter(|f| !early_names.iter().any(|n| n == f.name))
            .map(reborrow)
            .collect();
        if !rest.is_empty() {
            envelope.text_part(&format!("{} (continued)", form.title), &rest)?;
        }
    }
    envelope.json_part(head, &fields)?;
    envelope.finish()?;
    Ok(())
}

/// The text part of the fields that came before the first file, once they
/// pass the form's rules so far: a bad field fails the upload before
/// gigabytes are sealed.
fn write_early_fields<W: Write>(
    envelope: &mut EnvelopeWriter<W>,
    form: &FormConfig,
    early: &[(String, RawValue)],
) -> Result<(), EnvelopeStop> {
    let partial = Submission::validate_partial(form, copy_raw(early)).map_err(rejected)?;
    let shown: Vec<EnvelopeField<'_>> = partial
        .envelope_fields(form)
        .iter()
        .filter(|f| early.iter().any(|(n, _)| n == f.name))
        .map(reborrow)
        .collect();
    envelope.text_part(&form.title, &shown)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_guard_stops_writing_once_free_space_is_under_the_floor() {
        let mut free = 10 * SPACE_CHECK_EVERY;
        let mut out = Vec::new();
        let mut probes = 0;
        let chunk = vec![0u8; 1024 * 1024];
        let mut written = 0u64;
        let err = {
            let mut guard = FloorGuard::new(&mut out, 5 * SPACE_CHECK_EVERY, || {
                probes += 1;
                let now = free;
                free -= SPACE_CHECK_EVERY;
                Ok(now)
            });
            loop {
                match guard.write_all(&chunk) {
                    Ok(()) => written += chunk.len() as u64,
                    Err(e) => break e,
                }
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert!(err.get_ref().is_some_and(|e| e.is::<FloorReached>()));
        // A probe every SPACE_CHECK_EVERY bytes, each seeing that much less
        // free space: the seventh sees 4 of them left, under the floor of 5.
        assert_eq!(written, 6 * SPACE_CHECK_EVERY);
        assert_eq!(probes, 7);
        assert_eq!(out.len() as u64, written);
    }

    #[test]
    fn available_space_reports_the_file_system_of_a_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(available_space(dir.path()).expect("statvfs") > 0);
        assert!(available_space(&dir.path().join("missing")).is_err());
    }
}
