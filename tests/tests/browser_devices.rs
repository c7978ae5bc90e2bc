//! A person's own devices in real browsers. A machine without a camera joins with its
//! microphone (told why, shown with its camera off, listed by the room as sending a
//! microphone only) and sends video later through the camera sender it kept. On a
//! machine with three cameras and two microphones, the Devices panel lists them and
//! switches camera, microphone and speaker mid-call without renegotiating: the others
//! keep decoding, a muted microphone stays muted, a camera unplugged gives way to the
//! default one, and the page joins with the same devices after a reload.

use std::time::Duration;

use confer_e2e::browser::{Browser, Driver};
use confer_e2e::room::{join, self_id, sources_of, wait_for_remote_video, wait_for_sources};
use confer_e2e::server::TestServer;
use serde_json::{Value, json};

/// Decoded video frames and received audio packets over the page's connection.
const RECEIVED: &str = r#"
const stats = await window.conferClient.pc.getStats();
let frames = 0, audio = 0;
stats.forEach((s) => {
  if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded || 0;
  if (s.type === 'inbound-rtp' && s.kind === 'audio') audio += s.packetsReceived || 0;
});
return { frames, audio };
"#;

/// An animated canvas, as a processed camera would be.
const CANVAS_CAMERA: &str = r#"
const canvas = document.createElement('canvas');
canvas.width = 640; canvas.height = 360;
const g = canvas.getContext('2d');
let n = 0;
window.__cameraTimer = setInterval(() => {
  g.fillStyle = `hsl(${(n++ * 11) % 360} 60% 40%)`;
  g.fillRect(0, 0, 640, 360);
}, 40);
const track = canvas.captureStream(25).getVideoTracks()[0];
await window.conferClient.setTrack('video', track);
window.conferClient.setMuted('video', false);
return true;
"#;

async fn received(browser: &Browser) -> anyhow::Result<(u64, u64)> {
    let value = browser.eval(RECEIVED).await?;
    Ok((
        value["frames"].as_u64().unwrap_or_default(),
        value["audio"].as_u64().unwrap_or_default(),
    ))
}

/// `browser` decodes more than 20 video frames in the next 2 s (`what` says whose).
async fn keeps_decoding(browser: &Browser, what: &str) -> anyhow::Result<()> {
    let before = received(browser).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = received(browser).await?;
    anyhow::ensure!(after.0 > before.0 + 20, "{what}: {before:?} then {after:?}");
    Ok(())
}

/// Picks the option labelled `label` in the Devices panel's `kind` list, as a person would.
async fn choose(browser: &Browser, kind: &str, label: &str) -> anyhow::Result<()> {
    let picked = browser
        .eval(&format!(
            "const select = document.getElementById('device-{kind}');
             const option = [...select.options].find((o) => o.textContent === '{label}');
             if (!option) return [...select.options].map((o) => o.textContent);
             select.value = option.value;
             select.dispatchEvent(new Event('change'));
             return true;"
        ))
        .await?;
    anyhow::ensure!(
        picked == Value::Bool(true),
        "no {label:?} among the {kind} choices: {picked}"
    );
    Ok(())
}

