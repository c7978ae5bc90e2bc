//! A hidden tile costs no bandwidth: when the subscriber's web app hides a remote
//! video, the SFU stops forwarding it; when it is shown again, forwarding resumes from
//! a fresh keyframe and the video plays on.

use std::time::Duration;

use confer_e2e::browser::{Browser, Driver};
use confer_e2e::room::{join, wait_for_remote_video};
use confer_e2e::server::TestServer;

/// Video packets the subscriber has received so far.
const VIDEO_PACKETS: &str = r#"
const stats = await window.conferClient.pc.getStats();
let packets = 0, frames = 0;
stats.forEach((s) => {
  if (s.type === 'inbound-rtp' && s.kind === 'video') { packets += s.packetsReceived || 0; frames += s.framesDecoded || 0; }
});
return {packets, frames};
"#;

async fn video_counts(browser: &Browser) -> anyhow::Result<(u64, u64)> {
    let value = browser.eval(VIDEO_PACKETS).await?;
    Ok((
        value["packets"].as_u64().unwrap_or_default(),
        value["frames"].as_u64().unwrap_or_default(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hidden_tile_pauses_its_video_and_showing_it_resumes() -> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    let driver = Driver::start().await?;
    let ada = driver.browser().await?;
    let bob = driver.browser().await?;
    join(&ada, &server, "hidden", "Ada").await?;
    join(&bob, &server, "hidden", "Bob").await?;
    wait_for_remote_video(&bob).await?;

    bob.eval("document.querySelector('.tile.remote').style.display = 'none'; return true;")
        .await?;
    // The report is debounced and in-flight packets land; then nothing more arrives.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (hidden_start, _) = video_counts(&bob).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (hidden_end, _) = video_counts(&bob).await?;
    eprintln!(
        "while hidden: {} video packets in 2 s",
        hidden_end - hidden_start
    );
    assert!(
        hidden_end - hidden_start < 5,
        "a hidden tile still receives video: {} packets in 2 s",
        hidden_end - hidden_start
    );
    assert!(server.sfu.stats().snapshot().slots_paused > 0);

    bob.eval("document.querySelector('.tile.remote').style.display = ''; return true;")
        .await?;
    let (_, frames_before) = video_counts(&bob).await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, frames) = video_counts(&bob).await?;
        if frames >= frames_before + 20 {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "video did not resume after the tile was shown: {frames} frames, {frames_before} before"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for browser in [ada, bob] {
        browser.close().await?;
    }
    Ok(())
}
