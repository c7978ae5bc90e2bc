//! Dial-in over SIP with real SIP peers (sipp): callers join rooms as participants,
//! hear each other through the room's SFU, hang up or are hung up on, wait in a
//! waiting room and cancel, raise a hand and mute from the keypad; a room without dial-in refuses them; what the bridge
//! cannot take is refused with the right status, and garbage on the SIP port changes
//! nothing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use confer_e2e::server::{Options, TOKEN_SECRET, TestServer, assert_metrics, metric};
use confer_e2e::sip::{
    Bridge, OPUS_SILENCE, Offer, Script, SippRun, VOICE_PACKETS, create_room, listen, run_sipp,
    run_sipp_from, run_sipp_playing, scenario, voice_with_keys,
};
use confer_gateway::GatewayConfig;
use serde_json::Value;
use tokio::net::UdpSocket;

/// The room's participants as the tenant API lists them.
async fn listed(server: &TestServer, room: &str) -> anyhow::Result<Vec<Value>> {
    let body: Value = confer_http::client()?
        .get(server.url(&format!("/v1/rooms/{room}/participants")))
        .basic_auth("dev", Some(TOKEN_SECRET))
        .send()
        .await?
        .json()
        .await?;
    let list = body.get("participants").unwrap_or(&body);
    Ok(list.as_array().cloned().unwrap_or_default())
}

