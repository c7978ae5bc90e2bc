//! Chat across processes on real PostgreSQL and Redis: two chat services and two
//! gateways (each gateway talks to its own chat service), members on both. 10,000
//! messages from four senders reach every member once and in sequence order; a Redis
//! restart in the middle of a stream loses no acknowledged message, and nobody does
//! anything special to catch up. Some members read a busy room's entries in
//! `chat_batch` frames, the others one `chat` frame each. A browser whose gateway is
//! killed and started again (a rolling upgrade) comes back to the call by itself, its
//! chat shows what was said while it was away, and its old participant is gone; a
//! gateway killed for good loses its participants once its lease runs out.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use confer_e2e::signal::SignalClient;
use serde_json::{Value, json};
use support::{ChatCluster, until_metric};

/// The longest quiet spell a member tolerates while messages are still due.
const QUIET: Duration = Duration::from_secs(30);

/// Joins `room` through gateway `g`, reading `chat_batch` if `batches`; returns the
/// client and the seqs of the chat history its `joined` carried.
async fn join(
    cluster: &ChatCluster,
    g: usize,
    room: &str,
    identity: &str,
    batches: bool,
) -> anyhow::Result<(SignalClient, Vec<u64>)> {
    let url = format!("ws://{}/v1/signal", cluster.gateways[g]);
    let mut client = SignalClient::connect(&url).await?;
    let token = cluster.token(room, identity);
    client
        .send(&json!({"request_id": "j", "join": {"room": room, "token": token, "chat_batches": batches}}))
        .await?;
    let reply = client.recv(Duration::from_secs(10)).await?;
    anyhow::ensure!(
        reply.get("joined").is_some(),
        "{identity} cannot join: {reply}"
    );
    let history = reply["joined"]["chat_history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["seq"].as_u64())
        .collect();
    Ok((client, history))
}

/// What one member saw: every chat seq in arrival order, and (for a sender) the
/// (client id, seq) of each acknowledged send; whether it joined reading `chat_batch`,
/// and how many it read.
#[derive(Default)]
struct Seen {
    seqs: Vec<u64>,
    acked: Vec<(String, u64)>,
    reads_batches: bool,
    batches: usize,
}

/// Runs a member that joined with `history`: sends `to_send` messages (ids
/// `{prefix}-{i}`) keeping `window` in flight, and reads until it has seen `expect`
/// entries.
async fn member(
    (mut client, history): (SignalClient, Vec<u64>),
    reads_batches: bool,
    prefix: String,
    to_send: usize,
    window: usize,
    expect: usize,
) -> anyhow::Result<Seen> {
    let mut seen = Seen {
        seqs: history,
        reads_batches,
        ..Seen::default()
    };
    let (mut next, mut in_flight) = (0, 0);
    while seen.seqs.len() < expect || seen.acked.len() < to_send {
        while in_flight < window && next < to_send {
            let id = format!("{prefix}-{next}");
            client
                .send(&json!({"request_id": id, "chat": {"text": format!("message {next} from {prefix}"), "client_id": id}}))
                .await?;
            next += 1;
            in_flight += 1;
        }
        let message = client.recv(QUIET).await.map_err(|err| {
            let got: BTreeSet<u64> = seen.seqs.iter().copied().collect();
            let missing: Vec<u64> = (1..=expect as u64)
                .filter(|s| !got.contains(s))
                .take(10)
                .collect();
            err.context(format!(
                "{prefix}: {} entries of {expect} (missing {missing:?}), {} acks of {to_send}",
                seen.seqs.len(),
                seen.acked.len()
            ))
        })?;
        if let Some(entry) = message.get("chat") {
            seen.seqs.push(entry["seq"].as_u64().unwrap_or_default());
        } else if let Some(batch) = message.get("chat_batch") {
            seen.batches += 1;
            let entries = batch["entries"].as_array().into_iter().flatten();
            seen.seqs
                .extend(entries.map(|entry| entry["seq"].as_u64().unwrap_or_default()));
        } else if let Some(sent) = message.get("chat_sent") {
            in_flight -= 1;
            seen.acked.push((
                sent["client_id"].as_str().unwrap_or_default().to_owned(),
                sent["seq"].as_u64().unwrap_or_default(),
            ));
        } else if let Some(error) = message.get("error") {
            anyhow::bail!("{prefix}: {error}");
        }
    }
    Ok(seen)
}

/// Every member saw exactly seqs 1..=n in order, and the acknowledged sends are n
/// distinct seqs.
fn check(all: &[Seen], n: u64) {
    let acked: BTreeSet<u64> = all
        .iter()
        .flat_map(|s| s.acked.iter().map(|(_, q)| *q))
        .collect();
    let acks: usize = all.iter().map(|s| s.acked.len()).sum();
    assert_eq!(acks as u64, n, "every send acknowledged once");
    assert_eq!(
        acked,
        (1..=n).collect::<BTreeSet<_>>(),
        "acknowledged seqs are 1..={n}"
    );
    // A busy room's entries go out together: as one `chat_batch` to those that read
    // it, and never to the others.
    let batches = |reads: bool| -> usize {
        let members = all.iter().filter(|s| s.reads_batches == reads);
        members.map(|s| s.batches).sum()
    };
    assert!(
        batches(true) > 0,
        "no chat_batch reached a member reading them"
    );
    assert_eq!(
        batches(false),
        0,
        "chat_batch to a member that does not read it"
    );
    for (i, seen) in all.iter().enumerate() {
        let in_order = seen.seqs.iter().copied().eq(1..=n);
        assert!(
            in_order,
            "member {i} saw {} entries, first out of place at {:?}",
            seen.seqs.len(),
            seen.seqs.iter().zip(1..).find(|(s, want)| **s != *want)
        );
    }
}

/// A room's members: they join it in turn on alternating gateways (ids
/// `{room}-{i}`), the first `senders` send `per_sender` messages each keeping `window`
/// in flight, and everyone reads until it has seen them all.
struct Crowd {
    room: &'static str,
    members: usize,
    senders: usize,
    per_sender: usize,
    window: usize,
}

type Running = Vec<tokio::task::JoinHandle<anyhow::Result<Seen>>>;

impl Crowd {
    fn total(&self) -> usize {
        self.senders * self.per_sender
    }

    /// Everyone joins before the first message (a later joiner gets the newest page
    /// and pages back; `tests/tests/chat.rs` covers that), then all start. Members 2
    /// and 3 of every 4 read `chat_batch` (as the JS SDK does), one on each gateway.
    async fn start(&self, cluster: &ChatCluster) -> anyhow::Result<Running> {
        let mut joined = Vec::new();
        for i in 0..self.members {
            let who = format!("{}-{i}", self.room);
            let batches = i % 4 >= 2;
            joined.push((
                join(cluster, i % 2, self.room, &who, batches).await?,
                batches,
            ));
        }
        Ok(joined
            .into_iter()
            .enumerate()
            .map(|(i, (client, batches))| {
                let sends = if i < self.senders { self.per_sender } else { 0 };
                let prefix = format!("{}-{i}", self.room);
                let total = self.total();
                tokio::spawn(member(client, batches, prefix, sends, self.window, total))
            })
            .collect())
    }

    /// Waits for everyone, and checks that each saw every message once and in order.
    async fn finish(&self, running: Running) -> anyhow::Result<()> {
        let mut all = Vec::new();
        for task in running {
            all.push(task.await??);
        }
        check(&all, self.total() as u64);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_reach_every_member_once_and_in_order() -> anyhow::Result<()> {
    let cluster = ChatCluster::start(2, &[]).await?;
    let crowd = Crowd {
        room: "town",
        members: 6,
        senders: 4,
        per_sender: 2_500,
        window: 16,
    };
    crowd.finish(crowd.start(&cluster).await?).await?;
    // The chat services' own /metrics account for every message, between them.
    let http = confer_http::client()?;
    let mut stored = 0;
    for metrics in &cluster.chat_metrics {
        let page = http
            .get(format!("http://{metrics}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        stored +=
            confer_e2e::server::metric(&page, "confer_chat_entries_stored_total").unwrap_or(0);
        assert!(
            page.contains("confer_chat_send_duration_seconds_count"),
            "{page}"
        );
        // Its PostgreSQL pool: the default ceiling, and the connections it opened.
        assert_eq!(
            confer_e2e::server::metric(&page, "confer_chat_database_connections_max"),
            Some(32),
            "{page}"
        );
        assert!(
            page.contains("confer_chat_database_connections{state=\"idle\"}"),
            "{page}"
        );
    }
    assert_eq!(
        stored,
        crowd.total() as u64,
        "entries stored across chat services"
    );
    Ok(())
}

/// A big room's members on a gateway are split into lanes of 64 that take turns
/// (`chat_pace.rs`): 80 members on each gateway make two lanes there, handed different
/// runs of entries at different times. Every member still gets every message once and
/// in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_rooms_members_in_lanes_get_every_message_once_and_in_order() -> anyhow::Result<()> {
    // All members join from this one address.
    let cluster = ChatCluster::start(1, &["--join-burst-per-address", "1000"]).await?;
    let crowd = Crowd {
        room: "hall",
        members: 160,
        senders: 4,
        per_sender: 250,
        window: 8,
    };
    cluster.create_room(crowd.room, crowd.members).await?;
    crowd.finish(crowd.start(&cluster).await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_stream_loses_no_acknowledged_message() -> anyhow::Result<()> {
    let mut cluster = ChatCluster::start(2, &[]).await?;
    let crowd = Crowd {
        room: "storm",
        members: 4,
        senders: 2,
        per_sender: 1_500,
        window: 4,
    };
    let running = crowd.start(&cluster).await?;
    // Restart Redis while the senders are in full flow.
    tokio::time::sleep(Duration::from_millis(700)).await;
    cluster.redis.stop();
    tokio::time::sleep(Duration::from_millis(800)).await;
    cluster.redis.restart().await?;
    crowd.finish(running).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_on_a_gateway_that_restarts_comes_back_by_itself() -> anyhow::Result<()> {
    use confer_e2e::browser::Driver;
    use confer_e2e::room::{
        CONNECTED, RECONNECTING, chat_shows_once as shown_once, open_join_link, others_are, say,
        wait_for_remote_video,
    };

    let mut cluster = ChatCluster::start(1, &[]).await?;
    let driver = Driver::start().await?;
    let ada = driver.browser().await?;
    let bob = driver.browser().await?;
    for (g, browser, name) in [(0, &ada, "Ada"), (1, &bob, "Bob")] {
        let token = cluster.token("rolling", name);
        let link = format!(
            "http://{}/r/rolling?name={name}&token={token}",
            cluster.gateways[g]
        );
        open_join_link(browser, &link, name).await?;
    }
    for browser in [&ada, &bob] {
        wait_for_remote_video(browser).await?;
    }
    say(&bob, "before").await?;
    ada.wait_for(
        "Bob's first message",
        &shown_once("before"),
        Duration::from_secs(5),
    )
    .await?;

    // Ada's gateway goes away, as in a rolling upgrade: her page sees its connection
    // end. Bob, on the other gateway, speaks meanwhile.
    cluster.stop_gateway(0);
    ada.wait_for(
        "the page saying it reconnects",
        RECONNECTING,
        Duration::from_secs(10),
    )
    .await?;
    // Her page closes its media connection as it starts joining again, and the SFU
    // lets it go at once (its DTLS close_notify), not after 15 s of silence.
    let closed = Instant::now();
    let peers = "confer_sfu_peers ";
    until_metric(&cluster.sfu_metrics, peers, Duration::from_secs(10), |v| {
        v == 1.0
    })
    .await?;
    eprintln!(
        "the SFU let Ada's closed connection go {:?} after her page said it reconnects",
        closed.elapsed()
    );
    say(&bob, "while your gateway restarted").await?;

    // The gateway comes back on its address; Ada's page joins again by itself.
    cluster.start_gateway(0)?;
    ada.wait_for("connected again", CONNECTED, Duration::from_secs(30))
        .await?;
    // Her old participant is gone from the room: the restarted gateway said it had
    // just started, so the room service let go of the one it held before, and Bob's
    // page lists her once.
    bob.wait_for(
        "Bob's page listing Ada once",
        &others_are(&["Ada"]),
        Duration::from_secs(10),
    )
    .await?;
    // Her page plays Bob's video again, in its one remote tile.
    ada.wait_for(
        "Bob's video alone on the page that came back",
        "const tiles = document.querySelectorAll('.tile.remote'); \
         return tiles.length === 1 && tiles[0].querySelector('video').videoWidth > 0;",
        Duration::from_secs(30),
    )
    .await?;
    ada.wait_for(
        "what Bob said while her gateway restarted, once",
        &shown_once("while your gateway restarted"),
        Duration::from_secs(10),
    )
    .await?;
    assert_eq!(ada.eval(&shown_once("before")).await?, Value::Bool(true));
    say(&ada, "back").await?;
    bob.wait_for(
        "Ada's message",
        &shown_once("back"),
        Duration::from_secs(10),
    )
    .await?;
    for browser in [ada, bob] {
        browser.close().await?;
    }
    Ok(())
}

/// A gateway killed for good (its node gone): the participants it held leave the
/// room once its lease runs out, and the others are told, as if they had left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_gone_for_good_takes_its_participants_out_of_the_room() -> anyhow::Result<()> {
    const LEASE: Duration = Duration::from_secs(2);
    let mut cluster = ChatCluster::start(1, &["--gateway-lease-secs", "2"]).await?;
    let (_ada, _) = join(&cluster, 0, "lost", "ada", false).await?;
    let (mut bob, others) = join_seeing(&cluster, 1, "lost", "bob").await?;
    let [ada_id] = &others[..] else {
        anyhow::bail!("Bob should see Ada alone: {others:?}");
    };

    // Ada's gateway dies; nobody says she left.
    cluster.stop_gateway(0);
    let gone = Instant::now();
    let left = bob
        .recv_kind("participant_left", Duration::from_secs(15))
        .await?;
    assert_eq!(
        left["participant_left"]["participant_id"],
        Value::from(ada_id.as_str())
    );
    assert!(
        gone.elapsed() >= LEASE,
        "Ada left {:?} after her gateway died, before its lease ran out",
        gone.elapsed()
    );
    // Bob's gateway lives on: someone joining now finds Bob alone, and Bob is told.
    let (_cy, others) = join_seeing(&cluster, 1, "lost", "cy").await?;
    assert_eq!(others.len(), 1, "only Bob is still in the room: {others:?}");
    bob.recv_kind("participant_joined", Duration::from_secs(5))
        .await?;
    Ok(())
}

/// Joins `room` through gateway `g`; returns the client and the ids of the others
/// its `joined` listed.
async fn join_seeing(
    cluster: &ChatCluster,
    g: usize,
    room: &str,
    identity: &str,
) -> anyhow::Result<(SignalClient, Vec<String>)> {
    let url = format!("ws://{}/v1/signal", cluster.gateways[g]);
    let mut client = SignalClient::connect(&url).await?;
    let token = cluster.token(room, identity);
    let reply = client
        .request(
            "j",
            json!({"join": {"room": room, "token": token}}),
            Duration::from_secs(10),
        )
        .await?;
    let others = reply["joined"]["participants"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("{identity} cannot join: {reply}"))?
        .iter()
        .filter_map(|p| p["id"].as_str().map(str::to_owned))
        .collect();
    Ok((client, others))
}
