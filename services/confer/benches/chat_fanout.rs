//! Chat fan-out end to end, on the real binary with real PostgreSQL and Redis: two
//! gateways, one chat service, members split across the gateways on WebSockets. For
//! 1 room x 1,000 members and 1,000 rooms x 10 members: the most messages delivered
//! per second (senders keep a window of sends in flight), then p50/p99 send-to-delivery
//! latency at half that rate. Next to it, in the same run, `redis-benchmark` PUBLISH
//! throughput on the same machine. Each phase also says how busy the machine's CPUs
//! were (`/proc/stat`): everything runs on them, the load generator included.
//!
//! `cargo bench -p confer --bench chat_fanout` (needs redis-server, redis-benchmark and
//! a PostgreSQL server at CONFER_TEST_DATABASE_URL; `scripts/test.sh` installs them).
//! `CHAT_FANOUT_PACED=one=250,many=2500` paces the second phase at those rates
//! instead of half of the maximum; `CHAT_FANOUT_WARMUP_SECS` sets each phase's warm-up
//! (1 s by default); `CHAT_FANOUT_SCENARIOS=one` (or `many`) runs only that scenario;
//! `CHAT_FANOUT_BATCHES=0` has the members join without `chat_batches`.

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

#[path = "chat_client/socket.rs"]
mod socket;
#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt as _;
use serde_json::json;
use socket::MemberSocket;
use support::ChatCluster;

const RUN: Duration = Duration::from_secs(6);

type Ws = MemberSocket;

/// Now, µs since the Unix epoch: the clock of the messages' send times and of the
/// kernel's receive timestamps alike.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// `HH:MM:SS.mmm` of a wall-clock time in µs, as the servers' log lines show it.
fn time_of_day(unix_us: u64) -> String {
    let ms = unix_us / 1_000 % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1_000 % 60,
        ms % 1_000
    )
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
    let mut ws = MemberSocket::connect(&cluster.gateways[g], "/v1/signal").await?;
    let join = json!({"request_id": "j", "join": {"room": room, "token": token, "chat_batches": batches()}});
    match ws.join(&join).await? {
        Ok(()) => Ok(ws),
        Err(reply) => Err(anyhow::anyhow!("{who}: {reply}")),
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
    /// Wakes the members when the mode changes.
    mode: tokio::sync::watch::Sender<u64>,
    /// The mode, read once per frame: an atomic load, where reading the channel
    /// takes its lock.
    mode_now: AtomicU64,
    interval_us: AtomicU64,
    /// Sends in flight per sender in the maximum-rate phase.
    window: AtomicU64,
    recording: AtomicBool,
    delivered: AtomicU64,
    sent: AtomicU64,
    /// The benchmark's own worst timer lateness this phase, µs: how long its clients
    /// could have been kept from reading.
    worst_lag_us: AtomicU64,
    latencies_us: std::sync::Mutex<Vec<Delivered>>,
    /// Members that have handed over their latencies since the last mode change.
    handed_over: AtomicU64,
    members: u64,
}

impl Control {
    fn set_mode(&self, mode: u64) {
        self.mode_now.store(mode, Relaxed);
        self.mode.send_replace(mode);
    }
}

/// One delivery to a member.
#[derive(Clone, Copy)]
struct Delivered {
    /// When it was read, µs since the Unix epoch.
    received_us: u64,
    /// From its send to the member's read.
    latency_us: u64,
    /// From its send to its last bytes reaching the member's socket.
    socket_latency_us: u64,
    /// Which gateway the member is on.
    gateway: u8,
}

async fn member(
    ws: Ws,
    gateway: u8,
    sender: Option<String>,
    control: Arc<Control>,
) -> anyhow::Result<()> {
    let reader = Reader {
        gateway,
        mode: QUIET,
        latencies: Vec::new(),
        control,
    };
    match sender {
        Some(prefix) => send_and_read(ws, prefix, reader).await,
        None => read(ws, reader).await,
    }
}

/// What a member reads: the senders' mode, and the chat entries it is delivered.
struct Reader {
    gateway: u8,
    /// The mode last seen.
    mode: u64,
    /// Latencies gather here and go to the shared list when the mode changes.
    latencies: Vec<Delivered>,
    control: Arc<Control>,
}

