//! A call that goes on after its connection to the gateway is lost: two Chromium
//! browsers in a call, with a chat. Ada, the host, has locked the room, and Bob has
//! changed his name. Bob's connection to the gateway ends without a leave (closed
//! from his page, as a network drop or a gateway's restart ends it). His page says
//! so, joins again by itself past the lock, under his new name, decodes Ada's video
//! again, and its chat shows what Ada said while he was away, once; the message he
//! sent as it dropped goes again once he is back, and reaches both once; what he says
//! then reaches Ada, and the message he sent before the drop is still his to edit.
//! Removed from the room, his page stays out.

use std::time::Duration;

use confer_e2e::browser::Browser;
use confer_e2e::browser::Driver;
use confer_e2e::room::{
    CONNECTED, RECONNECTING, chat_shows_once as shown_once, join, say, self_id,
    wait_for_remote_video,
};
use confer_e2e::server::{DEV_TENANT, TestServer};
use confer_room::api::RoomApi as _;
use serde_json::Value;

/// Waits until `browser`'s page has no one else in the call.
async fn alone(browser: &Browser) -> anyhow::Result<()> {
    browser
        .wait_for(
            "no one else in the call",
            "return window.conferClient.participants.size === 0;",
            Duration::from_secs(5),
        )
        .await
}

