use super::*;
use crate::model::RoomSettings;
use crate::store::OutboxEvent;

async fn memory_store() -> Store {
    Store::connect("sqlite::memory:", MasterKey::random())
        .await
        .expect("in-memory SQLite opens")
}

#[tokio::test]
async fn tenants_keep_their_secret_sealed() {
    let store = memory_store().await;
    let created = store.create_tenant("Acme").await.expect("created");
    let (tenant, secret) = store
        .api_key(&created.api_key)
        .await
        .expect("lookup")
        .expect("key exists");
    assert_eq!(tenant, created.tenant);
    assert_eq!(secret, created.api_secret);
    let stored: String = sqlx::query_scalar("SELECT secret_sealed FROM api_keys")
        .fetch_one(store.pool())
        .await
        .expect("row");
    assert!(
        !stored.contains(&created.api_secret),
        "stored in plain text"
    );
    assert!(store.api_key("AKnope").await.expect("lookup").is_none());
}

/// A pool size asked for SQLite is ignored: a second connection to `sqlite::memory:`
/// would be a second, empty database, and concurrent calls would land on either.
#[tokio::test]
async fn sqlite_keeps_one_connection_whatever_is_asked() {
    let store = Store::connect_with("sqlite::memory:", MasterKey::random(), 16)
        .await
        .expect("in-memory SQLite opens");
    let created = store.create_tenant("Acme").await.expect("created");
    let lookups = (0..16).map(|_| store.api_key(&created.api_key));
    for found in futures_util::future::join_all(lookups).await {
        assert!(
            found.expect("lookup").is_some(),
            "every call sees the one database"
        );
    }
    assert_eq!(store.pool().size(), 1);
}

#[tokio::test]
async fn migrations_run_once() {
    let store = memory_store().await;
    store
        .migrate(SQLITE_MIGRATIONS)
        .await
        .expect("second run is a no-op");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM confer_migrations")
        .fetch_one(store.pool())
        .await
        .expect("count");
    assert_eq!(n, SQLITE_MIGRATIONS.len() as i64);
}

#[tokio::test]
async fn rooms_are_unique_per_tenant() {
    let store = memory_store().await;
    let a = store.create_tenant("A").await.expect("a");
    let b = store.create_tenant("B").await.expect("b");
    let settings = RoomSettings::default();
    assert!(
        store
            .insert_room(&a.tenant, "r", &settings, None)
            .await
            .expect("insert")
    );
    assert!(
        !store
            .insert_room(&a.tenant, "r", &settings, None)
            .await
            .expect("dup")
    );
    assert!(
        store
            .insert_room(&b.tenant, "r", &settings, None)
            .await
            .expect("other tenant")
    );
    assert_eq!(store.rooms(&a.tenant).await.expect("list").len(), 1);
    assert!(store.delete_room(&a.tenant, "r").await.expect("delete"));
    assert!(store.room(&a.tenant, "r").await.expect("get").is_none());
    assert!(store.room(&b.tenant, "r").await.expect("get").is_some());
}

#[tokio::test]
async fn the_outbox_hands_out_one_event_per_room_in_order() {
    let store = memory_store().await;
    let t = store.create_tenant("A").await.expect("tenant");
    store
        .create_webhook(&t.tenant, "http://127.0.0.1:9/hook")
        .await
        .expect("hook");
    for (room, id) in [("r1", "e1"), ("r1", "e2"), ("r2", "e3")] {
        store
            .enqueue(
                &t.tenant,
                room,
                &OutboxEvent {
                    name: "x",
                    id: id.into(),
                    body: "{}".into(),
                },
            )
            .await
            .expect("enqueue");
    }
    let due = store.due_deliveries(10).await.expect("due");
    let ids: Vec<&str> = due.iter().map(|d| d.event_id.as_str()).collect();
    assert_eq!(ids, ["e1", "e3"], "e2 waits behind e1");
    store
        .delivery_failed(due[0].seq, 1, "boom", Some(i64::MAX))
        .await
        .expect("fail");
    let due = store.due_deliveries(10).await.expect("due");
    let ids: Vec<&str> = due.iter().map(|d| d.event_id.as_str()).collect();
    assert_eq!(ids, ["e3"], "a failed event still holds its room back");
    store
        .delivery_failed(due[0].seq, 5, "gone", None)
        .await
        .expect("dead");
    let dead = store.dead_letters(&t.tenant).await.expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event_id, "e3");
    assert_eq!(dead[0].last_error, "gone");
}
