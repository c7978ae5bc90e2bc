//! Gateway, room service and SFU as separate services: the gateway asks the room
//! service over gRPC, which places the room on the SFU; the gateway then drives that
//! SFU over its gRPC control API.

use std::sync::Arc;
use std::time::Duration;

use confer_e2e::signal::{SignalClient, client_offer};
use confer_gateway::{GatewayConfig, SfuDirectory};
use confer_room::grpc::GrpcRoom;
use confer_room::registry::{SfuNode, SfuRegistry};
use confer_room::{Backends, RoomConfig};
use confer_sfu::{SfuConfig, grpc};
use serde_json::json;
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_joins_and_leaves_through_a_remote_sfu() -> anyhow::Result<()> {
    let (_shutdown, signal) = watch::channel(false);
    let sfu = confer_sfu::start(SfuConfig::default(), signal.clone()).await?;
    let control = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let control_addr = control.local_addr()?;
    tokio::spawn(grpc::serve(sfu.clone(), control, signal.clone()));

    let room_config = RoomConfig {
        anonymous_tenant: Some("dev".into()),
        ..RoomConfig::default()
    };
    let registry = SfuRegistry::new(vec![SfuNode {
        id: "sfu-a".into(),
        region: room_config.default_region.clone(),
        control: control_addr.to_string(),
    }]);
    let room = confer_room::start(
        room_config,
        Backends::in_memory(),
        registry,
        Default::default(),
        signal.clone(),
    )
    .await?;
    let room_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let room_addr = room_listener.local_addr()?;
    tokio::spawn(confer_room::grpc::serve(
        room,
        room_listener,
        signal.clone(),
    ));

    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/v1/signal", http.local_addr()?);
    tokio::spawn(confer_gateway::run(
        GatewayConfig::default(),
        http,
        Arc::new(GrpcRoom::connect(room_addr)?),
        SfuDirectory::remote(),
        signal,
    ));

    let offer = client_offer(2)?;
    let mut clients = Vec::new();
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
        clients.push(client);
    }
    assert_eq!(sfu.occupancy().await?.peers, 2);

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
