//! Active speaker in real browsers: the SFU reads the audio level Chromium puts on
//! every audio packet, and the web app outlines the tile of whoever is speaking. When
//! the speaker mutes and the other unmutes, the outline moves, and the speaker, still
//! speaking, is told she is muted.

use std::time::Duration;

use confer_e2e::audio::write_tone_wav;
use confer_e2e::browser::Driver;
use confer_e2e::room::self_id;
use confer_e2e::server::TestServer;

fn speaking_is(participant: &str) -> String {
    format!(
        "const t = document.querySelector('.tile.speaking');
         return !!t && t.dataset.participant === '{participant}';"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_speaking_participant_is_outlined_and_follows_the_voice() -> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    let driver = Driver::start().await?;
    // A steady tone as the microphone: the built-in fake one only clicks.
    let wav = std::env::temp_dir().join(format!("confer-voice-{}.wav", std::process::id()));
    write_tone_wav(&wav, 60)?;
    let voice = [format!(
        "--use-file-for-fake-audio-capture={}",
        wav.display()
    )];
    let ada = driver.browser_with(&voice).await?;
    let bob = driver.browser_with(&voice).await?;
    // Bob joins with his microphone off: Ada's fake microphone is the only voice.
    ada.goto(&server.url("/r/speakers?name=Ada")).await?;
    ada.wait_for(
        "Ada connected",
        "return document.getElementById('status').textContent === 'Connected';",
        Duration::from_secs(10),
    )
    .await?;
    bob.goto(&server.url("/r/speakers?name=Bob")).await?;
    bob.wait_for(
        "Bob connected",
        "return document.getElementById('status').textContent === 'Connected';",
        Duration::from_secs(10),
    )
    .await?;
    bob.eval("document.getElementById('toggle-mic').click();")
        .await?;
    let (ada_id, bob_id) = (self_id(&ada).await?, self_id(&bob).await?);

    for browser in [&ada, &bob] {
        browser
            .wait_for(
                "Ada outlined",
                &speaking_is(&ada_id),
                Duration::from_secs(10),
            )
            .await?;
    }
    // Speaking unmuted, Ada is told nothing.
    let ada_told = ada
        .eval("return !document.getElementById('muted-notice').hidden;")
        .await?;
    assert_eq!(
        ada_told.as_bool(),
        Some(false),
        "Ada, unmuted, is told nothing"
    );
    // Ada goes quiet, Bob speaks.
    ada.eval("document.getElementById('toggle-mic').click();")
        .await?;
    // Her voice goes on at her end: her page tells her she is muted.
    ada.wait_for(
        "Ada told she is muted",
        "return !document.getElementById('muted-notice').hidden;",
        Duration::from_secs(5),
    )
    .await?;
    bob.eval("document.getElementById('toggle-mic').click();")
        .await?;
    for browser in [&ada, &bob] {
        browser
            .wait_for(
                "Bob outlined",
                &speaking_is(&bob_id),
                Duration::from_secs(10),
            )
            .await?;
    }
    for browser in [ada, bob] {
        browser.close().await?;
    }
    let _ = std::fs::remove_file(&wav);
    Ok(())
}
