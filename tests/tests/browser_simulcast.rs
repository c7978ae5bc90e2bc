//! Simulcast in real browsers: Chromium publishes its camera as three layers; the
//! subscriber's web app reports how large it shows the video, and the SFU forwards
//! the layer that fits, switching at keyframes so the picture never freezes.

use std::time::{Duration, Instant};

use confer_e2e::browser::Driver;
use confer_e2e::room::{join, wait_for_remote_video};
use confer_e2e::server::TestServer;
use confer_e2e::video::{START_SAMPLER, page_now, window_since};

fn resize_remote_tile(width: u32, height: u32) -> String {
    format!(
        "const tile = document.querySelector('.tile.remote');
         tile.style.cssText = 'position:absolute; inset:auto; left:0; top:0; width:{width}px; height:{height}px';
         return true;"
    )
}

fn width_is(condition: &str) -> String {
    format!(
        "const s = window.__video && window.__video.samples.at(-1);
         return !!s && s[2] {condition};"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_tile_gets_the_low_layer_and_a_large_one_the_high_layer() -> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    let driver = Driver::start().await?;
    let ada = driver.browser().await?;
    let bob = driver.browser().await?;
    join(&ada, &server, "layers", "Ada").await?;
    join(&bob, &server, "layers", "Bob").await?;
    wait_for_remote_video(&bob).await?;
    bob.eval(START_SAMPLER).await?;

    bob.eval(&resize_remote_tile(200, 112)).await?;
    bob.wait_for(
        "the low layer (width <= 320) for a small tile",
        &width_is("<= 320"),
        Duration::from_secs(10),
    )
    .await?;
    // Let the low layer settle, then grow the tile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let switches_before = server.sfu.stats().snapshot().layer_switches;
    let since = page_now(&bob).await?;
    let grown = Instant::now();
    bob.eval(&resize_remote_tile(1200, 675)).await?;
    bob.wait_for(
        "a high layer (width >= 640) for a large tile",
        &width_is(">= 640"),
        Duration::from_secs(5),
    )
    .await?;
    let took = grown.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let window = window_since(&bob, since).await?;
    eprintln!("small -> large tile: high layer after {took:?}; {window:?}");
    // Chromium's own freeze accounting (an inter-frame delay over 3x the average):
    // all freezes together under 1 s means none of them lasted 1 s.
    assert!(
        window.freeze_seconds < 1.0,
        "video froze across the switch: {window:?}"
    );
    assert!(window.frames_decoded > 30, "too few frames: {window:?}");
    assert!(
        window.last_width >= 640,
        "the high layer held after the switch: {window:?}"
    );
    let stats = server.sfu.stats().snapshot();
    assert!(
        stats.layer_switches > switches_before,
        "the SFU switched layers: {stats:?}"
    );
    // Chromium answers the transport-wide sequence numbers with TWCC feedback, from
    // which the SFU estimates each subscriber's bandwidth itself.
    assert!(
        stats.estimates_twcc > 0,
        "send-side estimates from Chromium's TWCC feedback: {stats:?}"
    );
    for browser in [ada, bob] {
        browser.close().await?;
    }
    Ok(())
}