impl Reader {
    /// The senders' mode, and whether it changed since the last look (the latencies
    /// gathered meanwhile are then handed over). Every change counts, however it is
    /// noticed: a member reading a backlog may see the new mode before its waiter for
    /// changes could report it.
    fn mode(&mut self) -> (u64, bool) {
        let current = self.control.mode_now.load(Relaxed);
        if current == self.mode {
            return (current, false);
        }
        self.mode = current;
        if let Ok(mut all) = self.control.latencies_us.lock() {
            all.append(&mut self.latencies);
        }
        self.control.handed_over.fetch_add(1, Relaxed);
        (current, true)
    }

    /// Counts (and while recording, times) the chat entries the bench sent in `text`
    /// (a `chat`, or a `chat_batch` of several), whose bytes reached the socket at
    /// `arrived_us`; returns whether there were any.
    fn delivered(&mut self, text: &[u8], arrived_us: u64) -> bool {
        // A field check, not parsing: nearly every frame holds chat entries. One
        // searcher for all: `str::find` builds its own on every call.
        static SENT_AT: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| memchr::memmem::Finder::new("\"text\":\"t="));
        let recording = self.control.recording.load(Relaxed);
        let (now, arrived) = if recording {
            (now_us(), arrived_us)
        } else {
            (0, 0)
        };
        let mut entries = 0;
        for at in SENT_AT.find_iter(text) {
            entries += 1;
            if recording {
                let digits = text[at + 10..].iter().take_while(|b| b.is_ascii_digit());
                let sent = digits.fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
                self.latencies.push(Delivered {
                    received_us: now,
                    latency_us: now.saturating_sub(sent),
                    socket_latency_us: arrived.saturating_sub(sent),
                    gateway: self.gateway,
                });
            }
        }
        self.control.delivered.fetch_add(entries, Relaxed);
        entries > 0
    }
}

/// One waiter for mode changes for a member's whole life: a `changed()` made per frame
/// would register and unregister a waiter under a lock each time, a cost of the load
/// generator's, not of the servers'.
fn mode_changes(mode: tokio::sync::watch::Receiver<u64>) -> impl futures_util::Stream<Item = ()> {
    futures_util::stream::unfold(mode, |mut mode| async move {
        mode.changed().await.ok().map(|()| ((), mode))
    })
}

/// A member that only reads: one task on the whole socket.
async fn read(mut ws: Ws, mut reader: Reader) -> anyhow::Result<()> {
    let mut changes = std::pin::pin!(mode_changes(reader.control.mode.subscribe()));
    while reader.mode().0 != STOP {
        tokio::select! {
            biased;
            open = ws.read_frames(|frame| {
                if let Some(text) = frame.text {
                    reader.delivered(text, frame.arrived_us);
                }
            }) => if !open? { break },
            // The next pass of the loop hands over.
            changed = changes.next() => if changed.is_none() { break },
        }
    }
    Ok(())
}

