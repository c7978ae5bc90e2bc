//! Screen share in real browsers: nothing shows as a screen until one is shared; a
//! participant shares a screen (here an animated
//! canvas, since headless Chromium has no screen to pick) as a second video next to
//! the camera, without renegotiating. The others see it in its own large tile, camera
//! still playing; when sharing stops, the tile goes away. A host who denies screen
//! sharing stops a guest's screen at the SFU; allowing it again brings it back. The
//! room service lists a participant as sending from a screen exactly while it shares
//! one (what the tenant API shows and its track webhooks report). A
//! client that asks for H.264 (`videoCodec`) sends its screen in H.264 as well as its
//! camera.

use std::time::Duration;

use confer_e2e::browser::Driver;
use confer_e2e::room::{
    REMOTE_VIDEO_PLAYING, join, open_join_link, self_id, sources_of, wait_for_remote_video,
    wait_for_sources,
};
use confer_e2e::server::TestServer;

/// An animated canvas as the shared "screen" (captureStream only emits on changes).
const SHARE_CANVAS: &str = r#"
const canvas = document.createElement('canvas');
canvas.width = 1280; canvas.height = 720;
const g = canvas.getContext('2d');
let n = 0;
window.__screenTimer = setInterval(() => {
  g.fillStyle = `hsl(${(n++ * 7) % 360} 60% 40%)`;
  g.fillRect(0, 0, 1280, 720);
  g.fillStyle = '#fff'; g.font = '64px sans-serif'; g.fillText(`slide ${n}`, 100, 200);
}, 66);
await window.conferClient.shareScreen(canvas.captureStream(15).getVideoTracks()[0]);
return true;
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_screen_gets_its_own_tile_stops_cleanly_and_obeys_the_host() -> anyhow::Result<()>
{
    let server = TestServer::start(false).await?;
    let driver = Driver::start().await?;
    let ada = driver.browser().await?;
    let bob = driver.browser().await?;
    join(&ada, &server, "slides", "Ada").await?;
    ada.eval(
        "window.screens = []; \
         window.conferClient.addEventListener('track', ({ detail }) => { \
           if (detail.source === 'screen_share') window.screens.push(detail.participantId); }); \
         return true;",
    )
    .await?;
    join(&bob, &server, "slides", "Bob").await?;
    for browser in [&ada, &bob] {
        wait_for_remote_video(browser).await?;
    }
    // Bob shares nothing: no screen of his shows up at Ada's, not even for a moment
    // (his browser keeps its screen m-line ready, and probes the bandwidth through it).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        ada.eval("return window.screens;").await?,
        serde_json::json!([]),
        "no screen before one is shared"
    );
    let ada_id = self_id(&ada).await?;
    assert_eq!(
        sources_of(&server, "slides", &ada_id).await?,
        ["camera", "microphone"],
        "a screen m-line alone is not a screen"
    );

    ada.eval(SHARE_CANVAS).await?;
    bob.wait_for(
        "Ada's screen in its own tile at Bob",
        &format!(
            "const t = document.querySelector('.tile.screen');
             return !!t && t.dataset.participant === '{ada_id}'
               && t.querySelector('video').videoWidth > 0
               && t.querySelector('.label').textContent === \"Ada's screen\";"
        ),
        Duration::from_secs(10),
    )
    .await?;
    bob.wait_for(
        "Ada's camera still playing beside it",
        REMOTE_VIDEO_PLAYING,
        Duration::from_secs(5),
    )
    .await?;
    wait_for_sources(
        &server,
        "slides",
        &ada_id,
        &["camera", "microphone", "screen_share"],
    )
    .await?;

    ada.eval("clearInterval(window.__screenTimer); await window.conferClient.stopScreenShare(); return true;")
        .await?;
    bob.wait_for(
        "the screen tile gone once sharing stopped",
        "return document.querySelector('.tile.screen') === null;",
        Duration::from_secs(8),
    )
    .await?;
    wait_for_sources(&server, "slides", &ada_id, &["camera", "microphone"]).await?;

    // Ada joined first: she is the host. Bob shares; Ada denies, then allows sharing.
    bob.eval(SHARE_CANVAS).await?;
    let bob_screen = "const t = document.querySelector('.tile.screen');
         return !!t && t.querySelector('video').videoWidth > 0;";
    ada.wait_for("Bob's screen at Ada", bob_screen, Duration::from_secs(10))
        .await?;
    ada.eval("await window.conferClient.host('deny_screen_share'); return true;")
        .await?;
    ada.wait_for(
        "Bob's screen stopped by the host",
        "return document.querySelector('.tile.screen') === null;",
        Duration::from_secs(8),
    )
    .await?;
    assert!(server.sfu.stats().snapshot().rtp_blocked > 0);
    // And it stays away while denied (a blocked screen must not come back on its own).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let back = ada
        .eval("return document.querySelector('.tile.screen') !== null;")
        .await?;
    assert_eq!(
        back,
        serde_json::Value::Bool(false),
        "the denied screen came back"
    );
    ada.eval("await window.conferClient.host('allow_screen_share'); return true;")
        .await?;
    ada.wait_for(
        "Bob's screen back once allowed",
        bob_screen,
        Duration::from_secs(10),
    )
    .await?;
    for browser in [ada, bob] {
        browser.close().await?;
    }
    Ok(())
}

