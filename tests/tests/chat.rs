//! Chat through the gateway, stored by the chat service: every member gets every entry
//! once and in sequence order (the sender too), a resend with the same client id is
//! stored once, a late joiner gets the newest page and pages back to the first message,
//! a reconnecting client asks for what came after the last seq it saw, authors edit
//! and delete their words, and bad input gets clear errors.

use std::time::Duration;

use confer_chat::api::MAX_TEXT_CHARS;
use confer_chat::{Bus, ChatApi as _, Page};
use confer_e2e::server::{DEV_TENANT, Options, TestServer, assert_metrics, metric};
use confer_e2e::signal::SignalClient;
use confer_gateway::ChatRate;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);

async fn join(
    server: &TestServer,
    room: &str,
    name: &str,
) -> anyhow::Result<(SignalClient, Value)> {
    let mut client = SignalClient::connect(&server.signal_url()).await?;
    client
        .send(&json!({"request_id": "j", "join": {"room": room, "name": name}}))
        .await?;
    let joined = client.recv_kind("joined", WAIT).await?;
    Ok((client, joined["joined"].clone()))
}

/// Sends a message and waits for its `chat_sent`; returns the seq. Chat entries pushed
/// meanwhile go to `seen`.
async fn say(
    client: &mut SignalClient,
    seen: &mut Vec<Value>,
    id: &str,
    text: &str,
) -> anyhow::Result<u64> {
    client
        .send(&json!({"request_id": id, "chat": {"text": text, "client_id": id}}))
        .await?;
    loop {
        let reply = client.recv(WAIT).await?;
        if reply["request_id"] == id {
            anyhow::ensure!(reply.get("chat_sent").is_some(), "{reply}");
            assert_eq!(reply["chat_sent"]["client_id"], id);
            return reply["chat_sent"]["seq"]
                .as_u64()
                .ok_or_else(|| anyhow::anyhow!("no seq in {reply}"));
        }
        if let Some(entry) = reply.get("chat") {
            seen.push(entry.clone());
        }
    }
}

/// The next `n` chat entries pushed to `client`.
async fn entries(client: &mut SignalClient, n: usize) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    while out.len() < n {
        let message = client.recv_kind("chat", WAIT).await?;
        out.push(message["chat"].clone());
    }
    Ok(out)
}

async fn request(client: &mut SignalClient, id: &str, body: Value) -> anyhow::Result<Value> {
    client.request(id, body, WAIT).await
}

