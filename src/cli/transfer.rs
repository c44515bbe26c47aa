//! What `sealform pull`, `export` and `ack` share: the [`Source`] of the
//! records (the staff API over HTTP, or the store itself from a shell on
//! the server), the process hardening they start with, and how their
//! errors reach the terminal.
//!
//! `pull` (`cli/pull.rs`) talks to the staff API through
//! `cli/staff_client.rs` from an online machine; `export` opens the store
//! directly (with `serve` stopped: the store admits one process).
//! Both write the same bundle (see [`crate::bundle`]) and mark each record
//! exported only once its file is durably in place. `ack` (`cli/ack.rs`)
//! acknowledges a bundle's verified records, for the readers
//! `cli/readers.rs` names. Nothing here decrypts.

use std::io::Read;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context as _, bail};

use super::staff_client::StaffClient;
use crate::api::staff::StaffRecord;
use crate::config::Config;
use crate::receipt::Receipt;
use crate::store::{RecordState, RecordStore};

/// Where records come from: the staff API or the store itself.
pub(super) enum Source {
    /// The staff API, over HTTP.
    Remote(StaffClient),
    /// The store, opened by this process.
    Local(RecordStore),
}

impl Source {
    /// The store of the config at `config_path`.
    pub(super) fn local(config_path: &Path) -> anyhow::Result<Source> {
        let config = Config::load(config_path)?;
        let store = super::local_store::open(
            &config,
            "The index admits one process: stop the server, or use `sealform pull` against \
             its staff API",
        )?;
        Ok(Source::Local(store))
    }

    /// The records not yet exported, or `all` of them, as the staff API
    /// lists them.
    pub(super) fn list(&self, all: bool) -> anyhow::Result<Vec<StaffRecord>> {
        match self {
            Source::Remote(client) => client.list(all),
            Source::Local(store) => Ok(store
                .list()?
                .into_iter()
                .filter(|(_, e)| all || e.state == RecordState::New)
                .map(|(r, e)| StaffRecord::of(&r, e))
                .collect()),
        }
    }

    /// The record's bytes, as a stream, and, from the server, their
    /// SHA-256.
    pub(super) fn fetch(
        &self,
        receipt: &Receipt,
    ) -> anyhow::Result<(Box<dyn Read>, Option<String>)> {
        match self {
            Source::Remote(client) => {
                let (res, sha) = client.fetch(receipt)?;
                Ok((Box::new(res), sha))
            }
            Source::Local(store) => {
                let Some(record) = store
                    .open_record(receipt)
                    .context("while reading a record")?
                else {
                    bail!("the record's ciphertext is not in the store (acknowledged already?)");
                };
                Ok((Box::new(record), None))
            }
        }
    }

    /// Marks the record copied into a bundle.
    pub(super) fn mark_exported(&self, receipt: &Receipt) -> anyhow::Result<()> {
        match self {
            Source::Remote(client) => client.mark_exported(receipt),
            Source::Local(store) => {
                store.mark_exported(receipt)?;
                Ok(())
            }
        }
    }

    /// Acknowledges the record: its spool file is deleted.
    pub(super) fn ack(&self, receipt: &Receipt) -> anyhow::Result<()> {
        match self {
            Source::Remote(client) => client.ack(receipt),
            Source::Local(store) => {
                if store.ack(receipt, SystemTime::now())?.is_none() {
                    bail!("the store does not know this record (purged already?)");
                }
                Ok(())
            }
        }
    }
}

/// No core dump and no ptrace for a process that holds the staff token;
/// with `mlock`, no page of it in swap.
pub(super) fn harden(mlock: bool) -> anyhow::Result<()> {
    crate::harden::harden_process(mlock).context("while hardening the process")
}

/// `e` on one line for the terminal: a cause can quote what the server
/// sent (a listing that does not parse names the value it choked on) or a
/// manifest on the transfer medium, so control characters are escaped.
pub(super) fn told(e: &anyhow::Error) -> String {
    super::printable(&super::describe(e))
}

/// `r` with its error as [`told`] says it (`main` prints it as it is).
pub(super) fn escaped<T>(r: anyhow::Result<T>) -> anyhow::Result<T> {
    r.map_err(|e| anyhow::anyhow!(told(&e)))
}
