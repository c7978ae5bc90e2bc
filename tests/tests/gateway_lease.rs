//! A gateway that goes away without a word loses its participants: the room service
//! keeps a lease for each gateway while it serves the gateway's command watch. Once
//! the lease has run out, the participants leave as if they had said so, and the
//! gateway (if it was only cut off) is told to let each go. A gateway that starts
//! again under the same id finds its old participants gone before its watch begins.
//!
//! Both live stores: in process memory (`confer dev`) and on a redis-server of the
//! test's own, with PostgreSQL beside it (as `confer room` runs).

use std::time::{Duration, Instant};

use confer_e2e::replicas::shared_backends;
use confer_room::RoomApi as _;
use confer_room::api::{GatewayCommand, JoinDecision, JoinRequest, RoomEvent, WatchFrom, Watched};
use confer_room::model::Role;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;

const LEASE: Duration = Duration::from_millis(600);

async fn room_service(backends: confer_room::Backends) -> anyhow::Result<confer_room::RoomService> {
    let config = confer_room::RoomConfig {
        anonymous_tenant: Some("anon".into()),
        gateway_lease: LEASE,
        ..Default::default()
    };
    confer_e2e::replicas::room_service(config, backends).await
}

async fn join(
    rooms: &confer_room::RoomService,
    gateway: &str,
    participant: &str,
) -> anyhow::Result<JoinDecision> {
    join_with(rooms, gateway, participant, None).await
}

/// A join, with the rejoin ticket of an earlier one when given.
async fn join_with(
    rooms: &confer_room::RoomService,
    gateway: &str,
    participant: &str,
    rejoin: Option<String>,
) -> anyhow::Result<JoinDecision> {
    let decision = rooms
        .join(JoinRequest {
            gateway: gateway.into(),
            participant_id: participant.into(),
            room: "lease".into(),
            tenant: None,
            token: None,
            name: participant.into(),
            password: None,
            client_addr: "127.0.0.1".parse()?,
            region: None,
            rejoin,
        })
        .await?;
    anyhow::ensure!(decision.admission.is_some(), "{participant} admitted");
    Ok(decision)
}

/// The ids of the participants in the room, in order.
async fn in_room(rooms: &confer_room::RoomService) -> anyhow::Result<Vec<String>> {
    let listed = rooms
        .list_participants("anon".into(), "lease".into())
        .await?;
    let mut ids: Vec<String> = listed.into_iter().map(|p| p.id).collect();
    ids.sort();
    Ok(ids)
}

/// Reads `commands` until `wanted` picks one, within 5 s.
async fn next_command<T>(
    commands: &mut BoxStream<'static, Watched>,
    what: &str,
    wanted: impl Fn(&GatewayCommand) -> Option<T>,
) -> anyhow::Result<(T, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let watched = tokio::time::timeout_at(deadline, commands.next())
            .await
            .map_err(|_| anyhow::anyhow!("no {what} within 5 s"))?
            .ok_or_else(|| anyhow::anyhow!("the watch ended before {what}"))?;
        if let Some(found) = watched.command.as_ref().and_then(&wanted) {
            return Ok((found, watched.cursor));
        }
    }
}

fn left(command: &GatewayCommand) -> Option<String> {
    match command {
        GatewayCommand::Notify {
            event: RoomEvent::ParticipantLeft { participant, .. },
            ..
        } => Some(participant.clone()),
        _ => None,
    }
}

async fn watch(
    rooms: &confer_room::RoomService,
    gateway: &str,
    from: WatchFrom,
) -> anyhow::Result<(BoxStream<'static, Watched>, String)> {
    let mut commands = rooms.watch(gateway.into(), from).await?;
    let start = commands
        .next()
        .await
        .ok_or_else(|| anyhow::anyhow!("a watch without its starting cursor"))?;
    Ok((commands, start.cursor))
}

/// What the replicas let go, summed and sorted, and the gateways they found lost.
fn released(replicas: &[confer_room::RoomService]) -> (Vec<(String, u64)>, u64) {
    let mut by_reason = std::collections::BTreeMap::new();
    for replica in replicas {
        for (reason, n) in replica.released() {
            *by_reason.entry(reason).or_insert(0) += n;
        }
    }
    let lost = replicas.iter().map(|r| r.gateways_lost()).sum();
    (by_reason.into_iter().collect(), lost)
}

/// Waits up to 5 s until the replicas have let go of `by_reason` and found `lost`
/// gateways lost, and checks that they stay so.
async fn released_are(
    replicas: &[confer_room::RoomService],
    by_reason: &[(&str, u64)],
    lost: u64,
) -> anyhow::Result<()> {
    let expected: Vec<(String, u64)> = by_reason
        .iter()
        .map(|(reason, n)| ((*reason).to_owned(), *n))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while released(replicas) != (expected.clone(), lost) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(LEASE).await;
    assert_eq!(released(replicas), (expected, lost));
    Ok(())
}

