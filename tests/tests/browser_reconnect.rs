//! A call that goes on after its connection to the gateway is lost: two Chromium
//! browsers in a call, with a chat. Ada, the host, has locked the room, and Bob has
//! changed his name. Bob's connection to the gateway ends without a leave (closed
//! from his page, as a network drop or a gateway's restart ends it). Ada's page keeps
//! his tile, marked as reconnecting, and he comes back into it. His page says
//! so, joins again by itself past the lock, under his new name, decodes Ada's video
//! again, and its chat shows what Ada said while he was away, once; the message he
//! sent as it dropped goes again once he is back, and reaches both once; what he says
//! then reaches Ada, and the message he sent before the drop is still his to edit.
//! Removed from the room, his page stays out.

use std::time::Duration;

use confer_e2e::browser::Browser;
use confer_e2e::browser::Driver;
use confer_e2e::room::{
    CONNECTED, RECONNECTING, chat_shows_once as shown_once, join, open_join_link, say, self_id,
    wait_for_remote_video,
};
use confer_e2e::server::{DEV_TENANT, Options, TestServer};
use confer_room::RoomConfig;
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

    // From here Ada's page notes every leave it hears of and every tile it takes
    // off the stage.
    ada.eval(
        "window.leaves = []; \
         window.conferClient.addEventListener('participant-left', ({ detail }) => window.leaves.push(detail)); \
         window.tilesTakenOff = 0; \
         new MutationObserver((records) => { for (const r of records) for (const n of r.removedNodes) \
           if (n.classList?.contains('tile')) window.tilesTakenOff++; }) \
           .observe(document.getElementById('stage'), { childList: true }); \
         return true;",
    )
    .await?;

    // Bob's connection ends as he sends a message; Ada sees him reconnecting, in his
    // place, and speaks while he is away.
    bob.eval(
        "window.conferClient.ws.close(); \
         window.sentAsLost = window.conferClient.sendChat('sent as the connection dropped') \
           .then((sent) => sent.seq, (err) => err.code || err.message); \
         return true;",
    )
    .await?;
    ada.wait_for(
        "Bob's tile and name marked as reconnecting",
        &format!(
            "const tile = document.querySelector('.tile[data-participant=\"{bob_before}\"]'); \
             const item = document.querySelector('#participants li[data-participant=\"{bob_before}\"]'); \
             return !!tile && tile.classList.contains('reconnecting') \
               && !!item && item.textContent.includes('Bobby · reconnecting…') \
               && window.conferClient.participants.get('{bob_before}').reconnecting === true;"
        ),
        Duration::from_secs(5),
    )
    .await?;
    say(&ada, "while you were away").await?;

    // Bob's page says it lost the connection, and joins again by itself.
    let bob_after = back_again(&bob, &bob_before).await?;
    // At Ada's, he is back in the same tile, under his new id, and never left.
    ada.wait_for(
        "Bob back in his tile, with his video",
        &format!(
            "const tile = document.querySelector('.tile[data-participant=\"{bob_after}\"]'); \
             const video = [...window.conferClient.assignments.values()] \
               .some((a) => a.participantId === '{bob_after}' && a.kind === 'video' && a.bound); \
             return !!tile && !tile.classList.contains('reconnecting') && video \
               && tile.querySelector('video').videoWidth > 0;"
        ),
        Duration::from_secs(15),
    )
    .await?;
    assert_eq!(
        ada.eval(
            "return [window.leaves, window.tilesTakenOff, \
               document.querySelectorAll('#stage .tile').length, \
               [...window.conferClient.participants.values()].map((p) => [p.id, p.name])];"
        )
        .await?,
        serde_json::json!([
            [{"id": bob_before, "reason": "returned", "returnedAs": bob_after}],
            0,
            2,
            [[bob_after, "Bobby"]],
        ]),
        "Ada's page kept Bob's place while he was away"
    );
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

/// The events of `seen` (`[event, id, reason, ms]` each) without their times.
fn events(seen: &Value) -> Vec<(String, String, String)> {
    seen.as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let field = |i: usize| e[i].as_str().unwrap_or_default().to_owned();
            (field(0), field(1), field(2))
        })
        .collect()
}

fn event(name: &str, id: &str, reason: &str) -> (String, String, String) {
    (name.to_owned(), id.to_owned(), reason.to_owned())
}

/// Waits until `browser`'s page shows `id`'s tile marked as reconnecting.
async fn marked_reconnecting(browser: &Browser, id: &str) -> anyhow::Result<()> {
    browser
        .wait_for(
            "the tile marked as reconnecting",
            &format!(
                "const tile = document.querySelector('.tile[data-participant=\"{id}\"]'); \
                 return !!tile && tile.classList.contains('reconnecting');"
            ),
            Duration::from_secs(5),
        )
        .await
}

/// `browser`'s page loses its connections and does not try again (as a machine
/// that crashed or lost its network for good).
async fn vanish(browser: &Browser) -> anyhow::Result<()> {
    browser
        .eval(
            "const client = window.conferClient; \
             client.done = true; \
             client.ws.close(); \
             client.pc.close(); \
             return true;",
        )
        .await?;
    Ok(())
}

/// Bob joins from another page (`link`); once Ada's page lists him, what it has seen
/// starts afresh. His page and his id.
async fn bob_again(
    driver: &Driver,
    link: &str,
    ada: &Browser,
) -> anyhow::Result<(Browser, String)> {
    let bob = driver.browser().await?;
    open_join_link(&bob, link, "Bob").await?;
    let id = self_id(&bob).await?;
    ada.wait_for(
        "Bob listed at Ada's, alone",
        &format!(
            "const listed = window.conferClient.participants; \
             return listed.size === 1 && listed.has('{id}');"
        ),
        Duration::from_secs(5),
    )
    .await?;
    ada.eval("window.seen = []; return true;").await?;
    Ok((bob, id))
}

