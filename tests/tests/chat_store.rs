//! The chat service on real PostgreSQL (and on SQLite, as `confer dev` runs it):
//! gap-free per-room numbering under concurrent senders, idempotent resends, paging
//! back to the first message, edit/delete rules, bad input, and a database outage that
//! refuses sends without losing or half-writing anything.

use std::collections::BTreeSet;
use std::sync::Arc;

use confer_chat::{
    ChatAction, ChatApi, ChatEntry, ChatService, EntryKind, HistoryPage, Page, Retention,
    SendRequest,
};

fn text(room: &str, sender: &str, client_id: &str, text: &str) -> SendRequest {
    SendRequest {
        room: room.into(),
        sender_id: sender.into(),
        sender_name: sender.to_uppercase(),
        sender_identity: String::new(),
        sender_is_host: false,
        client_id: client_id.into(),
        action: ChatAction::Text {
            text: text.into(),
            reply_to: 0,
        },
    }
}

async fn all(chat: &ChatService, room: &str) -> anyhow::Result<Vec<ChatEntry>> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let HistoryPage { entries, more } = chat
            .history(room.into(), Page::After { after, limit: 200 })
            .await?;
        after = entries.last().map_or(after, |e| e.seq);
        out.extend(entries);
        if !more {
            return Ok(out);
        }
    }
}