/// The room's participants (tenant API), as (id, name, state).
async fn participants(
    server: &TestServer,
    room: &str,
) -> anyhow::Result<Vec<(String, String, String)>> {
    Ok(listed(server, room)
        .await?
        .iter()
        .map(|p| {
            let field = |name: &str| {
                p.get(name)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            (field("id"), field("name"), field("state"))
        })
        .collect())
}

async fn wait_for_participants(
    server: &TestServer,
    room: &str,
    count: usize,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = participants(server, room).await?;
        if list.len() == count {
            return Ok(list);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "room {room} has {list:?}, not {count} participants"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_callers_join_the_room_and_one_hears_the_other() -> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    let bridge = Bridge::start(&server).await?;
    create_room(&server, "dial-in", false).await?;
    // The listener offers Opus as payload type 109 on a socket this test reads.
    let ear = UdpSocket::bind("127.0.0.1:0").await?;
    let listener_offer = Offer::Listen {
        port: ear.local_addr()?.port(),
        pt: 109,
    };
    let listener = spawn_call(
        bridge.addr,
        "dial-in",
        scenario(listener_offer, Script::HangUpAfter { ms: 12000 }),
    );
    wait_for_participants(&server, "dial-in", 1).await?;
    // The speaker plays 250 Opus packets (5 s) once answered.
    let speaker = spawn_call(
        bridge.addr,
        "dial-in",
        scenario(Offer::Speak, Script::HangUpAfter { ms: 7000 }),
    );
    let members = wait_for_participants(&server, "dial-in", 2).await?;
    assert!(
        members
            .iter()
            .all(|(_, name, state)| name == "Dial Tester" && state == "active"),
        "{members:?}"
    );
    let heard = listen(&ear, Duration::from_secs(9)).await;
    let speaker = speaker.await??;
    assert!(
        speaker.success,
        "the speaking caller's call failed:\n{}",
        speaker.output
    );
    let listener = listener.await??;
    assert!(
        listener.success,
        "the listening caller's call failed:\n{}",
        listener.output
    );

    // The voice went caller → bridge → SFU → bridge → caller, as one stream in the
    // listener's payload type.
    assert!(heard.packets >= 100, "the listener heard {heard:?}");
    assert_eq!(heard.payload_types, [109], "{heard:?}");
    assert_eq!(heard.ssrcs.len(), 1, "{heard:?}");
    assert_eq!(heard.payload, OPUS_SILENCE);
    wait_for_participants(&server, "dial-in", 0).await?;
    let metrics = bridge.metrics();
    assert_metrics(
        &metrics,
        &[
            ("confer_sip_calls_total{outcome=\"answered\"}", 2),
            ("confer_sip_call_ends_total{reason=\"caller_hangup\"}", 2),
            ("confer_sip_calls_active", 0),
        ],
    );
    // Every packet of the voice is bridged, or dropped while the room's media
    // connection was still coming up (a few at most).
    let bridged = metric(
        &metrics,
        "confer_sip_rtp_packets_total{direction=\"from_caller\"}",
    )
    .unwrap_or(0);
    let early = metric(
        &metrics,
        "confer_sip_rtp_dropped_total{reason=\"not_connected\"}",
    )
    .unwrap_or(0);
    assert_eq!(bridged + early, u64::from(VOICE_PACKETS), "{metrics}");
    assert!(bridged >= u64::from(VOICE_PACKETS) - 25, "{metrics}");
    let to_caller = metric(
        &metrics,
        "confer_sip_rtp_packets_total{direction=\"to_caller\"}",
    )
    .context("no to_caller count")?;
    assert!(to_caller >= heard.packets as u64, "{metrics}");
    Ok(())
}

/// A caller keys `*9` and `*6` on the phone's keypad (RFC 4733 events in its RTP): its
/// hand goes up and it is muted, as the room lists it; its voice stops going into the
/// room until it keys `*6` again. Muted by a host (the tenant API), `*6` unmutes it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_raises_a_hand_and_mutes_from_the_keypad() -> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    let bridge = Bridge::start(&server).await?;
    create_room(&server, "keypad", false).await?;
    // 12 s of voice: `*9` at 1 s, `*6` at 2 s, 6 s and 10 s (packets 50, 100, 300, 500).
    let voice = voice_with_keys(600, &[(50, "*9"), (100, "*6"), (300, "*6"), (500, "*6")]);
    let keyed = voice.iter().filter(|rtp| rtp[1] == 101).count() as u64;
    let call = tokio::spawn({
        let addr = bridge.addr;
        async move {
            let scenario = scenario(Offer::Speak, Script::HangUpAfter { ms: 14_000 });
            run_sipp_playing("127.0.0.1", addr, "keypad", &scenario, &voice).await
        }
    });
    let caller = caller_when(&server, "raised a hand and muted", |p| {
        p["hand_raised_at"].as_u64().is_some() && p["audio_muted"] == true
    })
    .await?;
    assert_eq!(caller["kind"], "sip", "{caller}");
    caller_when(&server, "unmuted", |p| p["audio_muted"] == false).await?;
    // A host mutes the caller; its next `*6` unmutes it.
    let id = caller["id"].as_str().unwrap_or_default();
    let muted = confer_http::client()?
        .post(server.url(&format!("/v1/rooms/keypad/participants/{id}/mute")))
        .basic_auth("dev", Some(TOKEN_SECRET))
        .json(&serde_json::json!({"kind": "audio", "muted": true}))
        .send()
        .await?;
    assert!(muted.status().is_success(), "{}", muted.text().await?);
    caller_when(&server, "muted by the host", |p| p["audio_blocked"] == true).await?;
    caller_when(&server, "unmuted by its key", |p| {
        p["audio_blocked"] == false && p["audio_muted"] == false
    })
    .await?;
    let call = call.await??;
    assert!(
        call.success,
        "the keying caller's call failed:\n{}",
        call.output
    );

    let metrics = bridge.metrics();
    assert_metrics(
        &metrics,
        &[
            ("confer_sip_key_commands_total{command=\"hand\"}", 1),
            ("confer_sip_key_commands_total{command=\"mute\"}", 3),
            ("confer_sip_rtp_dropped_total{reason=\"dtmf\"}", keyed),
        ],
    );
    // Muted from 2 s to 6 s by its keys (some 190 packets of voice kept out of the
    // room), then by the host until its key at 10 s (some 190 more, less the moment
    // the test took to mute it); the rest went in.
    let held = metric(&metrics, "confer_sip_rtp_dropped_total{reason=\"muted\"}").unwrap_or(0);
    assert!((250..=420).contains(&held), "{metrics}");
    let bridged = metric(
        &metrics,
        "confer_sip_rtp_packets_total{direction=\"from_caller\"}",
    )
    .unwrap_or(0);
    assert!(bridged >= 150, "{metrics}");
    // Audio held back while muted is no loss: the SFU rated the caller's link and
    // never found it poor.
    let sfu = server.metrics().await?;
    let changes = |quality: &str| {
        metric(
            &sfu,
            &format!("confer_sfu_quality_changes_total{{quality=\"{quality}\"}}"),
        )
    };
    assert!(changes("excellent") >= Some(1), "{sfu}");
    assert_eq!(changes("poor"), Some(0), "{sfu}");
    assert_eq!(changes("lost"), Some(0), "{sfu}");
    Ok(())
}

/// The dial-in caller in room `keypad` once `wanted` holds of it (tenant API), within
/// 15 s.
async fn caller_when(
    server: &TestServer,
    what: &str,
    wanted: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let listed = listed(server, "keypad").await?;
        if let Some(caller) = listed.iter().find(|p| wanted(p)) {
            return Ok(caller.clone());
        }
        anyhow::ensure!(Instant::now() < deadline, "no caller {what} in {listed:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_caller_from_the_room_hangs_up_with_bye() -> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    let bridge = Bridge::start(&server).await?;
    create_room(&server, "removal", false).await?;
    let caller = spawn_call(
        bridge.addr,
        "removal",
        scenario(Offer::Speak, Script::AwaitBye),
    );
    // Answered first: removed before the answer, the caller would get 403 instead.
    bridge.until_active(1).await?;
    let members = wait_for_participants(&server, "removal", 1).await?;
    remove_expecting_bye(&server, "removal", &members[0].0, caller).await?;
    let metrics = bridge.metrics();
    assert_metrics(
        &metrics,
        &[
            ("confer_sip_call_ends_total{reason=\"room_closed\"}", 1),
            ("confer_sip_calls_active", 0),
        ],
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_waits_in_the_waiting_room_hearing_ringing_and_can_cancel() -> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    let bridge = Bridge::start(&server).await?;
    create_room(&server, "lobby", true).await?;
    let run = run_sipp(
        bridge.addr,
        "lobby",
        &scenario(Offer::Speak, Script::CancelWhileRinging),
    )
    .await?;
    assert!(
        run.success,
        "ringing, then 200 and 487 for the CANCEL expected:\n{}",
        run.output
    );
    wait_for_participants(&server, "lobby", 0).await?;
    let metrics = bridge.metrics();
    assert_metrics(
        &metrics,
        &[("confer_sip_calls_total{outcome=\"cancelled\"}", 1)],
    );
    assert_eq!(
        metric(&metrics, "confer_sip_calls_total{outcome=\"answered\"}"),
        None,
        "{metrics}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_bridge_cannot_take_gets_a_clear_answer() -> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    let bridge = Bridge::start(&server).await?;
    expect_refused(
        bridge.addr,
        "anything",
        Offer::PcmuOnly,
        488,
        "a PCMU-only offer",
    )
    .await?;
    expect_refused(
        bridge.addr,
        "no%20such%20room",
        Offer::Speak,
        404,
        "a name that is no room name",
    )
    .await?;

    // Garbage, a truncated request and a request without its transaction headers.
    let probe = UdpSocket::bind("127.0.0.1:0").await?;
    probe.connect(bridge.addr).await?;
    for junk in [
        &b"\x16\xfe\xfd\x00\x00garbage"[..],
        b"INVITE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP",
        &[0xffu8; 1500],
    ] {
        probe.send(junk).await?;
    }
    probe.send(b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKa\r\n\r\n").await?;
    let reply = receive(&probe).await?;
    assert!(
        reply.starts_with("SIP/2.0 400 Bad Request (missing From)"),
        "{reply}"
    );
    // The bridge still answers a well-formed request.
    let local = probe.local_addr()?;
    let options = format!(
        "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKb\r\nFrom: <sip:p@{local}>;tag=1\r\n\
         To: <sip:x@127.0.0.1>\r\nCall-ID: probe-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    probe.send(options.as_bytes()).await?;
    let reply = receive(&probe).await?;
    assert!(reply.starts_with("SIP/2.0 200 OK\r\n"), "{reply}");
    assert!(
        reply.contains("Allow: INVITE, ACK, BYE, CANCEL, OPTIONS\r\n"),
        "{reply}"
    );
    // An unsupported method and a BYE for no call.
    probe
        .send(options.replace("OPTIONS", "SUBSCRIBE").as_bytes())
        .await?;
    assert!(
        receive(&probe)
            .await?
            .starts_with("SIP/2.0 405 Method Not Allowed")
    );
    probe
        .send(options.replace("OPTIONS", "BYE").as_bytes())
        .await?;
    assert!(receive(&probe).await?.starts_with("SIP/2.0 481 "));

    let metrics = bridge.metrics();
    assert_metrics(
        &metrics,
        &[
            ("confer_sip_calls_total{outcome=\"not_acceptable\"}", 1),
            ("confer_sip_calls_total{outcome=\"not_found\"}", 1),
            ("confer_sip_bad_messages_total", 4),
        ],
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_without_dial_in_refuses_callers_and_another_takes_them() -> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    let bridge = Bridge::start(&server).await?;
    confer_e2e::tenant::create_room(
        &confer_http::client()?,
        &server.url(""),
        ("dev", TOKEN_SECRET),
        serde_json::json!({"name": "board", "settings": {"waiting_room": false, "sip_dial_in": false}}),
    )
    .await?;
    expect_refused(
        bridge.addr,
        "board",
        Offer::Speak,
        403,
        "a room without dial-in",
    )
    .await?;
    assert!(participants(&server, "board").await?.is_empty());
    assert_metrics(
        &bridge.metrics(),
        &[("confer_sip_calls_total{outcome=\"forbidden\"}", 1)],
    );

    // A host opens the room to callers (the tenant API, as a Conference's sipDialIn
    // does): the next call is taken.
    let response = confer_http::client()?
        .patch(server.url("/v1/rooms/board"))
        .basic_auth("dev", Some(TOKEN_SECRET))
        .json(&serde_json::json!({"settings": {"sip_dial_in": true}}))
        .send()
        .await?;
    assert!(response.status().is_success(), "{}", response.text().await?);
    let caller = spawn_call(
        bridge.addr,
        "board",
        scenario(Offer::Speak, Script::AwaitBye),
    );
    bridge.until_active(1).await?;
    let members = wait_for_participants(&server, "board", 1).await?;
    // The tenant API lists the caller as dialled in.
    let listed: Value = confer_http::client()?
        .get(server.url("/v1/rooms/board/participants"))
        .basic_auth("dev", Some(TOKEN_SECRET))
        .send()
        .await?
        .json()
        .await?;
    let listed = listed.get("participants").unwrap_or(&listed);
    assert_eq!(listed[0]["kind"], "sip", "{listed}");
    remove_expecting_bye(&server, "board", &members[0].0, caller).await?;
    Ok(())
}

/// Removes participant `id` from `room` through the tenant API, and expects its
/// `caller` (answered, awaiting BYE) to be hung up on.
async fn remove_expecting_bye(
    server: &TestServer,
    room: &str,
    id: &str,
    caller: tokio::task::JoinHandle<anyhow::Result<SippRun>>,
) -> anyhow::Result<()> {
    let response = confer_http::client()?
        .delete(server.url(&format!("/v1/rooms/{room}/participants/{id}")))
        .basic_auth("dev", Some(TOKEN_SECRET))
        .send()
        .await?;
    anyhow::ensure!(response.status().is_success(), "{}", response.text().await?);
    let caller = tokio::time::timeout(Duration::from_secs(30), caller).await???;
    anyhow::ensure!(caller.success, "the caller got no BYE:\n{}", caller.output);
    Ok(())
}

/// Calls `room` offering `offer`, and expects the bridge to answer `status` (for
/// `why`).
async fn expect_refused(
    bridge: SocketAddr,
    room: &str,
    offer: Offer,
    status: u16,
    why: &str,
) -> anyhow::Result<()> {
    let run = run_sipp(bridge, room, &scenario(offer, Script::Refused { status })).await?;
    anyhow::ensure!(run.success, "{status} expected for {why}:\n{}", run.output);
    Ok(())
}

async fn receive(socket: &UdpSocket) -> anyhow::Result<String> {
    let mut buf = [0u8; 4096];
    let len = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
        .await
        .context("no answer from the bridge")??;
    Ok(String::from_utf8_lossy(&buf[..len]).into_owned())
}

/// Runs one scripted call in the background.
fn spawn_call(
    bridge: SocketAddr,
    room: &'static str,
    scenario: String,
) -> tokio::task::JoinHandle<anyhow::Result<SippRun>> {
    tokio::spawn(async move { run_sipp(bridge, room, &scenario).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_callers_wrong_pins_do_not_lock_out_the_others() -> anyhow::Result<()> {
    // The gateway trusts the bridge's X-Forwarded-For: limits count each caller.
    let server = TestServer::start_with(Options {
        gateway: GatewayConfig {
            trusted_proxies: vec!["127.0.0.1".parse().map_err(anyhow::Error::msg)?],
            ..GatewayConfig::default()
        },
        ..Options::default()
    })
    .await?;
    let bridge = Bridge::start(&server).await?;
    confer_e2e::tenant::create_room(
        &confer_http::client()?,
        &server.url(""),
        ("dev", TOKEN_SECRET),
        serde_json::json!({"name": "board", "password": "4321", "settings": {"waiting_room": false}}),
    )
    .await?;
    let refused = |status| scenario(Offer::Speak, Script::Refused { status });
    // A guesser at 127.0.0.2: five wrong PINs are refused, then the guessing is.
    for _ in 0..5 {
        let run = run_sipp_from("127.0.0.2", bridge.addr, "board*0000", &refused(403), 10).await?;
        assert!(run.success, "403 expected for a wrong PIN:\n{}", run.output);
    }
    let run = run_sipp_from("127.0.0.2", bridge.addr, "board*0000", &refused(503), 10).await?;
    assert!(
        run.success,
        "503 expected once the guesser is rate limited:\n{}",
        run.output
    );
    // Another caller, at 127.0.0.3, with the right PIN gets in at once.
    let answered = scenario(Offer::Speak, Script::HangUpAfter { ms: 500 });
    let run = run_sipp_from("127.0.0.3", bridge.addr, "board*4321", &answered, 10).await?;
    assert!(
        run.success,
        "the right PIN from another caller is answered:\n{}",
        run.output
    );
    let metrics = bridge.metrics();
    assert_metrics(
        &metrics,
        &[
            ("confer_sip_calls_total{outcome=\"forbidden\"}", 5),
            ("confer_sip_calls_total{outcome=\"answered\"}", 1),
        ],
    );
    Ok(())
}
