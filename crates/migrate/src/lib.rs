//! A service's schema migrations, applied once per database however many of its
//! replicas start together (a first install's pods all do). Each version is applied in
//! its own transaction together with its row in the service's ledger table; a replica
//! that loses the race (its statements or its ledger row collide with the winner's)
//! rolls back, waits a moment and looks again, and finds the version applied. Any
//! other failure (a broken statement, a refused login, no database) is returned at
//! once: looking again would only repeat it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use sqlx::{AnyPool, AssertSqlSafe};

/// Migrations in order: (version, SQL of `;`-separated statements).
pub type Migrations = &'static [(i64, &'static str)];

/// Where a service records which versions it applied.
#[derive(Debug, Clone, Copy)]
pub struct Ledger {
    /// The table, one row per applied version.
    pub table: &'static str,
    /// The service, for errors ("chat migration 2 failed").
    pub service: &'static str,
    /// Whether the table records when each version was applied (`applied_at`, Unix
    /// seconds).
    pub timed: bool,
}

/// Looks after a lost race this many times before giving up.
const RACE_RETRIES: u32 = 5;

/// Applies the versions of `migrations` that `ledger` does not list yet.
pub async fn apply(pool: &AnyPool, ledger: Ledger, migrations: Migrations) -> anyhow::Result<()> {
    let mut attempt = 0;
    loop {
        match apply_once(pool, ledger, migrations).await {
            Ok(()) => return Ok(()),
            Err(err) if attempt < RACE_RETRIES && lost_race(&err) => {
                attempt += 1;
                tracing::debug!(service = ledger.service, error = %format!("{err:#}"), attempt, "migration raced another replica; looking again");
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
            }
            Err(err) => return Err(err),
        }
    }
}

async fn apply_once(pool: &AnyPool, ledger: Ledger, migrations: Migrations) -> anyhow::Result<()> {
    let Ledger {
        table,
        service,
        timed,
    } = ledger;
    let columns = if timed {
        "version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL"
    } else {
        "version BIGINT PRIMARY KEY"
    };
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {table} ({columns})"
    )))
    .execute(pool)
    .await
    .with_context(|| format!("{service} migrations: cannot create {table}"))?;
    let select = format!("SELECT version FROM {table} WHERE version = $1");
    let record = if timed {
        format!("INSERT INTO {table} (version, applied_at) VALUES ($1, $2)")
    } else {
        format!("INSERT INTO {table} (version) VALUES ($1)")
    };
    for (version, sql) in migrations {
        let applied: Option<i64> = sqlx::query_scalar(AssertSqlSafe(select.as_str()))
            .bind(*version)
            .fetch_optional(pool)
            .await?;
        if applied.is_some() {
            continue;
        }
        let mut tx = pool.begin().await?;
        for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .with_context(|| format!("{service} migration {version} failed"))?;
        }
        let mut insert = sqlx::query(AssertSqlSafe(record.as_str())).bind(*version);
        if timed {
            insert = insert.bind(unix_secs());
        }
        insert
            .execute(&mut *tx)
            .await
            .with_context(|| format!("{service} migration {version} raced another replica"))?;
        tx.commit().await?;
    }
    Ok(())
}

/// Whether `err` is what a replica gets when another applies the same version at the
/// same moment: its ledger row or one of its tables, indexes or columns exists
/// already, or the database broke a deadlock or a serialization conflict between the
/// two (PostgreSQL), or the database was locked by the other (SQLite).
pub fn lost_race(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<sqlx::Error>())
        .any(|cause| match cause {
            sqlx::Error::Database(db) => {
                db.is_unique_violation()
                    || db
                        .code()
                        .is_some_and(|code| RACE_CODES.contains(&code.as_ref()))
                    || db.message().contains("already exists")
            }
            _ => false,
        })
}

/// Error codes of a lost race. PostgreSQL: serialization failure, deadlock, and a
/// table, object, schema or column that exists already. SQLite: busy, locked.
const RACE_CODES: [&str; 8] = [
    "40001", "40P01", "42P07", "42710", "42P06", "42701", "5", "6",
];

fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
