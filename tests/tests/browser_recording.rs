//! Recording in real browsers: the host starts recording from the room's switches,
//! every page shows that the room is recorded (one who joins later too, and is
//! recorded as well), the host stops it, and the tenant API lists one WebM file per
//! published track. Chromium itself plays a camera file back (frames decoded at the
//! camera's size, the length written in the file) and decodes a microphone file to
//! sound. A camera sent in H.264 is recorded in H.264 and plays back the same way.

use std::time::{Duration, Instant};

use confer_e2e::browser::{Browser, Driver};
use confer_e2e::server::{DEV_TENANT, Options, TOKEN_SECRET, TestServer};
use serde_json::Value;

const BADGE_SHOWN: &str = "return document.getElementById('recording-badge').hidden === false;";
const BADGE_HIDDEN: &str = "return document.getElementById('recording-badge').hidden === true;";

async fn recordings(base: &str, room: &str) -> anyhow::Result<Vec<Value>> {
    let listed: Value = reqwest::Client::new()
        .get(format!("{base}/v1/rooms/{room}/recordings"))
        .basic_auth(DEV_TENANT, Some(TOKEN_SECRET))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(listed["recordings"].as_array().cloned().unwrap_or_default())
}

fn file_of(all: &[Value], participant: &str, source: &str) -> anyhow::Result<String> {
    all.iter()
        .find(|r| r["participant_id"] == participant && r["source"] == source)
        .and_then(|r| r["file"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no {source} recording of {participant} in {all:?}"))
}

/// Plays a recording in the page: what Chromium made of it.
fn playback(url: &str, auth: &str) -> String {
    format!(
        r#"
const response = await fetch('{url}', {{headers: {{Authorization: 'Basic ' + btoa('{auth}')}}}});
if (!response.ok) return {{error: response.status}};
const blob = await response.blob();
const video = document.createElement('video');
video.muted = true;
video.src = URL.createObjectURL(blob);
document.body.appendChild(video);
await new Promise((done, failed) => {{ video.onloadedmetadata = done; video.onerror = () => failed(new Error('not playable: ' + (video.error && video.error.message))); }});
await video.play();
await new Promise((done) => {{ video.onended = done; setTimeout(done, 25000); }});
const quality = video.getVideoPlaybackQuality();
return {{type: blob.type, bytes: blob.size, duration: video.duration, width: video.videoWidth,
        height: video.videoHeight, frames: quality.totalVideoFrames, played: video.currentTime}};
"#
    )
}

/// Decodes a microphone recording: its length and its loudest sample.
fn decoded_audio(url: &str, auth: &str) -> String {
    format!(
        r#"
const response = await fetch('{url}', {{headers: {{Authorization: 'Basic ' + btoa('{auth}')}}}});
if (!response.ok) return {{error: response.status}};
const data = await response.arrayBuffer();
const audio = await new AudioContext().decodeAudioData(data);
let peak = 0;
for (const sample of audio.getChannelData(0)) peak = Math.max(peak, Math.abs(sample));
return {{duration: audio.duration, peak}};
"#
    )
}

/// A server whose SFU and gateway keep recordings under a fresh directory `name`.
async fn recording_server(name: &str) -> anyhow::Result<(TestServer, std::path::PathBuf)> {
    let dir = std::env::temp_dir().join(format!("confer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = TestServer::start_with(Options::recording_to(&dir)).await?;
    Ok((server, dir))
}

/// Clicks the host's record switch once it is there.
async fn press_record(host: &Browser) -> anyhow::Result<()> {
    host.wait_for(
        "the host's record switch",
        "const b = document.querySelector('[data-control=\"record\"]'); if (!b) return false; b.click(); return true;",
        Duration::from_secs(10),
    )
    .await
}

/// The room's recordings once `count` are listed, all finished.
async fn finished(base: &str, room: &str, count: usize) -> anyhow::Result<Vec<Value>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = recordings(base, room).await?;
        let done = all.iter().filter(|r| r["complete"] == true).count();
        if done == count && all.len() == count {
            return Ok(all);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not {count} finished files: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asserts what Chromium made of a camera file it played: `seconds` long, give or
/// take, decoded at the camera's size, to the end.
fn assert_played(played: &Value, seconds: std::ops::Range<f64>) {
    assert_eq!(played["type"], "video/webm", "{played}");
    let duration = played["duration"].as_f64().unwrap_or_default();
    assert!(seconds.contains(&duration), "the file's length: {played}");
    assert!(
        played["width"].as_u64() >= Some(320),
        "decoded at the camera's size: {played}"
    );
    assert!(
        played["frames"].as_u64() >= Some(60),
        "frames decoded: {played}"
    );
    assert!(
        played["played"].as_f64() >= Some(duration - 0.5),
        "played to the end: {played}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_records_the_room_and_the_tenant_gets_each_track_back() -> anyhow::Result<()> {
    let (server, dir) = recording_server("recordings").await?;
    let base = server.url("");
    let base = base.trim_end_matches('/');
    let driver = Driver::start().await?;

    // The first to join an anonymous room is its host.
    let ada = driver.browser().await?;
    let ada_id = ada.join_call(&server.url("/r/studio?name=Ada")).await?;
    let bob = driver.browser().await?;
    let bob_id = bob.join_call(&server.url("/r/studio?name=Bob")).await?;
    assert_eq!(
        bob.eval("return !!document.querySelector('[data-control=\"record\"]');")
            .await?,
        Value::Bool(false),
        "only hosts have the switch"
    );
    assert_eq!(
        ada.eval(BADGE_HIDDEN).await?,
        Value::Bool(true),
        "not recorded yet"
    );

    let pressed = Instant::now();
    press_record(&ada).await?;
    for (page, who) in [(&ada, "Ada"), (&bob, "Bob")] {
        page.wait_for(
            &format!("{who}'s page showing the recording"),
            BADGE_SHOWN,
            Duration::from_secs(5),
        )
        .await?;
    }
    bob.wait_for(
        "the chat telling Bob",
        "return document.getElementById('messages').textContent.includes('Recording started');",
        Duration::from_secs(5),
    )
    .await?;

    // Someone who comes in while it records sees so at once, and is recorded too.
    let cy = driver.browser().await?;
    let cy_id = cy.join_call(&server.url("/r/studio?name=Cy")).await?;
    cy.wait_for(
        "Cy's page showing the recording",
        BADGE_SHOWN,
        Duration::from_secs(5),
    )
    .await?;
    cy.wait_for(
        "the chat telling Cy as he enters",
        "return document.getElementById('messages').textContent.includes('This room is being recorded');",
        Duration::from_secs(5),
    )
    .await?;

    tokio::time::sleep(Duration::from_secs(6)).await;
    let during = recordings(base, "studio").await?;
    assert!(
        during.iter().any(|r| r["complete"] == false),
        "files are written while it records: {during:?}"
    );
    ada.eval("document.querySelector('[data-control=\"record\"]').click();")
        .await?;
    let recorded_for = pressed.elapsed();
    for (page, who) in [(&ada, "Ada"), (&bob, "Bob"), (&cy, "Cy")] {
        page.wait_for(
            &format!("{who}'s page no longer recording"),
            BADGE_HIDDEN,
            Duration::from_secs(5),
        )
        .await?;
    }

    // Every published track, finished, each no longer than the recording ran (from
    // the press to the stop, and the second either takes to reach the SFU).
    let all = finished(base, "studio", 6).await?;
    let longest = u64::try_from(recorded_for.as_millis())? + 1_000;
    for file in &all {
        let ms = file["duration_ms"].as_u64().unwrap_or_default();
        assert!(
            (2_000..longest).contains(&ms),
            "its length listed, of at most {longest} ms: {file}"
        );
    }
    for id in [&ada_id, &bob_id, &cy_id] {
        file_of(&all, id, "microphone")?;
        file_of(&all, id, "camera")?;
    }

    let auth = format!("{DEV_TENANT}:{TOKEN_SECRET}");
    let camera = file_of(&all, &ada_id, "camera")?;
    let played = bob
        .eval(&playback(
            &format!("/v1/rooms/studio/recordings/{camera}"),
            &auth,
        ))
        .await?;
    let longest_s = recorded_for.as_secs_f64() + 1.0;
    assert_played(&played, 4.0..longest_s);

    let microphone = file_of(&all, &bob_id, "microphone")?;
    let heard = ada
        .eval(&decoded_audio(
            &format!("/v1/rooms/studio/recordings/{microphone}"),
            &auth,
        ))
        .await?;
    let seconds = heard["duration"].as_f64().unwrap_or_default();
    assert!(
        (4.0..longest_s).contains(&seconds),
        "the audio's length, at most {longest_s} s: {heard}"
    );
    assert!(
        heard["peak"].as_f64() > Some(0.05),
        "the fake microphone's beeps: {heard}"
    );

    // Only names the listing gives are served.
    let missing = reqwest::Client::new()
        .get(format!(
            "{base}/v1/rooms/studio/recordings/..%2F..%2Fetc%2Fpasswd"
        ))
        .basic_auth(DEV_TENANT, Some(TOKEN_SECRET))
        .send()
        .await?;
    assert_eq!(missing.status(), 404);
    let anonymous = reqwest::Client::new()
        .get(format!("{base}/v1/rooms/studio/recordings/{camera}"))
        .send()
        .await?;
    assert_eq!(anonymous.status(), 401);

    // The tenant removes one: it is gone from the list and cannot be fetched.
    let removed = reqwest::Client::new()
        .delete(format!("{base}/v1/rooms/studio/recordings/{microphone}"))
        .basic_auth(DEV_TENANT, Some(TOKEN_SECRET))
        .send()
        .await?;
    assert_eq!(removed.status(), 204);
    let left = recordings(base, "studio").await?;
    assert_eq!(left.len(), 5, "{left:?}");
    assert!(left.iter().all(|r| r["file"] != microphone.as_str()));
    let gone = reqwest::Client::new()
        .get(format!("{base}/v1/rooms/studio/recordings/{microphone}"))
        .basic_auth(DEV_TENANT, Some(TOKEN_SECRET))
        .send()
        .await?;
    assert_eq!(gone.status(), 404);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_sent_in_h264_is_recorded_in_h264_and_plays_back() -> anyhow::Result<()> {
    let (server, dir) = recording_server("recordings-h264").await?;
    let base = server.url("");
    let base = base.trim_end_matches('/');
    let driver = Driver::start().await?;
    let ada = driver.browser().await?;
    let ada_id = ada
        .join_call(&server.url("/r/studio-h264?name=Ada&codec=h264"))
        .await?;
    press_record(&ada).await?;
    ada.wait_for("the recording shown", BADGE_SHOWN, Duration::from_secs(5))
        .await?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    press_record(&ada).await?;
    ada.wait_for("the recording over", BADGE_HIDDEN, Duration::from_secs(5))
        .await?;

    let all = finished(base, "studio-h264", 2).await?;
    let camera = file_of(&all, &ada_id, "camera")?;
    let bytes = reqwest::Client::new()
        .get(format!("{base}/v1/rooms/studio-h264/recordings/{camera}"))
        .basic_auth(DEV_TENANT, Some(TOKEN_SECRET))
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    assert!(
        bytes
            .windows(b"V_MPEG4/ISO/AVC".len())
            .any(|w| w == b"V_MPEG4/ISO/AVC"),
        "an H.264 track"
    );
    let auth = format!("{DEV_TENANT}:{TOKEN_SECRET}");
    let played = ada
        .eval(&playback(
            &format!("/v1/rooms/studio-h264/recordings/{camera}"),
            &auth,
        ))
        .await?;
    assert_played(&played, 4.0..12.0);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