fn seqs(list: &Value) -> Vec<u64> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["seq"].as_u64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_gets_every_message_once_in_order_and_late_joiners_page_back()
-> anyhow::Result<()> {
    // One member sends 120 messages as fast as they are answered: order, resends and
    // paging are under test here, not the per-member chat rate (`chat_rate.rs`).
    let server = TestServer::start_with(Options::chat_rate(ChatRate::UNLIMITED)).await?;
    let (mut ada, _) = join(&server, "talk", "Ada").await?;
    let (mut bob, _) = join(&server, "talk", "Bob").await?;
    let mut own = Vec::new();
    for i in 1..=120u64 {
        let id = format!("c{i}");
        assert_eq!(
            say(&mut ada, &mut own, &id, &format!("hello {i} :wave:")).await?,
            i
        );
        if i == 5 {
            // The answer was lost; the client resends: stored once, delivered once.
            assert_eq!(say(&mut ada, &mut own, "c5", "hello 5 :wave:").await?, 5);
        }
    }
    let got = entries(&mut bob, 120).await?;
    assert_eq!(
        got.iter()
            .filter_map(|m| m["seq"].as_u64())
            .collect::<Vec<_>>(),
        (1..=120).collect::<Vec<_>>()
    );
    assert_eq!(got[6]["text"], "hello 7 :wave:");
    assert_eq!(got[6]["name"], "Ada");
    assert_eq!(got[6]["kind"], "text");
    // The sender gets its own messages through the same stream, once each.
    let missing = 120 - own.len();
    own.extend(entries(&mut ada, missing).await?);
    assert_eq!(seqs(&Value::Array(own)), (1..=120).collect::<Vec<_>>());

    // A late joiner: the newest 50, and more before them.
    let (mut carol, joined) = join(&server, "talk", "Carol").await?;
    assert_eq!(
        seqs(&joined["chat_history"]),
        (71..=120).collect::<Vec<_>>()
    );
    assert_eq!(joined["chat_history_more"], true);
    let mut before = 71;
    let earliest = loop {
        let page = request(
            &mut carol,
            "h",
            json!({"chat_history": {"before_seq": before, "limit": 30}}),
        )
        .await?;
        let page = &page["chat_history"];
        let got = seqs(&page["messages"]);
        assert_eq!(
            got.last().copied(),
            Some(before - 1),
            "pages are contiguous"
        );
        before = got[0];
        if page["more"] != true {
            break got;
        }
    };
    assert_eq!(earliest[0], 1, "paging back reaches the first message");
    // A reconnecting client asks for what it missed.
    let after = request(&mut carol, "a", json!({"chat_history": {"after_seq": 117}})).await?;
    assert_eq!(
        seqs(&after["chat_history"]["messages"]),
        vec![118, 119, 120]
    );

    // Edits and deletes are entries of their own, by the author.
    let refused = request(
        &mut bob,
        "e",
        json!({"chat_edit": {"seq": 3, "text": "mine now"}}),
    )
    .await?;
    assert_eq!(refused["error"]["code"], "not_author", "{refused}");
    let edited = request(
        &mut ada,
        "e",
        json!({"chat_edit": {"seq": 3, "text": "hello three"}}),
    )
    .await?;
    assert_eq!(edited["chat_sent"]["seq"], 121, "{edited}");
    let deleted = request(&mut ada, "d", json!({"chat_delete": {"seq": 4}})).await?;
    assert_eq!(deleted["chat_sent"]["seq"], 122, "{deleted}");
    let changes = entries(&mut carol, 2).await?;
    assert_eq!(
        (
            changes[0]["kind"].as_str(),
            changes[0]["target_seq"].as_u64()
        ),
        (Some("edit"), Some(3))
    );
    assert_eq!(changes[0]["text"], "hello three");
    assert_eq!(
        (
            changes[1]["kind"].as_str(),
            changes[1]["target_seq"].as_u64()
        ),
        (Some("delete"), Some(4))
    );
    // History shows the current state of the edited and deleted messages.
    let start = request(
        &mut carol,
        "s",
        json!({"chat_history": {"before_seq": 5, "limit": 2}}),
    )
    .await?;
    let start = &start["chat_history"]["messages"];
    assert_eq!(
        (start[0]["text"].as_str(), start[0]["edited"].as_bool()),
        (Some("hello three"), Some(true))
    );
    assert_eq!(
        (start[1]["text"].as_str(), start[1]["deleted"].as_bool()),
        (Some(""), Some(true))
    );

    let metrics = server.metrics().await?;
    assert_eq!(
        metric(&metrics, "confer_gateway_chat_messages_total"),
        Some(122)
    );
    assert_eq!(
        metric(&metrics, "confer_gateway_chat_deliveries_total"),
        Some(122)
    );
    // Each hand-off is reported once its members' sockets have taken it (a busy room's
    // next one waits for that): at least one report, and no more than one per entry.
    let written = metric(&metrics, "confer_gateway_chat_write_seconds_count");
    assert!(
        written.is_some_and(|n| (1..=122).contains(&n)),
        "{written:?}"
    );
    // Rests follow only rounds that were written late: never more than the rounds.
    let rests = metric(&metrics, "confer_gateway_chat_rests_total");
    assert!(
        rests.zip(written).is_some_and(|(r, w)| r <= w),
        "{rests:?} of {written:?}"
    );
    Ok(())
}

