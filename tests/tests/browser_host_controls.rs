//! Host controls in real browsers: a guest waits in the waiting room until the host
//! admits them from the people list; when the host mutes the guest, the guest's audio
//! stops reaching a third participant while the host's keeps flowing. A hand the guest
//! raises shows on its tile and in the host's list, and the host lowers it.

use std::time::Duration;

use confer_auth::{Claims, TokenKey, VideoGrant};
use confer_e2e::browser::{Browser, Driver};
use confer_e2e::server::{TOKEN_SECRET, TestServer};
use serde_json::Value;

fn token(identity: &str, admin: bool) -> String {
    TokenKey::new("dev", TOKEN_SECRET.as_bytes()).sign(&Claims {
        iss: "dev".into(),
        sub: identity.into(),
        name: identity.into(),
        nbf: 0,
        exp: u64::MAX / 2,
        kind: Default::default(),
        video: VideoGrant {
            room_admin: admin,
            ..VideoGrant::join("clinic")
        },
    })
}

/// Audio packets received so far from each remote participant, by id.
const AUDIO_BY_PARTICIPANT: &str = r#"
const c = window.conferClient;
if (!c || !c.pc) return {};
const stats = await c.pc.getStats();
const out = {};
stats.forEach((s) => {
  if (s.type !== 'inbound-rtp' || s.kind !== 'audio') return;
  const a = c.assignments.get(s.mid);
  if (a) out[a.participantId] = s.packetsReceived;
});
return out;
"#;

async fn audio_from(browser: &Browser, participant: &str) -> anyhow::Result<u64> {
    let counts = browser.eval(AUDIO_BY_PARTICIPANT).await?;
    Ok(counts[participant].as_u64().unwrap_or(0))
}

