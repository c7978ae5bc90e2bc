//! What the bridge itself tells a phone caller (sipp for SIP, this test's socket for
//! the caller's RTP): that the call is recorded, on joining a recorded room and when
//! recording stops, and what the caller's keys did (`*6` muted, unmuted or refused by
//! a host's mute, `*9` hand raised), a host's mute, and a host lowering every hand
//! (one `participants_changed` for the bridge). Each prompt arrives as its own
//! Opus packets, in order and whole, in the caller's one stream. A deployment may
//! play only the recording notices (`--sip-prompts recording`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use confer_e2e::joins::{host_control, join_host};
use confer_e2e::server::{Options, TOKEN_SECRET, TestServer, assert_metrics, metric};
use confer_e2e::sip::{Bridge, Offer, Script, create_room, run_sipp, scenario, voice_with_keys};
use confer_sip::prompt::{Prompt, PromptSet};
use serde_json::{Value, json};
use tokio::net::UdpSocket;

/// An RTP packet the caller got.
struct Got {
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    marker: bool,
    payload: Vec<u8>,
    from: SocketAddr,
}

/// The next `count` RTP packets on the caller's socket, within 15 s.
async fn next_packets(ear: &UdpSocket, count: usize) -> anyhow::Result<Vec<Got>> {
    let until = Instant::now() + Duration::from_secs(15);
    let mut got = Vec::with_capacity(count);
    let mut buf = [0u8; 2048];
    while got.len() < count {
        let (len, from) = tokio::time::timeout_at(until.into(), ear.recv_from(&mut buf))
            .await
            .with_context(|| format!("{} of {count} packets heard", got.len()))??;
        let packet = &buf[..len];
        anyhow::ensure!(len > 12 && packet[0] == 0x80, "not plain RTP: {packet:?}");
        got.push(Got {
            sequence: u16::from_be_bytes([packet[2], packet[3]]),
            timestamp: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
            ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
            marker: packet[1] & 0x80 != 0,
            payload: packet[12..].to_vec(),
            from,
        });
    }
    Ok(got)
}

/// Nothing reaches the caller's socket for `quiet`.
async fn silence(ear: &UdpSocket, quiet: Duration) -> anyhow::Result<()> {
    let mut buf = [0u8; 2048];
    match tokio::time::timeout(quiet, ear.recv_from(&mut buf)).await {
        Err(_) => Ok(()),
        Ok(got) => anyhow::bail!(
            "the caller heard {:?} bytes it should not have",
            got.map(|(len, _)| len)
        ),
    }
}

/// Hears `prompt` whole: its packets in order, 20 ms of timestamp apart, the first
/// marked as a new talk spurt, right after what the caller heard before (`heard`).
async fn hear(ear: &UdpSocket, prompt: Prompt, heard: &mut Vec<Got>) -> anyhow::Result<()> {
    let expected = prompt.packets();
    let got = next_packets(ear, expected.len()).await?;
    for (n, (got, expected)) in got.iter().zip(expected).enumerate() {
        anyhow::ensure!(
            got.payload == expected.payload,
            "packet {n} of {prompt:?} is not the prompt's ({} bytes, not {})",
            got.payload.len(),
            expected.payload.len()
        );
    }
    anyhow::ensure!(got[0].marker, "{prompt:?} starts a talk spurt");
    for pair in got.windows(2) {
        anyhow::ensure!(
            pair[1].timestamp.wrapping_sub(pair[0].timestamp) == 960,
            "{prompt:?}: 20 ms per packet"
        );
    }
    if let Some(last) = heard.last() {
        anyhow::ensure!(
            got[0].sequence == last.sequence.wrapping_add(1) && got[0].ssrc == last.ssrc,
            "{prompt:?} continues the caller's one stream"
        );
    }
    heard.extend(got);
    Ok(())
}

