//! Chat fan-out end to end, on the real binary with real PostgreSQL and Redis: two
//! gateways, one chat service, members split across the gateways on WebSockets. For
//! 1 room x 1,000 members and 1,000 rooms x 10 members: the most messages delivered
//! per second (senders keep a window of sends in flight), then p50/p99 send-to-delivery
//! latency at half that rate. Next to it, in the same run, `redis-benchmark` PUBLISH
//! throughput on the same machine.
//!
//! `cargo bench -p confer --bench chat_fanout` (needs redis-server, redis-benchmark and
//! a PostgreSQL server at CONFER_TEST_DATABASE_URL; `scripts/test.sh` installs them).

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use support::ChatCluster;
use tokio_tungstenite::tungstenite::Message;

const RUN: Duration = Duration::from_secs(6);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A room for more than the default 100 participants, through the tenant API.
async fn create_room(cluster: &ChatCluster, room: &str, max: usize) -> anyhow::Result<()> {
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/rooms", cluster.gateways[0]))
        .basic_auth(&cluster.api_key, Some(&cluster.api_secret))
        .json(&json!({"name": room, "settings": {"max_participants": max}}))
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "create {room}: {}",
        response.text().await?
    );
    Ok(())
}

/// Joins, waiting out the tenant's join rate limit (a burst of 500).
async fn join(cluster: &ChatCluster, g: usize, room: &str, who: String) -> anyhow::Result<Ws> {
    loop {
        match join_once(cluster, g, room, who.clone()).await {
            Err(err)
                if err.to_string().contains("rate_limited")
                    || err.to_string().contains("unavailable") =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

async fn join_once(cluster: &ChatCluster, g: usize, room: &str, who: String) -> anyhow::Result<Ws> {
    let token = cluster.token(room, &who);
    let url = format!("ws://{}/v1/signal", cluster.gateways[g]);
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(&url, Some(small_reads()), true).await?;
    ws.send(Message::Text(
        json!({"request_id": "j", "join": {"room": room, "token": token}})
            .to_string()
            .into(),
    ))
    .await?;
    loop {
        let Some(frame) = ws.next().await else {
            anyhow::bail!("closed")
        };
        if let Message::Text(text) = frame? {
            let reply: Value = serde_json::from_str(&text)?;
            if reply.get("joined").is_some() {
                return Ok(ws);
            }
            anyhow::ensure!(reply.get("error").is_none(), "{who}: {reply}");
        }
    }
}

/// The senders' modes: quiet; as fast as the window allows; one send per `interval_us`;
/// done.
const QUIET: u64 = 0;
const MAX: u64 = 1;
const PACED: u64 = 2;
const STOP: u64 = 3;

/// What the members share: the senders' mode and the tallies.
struct Control {
    mode: tokio::sync::watch::Sender<u64>,
    interval_us: AtomicU64,
    /// Sends in flight per sender in the maximum-rate phase.
    window: AtomicU64,
    recording: AtomicBool,
    delivered: AtomicU64,
    sent: AtomicU64,
    latencies_us: std::sync::Mutex<Vec<u64>>,
}

async fn member(
    ws: Ws,
    sender: Option<String>,
    epoch: Instant,
    control: Arc<Control>,
) -> anyhow::Result<()> {
    let (mut sink, mut stream) = ws.split();
    let mut mode = control.mode.subscribe();
    let mut in_flight = 0usize;
    let mut n = 0u64;
    let mut next_at = tokio::time::Instant::now();
    let mut pacing = false;
    // Where in each paced interval this sender sends: spread evenly over senders.
    let phase = sender.as_deref().map_or(0.0, |prefix| {
        use std::hash::{BuildHasher as _, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(prefix);
        (hash % 10_000) as f64 / 10_000.0
    });
    // Latencies gather here and go to the shared list when the mode changes.
    let mut latencies = Vec::new();
    let message = |n: u64, prefix: &str| {
        let now = epoch.elapsed().as_micros() as u64;
        Message::Text(
            json!({"chat": {"text": format!("t={now}"), "client_id": format!("{prefix}-{n}")}})
                .to_string()
                .into(),
        )
    };
    loop {
        let current = *mode.borrow_and_update();
        if current == STOP {
            break;
        }
        let sending = sender.as_ref().filter(|_| current != QUIET);
        if let (Some(prefix), MAX) = (sending, current) {
            while in_flight < control.window.load(Relaxed) as usize {
                sink.send(message(n, prefix)).await?;
                (n, in_flight) = (n + 1, in_flight + 1);
            }
        }
        let paced = sending.filter(|_| current == PACED);
        if paced.is_some() && !pacing {
            // Senders start pacing at their own point of the interval, as people do,
            // not all at once.
            let interval = Duration::from_micros(control.interval_us.load(Relaxed).max(1));
            next_at = tokio::time::Instant::now() + interval.mul_f64(phase);
        }
        pacing = paced.is_some();
        tokio::select! {
            changed = mode.changed() => {
                if let Ok(mut all) = control.latencies_us.lock() {
                    all.append(&mut latencies);
                }
                if changed.is_err() {
                    break;
                }
                if *mode.borrow() == QUIET {
                    in_flight = 0;
                }
            }
            () = tokio::time::sleep_until(next_at), if paced.is_some() => {
                if let Some(prefix) = paced {
                    sink.send(message(n, prefix)).await?;
                    n += 1;
                }
                let interval = Duration::from_micros(control.interval_us.load(Relaxed).max(1));
                let now = tokio::time::Instant::now();
                next_at = if now > next_at + interval { now + interval } else { next_at + interval };
            }
            frame = stream.next() => {
                let Some(frame) = frame else { break };
                let Message::Text(text) = frame? else { continue };
                // Field checks before any parsing: nearly every frame is a chat entry.
                if text.contains("\"chat_sent\"") {
                    in_flight = in_flight.saturating_sub(1);
                    control.sent.fetch_add(1, Relaxed);
                } else if let Some(at) = text.find("\"text\":\"t=") {
                    control.delivered.fetch_add(1, Relaxed);
                    if control.recording.load(Relaxed) {
                        let digits: String = text[at + 10..].chars().take_while(char::is_ascii_digit).collect();
                        if let Ok(sent) = digits.parse::<u64>() {
                            latencies.push((epoch.elapsed().as_micros() as u64).saturating_sub(sent));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

struct Measured {
    messages_per_sec: f64,
    deliveries_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Runs the senders in `mode` for `RUN` after a second of warm-up.
async fn phase(control: &Control, mode: u64) -> Measured {
    control.mode.send_replace(mode);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // On stderr, so a profiler can be pointed at one phase (`perf record -a` then).
    eprintln!("phase {mode} measuring for {}s", RUN.as_secs());
    if let Ok(mut all) = control.latencies_us.lock() {
        all.clear();
    }
    control.recording.store(true, Relaxed);
    let (sent, delivered, started) = (
        control.sent.load(Relaxed),
        control.delivered.load(Relaxed),
        Instant::now(),
    );
    tokio::time::sleep(RUN).await;
    let secs = started.elapsed().as_secs_f64();
    let sent = control.sent.load(Relaxed) - sent;
    let delivered = control.delivered.load(Relaxed) - delivered;
    control.recording.store(false, Relaxed);
    control.mode.send_replace(QUIET);
    // The members hand over their latencies when the mode changes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut latencies = control
        .latencies_us
        .lock()
        .map(|all| all.clone())
        .unwrap_or_default();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |us| *us as f64 / 1000.0)
    };
    // Drain: whatever is still queued is delivered before the next phase starts.
    let mut last = (u64::MAX, u64::MAX);
    for _ in 0..60 {
        let now = (control.sent.load(Relaxed), control.delivered.load(Relaxed));
        if now == last {
            break;
        }
        last = now;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Measured {
        messages_per_sec: sent as f64 / secs,
        deliveries_per_sec: delivered as f64 / secs,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}

/// `rooms` x `members`, `senders` of them per room keeping `window` sends in flight:
/// the maximum rate, then half of it.
async fn scenario(
    cluster: &ChatCluster,
    label: &str,
    rooms: usize,
    members: usize,
    senders: usize,
    window: u64,
) -> anyhow::Result<()> {
    let control = Arc::new(Control {
        mode: tokio::sync::watch::channel(QUIET).0,
        interval_us: AtomicU64::new(0),
        window: AtomicU64::new(0),
        recording: AtomicBool::new(false),
        delivered: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        latencies_us: std::sync::Mutex::new(Vec::new()),
    });
    control.window.store(window, Relaxed);
    let epoch = Instant::now();
    let mut tasks = Vec::new();
    for r in 0..rooms {
        let room = format!("{label}-{r}");
        if members > 100 {
            create_room(cluster, &room, members).await?;
        }
        // 50 joins at a time: the bench measures chat, not a join stampede.
        let joins = futures_util::stream::iter(0..members)
            .map(|m| join(cluster, m % 2, &room, format!("u{m}")))
            .buffered(50)
            .collect::<Vec<_>>()
            .await;
        for (m, ws) in joins.into_iter().enumerate() {
            let ws = ws?;
            let sender = (m < senders).then(|| format!("{label}{r}s{m}"));
            tasks.push(tokio::spawn(member(ws, sender, epoch, control.clone())));
        }
    }
    let max = phase(&control, MAX).await;
    let total_senders = (rooms * senders) as f64;
    let half_rate = (max.messages_per_sec / 2.0).max(1.0);
    control
        .interval_us
        .store((total_senders / half_rate * 1e6) as u64, Relaxed);
    let half = phase(&control, PACED).await;
    control.mode.send_replace(STOP);
    for task in tasks {
        task.await??;
    }
    println!(
        "| {rooms} room(s) x {members} members, {senders} sender(s) per room, {window} in flight each | max | {:.0} | {:.0} | {:.1} | {:.1} |",
        max.messages_per_sec, max.deliveries_per_sec, max.p50_ms, max.p99_ms
    );
    println!(
        "| | half of max | {:.0} | {:.0} | {:.1} | {:.1} |",
        half.messages_per_sec, half.deliveries_per_sec, half.p50_ms, half.p99_ms
    );
    Ok(())
}

/// `redis-benchmark` PUBLISH requests per second against the same Redis.
fn redis_publish(port: u16) -> anyhow::Result<String> {
    let output = std::process::Command::new("redis-benchmark")
        .args([
            "-p",
            &port.to_string(),
            "-q",
            "-n",
            "200000",
            "-c",
            "50",
            "PUBLISH",
            "confer:bench",
            "hello",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    // The quiet output ends with the last progress line after a carriage return.
    Ok(text
        .rsplit('\r')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let cluster = ChatCluster::start(1, &["--join-burst-per-address", "1000000"]).await?;
    println!(
        "redis-benchmark PUBLISH (50 clients, no pipelining): {}",
        redis_publish(cluster.redis.port)?
    );
    println!();
    println!("| scenario | phase | messages/s | deliveries/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|");
    scenario(&cluster, "one", 1, 1000, 8, 8).await?;
    scenario(&cluster, "many", 1000, 10, 1, 1).await?;
    println!();
    println!(
        "redis-benchmark PUBLISH again, after: {}",
        redis_publish(cluster.redis.port)?
    );
    Ok(())
}

/// A WebSocket client reading 4 KiB at a time: the library zero-fills its whole read
/// buffer (128 KiB by default) before every read, which at thousands of clients costs
/// more CPU than the messages themselves.
fn small_reads() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096)
}
