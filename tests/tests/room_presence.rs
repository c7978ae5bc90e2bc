//! Participants counted in and out of rooms on real PostgreSQL (and on SQLite, as
//! `confer dev` runs it): changes committed in groups keep each room's count and its
//! webhook events in the order they happened, a big room's burst of joins and leaves
//! commits in a few transactions, and a change the database refuses fails alone.

use confer_room::model::RoomSettings;
use confer_room::store::{
    MAX_GROUP, MasterKey, OutboxEvent, Presence, PresenceChange, PresenceLog, PresenceStats, Store,
};

/// A store with a tenant, a webhook endpoint (so every event is queued) and rooms
/// `a` and `b`; and its URL, to read the outbox beside it.
struct Db {
    name: &'static str,
    url: String,
    store: Store,
    tenant: String,
    /// The SQLite file, removed with the `Db`.
    file: Option<std::path::PathBuf>,
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            let _ = std::fs::remove_file(file);
        }
    }
}

async fn db(name: &'static str) -> anyhow::Result<Db> {
    let (url, file) = if name == "sqlite" {
        let file =
            std::env::temp_dir().join(format!("confer-room-{:08x}.db", rand::random::<u32>()));
        (format!("sqlite://{}?mode=rwc", file.display()), Some(file))
    } else {
        (confer_e2e::backing::fresh_postgres().await?, None)
    };
    let store = Store::connect(&url, MasterKey::random()).await?;
    let tenant = store.create_tenant("Acme").await?.tenant;
    store
        .create_webhook(&tenant, "http://127.0.0.1:9/hook")
        .await?;
    for room in ["a", "b"] {
        store
            .insert_room(&tenant, room, &RoomSettings::default(), None)
            .await?;
    }
    Ok(Db {
        name,
        url,
        store,
        tenant,
        file,
    })
}

