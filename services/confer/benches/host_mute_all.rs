//! A host mutes everyone in a big room, end to end on the real binary: two gateways,
//! one room service on PostgreSQL and a redis-server of its own (as `ChatCluster` runs
//! them), 1,000 guests split across the gateways on WebSockets. Twice in one run: the
//! guests read `participants_changed` (they joined with `participant_batches`, as the
//! JS SDK and the SIP bridge do), then they do not (one `participant_updated` per
//! muted guest). Prints the time from the host's `mute_all` to its answer, to the
//! median and the last guest knowing every guest is muted, and the frames and bytes
//! the guests read for it.
//!
//! `CONFER_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench -p confer --bench host_mute_all`
//! (needs redis-server; `scripts/test.sh` installs it). `HOST_MUTE_ALL_GUESTS` sets
//! the room's size (1,000 by default).

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

#[path = "chat_client/socket.rs"]
mod socket;
#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};
use socket::MemberSocket;
use support::ChatCluster;

/// What one guest read for the mute, and when it knew everyone was muted.
struct Heard {
    frames: u64,
    bytes: u64,
    knew_after: Duration,
}

fn guests() -> usize {
    std::env::var("HOST_MUTE_ALL_GUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000)
}

/// Now, µs since the Unix epoch: the clock of the kernel's receive timestamps.
fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// A guest's access token for `room`.
fn guest_token(cluster: &ChatCluster, room: &str, identity: &str) -> String {
    use confer_auth::{Claims, TokenKey, VideoGrant};
    TokenKey::new(cluster.api_key.clone(), cluster.api_secret.as_bytes()).sign(&Claims {
        iss: cluster.api_key.clone(),
        sub: identity.into(),
        name: identity.into(),
        nbf: 0,
        exp: u64::MAX / 2,
        kind: Default::default(),
        video: VideoGrant::join(room),
    })
}

/// Joins `room` through gateway `g` with `token`, waiting out the tenant's join rate
/// limit; the socket is past its `joined`.
async fn join(
    cluster: &ChatCluster,
    g: usize,
    room: &str,
    token: &str,
    batches: bool,
) -> anyhow::Result<MemberSocket> {
    loop {
        let mut ws = MemberSocket::connect(&cluster.gateways[g], "/v1/signal").await?;
        let join = json!({"request_id": "j", "join": {"room": room, "token": token,
            "participant_batches": batches}});
        let refused = match ws.join(&join).await? {
            Ok(()) => return Ok(ws),
            Err(reply) => reply.to_string(),
        };
        anyhow::ensure!(
            refused.contains("rate_limited") || refused.contains("unavailable"),
            "{refused}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads what `ws` gets until it has heard of `guests` muted: a `participants_changed`
/// counts the ids it names, a `participant_updated` of a blocked microphone one. The
/// frames and bytes counted are those that told of the mute.
async fn hear_mute(
    mut ws: MemberSocket,
    guests: usize,
    since: Arc<tokio::sync::OnceCell<(Instant, u64)>>,
) -> anyhow::Result<Heard> {
    let (mut frames, mut bytes, mut muted, mut arrived_us) = (0u64, 0u64, 0usize, 0u64);
    let batch = memchr::memmem::Finder::new(b"\"participants_changed\"");
    let one = memchr::memmem::Finder::new(b"\"participant_updated\"");
    let blocked = memchr::memmem::Finder::new(b"\"audio_blocked\":true");
    while muted < guests {
        let open = ws
            .read_frames(|frame| {
                let Some(text) = frame.text else { return };
                if batch.find(text).is_some() {
                    let ids = serde_json::from_slice::<Value>(text)
                        .ok()
                        .and_then(|v| {
                            v["participants_changed"]["participant_ids"]
                                .as_array()
                                .map(Vec::len)
                        })
                        .unwrap_or(0);
                    muted += ids;
                } else if one.find(text).is_some() && blocked.find(text).is_some() {
                    muted += 1;
                } else {
                    return;
                }
                frames += 1;
                bytes += text.len() as u64;
                arrived_us = frame.arrived_us;
            })
            .await?;
        anyhow::ensure!(open, "closed before hearing everyone muted ({muted})");
    }
    let (start, start_us) = since.get().copied().unwrap_or((Instant::now(), 0));
    // When the last of it reached the socket, if the kernel said; else now.
    let knew_after = if arrived_us > start_us && start_us > 0 {
        Duration::from_micros(arrived_us - start_us)
    } else {
        start.elapsed()
    };
    Ok(Heard {
        frames,
        bytes,
        knew_after,
    })
}

/// One room of `guests`, reading batches or not: the host mutes everyone.
async fn case(
    cluster: &ChatCluster,
    room: &str,
    guests: usize,
    batches: bool,
) -> anyhow::Result<()> {
    confer_e2e::tenant::create_room(
        &confer_http::client()?,
        &format!("http://{}", cluster.gateways[0]),
        (&cluster.api_key, &cluster.api_secret),
        json!({"name": room, "settings": {"max_participants": guests + 10, "waiting_room": false}}),
    )
    .await?;
    let mut host = join(cluster, 0, room, &cluster.token(room, "host"), batches).await?;
    let joined = Instant::now();
    let mut members = Vec::with_capacity(guests);
    for i in 0..guests {
        let token = guest_token(cluster, room, &format!("guest-{i}"));
        members.push(
            join(cluster, i % 2, room, &token, batches)
                .await
                .with_context(|| format!("guest {i} joining"))?,
        );
    }
    let joining = joined.elapsed();
    let since = Arc::new(tokio::sync::OnceCell::new());
    let readers: Vec<_> = members
        .into_iter()
        .map(|ws| tokio::spawn(hear_mute(ws, guests, since.clone())))
        .collect();
    // The guests read the joins' presence (each heard of those after it) before the
    // mute, the host as it waits for its answer.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let start = Instant::now();
    let _ = since.set((start, unix_us()));
    host.send_text(
        &json!({"request_id": "m", "host": {"action": "mute_all", "kind": "audio"}}).to_string(),
    )
    .await
    .context("the host's mute")?;
    let mut answered = None;
    while answered.is_none() {
        host.read_frames(|frame| {
            if let Some(text) = frame.text
                && memchr::memmem::find(text, b"\"request_id\":\"m\"").is_some()
            {
                answered = Some(start.elapsed());
            }
        })
        .await?;
    }
    let mut heard = Vec::with_capacity(guests);
    for reader in readers {
        heard.push(reader.await?.context("a guest hearing the mute")?);
    }
    heard.sort_by_key(|h| h.knew_after);
    let frames: u64 = heard.iter().map(|h| h.frames).sum();
    let bytes: u64 = heard.iter().map(|h| h.bytes).sum();
    println!(
        "| {guests} | {} | {:.1} s | {:.1} | {:.1} | {:.1} | {frames} | {:.2} MB |",
        if batches {
            "`participants_changed`"
        } else {
            "`participant_updated` each"
        },
        joining.as_secs_f64(),
        answered.unwrap_or_default().as_secs_f64() * 1e3,
        heard[heard.len() / 2].knew_after.as_secs_f64() * 1e3,
        heard[heard.len() - 1].knew_after.as_secs_f64() * 1e3,
        bytes as f64 / 1e6,
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let guests = guests();
    let cluster = ChatCluster::start(1, &["--join-burst-per-address", "1000000"]).await?;
    println!(
        "| guests | they read | joining | host's answer, ms | median guest knows (at its socket), ms | last guest knows, ms | frames read | bytes read |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    case(&cluster, "batched", guests, true).await?;
    case(&cluster, "each", guests, false).await?;
    Ok(())
}
