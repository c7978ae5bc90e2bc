//! WHIP in real browsers: a Chromium page publishes its fake camera and microphone with
//! one HTTP request (a plain `RTCPeerConnection` and `fetch`, as any WHIP client does),
//! and a participant in the room's web app sees and hears it. `DELETE` on the session
//! takes it out of the room. Bad requests are refused with the status WHIP clients
//! expect, and nothing joins.

use std::time::Duration;

use confer_auth::VideoGrant;
use confer_e2e::browser::{Browser, Driver};
use confer_e2e::joins::sign;
use confer_e2e::server::{Options, TOKEN_SECRET, TestServer, metric};
use serde_json::Value;

/// Sets up a peer connection with `setup` (which adds its transceivers to `pc`),
/// offers it to `/v1/<protocol>/<room>` with `token` once its candidates are gathered,
/// and applies the answer; the status, the session's URL and the `Link` headers come
/// back, and the connection is `window.session`.
fn post_offer(protocol: &str, room: &str, token: &str, setup: &str) -> String {
    format!(
        r#"
const pc = new RTCPeerConnection();
{setup}
await pc.setLocalDescription(await pc.createOffer());
await new Promise((done) => {{
  if (pc.iceGatheringState === 'complete') return done();
  pc.onicegatheringstatechange = () => {{ if (pc.iceGatheringState === 'complete') done(); }};
  setTimeout(done, 3000);
}});
const response = await fetch('/v1/{protocol}/{room}', {{
  method: 'POST',
  headers: {{'Content-Type': 'application/sdp', Authorization: 'Bearer {token}'}},
  body: pc.localDescription.sdp,
}});
const body = await response.text();
if (response.status !== 201) return {{status: response.status, body}};
await pc.setRemoteDescription({{type: 'answer', sdp: body}});
window.session = pc;
return {{status: response.status, location: response.headers.get('Location'),
        links: response.headers.get('Link'), type: response.headers.get('Content-Type')}};
"#
    )
}

/// Publishes the page's fake camera and microphone over WHIP.
fn whip_publish(room: &str, token: &str) -> String {
    post_offer(
        "whip",
        room,
        token,
        "const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: {width: 640, height: 360}});
for (const track of stream.getTracks()) pc.addTransceiver(track, {direction: 'sendonly'});",
    )
}

/// Plays the room over WHEP: one audio and one video slot, receive only.
fn whep_play(room: &str, token: &str) -> String {
    post_offer(
        "whep",
        room,
        token,
        "pc.addTransceiver('audio', {direction: 'recvonly'});
pc.addTransceiver('video', {direction: 'recvonly'});",
    )
}

/// What the page's WHIP or WHEP connection receives: video frames decoded (and the
/// widest), audio packets.
const RECEIVED: &str = r"return window.session.getStats().then((stats) => {
  const got = {frames: 0, width: 0, audio: 0};
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') { got.frames += s.framesDecoded || 0; got.width = Math.max(got.width, s.frameWidth || 0); }
    if (s.type === 'inbound-rtp' && s.kind === 'audio') got.audio += s.packetsReceived || 0;
  });
  return got;
});";

/// The gateway's gauge `name` (sessions it holds), from its `/metrics`.
async fn held(server: &TestServer, name: &str) -> anyhow::Result<u64> {
    metric(&server.metrics().await?, name).ok_or_else(|| anyhow::anyhow!("no {name} on /metrics"))
}

/// `DELETE` on a session's URL with `token`: the status.
async fn end(url: &str, token: &str) -> anyhow::Result<u16> {
    let response = reqwest::Client::new()
        .delete(url)
        .bearer_auth(token)
        .send()
        .await?;
    Ok(response.status().as_u16())
}

/// How long the gateway lets a silent client be.
const SILENT_FOR: Duration = Duration::from_secs(3);

const REMOTE_TILES: &str = "return [...document.querySelectorAll('.tile.remote')].map((t) => (t.querySelector('video') || {}).videoWidth || 0);";

