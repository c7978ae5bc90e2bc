//! One identity's joins to a room take turns, across room-service replicas on one
//! PostgreSQL and one Redis (a redis-server of the test's own): two tabs opened at the
//! same instant through two replicas end with the identity in the room once, the
//! other connection replaced, never both in.

use confer_auth::{Claims, TokenKey, VideoGrant};
use confer_e2e::joins::now;
use confer_e2e::replicas::{room_service, shared_backends};
use confer_room::RoomApi as _;
use confer_room::api::{CreateRoom, JoinDecision, JoinRequest, TenantCreated};
use confer_room::model::RoomSettings;
use confer_room::{RoomConfig, RoomService};

const SECRET: &str = "identity-turns-secret-0123456789";

fn token(identity: &str) -> String {
    TokenKey::new("acme-key", SECRET.as_bytes()).sign(&Claims {
        iss: "acme-key".into(),
        sub: identity.into(),
        name: identity.into(),
        nbf: now(),
        exp: now() + 600,
        kind: confer_auth::ParticipantKind::Standard,
        video: VideoGrant::join("standup"),
    })
}

async fn join(
    rooms: &RoomService,
    gateway: &str,
    participant: String,
    identity: &str,
) -> anyhow::Result<JoinDecision> {
    Ok(rooms
        .join(JoinRequest {
            gateway: gateway.into(),
            participant_id: participant,
            room: "standup".into(),
            tenant: None,
            token: Some(token(identity)),
            name: identity.into(),
            password: None,
            client_addr: "127.0.0.1".parse()?,
            region: None,
            rejoin: None,
        })
        .await?)
}

/// Tenant acme and its room `standup`, open to all.
async fn acme_standup(rooms: &RoomService) -> anyhow::Result<()> {
    rooms
        .store()
        .ensure_tenant(
            &TenantCreated {
                tenant: "acme".into(),
                api_key: "acme-key".into(),
                api_secret: SECRET.into(),
            },
            "Acme",
        )
        .await?;
    rooms
        .create_room(
            "acme".into(),
            CreateRoom {
                name: "standup".into(),
                settings: RoomSettings {
                    waiting_room: false,
                    ..RoomSettings::default()
                },
                password: None,
            },
        )
        .await?;
    Ok(())
}

/// A join dropped part-way (its gateway's request cancelled, the client gone) gives
/// its identity's turn back as it goes: the next join of the identity finds it free
/// at once rather than after the hold runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_dropped_part_way_gives_its_identitys_turn_back() -> anyhow::Result<()> {
    let (redis, backends) = shared_backends().await?;
    let rooms = room_service(RoomConfig::default(), backends).await?;
    acme_standup(&rooms).await?;
    let live =
        confer_room::live::Live::Redis(confer_room::live::RedisLive::connect(&redis.url()).await?);
    for cut_after_ms in 0..20 {
        let dropped = tokio::time::timeout(
            std::time::Duration::from_millis(cut_after_ms),
            join(&rooms, "gw-a", format!("PA_c{cut_after_ms}"), "gus"),
        )
        .await;
        // Given back within a second (a hold left behind would stand for 5 s).
        let mut free = None;
        for _ in 0..50 {
            free = live
                .hold_identity("acme/standup", "gus", std::time::Duration::from_secs(1))
                .await?;
            if free.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let Some(token) = free else {
            panic!(
                "a join cut after {cut_after_ms} ms ({}) still holds the turn",
                if dropped.is_ok() { "done" } else { "dropped" }
            );
        };
        live.release_identity("acme/standup", "gus", &token).await?;
    }
    // A whole join after all of them waits for nobody.
    join(&rooms, "gw-a", "PA_last".into(), "gus").await?;
    assert_eq!(rooms.identity_waits(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_joins_of_one_identity_through_two_replicas_at_once_leave_it_in_once()
-> anyhow::Result<()> {
    let (_redis, backends) = shared_backends().await?;
    let replicas = [
        room_service(RoomConfig::default(), backends.clone()).await?,
        room_service(RoomConfig::default(), backends).await?,
    ];
    acme_standup(&replicas[0]).await?;

    const ROUNDS: usize = 12;
    for round in 0..ROUNDS {
        // Someone opens two tabs at once, one reaching each replica.
        let identity = format!("gus-{round}");
        let (a, b) = tokio::join!(
            join(&replicas[0], "gw-a", format!("PA_a{round}"), &identity),
            join(&replicas[1], "gw-b", format!("PA_b{round}"), &identity),
        );
        let (a, b) = (a?, b?);
        assert!(a.admission.is_some() && b.admission.is_some());
        let listed: Vec<String> = replicas[round % 2]
            .list_participants("acme".into(), "standup".into())
            .await?
            .into_iter()
            .filter(|p| p.identity == identity)
            .map(|p| p.id)
            .collect();
        assert_eq!(
            listed.len(),
            1,
            "round {round}: {identity} is in the room once, not as {listed:?}"
        );
        assert!(
            listed[0] == a.participant.id || listed[0] == b.participant.id,
            "{listed:?}"
        );
    }
    // Each round, the later join took the earlier one's place.
    let takeovers: u64 = replicas.iter().map(RoomService::takeovers).sum();
    assert_eq!(takeovers, ROUNDS as u64);
    Ok(())
}
