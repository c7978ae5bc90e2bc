//! Replicas of a service starting together against a new PostgreSQL database, as a
//! first install's pods do: every one starts, and each migration is applied once. A
//! broken migration fails with its own error, and only a lost race is looked at again.

use confer_room::store::MasterKey;

/// Replicas started at once per service.
const REPLICAS: usize = 4;

async fn ledger(url: &str, table: &str) -> anyhow::Result<Vec<i64>> {
    let pool = sqlx::AnyPool::connect(url).await?;
    let versions = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT version FROM {table} ORDER BY version"
    )))
    .fetch_all(&pool)
    .await?;
    pool.close().await;
    Ok(versions)
}

#[tokio::test]
async fn room_replicas_starting_together_all_start_and_migrate_once() -> anyhow::Result<()> {
    let url = confer_e2e::backing::fresh_postgres().await?;
    let key = MasterKey::random();
    let starts = (0..REPLICAS).map(|_| confer_room::store::Store::connect(&url, key.clone()));
    let stores = futures_util::future::join_all(starts).await;
    for (replica, store) in stores.iter().enumerate() {
        if let Err(err) = store {
            panic!("room replica {replica} did not start: {err:#}");
        }
    }
    let versions = ledger(&url, "confer_migrations").await?;
    assert_eq!(versions, [1, 2, 3], "each migration once");
    // What the migrations made is usable from every replica.
    let tenant = stores[0]
        .as_ref()
        .expect("started")
        .create_tenant("Acme")
        .await?;
    for store in stores.iter().flatten() {
        assert!(store.api_key(&tenant.api_key).await?.is_some());
    }
    Ok(())
}

#[tokio::test]
async fn chat_replicas_starting_together_all_start_and_migrate_once() -> anyhow::Result<()> {
    let url = confer_e2e::backing::fresh_postgres().await?;
    let starts = (0..REPLICAS).map(|_| confer_chat::store::Store::connect(&url));
    for (replica, store) in futures_util::future::join_all(starts)
        .await
        .into_iter()
        .enumerate()
    {
        if let Err(err) = store {
            panic!("chat replica {replica} did not start: {err:#}");
        }
    }
    let versions = ledger(&url, "confer_chat_migrations").await?;
    assert_eq!(versions, [1, 2, 3, 4, 5], "each migration once");
    Ok(())
}

/// A service's migrations whose second version is broken.
const BROKEN: confer_migrate::Migrations = &[
    (1, "CREATE TABLE kept (id BIGINT PRIMARY KEY)"),
    (
        2,
        "CREATE TABLE half (id BIGINT PRIMARY KEY); CREATE TABLEX oops (id BIGINT)",
    ),
];

const TEST_LEDGER: confer_migrate::Ledger = confer_migrate::Ledger {
    table: "test_migrations",
    service: "test",
    timed: false,
};

#[tokio::test]
async fn a_broken_migration_fails_with_its_error_and_leaves_nothing_half_applied()
-> anyhow::Result<()> {
    let url = confer_e2e::backing::fresh_postgres().await?;
    let pool = sqlx::AnyPool::connect(&url).await?;
    let err = confer_migrate::apply(&pool, TEST_LEDGER, BROKEN)
        .await
        .expect_err("a statement that is no SQL");
    let text = format!("{err:#}");
    assert!(text.contains("test migration 2 failed"), "{text}");
    assert!(text.contains("syntax error"), "{text}");
    // Not a lost race: returned as it is, not looked at again.
    assert!(!confer_migrate::lost_race(&err), "{text}");
    // Version 1 stands; nothing of version 2 does, its first table included.
    assert_eq!(ledger(&url, "test_migrations").await?, [1]);
    let half: Option<String> = sqlx::query_scalar("SELECT to_regclass('half')::text")
        .fetch_one(&pool)
        .await?;
    assert_eq!(half, None, "version 2's first statement rolled back");
    pool.close().await;
    Ok(())
}

#[tokio::test]
async fn what_a_replica_that_lost_the_race_gets_is_told_from_other_failures() -> anyhow::Result<()>
{
    sqlx::any::install_default_drivers();
    let postgres = sqlx::AnyPool::connect(&confer_e2e::backing::fresh_postgres().await?).await?;
    // One connection: each has an in-memory database of its own.
    let sqlite = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await?;
    for (name, pool) in [("postgres", &postgres), ("sqlite", &sqlite)] {
        let run = |sql: &'static str| async move {
            sqlx::query(sql)
                .execute(pool)
                .await
                .map(drop)
                .map_err(anyhow::Error::from)
        };
        run("CREATE TABLE ledger (version BIGINT PRIMARY KEY)").await?;
        run("INSERT INTO ledger (version) VALUES (1)").await?;
        // The winner's ledger row, and its table, exist already.
        let row = run("INSERT INTO ledger (version) VALUES (1)").await;
        let table = run("CREATE TABLE ledger (version BIGINT PRIMARY KEY)").await;
        // Failures of its own.
        let syntax = run("CREATE TABLEX oops (id BIGINT)").await;
        let missing = run("INSERT INTO nowhere (version) VALUES (1)").await;
        for (what, result, race) in [
            ("a duplicate ledger row", row, true),
            ("a table made already", table, true),
            ("a syntax error", syntax, false),
            ("a missing table", missing, false),
        ] {
            let err = result.expect_err(what);
            // As a migration step wraps it.
            let err = err.context("test migration 1 failed");
            assert_eq!(
                confer_migrate::lost_race(&err),
                race,
                "{name}: {what}: {err:#}"
            );
        }
    }
    Ok(())
}
