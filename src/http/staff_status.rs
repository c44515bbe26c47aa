//! The body of `GET /api/v1/staff/status` (routed and authorized with the
//! other staff routes, in `staff.rs`): the daily digest's state for staff,
//! per reader, by position and certificate fingerprint, never by address:
//! the time of the last digest the relay accepted, and why the last one
//! sent nothing, if it did not. `notify` is null without `[notify]`.

use crate::api::staff::{DigestStatus, StaffStatus};
use crate::config::Config;
use crate::notify::Ledger;

/// The status document of the server configured by `config`, whose digest
/// task writes `ledger` (created with the server's state when `[notify]` is
/// configured).
pub fn body(config: &Config, ledger: Option<&Ledger>) -> StaffStatus {
    let notify = config
        .notify
        .as_ref()
        .zip(ledger)
        .map(|(notify, ledger)| DigestStatus {
            at: notify.at.clone(),
            readers: ledger.snapshot(),
        });
    StaffStatus { notify }
}