/// The labels of the Devices panel's `kind` list, and the one selected.
async fn panel_list(browser: &Browser, kind: &str) -> anyhow::Result<Value> {
    browser
        .eval(&format!(
            "const select = document.getElementById('device-{kind}');
             return {{ labels: [...select.options].map((o) => o.textContent),
                       selected: select.selectedIndex < 0 ? null : select.options[select.selectedIndex].textContent }};"
        ))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_without_a_camera_joins_with_its_microphone_and_sends_video_later()
-> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    let driver = Driver::start().await?;
    let no_camera = ["--use-fake-device-for-media-stream=device-count=0".to_owned()];
    let ada = driver.browser_with(&no_camera).await?;
    let bob = driver.browser().await?;
    join(&ada, &server, "nocam", "Ada").await?;
    // Keys in alphabetical order here and in the page's object, so the two texts compare.
    let expected = json!({
        "cam": ["Start camera", "true"],
        "mic": ["Mute mic", "false"],
        "notice": "No camera found: you joined without it",
        "self": [false, true],
    });
    ada.wait_for(
        "a page with no camera in the call, saying why there is no video, its camera off for everyone",
        &format!(
            "const n = document.getElementById('device-notice');
             const cam = document.getElementById('toggle-cam');
             const mic = document.getElementById('toggle-mic');
             const shown = {{ cam: [cam.textContent, cam.getAttribute('aria-pressed')],
                      mic: [mic.textContent, mic.getAttribute('aria-pressed')],
                      notice: n.hidden ? null : n.textContent,
                      self: [window.conferClient.self.audio_muted, window.conferClient.self.video_muted] }};
             return JSON.stringify(shown) === '{expected}' || shown;"
        ),
        Duration::from_secs(5),
    )
    .await?;
    let ada_id = self_id(&ada).await?;

    join(&bob, &server, "nocam", "Bob").await?;
    // Bob hears Ada and sees her tile with its camera off; Ada sees Bob.
    bob.wait_for(
        "Ada's tile at Bob, camera off, her audio playing in it",
        &format!(
            "const t = document.querySelector('.tile[data-participant=\"{ada_id}\"]');
             return (!!t && t.classList.contains('video-off')
               && t.querySelector('video').srcObject.getAudioTracks().length === 1)
               || (t ? t.className + ' ' + t.querySelector('video').srcObject.getTracks().map((k) => k.kind) : 'no tile');"
        ),
        Duration::from_secs(10),
    )
    .await?;
    let before = received(&bob).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = received(&bob).await?;
    assert!(
        after.1 > before.1 + 10,
        "Ada's microphone reaches Bob: {before:?} then {after:?}"
    );
    wait_for_remote_video(&ada).await?;
    // Her camera sender is open and sends nothing: the room lists her microphone only,
    // and Bob gets no video from her.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        sources_of(&server, "nocam", &ada_id).await?,
        ["microphone"],
        "an empty camera sender is not a camera"
    );
    assert_eq!(
        received(&bob).await?.0,
        0,
        "no video from Ada reaches Bob while she has none"
    );

    // A camera for Ada after all (here a canvas, as a processed camera would be): it goes
    // out through the sender she joined with, no renegotiation, and Bob sees it.
    let offer = ada
        .eval("return window.conferClient.pc.localDescription.sdp;")
        .await?;
    assert_eq!(ada.eval(CANVAS_CAMERA).await?, Value::Bool(true));
    bob.wait_for(
        "Ada's video playing at Bob",
        &format!(
            "const t = document.querySelector('.tile[data-participant=\"{ada_id}\"]');
             return !!t && !t.classList.contains('video-off') && t.querySelector('video').videoWidth > 0;"
        ),
        Duration::from_secs(15),
    )
    .await?;
    wait_for_sources(&server, "nocam", &ada_id, &["camera", "microphone"]).await?;
    assert_eq!(
        ada.eval("return window.conferClient.pc.localDescription.sdp;")
            .await?,
        offer,
        "sending a camera later did not renegotiate"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devices_panel_switches_camera_microphone_and_speaker_mid_call() -> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    let driver = Driver::start().await?;
    // Chromium's second fake camera is a depth camera (16-bit grey), which WebRTC does
    // not send; the third gives pictures as a webcam's MJPEG.
    let cameras = ["--use-fake-device-for-media-stream=device-count=3".to_owned()];
    let ada = driver.browser_with(&cameras).await?;
    let bob = driver.browser().await?;
    join(&ada, &server, "devices", "Ada").await?;
    join(&bob, &server, "devices", "Bob").await?;
    wait_for_remote_video(&ada).await?;
    wait_for_remote_video(&bob).await?;
    let ada_id = self_id(&ada).await?;

    ada.click("#devices-button").await?;
    ada.wait_for(
        "the Devices panel open, listing the cameras",
        "return !document.getElementById('devices').hidden
           && document.getElementById('device-videoinput').options.length === 3;",
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!(
        panel_list(&ada, "videoinput").await?,
        json!({"labels": ["fake_device_0", "fake_device_1", "fake_device_2"], "selected": "fake_device_0"}),
    );
    let microphones = panel_list(&ada, "audioinput").await?;
    assert!(
        microphones["labels"]
            .as_array()
            .is_some_and(|l| l.contains(&json!("Fake Audio Input 1")) && l.len() > 1),
        "the microphones listed: {microphones}"
    );
    let speakers = panel_list(&ada, "audiooutput").await?;
    assert!(
        speakers["labels"]
            .as_array()
            .is_some_and(|l| l.contains(&json!("Fake Audio Output 1"))),
        "the speakers listed: {speakers}"
    );

    // Ada mutes, then switches camera and microphone.
    let offer = ada
        .eval("return window.conferClient.pc.localDescription.sdp;")
        .await?;
    ada.click("#toggle-mic").await?;
    ada.eval("window.__firstCamera = window.conferClient.localTrack('video'); return true;")
        .await?;
    choose(&ada, "videoinput", "fake_device_2").await?;
    ada.wait_for(
        "Ada sending her third camera, the first one let go, her own tile showing it",
        "const c = window.conferClient;
         const tile = document.querySelector('.tile.local video');
         return c.localTrack('video')?.label === 'fake_device_2'
           && c.cameraTransceiver.sender.track === c.localTrack('video')
           && window.__firstCamera.readyState === 'ended'
           && tile.srcObject.getVideoTracks()[0] === c.localTrack('video');",
        Duration::from_secs(10),
    )
    .await?;
    keeps_decoding(&bob, "Bob decoding Ada's video after the switch").await?;

    choose(&ada, "audioinput", "Fake Audio Input 1").await?;
    ada.wait_for(
        "Ada sending her second microphone, still muted",
        "const c = window.conferClient;
         const mic = c.localTrack('audio');
         return mic?.label === 'Fake Audio Input 1' && mic.enabled === false
           && c.micTransceiver.sender.track === mic
           && document.getElementById('toggle-mic').getAttribute('aria-pressed') === 'true';",
        Duration::from_secs(10),
    )
    .await?;
    bob.wait_for(
        "Ada still listed as muted at Bob",
        &format!(
            "const p = window.conferClient.participants.get('{ada_id}');
             return !!p && p.audio_muted === true;"
        ),
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!(
        ada.eval("return window.conferClient.pc.localDescription.sdp;")
            .await?,
        offer,
        "switching devices did not renegotiate"
    );
    assert_eq!(
        panel_list(&ada, "videoinput").await?["selected"],
        "fake_device_2"
    );

    // The camera in use is unplugged: the browser ends its track (a fake camera cannot
    // be unplugged, so the page gets the `ended` event the browser would fire). The
    // default camera takes over, the page says so, and Bob goes on seeing Ada.
    ada.eval(
        "window.conferClient.localTrack('video').dispatchEvent(new Event('ended')); return true;",
    )
    .await?;
    ada.wait_for(
        "Ada on her default camera, told why",
        "const c = window.conferClient;
         const n = document.getElementById('device-notice');
         return (c.localTrack('video')?.label === 'fake_device_0'
           && c.cameraTransceiver.sender.track === c.localTrack('video')
           && !n.hidden && n.textContent === 'Your camera was disconnected: now using another one')
           || [c.localTrack('video')?.label, n.textContent];",
        Duration::from_secs(10),
    )
    .await?;
    keeps_decoding(&bob, "Bob decoding Ada's video from her default camera").await?;
    choose(&ada, "videoinput", "fake_device_2").await?;
    ada.wait_for(
        "Ada back on the camera she chose",
        "return window.conferClient.localTrack('video')?.label === 'fake_device_2';",
        Duration::from_secs(10),
    )
    .await?;

    // Sound goes to the speaker chosen.
    choose(&ada, "audiooutput", "Fake Audio Output 1").await?;
    let speaker_id = ada
        .eval(
            "const s = document.getElementById('device-audiooutput');
             return s.options[s.selectedIndex].value;",
        )
        .await?;
    ada.wait_for(
        "Bob's tile playing through the chosen speaker",
        &format!(
            "const v = document.querySelector('.tile.remote video');
             return !!v && v.sinkId === {speaker_id};"
        ),
        Duration::from_secs(5),
    )
    .await?;

    // After a reload the page joins with the devices chosen.
    ada.eval("location.reload(); return true;").await?;
    ada.wait_for(
        "Ada back with her chosen devices",
        &format!(
            "const c = window.conferClient;
             const v = document.querySelector('.tile.remote video');
             return document.getElementById('status').textContent === 'Connected'
               && c.localTrack('video')?.label === 'fake_device_2'
               && c.localTrack('audio')?.label === 'Fake Audio Input 1'
               && !!v && v.sinkId === {speaker_id};"
        ),
        Duration::from_secs(20),
    )
    .await?;
    Ok(())
}