#[tokio::test]
async fn bad_chat_input_gets_clear_errors_and_nothing_is_stored() -> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    let (mut outsider, _) = (SignalClient::connect(&server.signal_url()).await?, ());
    let history = request(&mut outsider, "h", json!({"chat_history": {}})).await?;
    assert_eq!(
        history["error"]["code"], "not_joined",
        "a non-member reads nothing: {history}"
    );

    let (mut ada, _) = join(&server, "strict", "Ada").await?;
    let cases = [
        (
            json!({"chat": {"text": "x".repeat(4001)}}),
            "message_too_long",
        ),
        (json!({"chat": {"text": "   "}}), "invalid_message"),
        (
            json!({"chat": {"text": "hi", "client_id": "not an id!"}}),
            "invalid_client_id",
        ),
        (
            json!({"chat": {"text": "hi", "sender": "someone else"}}),
            "invalid_message",
        ),
        (
            json!({"chat_edit": {"seq": 99, "text": "x"}}),
            "message_not_found",
        ),
        (json!({"chat_delete": {"seq": 0}}), "invalid_message"),
    ];
    for (i, (body, code)) in cases.into_iter().enumerate() {
        let reply = request(&mut ada, &format!("b{i}"), body.clone()).await?;
        assert_eq!(reply["error"]["code"], code, "{body}: {reply}");
    }
    // Invalid UTF-8 is refused by the decoder; the connection carries on.
    ada.send_binary(b"{\"chat\":{\"text\":\"\xff\xfe\"}}".to_vec())
        .await?;
    let reply = ada.recv_kind("error", WAIT).await?;
    assert_eq!(reply["error"]["code"], "malformed_message");
    assert_eq!(
        say(&mut ada, &mut Vec::new(), "ok", "still here").await?,
        1,
        "nothing was stored before"
    );
    Ok(())
}

