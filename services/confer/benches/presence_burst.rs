//! What a big room's burst of joins and leaves costs the room service's store: N
//! participants counted into one room at once, then out at once, on PostgreSQL (at
//! CONFER_TEST_DATABASE_URL, a fresh database per case), three ways in one run:
//!
//! - **grouped**: through [`PresenceLog`], as the room service records joins and leaves;
//! - **one transaction each**: [`Store::record_presence`] per change, all at once on the
//!   store's connection pool (how every join and leave was recorded before);
//! - **floor**: one autocommit `UPDATE` of the room's count per change on a pool of the
//!   same size, without the webhook events: the least a commit per change can cost.
//!
//! Each change also queues its webhook event for the tenant's one endpoint, as a join
//! or leave does. Prints, per case and burst: wall time, changes per second and
//! transactions.
//!
//! `CONFER_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench -p confer --bench presence_burst`

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use confer_room::model::RoomSettings;
use confer_room::store::{
    DEFAULT_CONNECTIONS, MasterKey, OutboxEvent, PresenceChange, PresenceLog, PresenceStats, Store,
};

const SIZES: [usize; 2] = [100, 1_000];

#[derive(Clone, Copy)]
enum Way {
    Grouped,
    OneEach,
    Floor,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Grouped => "grouped (PresenceLog)",
            Way::OneEach => "one transaction each",
            Way::Floor => "floor: one UPDATE commit each, no events",
        }
    }
}

/// One burst's figures.
struct Burst {
    took: Duration,
    transactions: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    println!(
        "| participants | way | joins: ms | joins/s | transactions | leaves: ms | leaves/s | transactions |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for size in SIZES {
        for way in [Way::Grouped, Way::OneEach, Way::Floor] {
            let (joins, leaves) = case(way, size).await?;
            let rate = |b: &Burst| size as f64 / b.took.as_secs_f64();
            println!(
                "| {size} | {} | {:.1} | {:.0} | {} | {:.1} | {:.0} | {} |",
                way.name(),
                joins.took.as_secs_f64() * 1e3,
                rate(&joins),
                joins.transactions,
                leaves.took.as_secs_f64() * 1e3,
                rate(&leaves),
                leaves.transactions,
            );
        }
    }
    Ok(())
}

/// `size` joins at once, then `size` leaves at once, into a fresh database.
async fn case(way: Way, size: usize) -> anyhow::Result<(Burst, Burst)> {
    let url = confer_e2e::backing::fresh_postgres().await?;
    let store = Store::connect(&url, MasterKey::random()).await?;
    let tenant = store.create_tenant("Bench").await?.tenant;
    store
        .create_webhook(&tenant, "http://127.0.0.1:9/hook")
        .await?;
    store
        .insert_room(&tenant, "big", &RoomSettings::default(), None)
        .await?;
    let stats = PresenceStats::default();
    let log = PresenceLog::start(store.clone(), stats.clone());
    let floor = sqlx::any::AnyPoolOptions::new()
        .max_connections(DEFAULT_CONNECTIONS)
        .connect(&url)
        .await?;
    let mut bursts = Vec::new();
    for delta in [1, -1] {
        let commits_before = stats.commits();
        let started = Instant::now();
        let tasks: Vec<_> = (0..size)
            .map(|i| {
                let change = change(&tenant, delta, i);
                let (store, log, floor) = (store.clone(), log.clone(), floor.clone());
                tokio::spawn(async move {
                    match way {
                        Way::Grouped => log.record(change).await.map(drop).map_err(anyhow::Error::from),
                        Way::OneEach => store.record_presence(&change).await.map(drop).map_err(anyhow::Error::from),
                        Way::Floor => sqlx::query(
                            "UPDATE rooms SET active_participants = active_participants + $1 WHERE tenant_id = $2 AND name = 'big'",
                        )
                        .bind(delta)
                        .bind(&change.tenant)
                        .execute(&floor)
                        .await
                        .map(drop)
                        .map_err(anyhow::Error::from),
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        let took = started.elapsed();
        let transactions = match way {
            Way::Grouped => stats.commits() - commits_before,
            Way::OneEach | Way::Floor => size as u64,
        };
        bursts.push(Burst { took, transactions });
    }
    floor.close().await;
    let leaves = bursts
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no leave burst"))?;
    let joins = bursts
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no join burst"))?;
    Ok((joins, leaves))
}

fn change(tenant: &str, delta: i64, i: usize) -> PresenceChange {
    let event = |name: &'static str, id: String| OutboxEvent {
        name,
        body: format!(r#"{{"id":"{id}","event":"{name}","room":{{"name":"big"}}}}"#),
        id,
    };
    let name = if delta > 0 {
        "participant_joined"
    } else {
        "participant_left"
    };
    PresenceChange {
        tenant: tenant.to_owned(),
        room: "big".into(),
        delta,
        events: vec![event(name, format!("EV_{name}_{i}"))],
        started: event("room_started", format!("EV_started_{i}")),
        finished: event("room_finished", format!("EV_finished_{i}")),
        linger_ms: 0,
    }
}