/// Waits until `browser`'s page says it reconnects and then that it is connected
/// again, through a new connection (its participant id is no longer `before`): the
/// new id.
async fn back_again(browser: &Browser, before: &str) -> anyhow::Result<String> {
    browser
        .wait_for(
            "the page saying it reconnects",
            RECONNECTING,
            Duration::from_secs(5),
        )
        .await?;
    browser
        .wait_for("connected again", CONNECTED, Duration::from_secs(20))
        .await?;
    let after = self_id(browser).await?;
    assert!(
        !after.is_empty() && after != before,
        "joined again through a new connection: {before} -> {after}"
    );
    Ok(after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_is_joined_again_and_the_chat_fills_in_what_was_missed()
-> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    let driver = Driver::start().await?;
    let ada = driver.browser().await?;
    let bob = driver.browser().await?;
    join(&ada, &server, "blip", "Ada").await?;
    join(&bob, &server, "blip", "Bob").await?;
    for browser in [&ada, &bob] {
        wait_for_remote_video(browser).await?;
    }
    say(&ada, "before").await?;
    bob.wait_for(
        "Ada's first message",
        &shown_once("before"),
        Duration::from_secs(5),
    )
    .await?;
    let bob_before = self_id(&bob).await?;
    say(&bob, "typo befor the drop").await?;
    // The room is locked now, and Bob goes by another name.
    ada.eval("await window.conferClient.host('lock'); return true;")
        .await?;
    bob.eval("await window.conferClient.setName('Bobby'); return true;")
        .await?;
    ada.wait_for(
        "Bob's new name",
        "return [...window.conferClient.participants.values()].some((p) => p.name === 'Bobby');",
        Duration::from_secs(5),
    )
    .await?;

    // Bob's connection ends as he sends a message; Ada sees him leave and speaks
    // while he is away.
    bob.eval(
        "window.conferClient.ws.close(); \
         window.sentAsLost = window.conferClient.sendChat('sent as the connection dropped') \
           .then((sent) => sent.seq, (err) => err.code || err.message); \
         return true;",
    )
    .await?;
    alone(&ada).await?;
    say(&ada, "while you were away").await?;

    // Bob's page says it lost the connection, and joins again by itself.
    let bob_after = back_again(&bob, &bob_before).await?;
    let back_as = bob
        .eval("return [window.conferClient.self.name, window.conferClient.self.role];")
        .await?;
    assert_eq!(
        back_as,
        serde_json::json!(["Bobby", "participant"]),
        "back as he was"
    );
    for browser in [&ada, &bob] {
        wait_for_remote_video(browser).await?;
    }
    bob.wait_for(
        "what Ada said while Bob was away",
        &shown_once("while you were away"),
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!(
        bob.eval(&shown_once("before")).await?,
        Value::Bool(true),
        "the first message still once"
    );
    // The message Bob sent as his connection dropped went again once he was back.
    let sent = bob.eval("return await window.sentAsLost;").await?;
    assert!(sent.as_u64().is_some_and(|seq| seq > 0), "stored: {sent}");
    for browser in [&ada, &bob] {
        browser
            .wait_for(
                "the message sent as the connection dropped, once",
                &shown_once("sent as the connection dropped"),
                Duration::from_secs(5),
            )
            .await?;
    }
    say(&bob, "back").await?;
    ada.wait_for("Bob's message", &shown_once("back"), Duration::from_secs(5))
        .await?;
    // What he sent before the drop is still his: his page offers to edit it, and the
    // edit reaches Ada.
    let mine = bob
        .eval(
            "const item = [...document.querySelectorAll('#messages li[data-seq]')] \
               .find((li) => li.querySelector('.text').textContent === 'typo befor the drop'); \
             return [...item.querySelectorAll('.actions button')].map((b) => b.textContent);",
        )
        .await?;
    assert_eq!(
        mine,
        serde_json::json!(["Reply", "Edit", "Delete"]),
        "still his"
    );
    let edited = bob
        .eval(
            "const entry = [...document.querySelectorAll('#messages li[data-seq]')] \
               .find((li) => li.querySelector('.text').textContent === 'typo befor the drop'); \
             return await window.conferClient.editChat(Number(entry.dataset.seq), 'before the drop') \
               .then(() => true, (err) => err.code || err.message);",
        )
        .await?;
    assert_eq!(edited, Value::Bool(true), "his edit is taken");
    ada.wait_for(
        "Bob's edit",
        &shown_once("before the drop"),
        Duration::from_secs(5),
    )
    .await?;

    // Removed by the tenant, Bob's connection closes too, and his page stays out.
    server
        .room
        .remove_participant(DEV_TENANT.into(), "blip".into(), bob_after.clone())
        .await?;
    bob.wait_for(
        "the page saying Bob was removed",
        "return document.getElementById('status').textContent === 'A host removed you from the call';",
        Duration::from_secs(5),
    )
    .await?;
    alone(&ada).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        ada.eval("return window.conferClient.participants.size;")
            .await?,
        Value::from(0),
        "a removed participant does not join again by itself"
    );

    for browser in [ada, bob] {
        browser.close().await?;
    }
    Ok(())
}

/// Bob's media connection ends while his connection to the gateway stays (as when the
/// network changes under a call): the SFU lets his peer go, the gateway tells his page
/// `media_disconnected`, and the page joins again by itself, with his ticket, as
/// the host he was, and both decode each other's video again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_media_connection_is_joined_again() -> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    let driver = Driver::start().await?;
    let bob = driver.browser().await?;
    let ada = driver.browser().await?;
    join(&bob, &server, "media-blip", "Bob").await?;
    join(&ada, &server, "media-blip", "Ada").await?;
    for browser in [&ada, &bob] {
        wait_for_remote_video(browser).await?;
    }
    let bob_before = self_id(&bob).await?;
    bob.eval("window.reasons = []; window.conferClient.addEventListener('reconnecting', ({ detail }) => window.reasons.push(detail.reason)); return true;")
        .await?;

    bob.eval("window.conferClient.pc.close(); return true;")
        .await?;
    back_again(&bob, &bob_before).await?;
    assert_eq!(
        bob.eval("return [window.reasons, window.conferClient.self.role];")
            .await?,
        serde_json::json!([["media_lost"], "host"]),
        "back as the host he was, first in"
    );
    for browser in [&ada, &bob] {
        wait_for_remote_video(browser).await?;
    }
    for browser in [ada, bob] {
        browser.close().await?;
    }
    Ok(())
}
