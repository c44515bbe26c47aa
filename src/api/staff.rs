//! The staff API's bodies (`http/staff.rs` answers them,
//! `cli/staff_client.rs` reads them): the listing of stored records, one
//! record's metadata (also the answer to marking it exported or
//! acknowledging it), and the listing's `?state=` filter. Only metadata:
//! nothing finer than a day, nothing of the plaintext.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::receipt::Receipt;
use crate::store::{IndexEntry, RecordState};

/// `{"submissions": [...]}`: the records a listing found.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StaffList {
    /// The records, in receipt order (random, so it says nothing about
    /// arrival).
    pub submissions: Vec<StaffRecord>,
}

/// One stored record's metadata.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StaffRecord {
    /// The record's receipt.
    #[schema(pattern = "^[a-z2-7]{26}$")]
    pub receipt: String,
    /// Size of the spool file in bytes (padded, so a size bucket).
    #[serde(default)]
    #[schema(required = true)]
    pub size: u64,
    /// Day of arrival (UTC); nothing finer is kept.
    #[schema(format = Date)]
    pub day: String,
    /// Where the record is in the staff routine.
    pub state: RecordState,
    /// The form's id, kept only while a staff token is limited to some
    /// forms; null otherwise, and for a record indexed again from its spool
    /// file.
    #[serde(default)]
    #[schema(required = false)]
    pub form: Option<String>,
    /// Primary fingerprints of the certificates it is sealed to (key IDs
    /// for keys not in the server's keyring; empty for hidden recipients).
    #[serde(default)]
    #[schema(required = true)]
    pub recipients: Vec<String>,
}

impl StaffRecord {
    /// The record `receipt` as its index entry describes it.
    pub fn of(receipt: &Receipt, entry: IndexEntry) -> StaffRecord {
        StaffRecord {
            receipt: receipt.to_string(),
            size: entry.size,
            day: entry.day,
            state: entry.state,
            form: entry.form,
            recipients: entry.recipients,
        }
    }
}

/// The listing's `?state=`: which records to list (new when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ListState {
    /// Not yet exported.
    New,
    /// Exported, not yet acknowledged.
    Exported,
    /// Every record.
    All,
}

impl ListState {
    /// The record state this filter keeps (`None`: every one).
    pub fn keeps(self) -> Option<RecordState> {
        match self {
            ListState::New => Some(RecordState::New),
            ListState::Exported => Some(RecordState::Exported),
            ListState::All => None,
        }
    }
}

/// `GET /api/v1/staff/status`: the daily digest's state (`notify` is null
/// without `[notify]`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StaffStatus {
    /// The digest's state, if the server sends one.
    pub notify: Option<DigestStatus>,
}

/// The digest's slot and its state per reader.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DigestStatus {
    /// The daily time it is sent (UTC, `HH:MM` or `HH:MM:SS`).
    pub at: String,
    /// Per reader, in `notify.readers` order.
    pub readers: Vec<ReaderStatus>,
}

/// What staff see of one reader (`GET /api/v1/staff/status`): never the
/// address.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ReaderStatus {
    /// The position in `notify.readers`.
    pub reader: usize,
    /// The certificate the digest was last encrypted to (or the configured
    /// fingerprint before the first digest).
    pub fingerprint: Option<String>,
    /// When the last digest was accepted by the relay (RFC 3339, UTC).
    pub last_digest: Option<String>,
    /// Why the last round sent this reader nothing, if it did not.
    pub problem: Option<String>,
}

/// The answer to `PUT /api/v1/staff/mailboxes/{mailbox}/replies/{id}`: the
/// answer's id and what this push did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PushedAnswer {
    /// The answer's id.
    #[schema(pattern = "^[a-z2-7]{26}$")]
    pub id: String,
    /// `stored` (201) or `already_stored` (200: the same bytes were there).
    pub outcome: PushOutcome,
}

/// What a push of an answer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PushOutcome {
    /// Stored now, durably.
    Stored,
    /// The same bytes were stored under this id before.
    AlreadyStored,
}