/// `replicas[0]` serves the gateways; every replica sweeps for lost gateways. With
/// `commands_kept`, a gateway's commands wait for its next watch.
async fn a_gone_gateways_participants_leave(
    replicas: &[confer_room::RoomService],
    commands_kept: bool,
) -> anyhow::Result<()> {
    let rooms = &replicas[0];
    let (mut a_commands, _) = watch(rooms, "gw-a", WatchFrom::Start).await?;
    let (mut b_commands, _) = watch(rooms, "gw-b", WatchFrom::Start).await?;
    let ada = join(rooms, "gw-a", "p-ada").await?;
    join(rooms, "gw-b", "p-bob").await?;
    assert_eq!(in_room(rooms).await?, ["p-ada", "p-bob"]);

    // Gateway a goes away without a word: its watch ends and nothing says leave.
    // Where its stream stood, for the watch it makes if it was only cut off.
    let (_, a_cursor) = next_command(&mut a_commands, "Bob's arrival at Ada", |c| {
        matches!(c, GatewayCommand::Notify { .. }).then_some(())
    })
    .await?;
    drop(a_commands);
    let gone = Instant::now();
    let (who, _) = next_command(&mut b_commands, "Ada's leave at Bob", left).await?;
    assert_eq!(who, "p-ada");
    assert!(
        gone.elapsed() >= LEASE,
        "Ada left {:?} after her gateway went, before its lease of {LEASE:?} ran out",
        gone.elapsed()
    );
    assert_eq!(in_room(rooms).await?, ["p-bob"]);
    // Counted once her leave is committed (the others are told before).
    released_are(replicas, &[("gateway_lost", 1)], 1).await?;

    // Gateway a was only cut off: watching again after its cursor, it is told to let
    // Ada's session go, so her client joins again. (In one process, as `confer dev`
    // runs, a gateway cannot be cut off from its room service, and commands are not
    // kept for a watch to take up again.)
    if commands_kept {
        let (mut a_again, _) = watch(rooms, "gw-a", WatchFrom::After(a_cursor)).await?;
        let (told, _) = next_command(&mut a_again, "Ada's reconnect", |c| match c {
            GatewayCommand::Reconnect { participant } => Some(participant.clone()),
            _ => None,
        })
        .await?;
        assert_eq!(told, "p-ada");
    }

    // Ada's client comes back through gateway b with her ticket, at any replica: as
    // she was (her identity, the host's role she had as the first in; a plain
    // anonymous join now would make her a participant), under her new id.
    let last = &replicas[replicas.len() - 1];
    let back = join_with(last, "gw-b", "p-ada-back", Some(ada.rejoin.clone())).await?;
    assert_eq!(back.participant.identity, ada.participant.identity);
    assert_eq!(back.participant.role, Role::Host);
    assert_eq!(back.participant.previous_id.as_deref(), Some("p-ada"));
    assert_eq!(in_room(rooms).await?, ["p-ada-back", "p-bob"]);
    let again = join_with(last, "gw-b", "p-ada-twice", Some(ada.rejoin.clone())).await?;
    assert_eq!(
        again.participant.role,
        Role::Participant,
        "a ticket brings its participant back once"
    );
    rooms.leave("p-ada-twice".into()).await?;

    // Bob's gateway watches all along: five leases later he is still in the room.
    tokio::time::sleep(LEASE * 5).await;
    assert_eq!(in_room(rooms).await?, ["p-ada-back", "p-bob"]);

    // Gateway b starts again under its id: Ada and Bob, left over from its last run,
    // are gone by the time its new watch begins.
    drop(b_commands);
    let (_b_restarted, _) = watch(rooms, "gw-b", WatchFrom::Start).await?;
    assert!(in_room(rooms).await?.is_empty());
    // A restart is not a loss.
    released_are(
        replicas,
        &[("gateway_lost", 1), ("gateway_restarted", 2)],
        1,
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_a_gone_gateways_participants_leave() -> anyhow::Result<()> {
    let rooms = room_service(confer_room::Backends::in_memory()).await?;
    a_gone_gateways_participants_leave(&[rooms], false).await
}

/// Two replicas share Redis and the database: the second, serving no watch, must
/// not take the first's gateways for lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_a_gone_gateways_participants_leave() -> anyhow::Result<()> {
    let (_redis, backends) = shared_backends().await?;
    let replicas = [
        room_service(backends.clone()).await?,
        room_service(backends).await?,
    ];
    a_gone_gateways_participants_leave(&replicas, true).await
}
