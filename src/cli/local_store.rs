//! Opening the store from a shell on the server, for the commands that work
//! on it directly (`export`, `ack` without `--url`, `purge`). The store
//! admits one process (a lock on `data_dir`), so each says what to do while `serve` runs.

use anyhow::Context as _;

use crate::config::Config;
use crate::store::RecordStore;

/// The store of `config`; when it cannot be opened (most often because
/// `serve` holds it), the error asks whether the server runs and then says
/// `if_serving`: what to do about that for this command.
pub(super) fn open(config: &Config, if_serving: &str) -> anyhow::Result<RecordStore> {
    let (store, _) = RecordStore::open(config, crate::intake::reindex_recipients(config))
        .with_context(|| {
            format!("while opening the store (is `sealform serve` running? {if_serving})")
        })?;
    Ok(store)
}
