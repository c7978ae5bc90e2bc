//! A drain that ends with the call still going: two Chromium browsers in a call on one
//! of two SFUs; that SFU drains (it reports itself draining, so no new room goes to
//! it) and then its rooms are evacuated, as the operator does at the drain deadline.
//! Each browser is told its media server is going away, joins again by itself, lands on
//! the other SFU, and decodes the other's video there. The drained SFU ends empty.

use std::time::Duration;

use confer_e2e::browser::{Browser, Driver};
use confer_e2e::room::{CONNECTED, REMOTE_VIDEO_PLAYING, open_join_link};
use confer_e2e::two_sfus::TwoSfus;
use confer_e2e::video::sample_together;
use confer_room::api::RoomApi as _;

/// The stage holds exactly this browser's tile and the other participant's.
const ONE_TILE_EACH: &str = "return document.querySelectorAll('.tile.local').length === 1 \
     && document.querySelectorAll('.tile.remote').length === 1;";

async fn open(deployment: &TwoSfus, browser: &Browser, name: &str) -> anyhow::Result<()> {
    let link = deployment.url(&format!("/r/drain?name={name}"));
    open_join_link(browser, &link, name).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_on_an_evacuated_sfu_goes_on_on_the_other() -> anyhow::Result<()> {
    let deployment = TwoSfus::start().await?;
    let driver = Driver::start().await?;
    let ada = driver.browser().await?;
    let bob = driver.browser().await?;
    open(&deployment, &ada, "Ada").await?;
    open(&deployment, &bob, "Bob").await?;
    for browser in [&ada, &bob] {
        browser
            .wait_for(
                "the other's video",
                REMOTE_VIDEO_PLAYING,
                Duration::from_secs(15),
            )
            .await?;
    }
    let (from, to) = match deployment.peers().await? {
        [2, 0] => (0, 1),
        [0, 2] => (1, 0),
        other => anyhow::bail!("the call should be on one SFU: {other:?}"),
    };

    // The drain: no new rooms on `from`, then its rooms move.
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

    // Media flows again, on the other SFU, both ways, and the page shows the call as
    // it is now: connected, one tile each, the remote one playing.
    for browser in [&ada, &bob] {
        browser
            .wait_for(
                "connected after the move",
                CONNECTED,
                Duration::from_secs(15),
            )
            .await?;
        browser
            .wait_for(
                "the other's video after the move",
                REMOTE_VIDEO_PLAYING,
                Duration::from_secs(15),
            )
            .await?;
        browser
            .wait_for(
                "one local and one remote tile",
                ONE_TILE_EACH,
                Duration::from_secs(5),
            )
            .await?;
    }
    for window in sample_together(&[&ada, &bob], Duration::from_secs(3)).await? {
        assert!(
            window.frames_decoded >= 30,
            "video decodes after the move: {window:?}"
        );
    }
    assert_eq!(
        deployment.peers().await?[from],
        0,
        "the drained SFU is empty"
    );
    Ok(())
}