async fn services() -> anyhow::Result<Vec<(&'static str, ChatService)>> {
    Ok(vec![
        (
            "sqlite",
            confer_chat::connect("sqlite::memory:", None).await?,
        ),
        (
            "postgres",
            confer_chat::connect(&confer_e2e::backing::fresh_postgres().await?, None).await?,
        ),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbering_resends_and_paging() -> anyhow::Result<()> {
    for (db, chat) in services().await? {
        for i in 1..=120u64 {
            let sent = chat
                .send(text("t/r", "ada", &format!("m{i}"), &format!("hello {i}")))
                .await?;
            assert_eq!(sent.entry.seq, i, "{db}: seq {i}");
            assert!(!sent.duplicate);
        }
        // A resend after a lost ack: the same entry, nothing new stored.
        let again = chat.send(text("t/r", "ada", "m7", "hello 7")).await?;
        assert!(again.duplicate, "{db}");
        assert_eq!(again.entry.seq, 7);
        // The same client id from another sender is another message.
        let bob = chat.send(text("t/r", "bob", "m7", "mine")).await?;
        assert_eq!(bob.entry.seq, 121, "{db}");
        // Another room numbers from 1.
        assert_eq!(
            chat.send(text("t/other", "ada", "", "x")).await?.entry.seq,
            1
        );

        // A late joiner's page: the newest 50, oldest first, with more before.
        let page = chat
            .history(
                "t/r".into(),
                Page::Before {
                    before: 0,
                    limit: 50,
                },
            )
            .await?;
        assert!(page.more);
        let seqs: Vec<u64> = page.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (72..=121).collect::<Vec<_>>(), "{db}");
        // Paging back reaches the first message.
        let mut before = seqs[0];
        let mut pages = 1;
        loop {
            let page = chat
                .history("t/r".into(), Page::Before { before, limit: 50 })
                .await?;
            pages += 1;
            before = page.entries[0].seq;
            if !page.more {
                break;
            }
        }
        assert_eq!((before, pages), (1, 3), "{db}");
        let first = &chat
            .history(
                "t/r".into(),
                Page::Before {
                    before: 2,
                    limit: 1,
                },
            )
            .await?
            .entries[0];
        assert_eq!(
            (first.seq, first.text.as_str(), first.sender_name.as_str()),
            (1, "hello 1", "ADA")
        );
        // A reconnecting client asks for everything after the last seq it saw.
        let after = chat
            .history(
                "t/r".into(),
                Page::After {
                    after: 118,
                    limit: 0,
                },
            )
            .await?;
        assert_eq!(
            after.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![119, 120, 121]
        );
        assert!(!after.more);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_get_one_gap_free_sequence() -> anyhow::Result<()> {
    let chat =
        Arc::new(confer_chat::connect(&confer_e2e::backing::fresh_postgres().await?, None).await?);
    let mut tasks = Vec::new();
    for sender in 0..8 {
        let chat = chat.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..60 {
                let req = text("t/busy", &format!("s{sender}"), &format!("c{i}"), "hi");
                seqs.push(chat.send(req.clone()).await?.entry.seq);
                // Every fifth send is resent, as after a lost ack.
                if i % 5 == 0 {
                    let again = chat.send(req).await?;
                    anyhow::ensure!(
                        again.duplicate && again.entry.seq == *seqs.last().unwrap_or(&0)
                    );
                }
            }
            anyhow::Ok(seqs)
        }));
    }
    let mut acked = BTreeSet::new();
    for task in tasks {
        for seq in task.await?? {
            assert!(acked.insert(seq), "seq {seq} acknowledged twice");
        }
    }
    assert_eq!(acked, (1..=480).collect::<BTreeSet<u64>>());
    let stored = all(&chat, "t/busy").await?;
    assert_eq!(stored.len(), 480);
    assert!(stored.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    Ok(())
}

/// A counter's value on the service's metrics page.
fn counter(chat: &ChatService, name: &str) -> u64 {
    let mut out = confer_metrics::Exposition::new(confer_metrics::Format::Prometheus);
    chat.stats().render(&mut out);
    let text = out.finish();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// Many rooms' senders at once: their messages share commits (group commit), yet every
/// room keeps one gap-free sequence; resends racing their originals, and resends of
/// messages stored long before, get the stored entry back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rooms_share_commits_and_stay_gap_free() -> anyhow::Result<()> {
    const ROOMS: usize = 30;
    const SENDERS: usize = 3;
    const MESSAGES: u64 = 20;
    let chat =
        Arc::new(confer_chat::connect(&confer_e2e::backing::fresh_postgres().await?, None).await?);
    let mut tasks = Vec::new();
    for room in 0..ROOMS {
        for sender in 0..SENDERS {
            let chat = chat.clone();
            tasks.push(tokio::spawn(async move {
                let room = format!("t/many{room}");
                let mut seqs = Vec::new();
                for i in 0..MESSAGES {
                    let req = text(&room, &format!("s{sender}"), &format!("c{i}"), "hi");
                    let sent = if i % 4 == 0 {
                        // A resend racing its original: one of them stores it.
                        let (a, b) = tokio::join!(chat.send(req.clone()), chat.send(req));
                        let (a, b) = (a?, b?);
                        anyhow::ensure!(
                            a.entry == b.entry && a.duplicate != b.duplicate,
                            "racing sends of c{i} in {room}: {a:?} / {b:?}"
                        );
                        a
                    } else {
                        chat.send(req).await?
                    };
                    seqs.push(sent.entry.seq);
                    if i % 7 == 6 {
                        // A resend of the first message, long stored.
                        let old = text(&room, &format!("s{sender}"), "c0", "hi");
                        let again = chat.send(old).await?;
                        anyhow::ensure!(again.duplicate && again.entry.seq == seqs[0]);
                    }
                }
                anyhow::Ok((room, seqs))
            }));
        }
    }
    let mut acked: std::collections::BTreeMap<String, BTreeSet<u64>> = Default::default();
    for task in tasks {
        let (room, seqs) = task.await??;
        let room_acked = acked.entry(room).or_default();
        for seq in seqs {
            assert!(room_acked.insert(seq), "seq {seq} acknowledged twice");
        }
    }
    let per_room = SENDERS as u64 * MESSAGES;
    for (room, seqs) in &acked {
        assert_eq!(*seqs, (1..=per_room).collect::<BTreeSet<u64>>(), "{room}");
        let stored = all(&chat, room).await?;
        assert_eq!(stored.len() as u64, per_room, "{room}");
        assert!(
            stored.windows(2).all(|w| w[1].seq == w[0].seq + 1),
            "{room}"
        );
    }
    let (commits, batched) = (
        counter(&chat, "confer_chat_batch_commits_total"),
        counter(&chat, "confer_chat_batched_entries_total"),
    );
    assert!(commits > 0, "no send shared a commit");
    assert!(
        batched > commits,
        "{batched} entries in {commits} shared commits"
    );
    eprintln!("{batched} entries in {commits} shared commits");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_and_deletes_by_author_or_host() -> anyhow::Result<()> {
    for (db, chat) in services().await? {
        let first = chat.send(text("t/e", "ada", "a1", "helo")).await?.entry.seq;
        let change = |sender: &str, host: bool, action| SendRequest {
            sender_is_host: host,
            action,
            ..text("t/e", sender, "", "-")
        };
        let edit = chat
            .send(change(
                "ada",
                false,
                ChatAction::Edit {
                    seq: first,
                    text: "hello".into(),
                },
            ))
            .await?
            .entry;
        assert_eq!(
            (edit.kind, edit.target_seq, edit.text.as_str()),
            (EntryKind::Edit, first, "hello")
        );
        let refused = chat
            .send(change(
                "bob",
                true,
                ChatAction::Edit {
                    seq: first,
                    text: "hijack".into(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(
            refused.code, "not_author",
            "{db}: hosts do not edit others' words"
        );
        let refused = chat
            .send(change("bob", false, ChatAction::Delete { seq: first }))
            .await
            .unwrap_err();
        assert_eq!(refused.code, "not_author", "{db}");
        let missing = chat
            .send(change("ada", false, ChatAction::Delete { seq: 999 }))
            .await
            .unwrap_err();
        assert_eq!(missing.code, "message_not_found");
        // Refusals took no numbers.
        let deleted = chat
            .send(change("bob", true, ChatAction::Delete { seq: first }))
            .await?
            .entry;
        assert_eq!((deleted.seq, deleted.kind), (3, EntryKind::Delete), "{db}");
        let history = all(&chat, "t/e").await?;
        assert_eq!(history.len(), 3);
        assert!(
            history[0].deleted && history[0].edited && history[0].text.is_empty(),
            "{db}: {:?}",
            history[0]
        );
        let again = chat
            .send(change(
                "ada",
                false,
                ChatAction::Edit {
                    seq: first,
                    text: "x".into(),
                },
            ))
            .await;
        assert_eq!(
            again.unwrap_err().code,
            "message_not_found",
            "{db}: a deleted message stays deleted"
        );
    }
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_stores_nothing() -> anyhow::Result<()> {
    let chat = confer_chat::connect("sqlite::memory:", None).await?;
    let cases = [
        (text("t/b", "ada", "", "   "), "invalid_message"),
        (
            text("t/b", "ada", "", &"x".repeat(4001)),
            "message_too_long",
        ),
        (text("t/b", "ada", "", "bell\u{7}"), "invalid_message"),
        (text("t/b", "ada", "has space", "hi"), "invalid_client_id"),
        (
            text("t/b", "ada", &"a".repeat(65), "hi"),
            "invalid_client_id",
        ),
        (text("", "ada", "", "hi"), "invalid_request"),
    ];
    for (req, code) in cases {
        let err = chat.send(req.clone()).await.unwrap_err();
        assert_eq!(err.code, code, "{req:?}");
    }
    assert!(all(&chat, "t/b").await?.is_empty());
    Ok(())
}

/// `host:port` of a `postgres://user@host:port/db` URL.
fn pg_addr(url: &str) -> anyhow::Result<std::net::SocketAddr> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    let host = rest.split('/').next().unwrap_or(rest);
    use std::net::ToSocketAddrs as _;
    host.to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow::anyhow!("no address in {url}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_refuses_sends_and_loses_nothing() -> anyhow::Result<()> {
    let url = confer_e2e::backing::fresh_postgres().await?;
    let proxy = confer_e2e::backing::Proxy::start(pg_addr(&url)?).await?;
    let addr = pg_addr(&url)?;
    let proxied = url.replacen(
        &format!("{}:{}", addr.ip(), addr.port()),
        &format!("127.0.0.1:{}", proxy.port),
        1,
    );
    anyhow::ensure!(proxied != url, "the test URL names 127.0.0.1: {url}");
    let chat = confer_chat::connect(&proxied, None).await?;
    for i in 1..=5 {
        chat.send(text("t/o", "ada", &format!("m{i}"), "before"))
            .await?;
    }
    proxy.cut();
    for i in 6..=8 {
        let err = chat
            .send(text("t/o", "ada", &format!("m{i}"), "during"))
            .await
            .unwrap_err();
        assert_eq!(err.code, "chat_unavailable", "{err:?}");
        assert!(err.message.contains("nothing was stored"), "{err:?}");
    }
    proxy.restore();
    // The client resends what was not acknowledged; numbering continues without a gap.
    let mut seqs = Vec::new();
    for i in 6..=8 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let sent = loop {
            match chat
                .send(text("t/o", "ada", &format!("m{i}"), "after"))
                .await
            {
                Ok(sent) => break sent,
                Err(err)
                    if std::time::Instant::now() < deadline && err.code == "chat_unavailable" =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(err) => return Err(err.into()),
            }
        };
        assert!(!sent.duplicate, "m{i} was never stored during the outage");
        seqs.push(sent.entry.seq);
    }
    assert_eq!(seqs, vec![6, 7, 8]);
    let stored = all(&chat, "t/o").await?;
    let texts: Vec<&str> = stored.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "before", "before", "before", "before", "before", "after", "after", "after"
        ]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_expires_old_entries_of_that_room_only() -> anyhow::Result<()> {
    for (db, chat) in services().await? {
        chat.set_retention("t/short".into(), 1).await?;
        chat.send(text("t/short", "ada", "old", "old")).await?;
        chat.send(text("t/long", "ada", "old", "kept")).await?;
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        chat.send(text("t/short", "ada", "new", "new")).await?;
        assert_eq!(chat.expire().await?, 1, "{db}");
        let short = all(&chat, "t/short").await?;
        assert_eq!(
            short
                .iter()
                .map(|e| (e.seq, e.text.as_str()))
                .collect::<Vec<_>>(),
            vec![(2, "new")],
            "{db}"
        );
        assert_eq!(
            all(&chat, "t/long").await?.len(),
            1,
            "{db}: no retention, nothing expires"
        );
        // Numbering goes on after an expiry.
        assert_eq!(
            chat.send(text("t/short", "ada", "next", "next"))
                .await?
                .entry
                .seq,
            3
        );
        chat.delete_room("t/short".into()).await?;
        assert!(all(&chat, "t/short").await?.is_empty(), "{db}");
    }
    Ok(())
}

/// A room whose tenant set no retention goes by the chat service's default; a room
/// whose tenant set one keeps it, 0 (kept for good) included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_without_a_retention_of_their_own_go_by_the_default() -> anyhow::Result<()> {
    let urls = [
        ("sqlite", "sqlite::memory:".to_owned()),
        ("postgres", confer_e2e::backing::fresh_postgres().await?),
    ];
    for (db, url) in urls {
        let default = Some(std::time::Duration::from_secs(1));
        let chat = confer_chat::connect_with(&url, None, 4, default).await?;
        chat.set_retention("t/for-good".into(), 0).await?;
        chat.set_retention("t/a-day".into(), 86_400).await?;
        // Longer than the sweep's millisecond arithmetic holds: kept, not an error.
        chat.set_retention("t/ages".into(), u64::MAX).await?;
        for room in ["t/default", "t/for-good", "t/a-day", "t/ages"] {
            chat.send(text(room, "ada", "old", "old")).await?;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        chat.send(text("t/default", "ada", "new", "new")).await?;
        assert_eq!(chat.expire().await?, 1, "{db}");
        let texts = |entries: Vec<ChatEntry>| -> Vec<String> {
            entries.into_iter().map(|e| e.text).collect()
        };
        assert_eq!(texts(all(&chat, "t/default").await?), ["new"], "{db}");
        assert_eq!(texts(all(&chat, "t/for-good").await?), ["old"], "{db}");
        assert_eq!(texts(all(&chat, "t/a-day").await?), ["old"], "{db}");
        assert_eq!(texts(all(&chat, "t/ages").await?), ["old"], "{db}");

        // What each room goes by, and a room's own retention dropped: the default again.
        let by = |seconds, own| Retention { seconds, own };
        assert_eq!(chat.retention("t/default".into()).await?, by(1, false));
        assert_eq!(chat.retention("t/for-good".into()).await?, by(0, true));
        assert_eq!(chat.retention("t/a-day".into()).await?, by(86_400, true));
        assert_eq!(chat.retention("t/unknown".into()).await?, by(1, false));
        chat.clear_retention("t/a-day".into()).await?;
        assert_eq!(chat.retention("t/a-day".into()).await?, by(1, false));
        assert_eq!(
            chat.expire().await?,
            1,
            "{db}: a-day's old entry, by the default"
        );
        assert!(all(&chat, "t/a-day").await?.is_empty(), "{db}");
    }
    Ok(())
}

/// A sender back through another connection (a new `sender_id`, the same identity)
/// resends under its client ids without storing twice, and edits and deletes what it
/// sent before; an empty identity is no one's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_back_through_another_connection_keeps_its_messages() -> anyhow::Result<()> {
    for (db, chat) in services().await? {
        let by = |connection: &str, identity: &str, client_id: &str, action| SendRequest {
            sender_identity: identity.into(),
            action,
            ..text("t/i", connection, client_id, "")
        };
        let say = |words: &str| ChatAction::Text {
            text: words.into(),
            reply_to: 0,
        };
        let first = chat.send(by("p-ada-1", "ada", "c1", say("helo"))).await?;
        assert!(!first.duplicate);
        // Its answer was lost with the connection: the resend through the new one is
        // the same message.
        let again = chat.send(by("p-ada-2", "ada", "c1", say("helo"))).await?;
        assert!(again.duplicate, "{db}: stored once");
        assert_eq!(again.entry.seq, first.entry.seq);
        assert_eq!(again.entry.sender_identity, "ada");
        // Someone else's same client id is another message.
        let bob = chat.send(by("p-bob", "bob", "c1", say("hi"))).await?;
        assert_eq!((bob.duplicate, bob.entry.seq), (false, 2), "{db}");
        let fix = ChatAction::Edit {
            seq: 1,
            text: "hello".into(),
        };
        let edited = chat.send(by("p-ada-2", "ada", "", fix.clone())).await?;
        assert_eq!(edited.entry.target_seq, 1, "{db}");
        let refused = chat.send(by("p-bob", "bob", "", fix)).await.unwrap_err();
        assert_eq!(refused.code, "not_author", "{db}");
        chat.send(by("p-ada-3", "ada", "", ChatAction::Delete { seq: 1 }))
            .await?;

        // No identity: by the connection only.
        let old = chat.send(by("p-old", "", "o1", say("old"))).await?;
        let other = by(
            "p-other",
            "",
            "",
            ChatAction::Edit {
                seq: old.entry.seq,
                text: "x".into(),
            },
        );
        assert_eq!(chat.send(other).await.unwrap_err().code, "not_author");
        let resent = chat.send(by("p-other", "", "o1", say("old"))).await?;
        assert!(
            !resent.duplicate,
            "{db}: another connection without identity"
        );
        let history = all(&chat, "t/i").await?;
        assert!(
            history[0].deleted && history[0].edited,
            "{db}: {:?}",
            history[0]
        );
    }
    Ok(())
}

fn file(room: &str, sender: &str, file_id: &str) -> SendRequest {
    SendRequest {
        client_id: file_id.into(),
        action: ChatAction::File {
            name: format!("{file_id}.png"),
            content_type: "image/png".into(),
            size: 10,
        },
        ..text(room, sender, "", "")
    }
}

/// Every way a file's message goes (deleted, expired, its room deleted) queues the file
/// for its bytes to be removed, in the same transaction; files still shared are never
/// queued; a removal reported done leaves the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_whose_messages_go_are_queued_for_removal() -> anyhow::Result<()> {
    for (db, chat) in services().await? {
        let shared = |id: &str| format!("{id:0>32}");
        chat.set_retention("t/short".into(), 1).await?;
        chat.send(file("t/short", "ada", &shared("a1"))).await?;
        chat.send(file("t/kept", "ada", &shared("b1"))).await?;
        let deleted = chat.send(file("t/kept", "ada", &shared("b2"))).await?;
        chat.send(file("t/gone", "ada", &shared("c1"))).await?;
        assert!(chat.files_to_remove(10).await?.is_empty(), "{db}");

        let mut delete = text("t/kept", "ada", "", "");
        delete.action = ChatAction::Delete {
            seq: deleted.entry.seq,
        };
        chat.send(delete).await?;
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        assert_eq!(chat.expire().await?, 1, "{db}");
        chat.delete_room("t/gone".into()).await?;

        let mut queued = chat.files_to_remove(10).await?;
        queued.sort();
        assert_eq!(
            queued,
            vec![shared("a1"), shared("b2"), shared("c1")],
            "{db}: the shared b1 stays"
        );
        chat.files_removed(vec![shared("a1"), shared("c1")]).await?;
        assert_eq!(chat.files_to_remove(10).await?, vec![shared("b2")], "{db}");
        let refused = chat
            .files_removed(vec![String::new(); 501])
            .await
            .expect_err("too many at once");
        assert_eq!(refused.code, "invalid_request", "{db}");
    }
    Ok(())
}