/// A member that sends (a window of sends in flight, or paced) and reads.
async fn send_and_read(mut ws: Ws, prefix: String, mut reader: Reader) -> anyhow::Result<()> {
    let control = reader.control.clone();
    let mut changes = std::pin::pin!(mode_changes(control.mode.subscribe()));
    let mut in_flight = 0usize;
    let mut n = 0u64;
    let mut next_at = tokio::time::Instant::now();
    let mut pacing = false;
    // Where in each paced interval this sender sends: spread evenly over senders.
    let phase = {
        use std::hash::{BuildHasher as _, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(&prefix);
        (hash % 10_000) as f64 / 10_000.0
    };
    let message = |n: u64| {
        let now = now_us();
        json!({"chat": {"text": format!("t={now}"), "client_id": format!("{prefix}-{n}")}})
            .to_string()
    };
    loop {
        let (current, changed) = reader.mode();
        if changed && current == QUIET {
            in_flight = 0;
        }
        if current == STOP {
            break;
        }
        if current == MAX {
            while in_flight < control.window.load(Relaxed) as usize {
                ws.send_text(&message(n)).await?;
                (n, in_flight) = (n + 1, in_flight + 1);
            }
        }
        let paced = current == PACED;
        if paced && !pacing {
            // Senders start pacing at their own point of the interval, as people do,
            // not all at once.
            let interval = Duration::from_micros(control.interval_us.load(Relaxed).max(1));
            next_at = tokio::time::Instant::now() + interval.mul_f64(phase);
        }
        pacing = paced;
        tokio::select! {
            // The next pass of the loop hands over and resets.
            changed = changes.next() => if changed.is_none() { break },
            () = tokio::time::sleep_until(next_at), if paced => {
                ws.send_text(&message(n)).await?;
                n += 1;
                let interval = Duration::from_micros(control.interval_us.load(Relaxed).max(1));
                let now = tokio::time::Instant::now();
                next_at = if now > next_at + interval { now + interval } else { next_at + interval };
            }
            open = ws.read_frames(|frame| {
                let Some(text) = frame.text else { return };
                if !reader.delivered(text, frame.arrived_us)
                    && memchr::memmem::find(text, b"\"chat_sent\"").is_some()
                {
                    in_flight = in_flight.saturating_sub(1);
                    control.sent.fetch_add(1, Relaxed);
                }
            }) => if !open? { break },
        }
    }
    Ok(())
}

struct Measured {
    messages_per_sec: f64,
    deliveries_per_sec: f64,
    /// Send to the member's read.
    p50_ms: f64,
    p99_ms: f64,
    /// Send to the delivery's arrival at the member's socket.
    socket_p50_ms: f64,
    socket_p99_ms: f64,
    /// p50 and p99 bounds of the servers' own stages over the phase.
    stages: Stages,
    /// Deliveries slower than [`STALL`], grouped by when their messages were sent.
    stalls: Vec<Stall>,
    /// The benchmark's own worst timer lateness.
    worst_lag_ms: f64,
    /// How busy the machine's CPUs were over the phase, %, from `/proc/stat` (where
    /// there is one).
    busy_percent: Option<f64>,
    /// Each gateway's history reads to fill a gap, entries put back in order
    /// without one, and resyncs (its feed fell behind, or reconnected).
    gap_fills: Vec<(u64, u64, u64)>,
    /// Each gateway's hand-offs to a lane of a room's members, per second: a busy
    /// room's lanes over this is its period.
    hand_offs_per_sec: Vec<f64>,
    /// The p99 to the member's socket of each [`WINDOW`] of send times.
    windows: Option<Windows>,
}

/// Send times are cut into windows this long to tell a phase's steady tail from its
/// stalls: a tail that every window shares is the pipeline's own.
const WINDOW: Duration = Duration::from_millis(50);

/// The least, median and greatest of the windows' p99s, ms.
struct Windows {
    count: usize,
    least: f64,
    median: f64,
    greatest: f64,
}

/// The p99 to the member's socket of each [`WINDOW`] of send times, from the phase's
/// start, summed up; windows of fewer than 100 deliveries are left out.
fn windows(latencies: &[Delivered], phase_start_us: u64) -> Option<Windows> {
    let window_us = WINDOW.as_micros() as u64;
    let mut by_window: std::collections::BTreeMap<u64, Vec<u32>> = Default::default();
    for d in latencies {
        let sent = d.received_us.saturating_sub(d.latency_us);
        by_window
            .entry(sent.saturating_sub(phase_start_us) / window_us)
            .or_default()
            .push(u32::try_from(d.socket_latency_us).unwrap_or(u32::MAX));
    }
    let mut p99s: Vec<f64> = by_window
        .into_values()
        .filter(|us| us.len() >= 100)
        .map(|mut us| f64::from(confer_loadtest::percentiles(&mut us)[2]) / 1000.0)
        .collect();
    p99s.sort_unstable_by(f64::total_cmp);
    Some(Windows {
        count: p99s.len(),
        least: *p99s.first()?,
        median: p99s[p99s.len() / 2],
        greatest: *p99s.last()?,
    })
}

/// The median and 99th percentile of latencies in µs, in ms.
fn p50_p99_ms(latencies_us: impl Iterator<Item = u64>) -> (f64, f64) {
    let mut us: Vec<u32> = latencies_us
        .map(|us| u32::try_from(us).unwrap_or(u32::MAX))
        .collect();
    let [p50, _, p99, _] = confer_loadtest::percentiles(&mut us);
    (f64::from(p50) / 1000.0, f64::from(p99) / 1000.0)
}

/// A delivery this late counts towards a stall.
const STALL: Duration = Duration::from_millis(50);

/// Messages sent within this of each other belong to one stall.
const STALL_GAP: Duration = Duration::from_millis(200);

struct Stall {
    /// When its first late message was sent, from the start of measuring (negative:
    /// during the warm-up).
    sent_from_ms: f64,
    sent_until_ms: f64,
    /// Per gateway.
    deliveries: [usize; 2],
    worst_ms: f64,
}

/// The servers' histograms a phase reads, as p50 and p99 bucket bounds ("<= 1 / <= 5").
struct Stages {
    /// Chat service: a send's arrival to its entry stored and published.
    send: String,
    /// Chat service: one batch's store.
    batch_store: String,
    /// Chat service: one batch's publish.
    batch_publish: String,
    /// Each gateway: an entry stored to its hand-off to the members' writers.
    gateway_fanout: String,
    /// Each gateway: a room's hand-off to its last member's write.
    gateway_write: String,
}

const STAGE_HISTOGRAMS: [&str; 5] = [
    "confer_chat_send_duration_seconds",
    "confer_chat_batch_store_duration_seconds",
    "confer_chat_batch_publish_duration_seconds",
    "confer_gateway_chat_fanout_seconds",
    "confer_gateway_chat_write_seconds",
];

/// One HTTP client for every scrape, made before the clients join: making one loads
/// TLS roots, long enough to stall the members sharing its thread.
static HTTP: std::sync::LazyLock<reqwest::Client> =
    std::sync::LazyLock::new(|| confer_http::client().expect("an HTTP client"));

/// Each gateway's (gap fills, reordered entries, resyncs) counters.
async fn gap_fills(cluster: &ChatCluster) -> anyhow::Result<Vec<(u64, u64, u64)>> {
    let counter = |text: &str, name: &str| -> anyhow::Result<u64> {
        let value = text
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .ok_or_else(|| anyhow::anyhow!("no {name} on a gateway's /metrics"))?;
        Ok(value.trim().parse()?)
    };
    let mut counts = Vec::new();
    for gateway in &cluster.gateways {
        let text = HTTP
            .get(format!("http://{gateway}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        counts.push((
            counter(&text, "confer_gateway_chat_gap_fills_total")?,
            counter(&text, "confer_gateway_chat_reordered_total")?,
            counter(&text, "confer_gateway_chat_resyncs_total")?,
        ));
    }
    Ok(counts)
}

/// Every stage histogram, from the chat service and both gateways.
async fn scrape_stages(
    cluster: &ChatCluster,
) -> anyhow::Result<Vec<confer_loadtest::server_metrics::Buckets>> {
    use confer_loadtest::server_metrics::scrape;
    let http = &*HTTP;
    let chat = format!("http://{}/metrics", cluster.chat_metrics[0]);
    let mut all = Vec::new();
    for name in &STAGE_HISTOGRAMS[..3] {
        all.push(scrape(http, &chat, name).await?);
    }
    for gateway in &cluster.gateways {
        let url = format!("http://{gateway}/metrics");
        all.push(scrape(http, &url, STAGE_HISTOGRAMS[3]).await?);
        all.push(scrape(http, &url, STAGE_HISTOGRAMS[4]).await?);
    }
    Ok(all)
}

/// Each gateway's lane hand-offs per second between two scrapes `secs` apart: the
/// count of its write histogram, one observation per hand-off.
fn hand_offs_per_sec(
    before: &[confer_loadtest::server_metrics::Buckets],
    after: &[confer_loadtest::server_metrics::Buckets],
    secs: f64,
) -> Vec<f64> {
    [4, 6]
        .iter()
        .map(|&i| after[i].since(&before[i]).count() as f64 / secs)
        .collect()
}

fn stages_between(
    before: &[confer_loadtest::server_metrics::Buckets],
    after: &[confer_loadtest::server_metrics::Buckets],
) -> Stages {
    // "p50 / p99 (mean)": the quantiles as bucket bounds, the mean from the sum.
    let bounds = |i: usize| {
        let window = after[i].since(&before[i]);
        let bound = |q| match window.quantile_bound(q) {
            Some(seconds) => format!("<= {}", seconds * 1000.0),
            None => "over the last bucket".to_owned(),
        };
        match window.mean() {
            Some(mean) => format!("{} / {} ({:.1})", bound(0.5), bound(0.99), mean * 1000.0),
            None => "none".to_owned(),
        }
    };
    Stages {
        send: bounds(0),
        batch_store: bounds(1),
        batch_publish: bounds(2),
        // Per gateway: its fan-out, then its writes.
        gateway_fanout: format!("{}, {}", bounds(3), bounds(5)),
        gateway_write: format!("{}, {}", bounds(4), bounds(6)),
    }
}

/// Late deliveries, grouped by when their messages were sent (µs since the epoch).
fn stalls(latencies: &[Delivered], phase_start_us: u64) -> Vec<Stall> {
    let mut late: Vec<(u64, u64, u8)> = latencies
        .iter()
        .filter(|d| d.latency_us >= STALL.as_micros() as u64)
        .map(|d| (d.received_us - d.latency_us, d.latency_us, d.gateway))
        .collect();
    late.sort_unstable();
    let mut stalls: Vec<Stall> = Vec::new();
    // Negative: sent during the warm-up, delivered once measuring had begun.
    let ms = |us: u64| (us as f64 - phase_start_us as f64) / 1000.0;
    for (sent, latency, gateway) in late {
        let gateway = usize::from(gateway.min(1));
        match stalls.last_mut() {
            Some(stall) if ms(sent) - stall.sent_until_ms <= STALL_GAP.as_secs_f64() * 1000.0 => {
                stall.sent_until_ms = ms(sent);
                stall.deliveries[gateway] += 1;
                stall.worst_ms = stall.worst_ms.max(latency as f64 / 1000.0);
            }
            _ => stalls.push(Stall {
                sent_from_ms: ms(sent),
                sent_until_ms: ms(sent),
                deliveries: if gateway == 0 { [1, 0] } else { [0, 1] },
                worst_ms: latency as f64 / 1000.0,
            }),
        }
    }
    stalls
}

/// The machine's CPU time so far, in clock ticks: (busy, all), from the first line of
/// `/proc/stat` (idle and I/O wait are not busy).
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let all: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((all - idle, all))
}

