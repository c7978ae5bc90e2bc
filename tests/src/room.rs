//! The web app's room page, as the browser suites drive it: join by link, wait for the
//! other participant's video, chat; and what the room service lists a participant as
//! sending from.

use std::time::Duration;

use confer_room::RoomApi as _;

use crate::browser::Browser;
use crate::server::{DEV_TENANT, TestServer};

/// True once the page says it is connected.
pub const CONNECTED: &str = "return document.getElementById('status').textContent === 'Connected';";

/// True once the page says it lost its connection and is joining again.
pub const RECONNECTING: &str =
    "return document.getElementById('status').textContent.includes('reconnecting');";

/// True once the first remote participant's video tile plays.
pub const REMOTE_VIDEO_PLAYING: &str =
    "const v = document.querySelector('.tile.remote video'); return !!v && v.videoWidth > 0;";

/// Opens the join link of `room` as `name` and waits until connected.
pub async fn join(
    browser: &Browser,
    server: &TestServer,
    room: &str,
    name: &str,
) -> anyhow::Result<()> {
    open_join_link(
        browser,
        &server.url(&format!("/r/{room}?name={name}")),
        name,
    )
    .await
}

/// Opens a join link (`…/r/<room>?name=<name>`) and waits until connected.
pub async fn open_join_link(browser: &Browser, link: &str, name: &str) -> anyhow::Result<()> {
    browser.goto(link).await?;
    browser
        .wait_for(
            &format!("{name} connected"),
            CONNECTED,
            Duration::from_secs(10),
        )
        .await
}

/// Waits until the first remote video plays at `browser`.
pub async fn wait_for_remote_video(browser: &Browser) -> anyhow::Result<()> {
    browser
        .wait_for(
            "the other participant's video playing",
            REMOTE_VIDEO_PLAYING,
            Duration::from_secs(15),
        )
        .await
}

/// This browser's participant id.
pub async fn self_id(browser: &Browser) -> anyhow::Result<String> {
    let id = browser
        .eval("return window.conferClient.self && window.conferClient.self.id;")
        .await?;
    Ok(id.as_str().unwrap_or_default().to_owned())
}

/// True once the page's client lists exactly these others in the call, by name
/// (each name once per participant: `["Ada", "Ada"]` is two of them).
pub fn others_are(names: &[&str]) -> String {
    let mut names: Vec<&str> = names.to_vec();
    names.sort_unstable();
    let expected = serde_json::to_string(&names).unwrap_or_default();
    format!(
        "return JSON.stringify([...window.conferClient.participants.values()] \
         .map((p) => p.name).sort()) === '{expected}';"
    )
}

/// True once the page's chat shows a message reading `text` exactly once.
pub fn chat_shows_once(text: &str) -> String {
    format!(
        "return [...document.querySelectorAll('#messages li[data-seq] .text')] \
         .filter((t) => t.textContent === '{text}').length === 1;"
    )
}

/// Sends `text` in the chat through the page's SDK and waits until it is stored.
pub async fn say(browser: &Browser, text: &str) -> anyhow::Result<()> {
    let sent = browser
        .eval(&format!(
            "return await window.conferClient.sendChat('{text}').then((sent) => sent.seq > 0, (err) => err.message);"
        ))
        .await?;
    anyhow::ensure!(
        sent == serde_json::Value::Bool(true),
        "{text:?} not sent: {sent}"
    );
    Ok(())
}

/// What the room service lists `participant` of `room` as sending from, sorted (what
/// the tenant API shows, and what its `track_published` / `track_unpublished`
/// webhooks follow).
pub async fn sources_of(
    server: &TestServer,
    room: &str,
    participant: &str,
) -> anyhow::Result<Vec<String>> {
    let members = server
        .room
        .list_participants(DEV_TENANT.to_owned(), room.to_owned())
        .await?;
    let member = members
        .into_iter()
        .find(|m| m.id == participant)
        .ok_or_else(|| anyhow::anyhow!("{participant} not listed"))?;
    let mut sources: Vec<String> = member
        .sources
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    sources.sort();
    Ok(sources)
}

/// Waits up to 8 s until the room service lists `participant` as sending from exactly
/// `wanted` (sorted).
pub async fn wait_for_sources(
    server: &TestServer,
    room: &str,
    participant: &str,
    wanted: &[&str],
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    loop {
        let sources = sources_of(server, room, participant).await?;
        if sources == wanted {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{participant} sends from {sources:?}, not {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