fn event(name: &'static str, id: String) -> OutboxEvent {
    OutboxEvent {
        name,
        body: format!(r#"{{"id":"{id}"}}"#),
        id,
    }
}

/// A participant `tag` in (`delta` 1) or out (-1) of `room`.
fn change(db: &Db, room: &str, delta: i64, tag: &str) -> PresenceChange {
    let name = if delta > 0 {
        "participant_joined"
    } else {
        "participant_left"
    };
    PresenceChange {
        tenant: db.tenant.clone(),
        room: room.into(),
        delta,
        events: vec![event(name, tag.into())],
        started: event("room_started", format!("{tag}-started")),
        finished: event("room_finished", format!("{tag}-finished")),
        linger_ms: 0,
    }
}

/// `room`'s queued event ids in queue order, and its stored count, read beside the store.
async fn stored(db: &Db, room: &str) -> anyhow::Result<(Vec<String>, i64)> {
    let pool = sqlx::AnyPool::connect(&db.url).await?;
    let ids =
        sqlx::query_scalar("SELECT event_id FROM webhook_outbox WHERE room = $1 ORDER BY seq")
            .bind(room)
            .fetch_all(&pool)
            .await?;
    let count = sqlx::query_scalar("SELECT active_participants FROM rooms WHERE name = $1")
        .bind(room)
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    Ok((ids, count))
}

/// The last one out of a room whose session waits (a lost participant's time to come
/// back, here 60 s, or the room's empty timeout): no `room_finished` yet; someone
/// entering meanwhile continues the session (no second `room_started`); once the wait
/// is over the session is finished once, however many replicas look.
#[tokio::test]
async fn an_empty_room_waits_and_is_finished_once_when_its_time_is_up() -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    for name in ["sqlite", "postgres"] {
        let db = db(name).await?;
        let finished = |room: &str| event("room_finished", format!("{room}-swept"));
        let now = || {
            i64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or_default(),
            )
            .unwrap_or_default()
        };
        let lost = |tag: &str| PresenceChange {
            linger_ms: 60_000,
            ..change(&db, "a", -1, tag)
        };
        use Presence::{Continued, Emptied, Started};
        let outcomes = db
            .store
            .record_presences(&[
                change(&db, "a", 1, "j1"),
                lost("l1"),
                change(&db, "a", 1, "j2"),
            ])
            .await?;
        assert_eq!(outcomes, [Started, Emptied, Continued], "{name}");
        assert_eq!(
            db.store.record_presence(&lost("l2")).await?,
            Emptied,
            "{name}"
        );
        // Not before its time.
        assert!(
            db.store
                .finish_empty_rooms(now(), finished)
                .await?
                .is_empty(),
            "{name}"
        );
        // After it, once, though two replicas look at the same time.
        let later = now() + 61_000;
        let (first, second) = tokio::join!(
            db.store.finish_empty_rooms(later, finished),
            db.store.finish_empty_rooms(later, finished)
        );
        let mut swept = first?;
        swept.extend(second?);
        assert_eq!(swept, [(db.tenant.clone(), "a".to_owned())], "{name}");
        assert!(
            db.store
                .finish_empty_rooms(later, finished)
                .await?
                .is_empty(),
            "{name}"
        );
        let (a, count) = stored(&db, "a").await?;
        assert_eq!(
            a,
            ["j1-started", "j1", "l1", "j2", "l2", "a-swept"],
            "{name}"
        );
        assert_eq!(count, 0, "{name}");
        // The next one in starts a new session.
        assert_eq!(
            db.store.record_presence(&change(&db, "a", 1, "j3")).await?,
            Started,
            "{name}"
        );

        // A room's own empty timeout makes the last one out wait too, however it left.
        let waits = RoomSettings {
            empty_timeout_secs: 30,
            ..RoomSettings::default()
        };
        db.store.insert_room(&db.tenant, "c", &waits, None).await?;
        let outcomes = db
            .store
            .record_presences(&[change(&db, "c", 1, "j4"), change(&db, "c", -1, "l4")])
            .await?;
        assert_eq!(outcomes, [Started, Emptied], "{name}");
        assert!(
            db.store
                .finish_empty_rooms(now() + 29_000, finished)
                .await?
                .is_empty(),
            "{name}"
        );
        assert_eq!(
            db.store
                .finish_empty_rooms(now() + 31_000, finished)
                .await?,
            [(db.tenant.clone(), "c".to_owned())],
            "{name}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_group_keeps_each_rooms_count_and_events_in_order() -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    for name in ["sqlite", "postgres"] {
        let db = db(name).await?;
        let group = [
            change(&db, "a", 1, "j1"),
            change(&db, "a", 1, "j2"),
            change(&db, "b", 1, "j3"),
            change(&db, "a", -1, "l1"),
            change(&db, "a", -1, "l2"),
            change(&db, "a", 1, "j4"),
        ];
        let outcomes = db.store.record_presences(&group).await?;
        use Presence::{Continued, Finished, Started};
        assert_eq!(
            outcomes,
            [Started, Continued, Started, Continued, Finished, Started],
            "{name}"
        );
        let (a, a_count) = stored(&db, "a").await?;
        assert_eq!(
            a,
            [
                "j1-started",
                "j1",
                "j2",
                "l1",
                "l2",
                "l2-finished",
                "j4-started",
                "j4"
            ],
            "{name}"
        );
        assert_eq!(a_count, 1, "{name}");
        // The next transaction carries on from the stored counts.
        let b_out = db
            .store
            .record_presence(&change(&db, "b", -1, "l3"))
            .await?;
        assert_eq!(b_out, Finished, "{name}");
        let (b, b_count) = stored(&db, "b").await?;
        assert_eq!(b, ["j3-started", "j3", "l3", "l3-finished"], "{name}");
        assert_eq!(b_count, 0, "{name}");
        // A leave never counts below zero, and finishes nothing.
        let again = db
            .store
            .record_presence(&change(&db, "b", -1, "l4"))
            .await?;
        assert_eq!(again, Continued, "{name}");
        assert_eq!(stored(&db, "b").await?.1, 0, "{name}");
    }
    Ok(())
}

/// A big room's participants all joining, then all leaving at once: every change is
/// answered, the room starts and finishes once, and each burst takes one transaction
/// per [`MAX_GROUP`] changes. (A current-thread runtime queues the whole burst before
/// the log's task runs, so the grouping is exact.)
#[tokio::test]
async fn a_burst_of_joins_and_leaves_commits_in_groups() -> anyhow::Result<()> {
    const PARTICIPANTS: usize = 600;
    sqlx::any::install_default_drivers();
    for name in ["sqlite", "postgres"] {
        let db = db(name).await?;
        let stats = PresenceStats::default();
        let log = PresenceLog::start(db.store.clone(), stats.clone());
        let groups = PARTICIPANTS.div_ceil(MAX_GROUP) as u64;

        let joins = (0..PARTICIPANTS).map(|i| log.record(change(&db, "a", 1, &format!("j{i}"))));
        let joined = futures_util::future::join_all(joins).await;
        let joined: Vec<Presence> = joined.into_iter().collect::<Result<_, _>>()?;
        assert_eq!(joined[0], Presence::Started, "{name}");
        assert!(
            joined[1..].iter().all(|p| *p == Presence::Continued),
            "{name}"
        );
        assert_eq!(stats.commits(), groups, "{name}");
        assert_eq!(stored(&db, "a").await?.1, PARTICIPANTS as i64, "{name}");

        let leaves = (0..PARTICIPANTS).map(|i| log.record(change(&db, "a", -1, &format!("l{i}"))));
        let left = futures_util::future::join_all(leaves).await;
        let left: Vec<Presence> = left.into_iter().collect::<Result<_, _>>()?;
        assert_eq!(left[PARTICIPANTS - 1], Presence::Finished, "{name}");
        assert!(
            left[..PARTICIPANTS - 1]
                .iter()
                .all(|p| *p == Presence::Continued),
            "{name}"
        );
        assert_eq!(stats.commits(), 2 * groups, "{name}");
        assert_eq!(stats.changes(), 2 * PARTICIPANTS as u64, "{name}");

        let (events, count) = stored(&db, "a").await?;
        assert_eq!(count, 0, "{name}");
        let expected: Vec<String> = std::iter::once("j0-started".to_owned())
            .chain((0..PARTICIPANTS).map(|i| format!("j{i}")))
            .chain((0..PARTICIPANTS).map(|i| format!("l{i}")))
            .chain(std::iter::once(format!("l{}-finished", PARTICIPANTS - 1)))
            .collect();
        assert_eq!(events, expected, "{name}: every event once, in order");
    }
    Ok(())
}

