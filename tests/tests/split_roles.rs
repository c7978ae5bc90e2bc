//! Gateway, room service and SFU as separate services: the gateway asks the room
//! service over gRPC, which places the room on the SFU; the gateway then drives that
//! SFU over its gRPC control API.

use std::time::Duration;

use confer_e2e::signal::{SignalClient, client_offer};
use confer_room::RoomApi as _;
use confer_sfu::core::TrackSource;
use confer_sfu::{ParticipantId, SfuApi as _, SfuError, grpc};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_joins_and_leaves_through_a_remote_sfu() -> anyhow::Result<()> {
    let services = confer_e2e::split::SplitServices::start().await?;
    let url = services.signal_url.clone();
    let sfu = &services.sfu;
    let control_addr = services.sfu_control;

    let offer = client_offer(2)?;
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for name in ["Ada", "Bob"] {
        let mut client = SignalClient::connect(&url).await?;
        client
            .send(&json!({"request_id": "j", "join": {"room": "split", "name": name, "offer": {"type": "offer", "sdp": offer}}}))
            .await?;
        let joined = client.recv_kind("joined", Duration::from_secs(5)).await?;
        assert_eq!(joined["request_id"], "j");
        let answer = joined["joined"]["answer"]["sdp"]
            .as_str()
            .unwrap_or_default();
        assert!(answer.contains("a=ice-lite"), "answer: {answer}");
        assert!(answer.contains(&format!(" {} typ host", sfu.media_addr().port())));
        ids.push(
            joined["joined"]["you"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        clients.push(client);
    }
    assert_eq!(sfu.occupancy().await?.peers, 2);

    // Who may post in the chat is asked of the room service over gRPC too (a shared
    // file's upload may reach any gateway).
    let room = confer_room::grpc::GrpcRoom::connect(&services.room_addr.to_string(), None)?;
    room.check_chat_poster("dev/split".into(), ids[1].clone())
        .await?;
    let stranger = room
        .check_chat_poster("dev/split".into(), "nobody".into())
        .await
        .expect_err("not a member");
    assert_eq!(stranger.code, "not_a_member", "{stranger}");

    // Layer choice and per-source blocks cross the gRPC control API too.
    let bob_id = ids[1].clone();
    let bob_client = &mut clients[1];
    bob_client
        .send(&json!({"request_id": "t1", "track_settings": {"mid": "no-such-slot", "width": 320, "height": 180}}))
        .await?;
    let refused = bob_client
        .recv_kind("error", Duration::from_secs(5))
        .await?;
    assert_eq!(refused["error"]["code"], "unknown_slot", "{refused}");
    let slot_mid = video_slot_mid(&offer).ok_or_else(|| anyhow::anyhow!("no video slot"))?;
    bob_client
        .send(&json!({"request_id": "t2", "track_settings": {"mid": slot_mid, "width": 320, "height": 180}}))
        .await?;
    bob_client
        .send(&json!({"request_id": "p", "ping": {}}))
        .await?;
    // Everything up to the pong: no error may come back for the real slot.
    loop {
        let next = bob_client.recv(Duration::from_secs(5)).await?;
        assert!(
            next.get("error").is_none(),
            "settings for a real slot are accepted: {next}"
        );
        if next.get("pong").is_some() {
            break;
        }
    }

    let remote = grpc::GrpcSfu::connect(control_addr, None)?;
    for (participant, result) in [
        (bob_id.clone(), Ok(())),
        ("nobody".to_owned(), Err(SfuError::UnknownPeer)),
    ] {
        let blocked = remote
            .set_blocked(
                ParticipantId::new(participant),
                TrackSource::ScreenShare,
                true,
            )
            .await;
        assert_eq!(blocked, result);
    }

    let mut ada = clients.remove(0);
    let mut bob = clients.remove(0);
    ada.send(&json!({"leave": {}})).await?;
    let left = bob
        .recv_kind("participant_left", Duration::from_secs(5))
        .await?;
    assert!(
        left["participant_left"]["participant_id"]
            .as_str()
            .is_some()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sfu.occupancy().await?.peers != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "Ada's peer is removed from the remote SFU"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The mid of the offer's first receive-only video m-line (a slot).
fn video_slot_mid(offer: &str) -> Option<String> {
    offer
        .split("\nm=")
        .skip(1)
        .filter(|section| section.starts_with("video ") && section.contains("a=recvonly"))
        .find_map(|section| {
            section
                .lines()
                .find_map(|line| line.trim_end().strip_prefix("a=mid:"))
                .map(str::to_owned)
        })
}
