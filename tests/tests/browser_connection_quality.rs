//! Connection quality in real browsers. Ada's path to the SFU loses a fifth of the media
//! she sends (a relay in front of the SFU drops every fifth RTP packet from her
//! address, as a lossy network would); Bob's loses nothing. Bob's page marks Ada's tile poor, Ada's page tells her that her connection
//! is unstable, and nobody's page blames Bob: his uplink is clean, and what Ada lost
//! before it reached the SFU is not counted against his downlink, though it is missing
//! from what he receives too. The SFU's metrics count the peers at each quality.

use std::time::Duration;

use confer_e2e::browser::{Browser, Driver};
use confer_e2e::lossy_link::{FRONT_IP, LossyLink};
use confer_e2e::room::{join, self_id, wait_for_remote_video};
use confer_e2e::server::{Options, TestServer, metric};
use confer_sfu::SfuConfig;

fn tile_shows(participant: &str, quality: &str) -> String {
    format!(
        "const t = document.querySelector('.tile[data-participant=\"{participant}\"]');
         const s = t && t.querySelector('.signal');
         return !!s && t.dataset.quality === '{quality}' && !s.hidden && s.title === 'Connection: {quality}';"
    )
}

/// What the page's client was last told of `participant`'s connection ('' until told).
async fn told(browser: &Browser, participant: &str) -> anyhow::Result<String> {
    let quality = browser
        .eval(&format!(
            "return window.conferClient.qualities.get('{participant}') || '';"
        ))
        .await?;
    Ok(quality.as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossy_uplink_marks_its_own_participant_and_nobody_else() -> anyhow::Result<()> {
    let server = TestServer::start_with(Options {
        sfu: SfuConfig {
            announce_ip: Some(FRONT_IP.into()),
            ..SfuConfig::default()
        },
        ..Options::default()
    })
    .await?;
    let front = server.sfu.media_addr();
    let sfu = std::net::SocketAddr::from(([127, 0, 0, 1], front.port()));
    let link = LossyLink::start(front, sfu, 5).await?;
    let driver = Driver::start().await?;
    let (ada, bob) = (driver.browser().await?, driver.browser().await?);
    join(&ada, &server, "weak-link", "Ada").await?;
    let ufrag = ada
        .eval("return window.conferClient.pc.localDescription.sdp.match(/a=ice-ufrag:(\\S+)/)[1];")
        .await?;
    link.degrade(ufrag.as_str().unwrap_or_default());
    join(&bob, &server, "weak-link", "Bob").await?;
    wait_for_remote_video(&bob).await?;
    let (ada_id, bob_id) = (self_id(&ada).await?, self_id(&bob).await?);

    bob.wait_for(
        "Ada's tile marked poor on Bob's page",
        &tile_shows(&ada_id, "poor"),
        Duration::from_secs(20),
    )
    .await?;
    ada.wait_for(
        "Ada told her own connection is unstable",
        "const n = document.getElementById('connection-notice');
         return !n.hidden && n.dataset.quality === 'poor' && n.textContent.includes('unstable');",
        Duration::from_secs(20),
    )
    .await?;
    ada.wait_for(
        "Ada's own tile marked poor",
        &tile_shows(&ada_id, "poor"),
        Duration::from_secs(5),
    )
    .await?;

    // Bob is rated too, and never poor, through several windows of Ada's loss.
    for browser in [&ada, &bob] {
        browser
            .wait_for(
                "Bob rated",
                &format!("return window.conferClient.qualities.has('{bob_id}');"),
                Duration::from_secs(10),
            )
            .await?;
    }
    for _ in 0..8 {
        for (page, browser) in [("Ada's", &ada), ("Bob's", &bob)] {
            let quality = told(browser, &bob_id).await?;
            assert!(
                quality == "excellent" || quality == "good",
                "{page} page rates Bob {quality:?}"
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let notice_hidden = bob
        .eval("return document.getElementById('connection-notice').hidden;")
        .await?;
    assert_eq!(notice_hidden.as_bool(), Some(true), "Bob is told nothing");
    assert_eq!(told(&bob, &ada_id).await?, "poor");

    let metrics = server.metrics().await?;
    let rated = |quality: &str| {
        metric(
            &metrics,
            &format!("confer_sfu_peers_by_quality{{quality=\"{quality}\"}}"),
        )
    };
    assert_eq!(rated("poor"), Some(1), "{metrics}");
    assert_eq!(rated("lost"), Some(0));
    assert_eq!(
        rated("excellent").zip(rated("good")).map(|(e, g)| e + g),
        Some(1)
    );

    for browser in [ada, bob] {
        browser.close().await?;
    }
    Ok(())
}