/// PostgreSQL refuses a NUL in text, so a change carrying one fails its group; the
/// log then records the group's changes one at a time, and only that one fails.
#[tokio::test]
async fn a_change_the_database_refuses_fails_alone() -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let db = db("postgres").await?;
    let stats = PresenceStats::default();
    let log = PresenceLog::start(db.store.clone(), stats.clone());
    let mut bad = change(&db, "a", 1, "bad");
    bad.events[0].body = "{\"name\":\"nul \0 here\"}".into();
    let (first, refused, last) = tokio::join!(
        log.record(change(&db, "a", 1, "j1")),
        log.record(bad),
        log.record(change(&db, "a", 1, "j2")),
    );
    assert_eq!(first?, Presence::Started);
    let err = refused.expect_err("a NUL in text is refused");
    assert_eq!(err.code, "store_unavailable", "{err}");
    assert_eq!(last?, Presence::Continued);
    let (events, count) = stored(&db, "a").await?;
    assert_eq!(events, ["j1-started", "j1", "j2"], "{}", db.name);
    assert_eq!(count, 2);
    assert_eq!((stats.commits(), stats.changes()), (2, 2));
    Ok(())
}

/// A draining SFU's full room, evacuated: every participant is told to move and
/// counted out, and their leaves share presence commits instead of taking one each.
#[tokio::test]
async fn an_evacuated_rooms_participants_all_move_and_their_leaves_share_commits()
-> anyhow::Result<()> {
    use confer_room::RoomApi as _;
    use confer_room::api::{GatewayCommand, JoinRequest, WatchFrom};
    use futures_util::StreamExt as _;

    const PARTICIPANTS: usize = 100;
    let config = confer_room::RoomConfig {
        anonymous_tenant: Some("anon".into()),
        limits: confer_room::Limits {
            joins_per_address: (1_000, std::time::Duration::from_secs(1)),
            ..Default::default()
        },
        ..Default::default()
    };
    let registry = confer_room::registry::SfuRegistry::new(vec![
        confer_room::registry::SfuNode::parse("sfu-1@local=127.0.0.1:9")
            .map_err(anyhow::Error::msg)?,
    ]);
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let rooms = confer_room::start(
        config,
        confer_room::Backends::in_memory(),
        registry,
        confer_room::webhook::WebhookConfig::default(),
        shutdown,
    )
    .await?;
    let mut commands = rooms.watch("gw-1".into(), WatchFrom::Start).await?;
    for i in 0..PARTICIPANTS {
        let decision = rooms
            .join(JoinRequest {
                gateway: "gw-1".into(),
                participant_id: format!("part-{i}"),
                room: "big".into(),
                tenant: None,
                token: None,
                name: format!("P{i}"),
                password: None,
                client_addr: "127.0.0.1".parse()?,
                region: None,
                rejoin: None,
            })
            .await?;
        assert!(decision.admission.is_some(), "part-{i} admitted");
    }

    let before = rooms.presence_stats().commits();
    assert_eq!(rooms.evacuate("sfu-1".into()).await?, 1);
    let commits = rooms.presence_stats().commits() - before;
    assert!(
        rooms
            .list_participants("anon".into(), "big".into())
            .await?
            .is_empty(),
        "everyone counted out"
    );
    let mut moved = std::collections::BTreeSet::new();
    while moved.len() < PARTICIPANTS {
        let command = tokio::time::timeout(std::time::Duration::from_secs(5), commands.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("the command stream ended"))?;
        if let Some(GatewayCommand::Move { participant }) = command.command {
            assert!(
                moved.insert(participant.clone()),
                "{participant} moved twice"
            );
        }
    }
    let expected: std::collections::BTreeSet<String> =
        (0..PARTICIPANTS).map(|i| format!("part-{i}")).collect();
    assert_eq!(moved, expected);
    assert!(
        commits <= (PARTICIPANTS / 10) as u64,
        "{PARTICIPANTS} leaves took {commits} commits"
    );
    Ok(())
}
