//! Replicas of a service starting together against a new PostgreSQL database, as a
//! first install's pods do: every one starts, and each migration is applied once.

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
    assert_eq!(versions, [1, 2], "each migration once");
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
    assert_eq!(versions, [1, 2, 3], "each migration once");
    Ok(())
}