/// The codecs of the video streams this browser decodes.
const DECODED_CODECS: &str = r#"
const stats = await window.conferClient.pc.getStats();
const codecs = [];
stats.forEach((s) => {
  if (s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded > 0) {
    codecs.push((stats.get(s.codecId) || {}).mimeType || 'none');
  }
});
return codecs;
"#;

/// The codec of each stream the screen's sender sends.
const SCREEN_SENT_CODECS: &str = r#"
const stats = await window.conferClient.screenTransceiver.sender.getStats();
const codecs = [];
stats.forEach((s) => {
  if (s.type === 'outbound-rtp') codecs.push((stats.get(s.codecId) || {}).mimeType || 'none');
});
return codecs;
"#;

/// Whether this browser decodes two video streams.
const TWO_VIDEOS_DECODED: &str = r#"
const stats = await window.conferClient.pc.getStats();
let decoded = 0;
stats.forEach((s) => {
  if (s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded > 0) decoded++;
});
return decoded >= 2;
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_asks_for_h264_shares_its_screen_in_h264() -> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    let driver = Driver::start().await?;
    let ada = driver.browser().await?;
    let bob = driver.browser().await?;
    let link = server.url("/r/slides-h264?name=Ada&codec=h264");
    open_join_link(&ada, &link, "Ada").await?;
    join(&bob, &server, "slides-h264", "Bob").await?;
    wait_for_remote_video(&bob).await?;

    ada.eval(SHARE_CANVAS).await?;
    bob.wait_for(
        "Ada's screen playing at Bob",
        "const t = document.querySelector('.tile.screen');
         return !!t && t.querySelector('video').videoWidth > 0;",
        Duration::from_secs(10),
    )
    .await?;
    // The camera and the screen, both decoded (the stats lag the picture a little).
    bob.wait_for(
        "two video streams decoded at Bob",
        TWO_VIDEOS_DECODED,
        Duration::from_secs(10),
    )
    .await?;
    let screen = ada.eval(SCREEN_SENT_CODECS).await?;
    assert_eq!(
        screen,
        serde_json::json!(["video/H264"]),
        "Ada's screen is sent in H.264"
    );
    let decoded = bob.eval(DECODED_CODECS).await?;
    let decoded = decoded.as_array().cloned().unwrap_or_default();
    assert!(
        decoded.len() >= 2 && decoded.iter().all(|codec| codec == "video/H264"),
        "Bob decodes Ada's camera and screen, both H.264: {decoded:?}"
    );
    for browser in [ada, bob] {
        browser.close().await?;
    }
    Ok(())
}
