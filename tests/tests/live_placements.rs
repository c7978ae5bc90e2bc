//! The room service's live placements on a real Redis, as every replica shares them:
//! racing placements of one room in one region end on one SFU, and each SFU's
//! placements can be listed (what evacuating a draining SFU reads) and follow clears.
//!
//! Redis comes from CONFER_TEST_REDIS_URL (`scripts/test.sh` sets it).

use std::collections::BTreeSet;
use std::sync::Arc;

use confer_room::live::{Live, RedisLive};
use confer_room::model::Placement;

fn redis_url() -> String {
    std::env::var("CONFER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn placement(sfu: &str, region: &str) -> Placement {
    Placement {
        region: region.into(),
        sfu: sfu.into(),
        control: format!("{sfu}:7881"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placements_are_won_once_and_listed_per_sfu() -> anyhow::Result<()> {
    let live = Arc::new(Live::Redis(RedisLive::connect(&redis_url()).await?));
    let run = format!("{:08x}", rand::random::<u32>());
    let (a, b) = (format!("sfu-a-{run}"), format!("sfu-b-{run}"));

    // Eight replicas race to place one room in one region.
    let room = format!("t/race-{run}");
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let (live, room) = (live.clone(), room.clone());
            let sfu = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { live.place(&room, placement(&sfu, "eu")).await })
        })
        .collect();
    let mut winners = BTreeSet::new();
    for racer in racers {
        winners.insert(racer.await??.sfu);
    }
    assert_eq!(
        winners.len(),
        1,
        "one room, one SFU per region: {winners:?}"
    );
    let winner = winners.into_iter().next().unwrap_or_default();
    let other = if winner == a { b.clone() } else { a.clone() };

    // Another room on the winner in two regions, one on the other SFU.
    let second = format!("t/second-{run}");
    live.place(&second, placement(&winner, "eu")).await?;
    live.place(&second, placement(&winner, "us")).await?;
    live.place(&format!("t/third-{run}"), placement(&other, "eu"))
        .await?;

    let listed: BTreeSet<(String, String)> =
        live.rooms_placed_on(&winner).await?.into_iter().collect();
    let expected: BTreeSet<(String, String)> = [
        (room.clone(), "eu".to_owned()),
        (second.clone(), "eu".to_owned()),
        (second.clone(), "us".to_owned()),
    ]
    .into_iter()
    .collect();
    assert_eq!(listed, expected);
    assert_eq!(live.rooms_on(std::slice::from_ref(&winner)).await?, [3]);

    live.clear_placement(&second, "us").await?;
    live.clear_placement(&room, "eu").await?;
    assert_eq!(
        live.rooms_placed_on(&winner).await?,
        vec![(second.clone(), "eu".to_owned())]
    );
    assert_eq!(live.rooms_on(std::slice::from_ref(&winner)).await?, [1]);
    live.clear_placement(&second, "eu").await?;
    live.clear_placement(&format!("t/third-{run}"), "eu")
        .await?;
    assert!(live.rooms_placed_on(&winner).await?.is_empty());
    assert!(live.rooms_placed_on(&other).await?.is_empty());
    Ok(())
}

/// A room service on Redis, over gRPC: a gateway's watch starts with a cursor, and a
/// cursor it never gave is refused with its own code (the gateway then watches from
/// now), not read from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_over_grpc_refuses_a_cursor_it_never_gave() -> anyhow::Result<()> {
    use confer_room::RoomApi as _;
    use confer_room::api::WatchFrom;
    use futures_util::StreamExt as _;
    let (_shutdown, signal) = tokio::sync::watch::channel(false);
    let room = confer_room::start(
        confer_room::RoomConfig::default(),
        confer_room::Backends {
            redis_url: Some(redis_url()),
            ..confer_room::Backends::in_memory()
        },
        confer_room::registry::SfuRegistry::new(Vec::new()),
        Default::default(),
        signal.clone(),
    )
    .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(confer_room::grpc::serve(room, listener, None, signal));
    let client = confer_room::grpc::GrpcRoom::connect(&addr.to_string(), None)?;
    let gateway = format!("gw-grpc-{:08x}", rand::random::<u32>());

    let mut watch = client.watch(gateway.clone(), WatchFrom::Start).await?;
    let start = watch
        .next()
        .await
        .ok_or_else(|| anyhow::anyhow!("no start"))?;
    assert_eq!(start.command, None);
    assert!(!start.cursor.is_empty());
    let refused = client
        .watch(gateway, WatchFrom::After("not-a-cursor".into()))
        .await
        .err()
        .map(|err| err.code);
    assert_eq!(refused.as_deref(), Some("invalid_cursor"));
    Ok(())
}
