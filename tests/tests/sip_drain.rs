//! Phone calls survive a drain: two sipp callers in a room on one of two SFUs, one
//! speaking, one listening. That SFU drains and its rooms are evacuated (the operator's
//! step at the drain deadline); the bridge joins again on the other SFU by itself, and
//! the listener keeps hearing the speaker, in the same stream, without a hang-up.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use confer_e2e::server::{DEV_TENANT, TOKEN_SECRET, assert_metrics, metric};
use confer_e2e::sip::{Bridge, Offer, Script, listen, run_sipp_speaking, scenario};
use confer_e2e::two_sfus::TwoSfus;
use confer_room::api::{RoomApi as _, TenantCreated};
use serde_json::{Value, json};
use tokio::net::UdpSocket;

async fn participants(deployment: &TwoSfus, room: &str) -> anyhow::Result<usize> {
    let body: Value = confer_http::client()?
        .get(deployment.url(&format!("/v1/rooms/{room}/participants")))
        .basic_auth("dev", Some(TOKEN_SECRET))
        .send()
        .await?
        .json()
        .await?;
    let list = body.get("participants").unwrap_or(&body);
    Ok(list.as_array().map_or(0, Vec::len))
}

async fn until_participants(deployment: &TwoSfus, room: &str, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while participants(deployment, room).await? != n {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{room} never had {n} participants"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_follow_their_room_to_another_sfu() -> anyhow::Result<()> {
    let deployment = TwoSfus::start().await?;
    deployment
        .room
        .store()
        .ensure_tenant(
            &TenantCreated {
                tenant: DEV_TENANT.into(),
                api_key: "dev".into(),
                api_secret: TOKEN_SECRET.into(),
            },
            "Development",
        )
        .await?;
    confer_e2e::tenant::create_room(
        &confer_http::client()?,
        &deployment.url(""),
        ("dev", TOKEN_SECRET),
        json!({"name": "moving", "settings": {"waiting_room": false}}),
    )
    .await?;
    let bridge = Bridge::joining_through(format!("ws://{}/v1/signal", deployment.http)).await?;

    let ear = UdpSocket::bind("127.0.0.1:0").await?;
    let listening = scenario(
        Offer::Listen {
            port: ear.local_addr()?.port(),
            pt: 111,
        },
        Script::HangUpAfter { ms: 26_000 },
    );
    let listener = spawn_call(bridge.addr, listening, 0);
    until_participants(&deployment, "moving", 1).await?;
    // 20 s of voice, then the speaker hangs up.
    let speaking = scenario(Offer::Speak, Script::HangUpAfter { ms: 22_000 });
    let speaker = spawn_call(bridge.addr, speaking, 1000);
    until_participants(&deployment, "moving", 2).await?;
    bridge.until_active(2).await?;

    let before = listen(&ear, Duration::from_secs(3)).await;
    assert!(before.packets >= 50, "before the move: {before:?}");
    let (from, to) = match deployment.peers().await? {
        [2, 0] => (0, 1),
        [0, 2] => (1, 0),
        other => anyhow::bail!("the room should be on one SFU: {other:?}"),
    };
    deployment.sfus[from].drain();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let moved = deployment
        .room
        .evacuate(deployment.sfus[from].id.clone())
        .await?;
    assert_eq!(moved, 1, "one room was on the drained SFU");
    let mut wanted = [0, 0];
    wanted[to] = 2;
    deployment.until_peers(wanted).await?;

    // The listener hears the speaker again, in the same stream.
    let after = listen(&ear, Duration::from_secs(4)).await;
    assert!(after.packets >= 100, "after the move: {after:?}");
    assert_eq!(after.ssrcs, before.ssrcs, "one stream across the move");
    let speaker = speaker.await??;
    assert!(
        speaker.success,
        "the speaker's call broke:\n{}",
        speaker.output
    );
    let listener = listener.await??;
    assert!(
        listener.success,
        "the listener's call broke:\n{}",
        listener.output
    );
    let metrics = bridge.metrics();
    assert_metrics(
        &metrics,
        &[("confer_sip_call_ends_total{reason=\"caller_hangup\"}", 2)],
    );
    assert_eq!(
        metric(
            &metrics,
            "confer_sip_call_ends_total{reason=\"room_closed\"}"
        ),
        None,
        "{metrics}"
    );
    Ok(())
}

fn spawn_call(
    bridge: SocketAddr,
    scenario: String,
    voice_packets: u16,
) -> tokio::task::JoinHandle<anyhow::Result<confer_e2e::sip::SippRun>> {
    tokio::spawn(async move { run_sipp_speaking(bridge, "moving", &scenario, voice_packets).await })
}