/// The bus the gateway hears reorders entries and loses one. Members still get every
/// entry once and in order: a reordering is put right without reading history, the
/// lost entry is read from history once the reorder wait is over.
/// A member whose client stops reading is cut off once 4 MiB wait for it, and the
/// room goes on without it; it loses nothing: what reached it came in order, and after
/// reconnecting it reads what came after the last seq it saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_reading_is_cut_off_and_catches_up_after_reconnecting()
-> anyhow::Result<()> {
    const TOO_SLOW: &str = "confer_gateway_clients_too_slow_total";
    let server = TestServer::start_with(Options::chat_rate(ChatRate::UNLIMITED)).await?;
    let (mut ada, _) = join(&server, "busy", "Ada").await?;
    let (mut bob, _) = join(&server, "busy", "Bob").await?;
    // From here on Bob's client reads nothing, and Ada posts long messages until the
    // gateway gives up on him: its 4 MiB and what the sockets' buffers hold.
    let long = "x".repeat(MAX_TEXT_CHARS - 10);
    let mut own = Vec::new();
    let mut sent = 0u64;
    while metric(&server.metrics().await?, TOO_SLOW) != Some(1) {
        anyhow::ensure!(sent < 5_000, "Bob was never cut off");
        for _ in 0..50 {
            sent += 1;
            let id = format!("c{sent}");
            assert_eq!(
                say(&mut ada, &mut own, &id, &format!("{sent} {long}")).await?,
                sent
            );
        }
    }
    // The room goes on without him.
    for _ in 0..20 {
        sent += 1;
        let id = format!("c{sent}");
        assert_eq!(
            say(&mut ada, &mut own, &id, &format!("{sent} after")).await?,
            sent
        );
    }
    let missing = sent as usize - own.len();
    own.extend(entries(&mut ada, missing).await?);
    assert_eq!(seqs(&Value::Array(own)), (1..=sent).collect::<Vec<_>>());

    // What reached Bob before the cut came once each, in order, from the first; then
    // his connection ends.
    let mut reached = Vec::new();
    let closed = loop {
        match bob.recv(WAIT).await {
            Ok(message) => reached.extend(message["chat"]["seq"].as_u64()),
            Err(err) => break err.to_string(),
        }
    };
    assert!(
        !closed.contains("no message within"),
        "still open: {closed}"
    );
    let last = reached.len() as u64;
    assert!((1..sent).contains(&last), "{last} of {sent} reached Bob");
    assert_eq!(reached, (1..=last).collect::<Vec<_>>());

    // Back, he finds the room with Ada alone in it (his cut-off session left it), and
    // asks for what came after the last seq he saw, page by page.
    let (mut bob, joined) = join(&server, "busy", "Bob").await?;
    let others: Vec<&Value> = joined["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(others.len(), 1, "{others:?}");
    assert_eq!(others[0]["name"], "Ada");
    let mut caught_up = Vec::new();
    let mut after = last;
    loop {
        let page = request(
            &mut bob,
            "a",
            json!({"chat_history": {"after_seq": after, "limit": 200}}),
        )
        .await?;
        let got = seqs(&page["chat_history"]["messages"]);
        after = got.last().copied().unwrap_or(after);
        caught_up.extend(got);
        if page["chat_history"]["more"] != true {
            break;
        }
    }
    assert_eq!(caught_up, (last + 1..=sent).collect::<Vec<_>>());
    // And reads the room live again.
    let mut seen = Vec::new();
    assert_eq!(
        say(&mut ada, &mut seen, "next", "welcome back").await?,
        sent + 1
    );
    assert_eq!(entries(&mut bob, 1).await?[0]["seq"], sent + 1);
    assert_metrics(&server.metrics().await?, &[(TOO_SLOW, 1)]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reordering_lossy_bus_still_delivers_each_entry_once_in_order() -> anyhow::Result<()> {
    let bus = Bus::memory();
    let server = TestServer::start_with(Options {
        gateway_bus: Some(bus.clone()),
        ..Options::default()
    })
    .await?;
    let (mut ada, _) = join(&server, "talk", "Ada").await?;
    let (mut bob, _) = join(&server, "talk", "Bob").await?;
    // Stored and published on the chat service's own bus, which the gateway does not
    // hear: what Bob gets comes from the test's bus or from history.
    let mut own = Vec::new();
    for i in 1..=6u64 {
        assert_eq!(
            say(&mut ada, &mut own, &format!("c{i}"), &format!("m{i}")).await?,
            i
        );
    }
    let stored = server
        .chat
        .history(
            format!("{DEV_TENANT}/talk"),
            Page::After {
                after: 0,
                limit: 10,
            },
        )
        .await?
        .entries;
    assert_eq!(stored.len(), 6);
    for seq in [2, 3, 1, 2] {
        bus.publish(&stored[seq - 1]).await?;
    }
    let first = entries(&mut bob, 3).await?;
    assert_eq!(seqs(&Value::Array(first.clone())), [1, 2, 3]);
    assert_eq!(first[0]["text"], "m1");
    // 4 is lost on the bus; 5 and 6 arrive.
    for seq in [5, 6] {
        bus.publish(&stored[seq - 1]).await?;
    }
    let rest = entries(&mut bob, 3).await?;
    assert_eq!(seqs(&Value::Array(rest.clone())), [4, 5, 6]);
    assert_eq!(rest[0]["text"], "m4");
    // Nothing more: each went out once.
    let extra = tokio::time::timeout(Duration::from_millis(300), bob.recv_kind("chat", WAIT)).await;
    assert!(extra.is_err(), "a repeat reached Bob: {extra:?}");
    assert_metrics(
        &server.metrics().await?,
        &[
            // 2 and 3 waited for 1; 5 and 6 came from the history read that found 4.
            ("confer_gateway_chat_reordered_total", 2),
            ("confer_gateway_chat_gap_fills_total", 1),
        ],
    );
    Ok(())
}
