//! Joining from a room's address with no name in it, in real browsers: the page
//! first shows the person's camera, asks for a name (refusing to join without one)
//! and lets them turn the camera or microphone off before going in; they join under
//! that name with the camera off for everyone, and the next visit offers the name
//! again.

use std::time::Duration;

use confer_e2e::browser::Driver;
use confer_e2e::room::{CONNECTED, join};
use confer_e2e::server::TestServer;

/// True once the form before joining shows, with the camera's picture playing.
const PREJOIN_SHOWN: &str = "const form = document.getElementById('prejoin');
     return !form.hidden && document.getElementById('prejoin-video').videoWidth > 0
       && document.getElementById('status').textContent === 'Ready to join';";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_address_asks_for_a_name_and_joins_with_the_camera_off() -> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    let driver = Driver::start().await?;
    let ada = driver.browser().await?;
    let bob = driver.browser().await?;
    join(&bob, &server, "lobby", "Bob").await?;

    ada.goto(&server.url("/r/lobby")).await?;
    ada.wait_for(
        "the form before joining, with Ada's camera",
        PREJOIN_SHOWN,
        Duration::from_secs(10),
    )
    .await?;
    // No name, no joining: the form stays, and nobody new is in the room.
    ada.click("#prejoin-join").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        ada.eval(PREJOIN_SHOWN).await?,
        serde_json::Value::Bool(true),
        "a join without a name is not sent"
    );
    assert_eq!(
        bob.eval("return window.conferClient.participants.size;")
            .await?,
        0
    );

    ada.eval("document.getElementById('prejoin-name').value = 'Ada Lovelace'; return true;")
        .await?;
    ada.click("#prejoin-cam").await?;
    assert_eq!(
        ada.eval(
            "const b = document.getElementById('prejoin-cam');
             return [b.textContent, b.getAttribute('aria-pressed')];"
        )
        .await?,
        serde_json::json!(["Camera off", "true"])
    );
    ada.click("#prejoin-join").await?;
    ada.wait_for("Ada in the call", CONNECTED, Duration::from_secs(10))
        .await?;
    bob.wait_for(
        "Ada listed at Bob by the name she gave, camera off, microphone on",
        "const p = [...window.conferClient.participants.values()][0];
         return (!!p && p.name === 'Ada Lovelace' && p.video_muted === true && p.audio_muted === false)
           || JSON.stringify(p || null);",
        Duration::from_secs(10),
    )
    .await?;
    assert_eq!(
        ada.eval(
            "const cam = document.getElementById('toggle-cam');
             return [document.getElementById('prejoin').hidden, cam.textContent,
                     window.conferClient.localTrack('video').enabled];"
        )
        .await?,
        serde_json::json!([true, "Start camera", false]),
        "in the call with the camera off, as chosen"
    );

    // The next visit offers the name given.
    ada.eval("window.conferClient.leave(); location.reload(); return true;")
        .await?;
    ada.wait_for(
        "the form again, with the name given last",
        "return !document.getElementById('prejoin').hidden
           && document.getElementById('prejoin-name').value === 'Ada Lovelace';",
        Duration::from_secs(10),
    )
    .await?;
    Ok(())
}