/// Bob (signed in as `bob`) loses his connections for good and opens the room again
/// in another browser, which cannot show his ticket: his identity takes the place
/// kept for him, and at Ada's he comes back into it (one place per identity). That
/// browser's connections go for good too: Ada's page keeps his tile, marked as
/// reconnecting, for as long as the room service keeps him (5 s here) and the SDK's
/// margin for a join on its way (2 s), and then lets it go. A third browser's page
/// that he closes (it goes to another page) leaves the call: nothing is kept for him;
/// nor for a fourth that leaves just after its media connection ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_place_kept_for_someone_who_does_not_come_back_goes_when_the_time_is_up()
-> anyhow::Result<()> {
    let server = TestServer::start_with(Options {
        room: RoomConfig {
            rejoin_grace: Duration::from_secs(5),
            ..RoomConfig::default()
        },
        ..Options::default()
    })
    .await?;
    let driver = Driver::start().await?;
    let ada = driver.browser().await?;
    let bob = driver.browser().await?;
    let bob_link = server.url(&format!(
        "/r/gone?token={}",
        confer_e2e::joins::guest_token("gone", "bob")
    ));
    join(&ada, &server, "gone", "Ada").await?;
    open_join_link(&bob, &bob_link, "Bob").await?;
    for browser in [&ada, &bob] {
        wait_for_remote_video(browser).await?;
    }
    let first = self_id(&bob).await?;
    ada.eval(
        "window.seen = []; \
         for (const ev of ['participant-reconnecting', 'participant-left', 'participant-joined']) \
           window.conferClient.addEventListener(ev, ({ detail }) => \
             window.seen.push([ev, detail.id, detail.reason || '', performance.now()])); \
         return true;",
    )
    .await?;

    vanish(&bob).await?;
    marked_reconnecting(&ada, &first).await?;
    let second_bob = driver.browser().await?;
    open_join_link(&second_bob, &bob_link, "Bob").await?;
    let second = self_id(&second_bob).await?;
    ada.wait_for(
        "Bob in his new tile, the old one gone",
        &format!(
            "return [...document.querySelectorAll('#stage .tile.remote')] \
               .map((t) => t.dataset.participant).join() === '{second}';"
        ),
        Duration::from_secs(5),
    )
    .await?;
    let seen = ada.eval("return window.seen;").await?;
    assert_eq!(
        events(&seen),
        [
            event("participant-reconnecting", &first, ""),
            event("participant-left", &first, "returned"),
            event("participant-joined", &second, ""),
        ],
        "{seen}"
    );
    let replaced_ms =
        seen[2][3].as_f64().unwrap_or_default() - seen[1][3].as_f64().unwrap_or_default();
    assert!(
        replaced_ms < 50.0,
        "the old place went as he came back, not when its time was up: {seen}"
    );

    ada.eval("window.seen = []; return true;").await?;
    vanish(&second_bob).await?;
    marked_reconnecting(&ada, &second).await?;
    ada.wait_for(
        "Bob's tile gone",
        "return document.querySelectorAll('#stage .tile').length === 1 \
           && window.conferClient.participants.size === 0;",
        Duration::from_secs(15),
    )
    .await?;
    let seen = ada.eval("return window.seen;").await?;
    assert_eq!(
        events(&seen),
        [
            event("participant-reconnecting", &second, ""),
            event("participant-left", &second, "connection_lost"),
        ],
        "{seen}"
    );
    let kept_ms = seen[1][3].as_f64().unwrap_or_default() - seen[0][3].as_f64().unwrap_or_default();
    assert!(
        (6_900.0..11_000.0).contains(&kept_ms),
        "kept for the grace and the margin: {kept_ms} ms"
    );

    // Closing the page is leaving.
    let (third_bob, third) = bob_again(&driver, &bob_link, &ada).await?;
    third_bob.goto("about:blank").await?;
    ada.wait_for(
        "Bob's tile gone",
        "return window.conferClient.participants.size === 0;",
        Duration::from_secs(5),
    )
    .await?;
    let seen = ada.eval("return window.seen;").await?;
    assert_eq!(
        events(&seen),
        [event("participant-left", &third, "left")],
        "{seen}"
    );

    // A page that ends its media and leaves only once the media server has reported
    // the media lost: that was a leave after all, and Ada's page keeps nothing.
    let (fourth_bob, fourth) = bob_again(&driver, &bob_link, &ada).await?;
    fourth_bob
        .eval(
            "const client = window.conferClient; \
             client.done = true; \
             client.pc.close(); \
             return true;",
        )
        .await?;
    marked_reconnecting(&ada, &fourth).await?;
    fourth_bob
        .eval("window.conferClient.leave(); return true;")
        .await?;
    ada.wait_for(
        "Bob's tile gone at once",
        "return window.conferClient.participants.size === 0;",
        Duration::from_secs(3),
    )
    .await?;
    let seen = ada.eval("return window.seen;").await?;
    assert_eq!(
        events(&seen),
        [
            event("participant-reconnecting", &fourth, ""),
            event("participant-left", &fourth, "left"),
        ],
        "{seen}"
    );
    for browser in [ada, bob, second_bob, third_bob, fourth_bob] {
        browser.close().await?;
    }
    Ok(())
}