async fn self_id(browser: &Browser) -> anyhow::Result<String> {
    let id: Value = browser
        .eval("return window.conferClient.self && window.conferClient.self.id;")
        .await?;
    Ok(id.as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_admits_a_waiting_guest_mutes_them_and_keeps_the_chat_to_hosts()
-> anyhow::Result<()> {
    let server = TestServer::start(true).await?;
    let driver = Driver::start().await?;
    let page = |identity: &str, admin: bool| {
        server.url(&format!("/r/clinic?token={}", token(identity, admin)))
    };

    let host = driver.browser().await?;
    host.goto(&page("Hana", true)).await?;
    host.wait_for(
        "the host in the room",
        "return !!(window.conferClient && window.conferClient.pc && window.conferClient.self.role === 'host');",
        Duration::from_secs(10),
    )
    .await?;

    let guest = driver.browser().await?;
    guest.goto(&page("Gus", false)).await?;
    guest
        .wait_for(
            "the waiting-room screen",
            "return document.getElementById('status').textContent.includes('Waiting for a host');",
            Duration::from_secs(10),
        )
        .await?;
    assert_eq!(
        guest
            .eval("return window.conferClient.pc === null;")
            .await?,
        Value::Bool(true),
        "no media before admission"
    );
    let guest_id = self_id(&guest).await?;
    host.wait_for(
        "the knock in the host's people list",
        "return !!document.querySelector('#participants li.knock button');",
        Duration::from_secs(5),
    )
    .await?;
    host.eval("document.querySelector('#participants li.knock button').click();")
        .await?;
    guest
        .wait_for(
            "the guest in the room",
            "return document.getElementById('status').textContent === 'Connected';",
            Duration::from_secs(10),
        )
        .await?;

    let third = driver.browser().await?;
    third.goto(&page("Tess", true)).await?;
    let host_id = self_id(&host).await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while audio_from(&third, &guest_id).await? == 0 || audio_from(&third, &host_id).await? == 0 {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the third participant never heard both: {}",
            third.eval(AUDIO_BY_PARTICIPANT).await?
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The host mutes the guest from the people list.
    let mute_button = format!(
        "document.querySelector('#participants li[data-participant=\"{guest_id}\"] button')"
    );
    host.wait_for(
        "the mute button",
        &format!("return !!{mute_button} && {mute_button}.textContent === 'Mute';"),
        Duration::from_secs(5),
    )
    .await?;
    host.eval(&format!("{mute_button}.click();")).await?;
    guest
        .wait_for(
            "the guest told they are muted",
            "return window.conferClient.self.audio_blocked === true;",
            Duration::from_secs(5),
        )
        .await?;
    // Packets already on the way may still land; after that, nothing more.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (guest_before, host_before) = (
        audio_from(&third, &guest_id).await?,
        audio_from(&third, &host_id).await?,
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (guest_after, host_after) = (
        audio_from(&third, &guest_id).await?,
        audio_from(&third, &host_id).await?,
    );
    assert_eq!(guest_after, guest_before, "the muted guest's audio stopped");
    assert!(
        host_after > host_before + 40,
        "the host's audio kept flowing: {host_before} -> {host_after}"
    );
    let blocked = server.sfu.stats().snapshot().rtp_blocked;
    assert!(blocked > 0, "the SFU dropped the guest's packets");

    // The host keeps the chat to hosts from the room's switches: the guest's chat box
    // closes and the server refuses a send; reopened, the box opens again.
    let chat_switch = "document.querySelector('#room-controls button[data-control=\"chat\"]')";
    host.wait_for(
        "the host's chat switch",
        &format!("return !!{chat_switch} && {chat_switch}.textContent === 'Chat: hosts only';"),
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!(
        guest
            .eval("return document.getElementById('room-controls').hidden;")
            .await?,
        Value::Bool(true),
        "no room switches for a guest"
    );
    host.eval(&format!("{chat_switch}.click();")).await?;
    guest
        .wait_for(
            "the guest's chat box closed, and a note of it in the chat",
            "return document.getElementById('chat-input').disabled === true \
             && [...document.querySelectorAll('#messages li.notice')].some((n) => n.textContent === 'A host kept the chat to hosts');",
            Duration::from_secs(5),
        )
        .await?;
    let refused = guest
        .eval("return await window.conferClient.sendChat('psst').then(() => 'sent', (err) => err.code || err.message);")
        .await?;
    assert_eq!(refused, Value::String("chat_restricted".into()));
    // A message the guest sent just as the chat closed (the form submitted as its box
    // was closing) is refused too, and kept in the chat as not sent: nothing typed is
    // lost.
    guest
        .eval(
            "document.getElementById('chat-input').value = 'sent as it closed'; \
             document.getElementById('chat-form').requestSubmit(); return true;",
        )
        .await?;
    let failed = "document.querySelector('#messages li.failed')";
    guest
        .wait_for(
            "the guest's message kept as not sent",
            &format!(
                "const f = {failed}; return !!f && f.querySelector('.text').textContent === 'sent as it closed' \
                 && f.querySelector('.note').textContent.includes('only hosts may send messages');"
            ),
            Duration::from_secs(5),
        )
        .await?;
    host.wait_for(
        "the switch turned",
        &format!("return {chat_switch}.textContent === 'Let everyone chat';"),
        Duration::from_secs(5),
    )
    .await?;
    host.eval(&format!("{chat_switch}.click();")).await?;
    guest
        .wait_for(
            "the guest's chat box open again",
            "return document.getElementById('chat-input').disabled === false;",
            Duration::from_secs(5),
        )
        .await?;
    // Sent again from the chat, the kept message reaches everyone once.
    guest
        .eval(&format!(
            "[...{failed}.querySelectorAll('button')].find((b) => b.textContent === 'Retry').click(); return true;"
        ))
        .await?;
    let delivered_once = "const lines = [...document.querySelectorAll('#messages li[data-seq] .text')]; \
         return !document.querySelector('#messages li.failed') \
         && lines.filter((t) => t.textContent === 'sent as it closed').length === 1;";
    for browser in [&guest, &host] {
        browser
            .wait_for(
                "the kept message, sent once",
                delivered_once,
                Duration::from_secs(5),
            )
            .await?;
    }

    // The guest raises a hand: its tile and its place in line show at the host's, who
    // lowers it from the people list; the guest's button says so.
    guest
        .eval("document.getElementById('raise-hand').click(); return true;")
        .await?;
    let raised_at_host = format!(
        "const tile = document.querySelector('#stage .tile[data-participant=\"{guest_id}\"]'); \
         const item = document.querySelector('#participants li[data-participant=\"{guest_id}\"]'); \
         return !!tile && tile.classList.contains('hand') \
           && item.querySelector('.hand')?.textContent === '✋ 1' \
           && [...item.querySelectorAll('button')].some((b) => b.textContent === 'Lower hand');"
    );
    host.wait_for(
        "the guest's hand at the host's",
        &raised_at_host,
        Duration::from_secs(5),
    )
    .await?;
    let noted = host
        .eval(
            "return [...document.querySelectorAll('#messages li.notice')] \
               .filter((n) => n.textContent === '✋ Gus raised a hand').length;",
        )
        .await?;
    assert_eq!(noted, Value::from(1), "the host told once in the chat");
    guest
        .wait_for(
            "the guest's button to lower it",
            "return document.getElementById('raise-hand').textContent === 'Lower hand';",
            Duration::from_secs(5),
        )
        .await?;
    host.eval(&format!(
        "[...document.querySelectorAll('#participants li[data-participant=\"{guest_id}\"] button')] \
           .find((b) => b.textContent === 'Lower hand').click(); return true;"
    ))
    .await?;
    guest
        .wait_for(
            "the guest's hand lowered by the host",
            "return document.getElementById('raise-hand').textContent === 'Raise hand' \
               && !document.querySelector('#stage .tile.local').classList.contains('hand');",
            Duration::from_secs(5),
        )
        .await?;
    host.wait_for(
        "no hand at the host's",
        "return !document.querySelector('#stage .tile.hand, #participants .hand');",
        Duration::from_secs(5),
    )
    .await?;
    // Up again, and down with everyone's from the room's switches.
    guest
        .eval("document.getElementById('raise-hand').click(); return true;")
        .await?;
    host.wait_for(
        "the guest's hand up again at the host's",
        "return !!document.querySelector('#participants .hand');",
        Duration::from_secs(5),
    )
    .await?;
    host.eval("document.querySelector('#room-controls button[data-control=\"lower-hands\"]').click(); return true;")
        .await?;
    guest
        .wait_for(
            "the guest's hand lowered with everyone's",
            "return document.getElementById('raise-hand').textContent === 'Raise hand';",
            Duration::from_secs(5),
        )
        .await?;
    // The browsers read it as one `participants_changed`; the host's people list
    // shows the hand down too.
    host.wait_for(
        "no hand at the host's after lowering everyone's",
        "return !document.querySelector('#stage .tile.hand, #participants .hand');",
        Duration::from_secs(5),
    )
    .await?;

    // The host lets the guest speak again, then mutes everyone from the room's
    // switches: the guest is muted, the hosts are not.
    host.eval(&format!("{mute_button}.click();")).await?;
    guest
        .wait_for(
            "the guest unmuted by the host",
            "return window.conferClient.self.audio_blocked === false;",
            Duration::from_secs(5),
        )
        .await?;
    host.eval("document.querySelector('#room-controls button[data-control=\"mute-all\"]').click(); return true;")
        .await?;
    guest
        .wait_for(
            "the guest muted with everyone",
            "return window.conferClient.self.audio_blocked === true;",
            Duration::from_secs(5),
        )
        .await?;
    for hostly in [&host, &third] {
        assert_eq!(
            hostly
                .eval("return window.conferClient.self.audio_blocked;")
                .await?,
            Value::Bool(false),
            "hosts are not muted with everyone"
        );
    }

    // Slow mode from the room's switches: the guest's chat says so, and a second
    // message right after the first is refused.
    host.eval("document.querySelector('#room-controls button[data-control=\"slow-mode\"]').click(); return true;")
        .await?;
    guest
        .wait_for(
            "the guest's chat in slow mode",
            "return document.getElementById('chat-input').placeholder === 'Slow mode: one message every 30 s'
                 && document.getElementById('messages').textContent.includes('A host turned on slow mode');",
            Duration::from_secs(5),
        )
        .await?;
    let second = guest
        .eval(
            "const c = window.conferClient;
             return c.sendChat('one').then(() => c.sendChat('two')).then(() => 'taken', (err) => err.code);",
        )
        .await?;
    assert_eq!(second, Value::from("chat_slow_mode"));

    for browser in [host, guest, third] {
        browser.close().await?;
    }
    Ok(())
}
