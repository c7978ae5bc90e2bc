//! Three headless Chromium browsers with fake camera and microphone join one room
//! through the join link and see, hear, chat and react to each other through our SFU.

use std::time::{Duration, Instant};

use confer_e2e::browser::{Browser, Driver};
use confer_e2e::server::TestServer;
use confer_e2e::signal::SignalClient;
use serde_json::json;

/// Remote streams that are really flowing, read from `RTCPeerConnection.getStats()`.
const MEDIA_STATS: &str = r#"
const pc = window.conferClient && window.conferClient.pc;
if (!pc) return {video: 0, audio: 0};
const stats = await pc.getStats();
let video = 0, audio = 0;
stats.forEach((s) => {
  if (s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded > 0) video++;
  if (s.type === 'inbound-rtp' && s.kind === 'audio' && s.packetsReceived > 0) audio++;
});
return {video, audio};
"#;

fn remote_tiles_playing(n: usize) -> String {
    format!(
        "const tiles = [...document.querySelectorAll('.tile.remote')];
         return tiles.length === {n} && tiles.every((t) => t.querySelector('video').videoWidth > 0);"
    )
}

async fn wait_for_media(browser: &Browser, videos: u64, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = serde_json::Value::Null;
    while Instant::now() < deadline {
        last = browser.eval(MEDIA_STATS).await?;
        if last["video"].as_u64() >= Some(videos) && last["audio"].as_u64() >= Some(videos) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("expected {videos} decoding videos and audios within {timeout:?}, got {last}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_browsers_see_hear_and_chat_through_the_sfu() -> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    let driver = Driver::start().await?;
    let join = |name: &str| server.url(&format!("/r/standup?name={name}"));

    let ada = driver.browser().await?;
    let bob = driver.browser().await?;
    let opened = Instant::now();
    ada.goto(&join("Ada")).await?;
    bob.goto(&join("Bob")).await?;
    wait_for_media(&ada, 1, Duration::from_secs(15)).await?;
    wait_for_media(&bob, 1, Duration::from_secs(15)).await?;
    eprintln!(
        "two browsers decoding each other after {:?}",
        opened.elapsed()
    );
    ada.wait_for(
        "Bob's tile playing",
        &remote_tiles_playing(1),
        Duration::from_secs(5),
    )
    .await?;

    let cyd = driver.browser().await?;
    cyd.goto(&join("Cyd")).await?;
    for browser in [&ada, &bob, &cyd] {
        wait_for_media(browser, 2, Duration::from_secs(15)).await?;
        browser
            .wait_for(
                "two remote tiles playing",
                &remote_tiles_playing(2),
                Duration::from_secs(10),
            )
            .await?;
    }

    ada.eval(
        "document.getElementById('chat-input').value = 'hello from Ada';
         document.getElementById('chat-form').requestSubmit();",
    )
    .await?;
    let chat_arrived = "return [...document.querySelectorAll('#messages .text')]
        .some((e) => e.textContent === 'hello from Ada');";
    for browser in [&bob, &cyd, &ada] {
        browser
            .wait_for("Ada's chat message", chat_arrived, Duration::from_secs(5))
            .await?;
    }
    chat_burst(&server, [&ada, &bob, &cyd]).await?;
    refused_posts_are_sent_again_in_order(&ada, [&ada, &bob, &cyd]).await?;

    // Ada reacts: the reaction shows on her tile, on every page, then goes.
    let ada_id = confer_e2e::room::self_id(&ada).await?;
    ada.eval("[...document.querySelectorAll('#reactions button')].find((b) => b.textContent === '🎉').click();")
        .await?;
    let reacted = format!(
        "return [...document.querySelectorAll('.tile[data-participant=\"{ada_id}\"] .reaction')].some((r) => r.textContent === '🎉');"
    );
    for browser in [&ada, &bob, &cyd] {
        browser
            .wait_for(
                "Ada's reaction on her tile",
                &reacted,
                Duration::from_secs(5),
            )
            .await?;
    }
    bob.wait_for(
        "the reaction gone",
        "return document.querySelectorAll('.tile .reaction').length === 0;",
        Duration::from_secs(6),
    )
    .await?;

    cyd.eval("document.getElementById('leave').click();")
        .await?;
    for browser in [&ada, &bob] {
        browser
            .wait_for(
                "Cyd's tile to go",
                "return document.querySelectorAll('.tile.remote').length === 1;",
                Duration::from_secs(5),
            )
            .await?;
    }
    let occupancy = server.sfu.occupancy().await?;
    assert_eq!(occupancy.peers, 2, "Cyd's peer is removed from the SFU");

    // Bob changes his name (the room needs no approval): Ada's tile for him says so,
    // and so does his own.
    bob.eval("await window.conferClient.setName('Robert'); return true;")
        .await?;
    ada.wait_for(
        "Bob's tile under his new name",
        "return [...document.querySelectorAll('.tile.remote .label')].map((l) => l.textContent).join() === 'Robert';",
        Duration::from_secs(5),
    )
    .await?;
    bob.wait_for(
        "Bob's own tile under his new name",
        "return document.querySelector('.tile.local .label').textContent === 'Robert (you)';",
        Duration::from_secs(5),
    )
    .await?;

    for browser in [ada, bob, cyd] {
        browser.close().await?;
    }
    Ok(())
}

/// Messages each browser sends at once in [`chat_burst`].
const BURST: usize = 40;
const _: () = assert!(BURST as u32 > confer_gateway::ChatRate::DEFAULT.burst);

/// Members who join over signalling in [`chat_burst`] and each post [`BUNCH`]
/// messages at once.
const BUNCHERS: [&str; 3] = ["Dee", "Eve", "Fay"];

/// Messages each of [`BUNCHERS`] posts at once, all without waiting for an answer:
/// within the gateway's default chat burst, so none is refused.
const BUNCH: usize = 15;
const _: () = assert!((BUNCH as u32) < confer_gateway::ChatRate::DEFAULT.burst);

/// Every browser sends [`BURST`] chat messages at once, all three together, while
/// three more members (signalling clients, [`BUNCHERS`]) each post [`BUNCH`] without
/// waiting for the answers: a busy moment, whose entries the gateway hands each member
/// together, as a `chat_batch` to the JS SDK. Every browser shows them all, once, each
/// sender's in order, and at least one browser got a `chat_batch`. The SDK posts a
/// browser's messages one after another, each once the one before is answered, and a
/// member's posts are stored one after another, so the three bunches are what make
/// entries meet at the gateway even when each store is slow. Each burst is twice the gateway's
/// default chat burst: the SDK spaces the rest to the rate `joined` announced, so the
/// gateway refuses none.
async fn chat_burst(server: &TestServer, browsers: [&Browser; 3]) -> anyhow::Result<()> {
    const COUNT_BATCHES: &str = "window.chatBatches = 0;
        window.chatRefused = 0;
        window.conferClient.ws.addEventListener('message', (event) => {
          if (event.data.startsWith('{\"chat_batch\"')) window.chatBatches += 1;
          if (event.data.includes('\"chat_rate_limited\"')) window.chatRefused += 1;
        });";
    for browser in browsers {
        browser.eval(COUNT_BATCHES).await?;
    }
    let scripts: Vec<String> = (0..browsers.len())
        .map(|who| {
            format!(
                "const sends = [...Array({BURST}).keys()].map((i) => window.conferClient.sendChat(`burst {who} ${{i}}`));
                 return (await Promise.all(sends)).length;"
            )
        })
        .collect();
    let bursts = browsers
        .iter()
        .zip(&scripts)
        .map(|(browser, script)| browser.eval(script));
    let (sent, _) = tokio::try_join!(
        futures_util::future::try_join_all(bursts),
        futures_util::future::try_join_all(BUNCHERS.map(|name| post_a_bunch(server, name)))
    )?;
    for sent in sent {
        assert_eq!(sent, serde_json::json!(BURST), "every send answered");
    }
    for browser in browsers {
        assert_eq!(
            browser.eval("return window.chatRefused;").await?,
            serde_json::json!(0),
            "the SDK kept to the chat rate"
        );
    }
    let bunchers = json!(BUNCHERS);
    let in_order = format!(
        "const shown = [...document.querySelectorAll('#messages .text')].map((e) => e.textContent);
         const bunchers = {bunchers};
         return bunchers.every((who) => {{
             const bunch = shown.filter((t) => t.startsWith(`bunch ${{who}} `));
             return bunch.length === {BUNCH} && bunch.every((t, i) => t === `bunch ${{who}} ${{i}}`);
           }})
           && [0, 1, 2].every((who) => {{
             const mine = shown.filter((t) => t.startsWith(`burst ${{who}} `));
             return mine.length === {BURST} && mine.every((t, i) => t === `burst ${{who}} ${{i}}`);
           }});"
    );
    let mut batches = 0;
    for browser in browsers {
        browser
            .wait_for(
                "every burst, once and each in order",
                &in_order,
                Duration::from_secs(10),
            )
            .await?;
        batches += browser
            .eval("return window.chatBatches;")
            .await?
            .as_u64()
            .unwrap_or_default();
    }
    eprintln!("chat_batch frames the three browsers got: {batches}");
    assert!(batches > 0, "no browser got a chat_batch");
    Ok(())
}

/// `name` joins the room over signalling, posts [`BUNCH`] messages without waiting
/// for any answer, checks that each is stored, in the order posted, and leaves.
async fn post_a_bunch(server: &TestServer, name: &str) -> anyhow::Result<()> {
    const WAIT: Duration = Duration::from_secs(10);
    let mut member = SignalClient::connect(&server.signal_url()).await?;
    member
        .send(&json!({"request_id": "j", "join": {"room": "standup", "name": name}}))
        .await?;
    member.recv_kind("joined", WAIT).await?;
    for i in 0..BUNCH {
        let post = json!({"request_id": format!("b{i}"), "chat": {"text": format!("bunch {name} {i}"), "client_id": format!("{name}-{i}")}});
        member.send(&post).await?;
    }
    let mut seqs = vec![None; BUNCH];
    let deadline = Instant::now() + WAIT;
    while seqs.iter().any(Option::is_none) {
        let answer = member
            .recv(deadline.saturating_duration_since(Instant::now()))
            .await?;
        let Some(i) = answer["request_id"]
            .as_str()
            .and_then(|id| id.strip_prefix('b'))
            .and_then(|i| i.parse::<usize>().ok())
        else {
            continue;
        };
        let seq = answer["chat_sent"]["seq"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("{name}'s post {i} not stored: {answer}"))?;
        seqs[i] = Some(seq);
    }
    let seqs: Vec<u64> = seqs.into_iter().flatten().collect();
    assert!(
        seqs.windows(2).all(|pair| pair[0] < pair[1]),
        "{name}'s bunch stored in the order posted: {seqs:?}"
    );
    // A leave: a connection that only ended would keep its place in the others' calls
    // for a while, as one that may come back.
    member.leave().await
}

/// `sender` first spends its chat burst with posts that go around the SDK's queue,
/// then its client forgets the chat limit `joined` announced and makes [`BURST`]
/// posts at once through the SDK: the gateway refuses some of them, the SDK sends each
/// of those again after the `retry_after_ms` it was given, and every post is stored
/// once, in the order it was made, as every browser shows.
async fn refused_posts_are_sent_again_in_order(
    sender: &Browser,
    browsers: [&Browser; 3],
) -> anyhow::Result<()> {
    // More than the burst: whatever refilled since the last post is spent too.
    let spend = confer_gateway::ChatRate::DEFAULT.burst + 5;
    let sent = sender
        .eval(&format!(
            "const client = window.conferClient;
             const spend = [...Array({spend}).keys()].map((i) =>
               client.request({{ chat: {{ text: `spent ${{i}}`, client_id: `spent-${{i}}` }} }}));
             await Promise.allSettled(spend);
             window.chatRefused = 0;
             client.chatLimit = null;
             const posts = [...Array({BURST}).keys()].map((i) => client.sendChat(`again ${{i}}`));
             return await Promise.all(posts).then(
               (sent) => sent.map((post) => post.seq),
               (err) => `a post failed: ${{err.code || err.message}}`);"
        ))
        .await?;
    let seqs: Vec<u64> = serde_json::from_value(sent.clone())
        .map_err(|_| anyhow::anyhow!("every post answered, got {sent}"))?;
    assert_eq!(seqs.len(), BURST, "every post answered");
    assert!(
        seqs.windows(2).all(|pair| pair[0] < pair[1]),
        "stored in the order made: {seqs:?}"
    );
    let refused = sender.eval("return window.chatRefused;").await?;
    assert!(
        refused.as_u64() > Some(0),
        "the gateway refused posts over its rate ({refused})"
    );
    let in_order = format!(
        "const again = [...document.querySelectorAll('#messages .text')]
           .map((e) => e.textContent)
           .filter((t) => t.startsWith('again '));
         return again.length === {BURST} && again.every((t, i) => t === `again ${{i}}`);"
    );
    for browser in browsers {
        browser
            .wait_for(
                "the posts sent again, once and in order",
                &in_order,
                Duration::from_secs(10),
            )
            .await?;
    }
    Ok(())
}