/// The busy share between two readings of [`cpu_times`], %.
fn busy_percent(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Option<f64> {
    let ((busy0, all0), (busy1, all1)) = (before?, after?);
    let all = all1.checked_sub(all0).filter(|&all| all > 0)?;
    Some(100.0 * busy1.saturating_sub(busy0) as f64 / all as f64)
}

/// Sleeps 5 ms over and over, keeping the worst lateness: a stall of this process
/// (its runtime or the CPU) shows here, one of the servers does not.
async fn watch_lag(control: Arc<Control>) {
    const TICK: Duration = Duration::from_millis(5);
    while control.mode_now.load(Relaxed) != STOP {
        let asleep = Instant::now();
        tokio::time::sleep(TICK).await;
        let late = asleep.elapsed().saturating_sub(TICK).as_micros() as u64;
        control.worst_lag_us.fetch_max(late, Relaxed);
    }
}

/// Runs the senders in `mode` for `RUN` after a second of warm-up.
async fn phase(cluster: &ChatCluster, control: &Control, mode: u64) -> anyhow::Result<Measured> {
    let warm_before = scrape_stages(cluster).await?;
    control.worst_lag_us.store(0, Relaxed);
    control.set_mode(mode);
    tokio::time::sleep(warm_up()).await;
    let warm = stages_between(&warm_before, &scrape_stages(cluster).await?);
    eprintln!(
        "phase {mode} warm-up: send {}, store {}, publish {}, hand-off {}, writes {}, own lag {:.1} ms",
        warm.send,
        warm.batch_store,
        warm.batch_publish,
        warm.gateway_fanout,
        warm.gateway_write,
        control.worst_lag_us.load(Relaxed) as f64 / 1000.0
    );
    // On stderr, so a profiler can be pointed at one phase (`perf record -a` then), and
    // the servers' warnings placed in it.
    eprintln!(
        "phase {mode} measuring for {}s from {} UTC",
        RUN.as_secs(),
        time_of_day(now_us())
    );
    if let Ok(mut all) = control.latencies_us.lock() {
        all.clear();
    }
    let (before, gaps_before) = (scrape_stages(cluster).await?, gap_fills(cluster).await?);
    control.worst_lag_us.store(0, Relaxed);
    control.recording.store(true, Relaxed);
    let (sent, delivered, started) = (
        control.sent.load(Relaxed),
        control.delivered.load(Relaxed),
        Instant::now(),
    );
    let phase_start_us = now_us();
    let cpu_before = cpu_times();
    tokio::time::sleep(RUN).await;
    let secs = started.elapsed().as_secs_f64();
    let sent = control.sent.load(Relaxed) - sent;
    let delivered = control.delivered.load(Relaxed) - delivered;
    control.recording.store(false, Relaxed);
    let worst_lag_ms = control.worst_lag_us.load(Relaxed) as f64 / 1000.0;
    let phase_end_us = now_us();
    let busy_percent = busy_percent(cpu_before, cpu_times());
    let (after, gaps_after) = (scrape_stages(cluster).await?, gap_fills(cluster).await?);
    control.handed_over.store(0, Relaxed);
    control.set_mode(QUIET);
    // The members hand over their latencies when they see the mode change; the
    // slowest readers are the last to, and must not be left out.
    for _ in 0..200 {
        if control.handed_over.load(Relaxed) >= control.members {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Only what was read while measuring: nothing left over from an earlier phase.
    let recorded: Vec<Delivered> = control
        .latencies_us
        .lock()
        .map(|mut all| std::mem::take(&mut *all))
        .unwrap_or_default()
        .into_iter()
        .filter(|d| (phase_start_us..=phase_end_us).contains(&d.received_us))
        .collect();
    let read = p50_p99_ms(recorded.iter().map(|d| d.latency_us));
    let at_socket = p50_p99_ms(recorded.iter().map(|d| d.socket_latency_us));
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
    Ok(Measured {
        messages_per_sec: sent as f64 / secs,
        deliveries_per_sec: delivered as f64 / secs,
        p50_ms: read.0,
        p99_ms: read.1,
        socket_p50_ms: at_socket.0,
        socket_p99_ms: at_socket.1,
        stages: stages_between(&before, &after),
        stalls: stalls(&recorded, phase_start_us),
        hand_offs_per_sec: hand_offs_per_sec(&before, &after, secs),
        windows: windows(&recorded, phase_start_us),
        worst_lag_ms,
        busy_percent,
        gap_fills: gaps_after
            .iter()
            .zip(&gaps_before)
            .map(|(after, before)| (after.0 - before.0, after.1 - before.1, after.2 - before.2))
            .collect(),
    })
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
        mode_now: AtomicU64::new(QUIET),
        interval_us: AtomicU64::new(0),
        window: AtomicU64::new(0),
        recording: AtomicBool::new(false),
        delivered: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        worst_lag_us: AtomicU64::new(0),
        latencies_us: std::sync::Mutex::new(Vec::new()),
        handed_over: AtomicU64::new(0),
        members: (rooms * members) as u64,
    });
    tokio::spawn(watch_lag(control.clone()));
    control.window.store(window, Relaxed);
    let mut tasks = Vec::new();
    for r in 0..rooms {
        let room = format!("{label}-{r}");
        if members > 100 {
            cluster.create_room(&room, members).await?;
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
            let gateway = (m % 2) as u8;
            tasks.push(tokio::spawn(member(ws, gateway, sender, control.clone())));
        }
    }
    let max = phase(cluster, &control, MAX).await?;
    let total_senders = (rooms * senders) as f64;
    let half_rate = paced_rate(label).unwrap_or((max.messages_per_sec / 2.0).max(1.0));
    control
        .interval_us
        .store((total_senders / half_rate * 1e6) as u64, Relaxed);
    let half = phase(cluster, &control, PACED).await?;
    control.set_mode(STOP);
    for task in tasks {
        task.await??;
    }
    println!(
        "| {rooms} room(s) x {members} members, {senders} sender(s) per room, {window} in flight each | max | {}",
        max.row()
    );
    println!("| | {} | {}", half_label(label), half.row());
    for (name, measured) in [("max", &max), ("paced", &half)] {
        let hand_offs: Vec<String> = measured
            .hand_offs_per_sec
            .iter()
            .map(|rate| format!("{rate:.0}"))
            .collect();
        println!(
            "  {label} {name}: lane hand-offs per second, each gateway: {}",
            hand_offs.join(", ")
        );
        if let Some(w) = &measured.windows {
            println!(
                "  {label} {name}: p99 to the socket of each {} ms of send times: least {:.1}, median {:.1}, greatest {:.1} ms ({} windows)",
                WINDOW.as_millis(),
                w.least,
                w.median,
                w.greatest,
                w.count
            );
        }
        for stall in measured.stalls.iter().take(5) {
            println!(
                "  {label} {name}: late deliveries (>= {} ms) of messages sent {:.0} to {:.0} ms from the start of measuring: {:?} (per gateway), worst {:.1} ms",
                STALL.as_millis(),
                stall.sent_from_ms,
                stall.sent_until_ms,
                stall.deliveries,
                stall.worst_ms
            );
        }
        if measured.stalls.len() > 5 {
            println!(
                "  {label} {name}: … {} stalls in all",
                measured.stalls.len()
            );
        }
    }
    Ok(())
}

impl Measured {
    /// The table's columns after the phase.
    fn row(&self) -> String {
        format!(
            "{:.0} | {:.0} | {:.1} | {:.1} | {:.1} / {:.1} | {} | {} | {} | {} | {} | {:?} | {:.1} | {} |",
            self.messages_per_sec,
            self.deliveries_per_sec,
            self.p50_ms,
            self.p99_ms,
            self.socket_p50_ms,
            self.socket_p99_ms,
            self.stages.send,
            self.stages.batch_store,
            self.stages.batch_publish,
            self.stages.gateway_fanout,
            self.stages.gateway_write,
            self.gap_fills,
            self.worst_lag_ms,
            self.busy_percent
                .map_or_else(|| "n/a".to_owned(), |busy| format!("{busy:.0}")),
        )
    }
}

/// The second phase's name in the table.
fn half_label(label: &str) -> &'static str {
    if paced_rate(label).is_some() {
        "paced (fixed)"
    } else {
        "half of max"
    }
}

