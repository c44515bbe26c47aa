//! The shared set of used form tokens in PostgreSQL: the table
//! `used_tokens(nonce, day)` (`store/postgres/migrations/0002_used_tokens.sql`)
//! in the records' database, reached through the store's pool.
//!
//! `INSERT ... ON CONFLICT DO NOTHING` tells a first use (one row inserted)
//! from a replay (none) in one statement, whichever node runs it: the
//! primary key decides, and a second node inserting the same nonce at the
//! same moment waits for the first's commit and then inserts nothing.

use crate::store::StoreError;
use crate::store::postgres::{Pool, db_err};

use super::{Nonce, SharedUsedTokens, UsedTokensError};

/// [`SharedUsedTokens`] in the database of the PostgreSQL store.
pub struct PgUsedTokens {
    pool: Pool,
}

impl PgUsedTokens {
    /// The set in the database `pool` reaches.
    pub(crate) fn new(pool: Pool) -> PgUsedTokens {
        PgUsedTokens { pool }
    }

    fn conn(&self) -> Result<crate::store::postgres::Conn, UsedTokensError> {
        self.pool
            .get()
            .map_err(|e| UsedTokensError::Unavailable(e.to_string()))
    }
}

fn unavailable(e: postgres::Error) -> UsedTokensError {
    match db_err(e) {
        StoreError::Unavailable(m) | StoreError::Database(m) => UsedTokensError::Unavailable(m),
        other => UsedTokensError::Unavailable(other.to_string()),
    }
}

impl SharedUsedTokens for PgUsedTokens {
    fn first_use(&self, nonce: &Nonce, day: &str) -> Result<bool, UsedTokensError> {
        let inserted = self
            .conn()?
            .execute(
                "INSERT INTO used_tokens (nonce, day) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&&nonce[..], &day],
            )
            .map_err(unavailable)?;
        Ok(inserted == 1)
    }

    fn forget_before(&self, day: &str) -> Result<u64, UsedTokensError> {
        self.conn()?
            .execute("DELETE FROM used_tokens WHERE day < $1", &[&day])
            .map_err(unavailable)
    }
}
