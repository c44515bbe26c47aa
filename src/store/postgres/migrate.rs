//! The schema of the PostgreSQL backend: the migrations embedded in the
//! binary (`store/postgres/migrations/*.sql`), applied in order at start
//! under a transaction-scoped advisory lock, so that nodes starting together
//! apply each one exactly once. A later feature adds its tables by adding a
//! file there and a line to [`MIGRATIONS`]; a migration, once released, is
//! never edited.

use postgres::Client;

use super::connect::db_err;
use crate::store::StoreError;

/// Every migration, numbered from 1 without gaps, oldest first.
pub(crate) const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("migrations/0001_records.sql")),
    (2, include_str!("migrations/0002_used_tokens.sql")),
    (3, include_str!("migrations/0003_reply_answers.sql")),
];

/// The advisory lock every node takes while it migrates (any constant no
/// other program on the database uses: "sealform" in ASCII).
const MIGRATION_LOCK: i64 = 0x7365_616c_666f_726d;

/// Applies the migrations the database lacks, in one transaction under the
/// advisory lock. Refuses a database a newer sealform has migrated further.
pub(super) fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction().map_err(db_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(db_err)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY)")
        .map_err(db_err)?;
    let current: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .map_err(db_err)?
        .get(0);
    let latest = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    if current > latest {
        return Err(StoreError::Refused(format!(
            "the database's schema is at version {current}, newer than this sealform knows \
             ({latest}): run the newer sealform, or point [store] url at another database"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(sql).map_err(db_err)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[version],
        )
        .map_err(db_err)?;
    }
    tx.commit().map_err(db_err)
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        for (i, (version, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(usize::try_from(*version).ok(), Some(i + 1));
        }
    }

    #[test]
    fn no_migration_stores_a_time_finer_than_the_day() {
        for (_, sql) in MIGRATIONS {
            let sql = sql.to_lowercase();
            for word in [
                "timestamp",
                "now()",
                "current_date",
                "clock_",
                "interval",
                " time ",
            ] {
                assert!(!sql.contains(word), "a migration uses {word}");
            }
        }
    }
}