/// Plays `packets` (RTP, 20 ms apart) from the caller's socket to the bridge.
async fn play(ear: &UdpSocket, to: SocketAddr, packets: &[Vec<u8>]) -> anyhow::Result<()> {
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    for packet in packets {
        ticker.tick().await;
        ear.send_to(packet, to).await?;
    }
    Ok(())
}

async fn tenant(
    method: reqwest::Method,
    server: &TestServer,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let response = confer_http::client()?
        .request(method, server.url(path))
        .basic_auth("dev", Some(TOKEN_SECRET))
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    anyhow::ensure!(status.is_success(), "{path}: {status} {text}");
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Changes the room's `settings` through the tenant API.
async fn patch_room(server: &TestServer, settings: Value) -> anyhow::Result<()> {
    tenant(
        reqwest::Method::PATCH,
        server,
        "/v1/rooms/notice",
        json!({ "settings": settings }),
    )
    .await?;
    Ok(())
}

/// A recorded room `notice`, and a call to it from the test's socket (keys offered).
async fn call_recorded_room(
    server: &TestServer,
    bridge: &Bridge,
    ear: &UdpSocket,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<confer_e2e::sip::SippRun>>> {
    create_room(server, "notice", false).await?;
    patch_room(server, json!({"recording": true})).await?;
    let offer = Offer::Keypad {
        port: ear.local_addr()?.port(),
    };
    let scenario = scenario(offer, Script::AwaitBye);
    let addr = bridge.addr;
    Ok(tokio::spawn(async move {
        run_sipp(addr, "notice", &scenario).await
    }))
}

/// Removes the caller (tenant API) and expects its call to end with a BYE.
async fn hang_up(
    server: &TestServer,
    id: &str,
    call: tokio::task::JoinHandle<anyhow::Result<confer_e2e::sip::SippRun>>,
) -> anyhow::Result<()> {
    tenant(
        reqwest::Method::DELETE,
        server,
        &format!("/v1/rooms/notice/participants/{id}"),
        Value::Null,
    )
    .await?;
    let run = tokio::time::timeout(Duration::from_secs(30), call).await???;
    anyhow::ensure!(run.success, "the caller got no BYE:\n{}", run.output);
    Ok(())
}

/// The caller `id` as the tenant API lists it.
async fn caller(server: &TestServer, id: &str) -> anyhow::Result<Value> {
    tenant(
        reqwest::Method::GET,
        server,
        &format!("/v1/rooms/notice/participants/{id}"),
        Value::Null,
    )
    .await
}

/// The caller's participant id (tenant API), once it is in the room.
async fn caller_id(server: &TestServer) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let listed = tenant(
            reqwest::Method::GET,
            server,
            "/v1/rooms/notice/participants",
            Value::Null,
        )
        .await?;
        let list = listed.get("participants").unwrap_or(&listed);
        if let Some(id) = list
            .as_array()
            .and_then(|all| all.first())
            .and_then(|p| p["id"].as_str())
        {
            return Ok(id.to_owned());
        }
        anyhow::ensure!(Instant::now() < deadline, "the caller never joined");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_is_told_of_recording_and_of_what_its_keys_and_a_host_did() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("confer-sip-prompts-{}", std::process::id()));
    let server = TestServer::start_with(Options::recording_to(&dir)).await?;
    let bridge = Bridge::start(&server).await?;
    let ear = UdpSocket::bind("127.0.0.1:0").await?;
    let call = call_recorded_room(&server, &bridge, &ear).await?;

    // Joining a recorded room: the notice, before anything else.
    let mut heard = Vec::new();
    hear(&ear, Prompt::RecordingStarted, &mut heard).await?;
    let bridge_rtp = heard[0].from;
    let id = caller_id(&server).await?;

    // The caller's keys, in one stream: `*6` at packet 10, `*9` at 40, `*6` at 70 and
    // at 100 (each key's events and end take 7 packets).
    let voice = voice_with_keys(130, &[(10, "*6"), (40, "*9"), (70, "*6"), (100, "*6")]);
    play(&ear, bridge_rtp, &voice[..30]).await?;
    hear(&ear, Prompt::Muted, &mut heard).await?;
    play(&ear, bridge_rtp, &voice[30..60]).await?;
    hear(&ear, Prompt::HandRaised, &mut heard).await?;

    // The tenant stops the recording.
    patch_room(&server, json!({"recording": false})).await?;
    hear(&ear, Prompt::RecordingStopped, &mut heard).await?;
    play(&ear, bridge_rtp, &voice[60..90]).await?;
    hear(&ear, Prompt::Unmuted, &mut heard).await?;

    // A host mutes the caller in a room where nobody may unmute themselves: the
    // caller is told, and its `*6` is refused.
    patch_room(&server, json!({"allow_self_unmute": false})).await?;
    tenant(
        reqwest::Method::POST,
        &server,
        &format!("/v1/rooms/notice/participants/{id}/mute"),
        json!({"kind": "audio", "muted": true}),
    )
    .await?;
    hear(&ear, Prompt::Muted, &mut heard).await?;
    play(&ear, bridge_rtp, &voice[90..]).await?;
    hear(&ear, Prompt::MuteRefused, &mut heard).await?;

    // A host lowers every hand: the caller hears its went down.
    let (mut host, _) = join_host(&server, "notice").await?;
    let lowered = host_control(&mut host, "lower_all_hands", "", "").await?;
    assert!(lowered.get("ack").is_some(), "{lowered}");
    hear(&ear, Prompt::HandLowered, &mut heard).await?;

    // Nothing else was said, and the room's last word stands.
    silence(&ear, Duration::from_secs(4)).await?;
    let listed = caller(&server, &id).await?;
    assert_eq!(listed["audio_muted"], true, "{listed}");
    assert_eq!(listed.get("hand_raised_at"), None, "{listed}");

    hang_up(&server, &id, call).await?;
    assert_metrics(
        &bridge.metrics(),
        &[
            ("confer_sip_prompts_total{prompt=\"recording_started\"}", 1),
            ("confer_sip_prompts_total{prompt=\"recording_stopped\"}", 1),
            ("confer_sip_prompts_total{prompt=\"muted\"}", 2),
            ("confer_sip_prompts_total{prompt=\"unmuted\"}", 1),
            ("confer_sip_prompts_total{prompt=\"hand_raised\"}", 1),
            ("confer_sip_prompts_total{prompt=\"hand_lowered\"}", 1),
            ("confer_sip_prompts_total{prompt=\"mute_refused\"}", 1),
            ("confer_sip_key_commands_total{command=\"mute\"}", 3),
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A deployment that plays only the recording notices (`--sip-prompts recording`):
/// the caller hears that the call is recorded, and nothing when its `*6` mutes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_may_play_only_the_recording_notices() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("confer-sip-notices-{}", std::process::id()));
    let server = TestServer::start_with(Options::recording_to(&dir)).await?;
    let bridge = Bridge::with_prompts(&server, PromptSet::Recording).await?;
    let ear = UdpSocket::bind("127.0.0.1:0").await?;
    let call = call_recorded_room(&server, &bridge, &ear).await?;
    let mut heard = Vec::new();
    hear(&ear, Prompt::RecordingStarted, &mut heard).await?;
    let id = caller_id(&server).await?;

    let voice = voice_with_keys(30, &[(10, "*6")]);
    play(&ear, heard[0].from, &voice).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = caller(&server, &id).await?;
        if listed["audio_muted"] == true {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "*6 did not mute the caller: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    silence(&ear, Duration::from_secs(4)).await?;

    hang_up(&server, &id, call).await?;
    let metrics = bridge.metrics();
    assert_metrics(
        &metrics,
        &[
            ("confer_sip_prompts_total{prompt=\"recording_started\"}", 1),
            ("confer_sip_key_commands_total{command=\"mute\"}", 1),
        ],
    );
    assert_eq!(
        metric(&metrics, "confer_sip_prompts_total{prompt=\"muted\"}"),
        None,
        "{metrics}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