/// A server that lets clients silent for 3 s go, and two pages: Bob in room `stage`
/// in the web app, and an encoder page on the server's origin (no call of its own) to
/// publish from.
async fn stage() -> anyhow::Result<(TestServer, Driver, Browser, Browser)> {
    let server = TestServer::start_with(Options::liveness(SILENT_FOR)).await?;
    let driver = Driver::start().await?;
    let bob = driver.browser().await?;
    bob.join_call(&server.url("/r/stage?name=Bob")).await?;
    let encoder = driver.browser().await?;
    encoder.goto(&server.url("/healthz")).await?;
    Ok((server, driver, bob, encoder))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_publishes_over_whip_and_the_room_sees_it_until_it_stops() -> anyhow::Result<()> {
    let (server, _driver, bob, encoder) = stage().await?;
    let base = server.url("");
    let base = base.trim_end_matches('/');
    let token = sign("dev", TOKEN_SECRET, "encoder", VideoGrant::join("stage"));
    let published = encoder.eval(&whip_publish("stage", &token)).await?;
    assert_eq!(published["status"], 201, "{published}");
    assert_eq!(published["type"], "application/sdp", "{published}");
    let location = published["location"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        location.starts_with("/v1/whip/stage/"),
        "the session's URL: {published}"
    );
    encoder
        .wait_for(
            "the publisher's media connected",
            "return window.session.connectionState === 'connected';",
            Duration::from_secs(10),
        )
        .await?;
    bob.wait_for(
        "Bob seeing the encoder's camera",
        "const tiles = [...document.querySelectorAll('.tile.remote')]; return tiles.length === 1 && tiles[0].querySelector('video').videoWidth >= 320;",
        Duration::from_secs(15),
    )
    .await?;
    bob.wait_for(
        "Bob hearing the encoder",
        r"const pc = window.conferClient.pc; return pc.getStats().then((stats) => { let heard = false; stats.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'audio' && s.packetsReceived > 50) heard = true; }); return heard; });",
        Duration::from_secs(10),
    )
    .await?;
    // Held past the gateway's liveness: the session answers the gateway's pings.
    tokio::time::sleep(SILENT_FOR * 2).await;
    assert_eq!(
        held(&server, "confer_gateway_whip_publishers").await?,
        1,
        "one publisher held"
    );
    assert_eq!(
        bob.eval(REMOTE_TILES).await?.as_array().map(Vec::len),
        Some(1)
    );
    let listed = bob
        .eval("return [...document.querySelectorAll('#people li')].map((li) => li.textContent).join('|');")
        .await?;
    assert!(
        listed
            .as_str()
            .is_some_and(|people| people.contains("encoder")),
        "the encoder is listed by its token's name: {listed}"
    );

    let client = reqwest::Client::new();
    // Only with the token that started it.
    let other = sign("dev", TOKEN_SECRET, "mallory", VideoGrant::join("stage"));
    let refused = end(&format!("{base}{location}"), &other).await?;
    assert_eq!(refused, 403);
    let patched = client
        .patch(format!("{base}{location}"))
        .bearer_auth(&token)
        .header("content-type", "application/trickle-ice-sdpfrag")
        .body("a=candidate:1 1 udp 1 127.0.0.1 9 typ host")
        .send()
        .await?;
    assert_eq!(
        patched.status(),
        405,
        "no trickle: candidates come in the offer"
    );
    let stopped = end(&format!("{base}{location}"), &token).await?;
    assert_eq!(stopped, 200);
    assert_eq!(
        held(&server, "confer_gateway_whip_publishers").await?,
        0,
        "no publisher held after the DELETE"
    );
    bob.wait_for(
        "the encoder gone from Bob's page",
        "return document.querySelectorAll('.tile.remote').length === 0;",
        Duration::from_secs(10),
    )
    .await?;
    let again = end(&format!("{base}{location}"), &token).await?;
    assert_eq!(again, 404, "the session is over");

    // An encoder that stops without a DELETE: its media connection's end ends the
    // session, and the room no longer shows it.
    let published = encoder.eval(&whip_publish("stage", &token)).await?;
    assert_eq!(published["status"], 201, "{published}");
    let location = published["location"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    bob.wait_for(
        "Bob seeing the encoder again",
        "const tiles = [...document.querySelectorAll('.tile.remote')]; return tiles.length === 1 && tiles[0].querySelector('video').videoWidth > 0;",
        Duration::from_secs(15),
    )
    .await?;
    encoder.eval("window.session.close(); return true;").await?;
    bob.wait_for(
        "the closed encoder gone from Bob's page",
        "return document.querySelectorAll('.tile.remote').length === 0;",
        // The SFU lets a peer that sends nothing go after 15 s.
        Duration::from_secs(30),
    )
    .await?;
    // Without a DELETE, the gateway holds no session for it any more.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let publishers = held(&server, "confer_gateway_whip_publishers").await?;
        if publishers == 0 {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the closed encoder's session still held ({publishers})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = end(&format!("{base}{location}"), &token).await?;
    assert_eq!(status, 404, "its session ended with its media");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_whip_requests_are_refused_and_nothing_joins() -> anyhow::Result<()> {
    let (server, _driver, bob, encoder) = stage().await?;
    let base = server.url("");
    let base = base.trim_end_matches('/');

    // A real offer, with tokens that may not publish in this room.
    let cases: [(&str, String, u64, &str); 4] = [
        (
            "a token signed with another secret",
            sign("dev", "not-the-secret", "enc", VideoGrant::join("stage")),
            401,
            "token_invalid",
        ),
        (
            "a token for another room",
            sign("dev", TOKEN_SECRET, "enc", VideoGrant::join("other")),
            403,
            "token_room_mismatch",
        ),
        (
            "a token that may not publish",
            sign(
                "dev",
                TOKEN_SECRET,
                "enc",
                VideoGrant {
                    can_publish: false,
                    ..VideoGrant::join("stage")
                },
            ),
            403,
            "permission_denied",
        ),
        ("no token", String::new(), 401, "token_required"),
    ];
    for (what, token, status, code) in cases {
        let refused = encoder.eval(&whip_publish("stage", &token)).await?;
        assert_eq!(refused["status"], status, "{what}: {refused}");
        let body: Value = serde_json::from_str(refused["body"].as_str().unwrap_or("{}"))?;
        assert_eq!(body["error"]["code"], code, "{what}: {refused}");
    }

    let token = sign("dev", TOKEN_SECRET, "enc", VideoGrant::join("stage"));
    let client = reqwest::Client::new();
    let post = |content_type: &'static str, body: &'static str| {
        client
            .post(format!("{base}/v1/whip/stage"))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    assert_eq!(post("application/json", "{}").await?.status(), 415);
    assert_eq!(post("application/sdp", "hello").await?.status(), 400);
    let garbage = post("application/sdp", "v=0\r\nm=nonsense\r\n").await?;
    assert_eq!(garbage.status(), 400, "an offer the SFU cannot apply");
    let body: Value = garbage.json().await?;
    assert_eq!(body["error"]["code"], "invalid_sdp");

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        bob.eval(REMOTE_TILES).await?,
        serde_json::json!([]),
        "nobody joined"
    );
    let people = bob
        .eval("return document.querySelectorAll('#people li').length;")
        .await?;
    assert_eq!(people, 1, "Bob alone in the room");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_watches_the_room_over_whep_until_it_stops() -> anyhow::Result<()> {
    let (server, _driver, bob, player) = stage().await?;
    let base = server.url("");
    let base = base.trim_end_matches('/');
    // A token that may not receive others' media gets nothing to play.
    let deaf = VideoGrant {
        can_subscribe: false,
        ..VideoGrant::join("stage")
    };
    let refused = player
        .eval(&whep_play(
            "stage",
            &sign("dev", TOKEN_SECRET, "deaf", deaf),
        ))
        .await?;
    assert_eq!(refused["status"], 403, "{refused}");
    let body: Value = serde_json::from_str(refused["body"].as_str().unwrap_or("{}"))?;
    assert_eq!(body["error"]["code"], "permission_denied", "{refused}");

    let token = sign("dev", TOKEN_SECRET, "player", VideoGrant::join("stage"));
    let started = player.eval(&whep_play("stage", &token)).await?;
    assert_eq!(started["status"], 201, "{started}");
    let location = started["location"].as_str().unwrap_or_default().to_owned();
    assert!(location.starts_with("/v1/whep/stage/"), "{started}");

    // Bob's camera and microphone reach the player.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let received = loop {
        let received = player.eval(RECEIVED).await?;
        if received["frames"].as_u64() > Some(30) && received["audio"].as_u64() > Some(50) {
            break received;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the player did not get Bob's media: {received}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(received["width"].as_u64() >= Some(320), "{received}");
    assert_eq!(
        held(&server, "confer_gateway_whep_players").await?,
        1,
        "one player held"
    );
    bob.wait_for(
        "the player listed in Bob's page",
        "return document.getElementById('people').textContent.includes('player');",
        Duration::from_secs(5),
    )
    .await?;

    // A WHIP session's URL does not end a WHEP session.
    let session = location.rsplit('/').next().unwrap_or_default();
    let wrong = end(&format!("{base}/v1/whip/stage/{session}"), &token).await?;
    assert_eq!(wrong, 404);
    let stopped = end(&format!("{base}{location}"), &token).await?;
    assert_eq!(stopped, 200);
    bob.wait_for(
        "the player gone from Bob's page",
        "return !document.getElementById('people').textContent.includes('player');",
        Duration::from_secs(10),
    )
    .await?;
    Ok(())
}
