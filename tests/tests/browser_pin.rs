//! Pinning in real browsers: a click on a participant's tile pins it across the stage
//! with the others small beneath it, and the SFU, told each video's shown size,
//! forwards the pinned camera's high simulcast layer and the small ones' low layer. A
//! second click unpins it; a pinned participant who leaves takes the pin along.

use std::time::Duration;

use confer_e2e::browser::{Browser, Driver};
use confer_e2e::room::{join, self_id};
use confer_e2e::server::TestServer;

/// The decoded width of the video in `participant`'s tile, and the tile's area in CSS
/// pixels, as an array `[width, area, pinned]`.
fn tile_of(participant: &str) -> String {
    format!(
        "const t = document.querySelector('.tile[data-participant=\"{participant}\"]:not(.screen)');
         if (!t) return null;
         const box = t.getBoundingClientRect();
         return [t.querySelector('video').videoWidth, Math.round(box.width * box.height), t.classList.contains('pinned')];"
    )
}

/// True once `participant`'s tile is pinned (or not) and its video decodes at a width
/// that passes `width` (a JS condition on `w`).
fn tile_is(participant: &str, pinned: bool, width: &str) -> String {
    format!(
        "const t = document.querySelector('.tile[data-participant=\"{participant}\"]:not(.screen)');
         if (!t) return 'no tile';
         const w = t.querySelector('video').videoWidth;
         return (t.classList.contains('pinned') === {pinned} && ({width})) || [w, t.className];"
    )
}

async fn click_tile(browser: &Browser, participant: &str) -> anyhow::Result<()> {
    browser
        .click(&format!(
            ".tile[data-participant=\"{participant}\"]:not(.screen)"
        ))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_tile_fills_the_stage_and_gets_the_high_layer() -> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    let driver = Driver::start().await?;
    let ada = driver.browser().await?;
    let bob = driver.browser().await?;
    let cy = driver.browser().await?;
    join(&ada, &server, "pins", "Ada").await?;
    join(&bob, &server, "pins", "Bob").await?;
    join(&cy, &server, "pins", "Cy").await?;
    let (bob_id, cy_id) = (self_id(&bob).await?, self_id(&cy).await?);
    for id in [&bob_id, &cy_id] {
        ada.wait_for(
            "both others' videos playing at Ada",
            &tile_is(id, false, "w > 0"),
            Duration::from_secs(20),
        )
        .await?;
    }

    click_tile(&ada, &bob_id).await?;
    ada.wait_for(
        "Bob pinned at Ada, in the high layer",
        &tile_is(&bob_id, true, "w >= 640"),
        Duration::from_secs(15),
    )
    .await?;
    ada.wait_for(
        "Cy small beneath him, in a low layer",
        &tile_is(&cy_id, false, "w > 0 && w <= 320"),
        Duration::from_secs(15),
    )
    .await?;
    let bob_tile = ada.eval(&tile_of(&bob_id)).await?;
    let cy_tile = ada.eval(&tile_of(&cy_id)).await?;
    let (bob_area, cy_area) = (
        bob_tile[1].as_f64().unwrap_or_default(),
        cy_tile[1].as_f64().unwrap_or_default(),
    );
    assert!(
        bob_area > 6.0 * cy_area && cy_area > 0.0,
        "the pinned tile fills the stage: Bob {bob_tile}, Cy {cy_tile}"
    );
    assert_eq!(
        ada.eval("return document.getElementById('stage').className;")
            .await?,
        "pinned"
    );

    // A second click unpins: the two tiles alike again, Cy back above the low layer.
    click_tile(&ada, &bob_id).await?;
    ada.wait_for(
        "Cy's tile its grid size again, in a higher layer",
        &tile_is(&cy_id, false, "w > 320"),
        Duration::from_secs(15),
    )
    .await?;
    ada.wait_for(
        "nothing pinned",
        "return document.querySelector('.tile.pinned') === null
           && document.getElementById('stage').className === 'count-3';",
        Duration::from_secs(5),
    )
    .await?;

    // Cy pinned, then gone: the pin goes with her.
    click_tile(&ada, &cy_id).await?;
    ada.wait_for(
        "Cy pinned",
        &tile_is(&cy_id, true, "w > 0"),
        Duration::from_secs(5),
    )
    .await?;
    cy.eval("window.conferClient.leave(); return true;").await?;
    ada.wait_for(
        "Cy's tile and the pin gone",
        "return document.querySelector('.tile.pinned') === null
           && document.getElementById('stage').className === 'count-2';",
        Duration::from_secs(10),
    )
    .await?;
    Ok(())
}