/// Whether the members read `chat_batch`, as the JS SDK does (`CHAT_FANOUT_BATCHES=0`:
/// one `chat` frame per entry, as a client that does not).
fn batches() -> bool {
    std::env::var("CHAT_FANOUT_BATCHES").map_or(true, |value| value != "0")
}

/// How long each phase runs before it is measured (`CHAT_FANOUT_WARMUP_SECS`, 1 s by
/// default).
fn warm_up() -> Duration {
    std::env::var("CHAT_FANOUT_WARMUP_SECS")
        .ok()
        .and_then(|secs| secs.parse::<f64>().ok())
        .map_or(Duration::from_secs(1), Duration::from_secs_f64)
}

/// A paced rate (messages/s) for scenario `label` from `CHAT_FANOUT_PACED`
/// (`one=250,many=2500`), to compare two builds at one rate rather than at half of
/// each one's maximum.
fn paced_rate(label: &str) -> Option<f64> {
    std::env::var("CHAT_FANOUT_PACED")
        .ok()?
        .split(',')
        .find_map(|pair| pair.strip_prefix(label)?.strip_prefix('=')?.parse().ok())
}

/// Whether scenario `label` runs: all do unless `CHAT_FANOUT_SCENARIOS` (`one`,
/// `many`, or both, comma-separated) names others.
fn runs(label: &str) -> bool {
    std::env::var("CHAT_FANOUT_SCENARIOS").map_or(true, |names| {
        names.split(',').any(|name| name.trim() == label)
    })
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
    std::sync::LazyLock::force(&HTTP);
    let cluster = ChatCluster::start(1, &["--join-burst-per-address", "1000000"]).await?;
    println!(
        "redis-benchmark PUBLISH (50 clients, no pipelining): {}",
        redis_publish(cluster.redis.port)?
    );
    println!();
    println!(
        "| scenario | phase | messages/s | deliveries/s | p50 ms | p99 ms | p50 / p99 ms to the member's socket | p50 / p99 (mean) ms: send stored+published | batch store | batch publish | stored to hand-off, each gateway | hand-off to last member's write, each gateway | (gap fills, reordered, resyncs), each gateway | load generator's own lag ms | machine busy % |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    if runs("one") {
        scenario(&cluster, "one", 1, 1000, 8, 8).await?;
    }
    if runs("many") {
        scenario(&cluster, "many", 1000, 10, 1, 1).await?;
    }
    println!();
    println!(
        "redis-benchmark PUBLISH again, after: {}",
        redis_publish(cluster.redis.port)?
    );
    Ok(())
}
