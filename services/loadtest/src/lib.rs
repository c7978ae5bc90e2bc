//! `confer loadtest`: synthetic WebRTC publishers and subscribers, real signalling and
//! real media, against a Confer deployment or, for comparison, a Janus VideoRoom.
//!
//! N rooms × P publishers × S subscribers. Each client is a webrtc-rs peer on its own
//! UDP socket (ICE, DTLS, SRTP, RTCP for real). Publishers send a paced VP8-shaped
//! stream whose payloads carry a [`stamp::Stamp`] (publisher, packet number, send
//! time); subscribers read the stamps back, which gives exact loss, end-to-end latency
//! and jitter. With the server's pid, the CPU it spent in the window is read from
//! `/proc`, so runs against different servers compare per delivered packet.

mod confer;
mod cpu;
mod janus;
mod measure;
pub mod peer;
pub mod server_metrics;
pub mod stamp;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

pub use cpu::{process_cpu, threads_cpu};
use measure::Clock;
pub use measure::{Report, percentiles};
use peer::{Peer, Publishing, Tally};

/// Which server the clients talk to.
#[derive(Debug, Clone)]
pub enum Target {
    /// A Confer gateway's signalling WebSocket (`ws://host:port/v1/signal`), with the
    /// API key that mints each client's access token when the deployment requires one.
    Confer {
        signal_url: String,
        key: Option<std::sync::Arc<confer_auth::TokenKey>>,
    },
    /// Janus's HTTP API (`http://host:port/janus`), VideoRoom plugin.
    Janus { api_url: String },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub target: Target,
    pub rooms: usize,
    pub publishers: usize,
    pub subscribers: usize,
    /// Each publisher's video bitrate.
    pub bitrate_kbps: u32,
    /// RTP payload bytes per packet.
    pub payload_len: usize,
    /// Share of publishers' RTP dropped on the way to the server (0.0..1.0).
    pub loss: f64,
    /// Time between every client being connected and the window opening.
    pub warmup: Duration,
    /// The measurement window.
    pub duration: Duration,
    /// The server process whose CPU is reported, in all and per thread name.
    pub server_pid: Option<u32>,
    /// The server's Prometheus `/metrics`: the SFU's own forwarding-delay histogram
    /// over the window is reported from it.
    pub server_metrics: Option<String>,
    /// Address the clients' sockets bind.
    pub client_ip: IpAddr,
}

impl Config {
    /// The load the benchmarks put on a server: `rooms` rooms of one publisher at
    /// `bitrate_kbps` and `subscribers` each, 1,100-byte payloads, no loss, 2 s of
    /// warm-up and a 10 s window, clients on 127.0.0.1, nothing read off the server.
    pub fn one_publisher_rooms(
        target: Target,
        (rooms, subscribers, bitrate_kbps): (usize, usize, u32),
    ) -> Self {
        Self {
            target,
            rooms,
            publishers: 1,
            subscribers,
            bitrate_kbps,
            payload_len: 1100,
            loss: 0.0,
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(10),
            server_pid: None,
            server_metrics: None,
            client_ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        }
    }

    fn packets_per_second(&self) -> u32 {
        let bytes_per_second = u64::from(self.bitrate_kbps) * 1000 / 8;
        u32::try_from(bytes_per_second / self.payload_len.max(1) as u64).unwrap_or(u32::MAX)
    }
}

/// How long every client has to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long after the window closes late packets still count.
const GRACE: Duration = Duration::from_millis(500);

/// Runs the load and reports on the window.
pub async fn run(config: Config) -> anyhow::Result<Report> {
    anyhow::ensure!(config.rooms > 0 && config.publishers > 0, "nothing to send");
    anyhow::ensure!((0.0..1.0).contains(&config.loss), "loss is a share below 1");
    let clock = Arc::new(Clock::new());
    let connected = Arc::new(Semaphore::new(0));
    let (stop_tx, stop) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let http = confer_http::client()?;
    let run_id = rand::random::<u32>();
    for room in 0..config.rooms {
        let room_name = format!("load-{run_id:08x}-{room}");
        let janus_room = u64::from(run_id) * 1000 + room as u64;
        let mut janus_feeds = Vec::new();
        if let Target::Janus { api_url } = &config.target {
            let mut admin = janus::Session::open(&http, api_url).await?;
            admin
                .create_room(janus_room, config.publishers)
                .await
                .context("failed to create the Janus room")?;
            tokio::spawn(admin.hold(stop.clone()));
        }
        for p in 0..config.publishers {
            let id = u32::try_from(room * config.publishers + p)?;
            let mut peer = Peer::bind(config.client_ip, true, 0).await?;
            let offer = peer.offer()?;
            let name = format!("publisher-{p}");
            let answer = match &config.target {
                Target::Confer { signal_url, key } => {
                    confer::join(
                        signal_url,
                        key.as_deref(),
                        &room_name,
                        &name,
                        &offer,
                        stop.clone(),
                    )
                    .await?
                }
                Target::Janus { api_url } => {
                    let mut session = janus::Session::open(&http, api_url).await?;
                    let (answer, feed) = session.publish(janus_room, &offer).await?;
                    janus_feeds.push(feed);
                    tokio::spawn(session.hold(stop.clone()));
                    answer
                }
            };
            peer.accept_answer(answer)
                .with_context(|| format!("publisher {id}'s answer"))?;
            let publishing = Publishing {
                id,
                packets_per_second: config.packets_per_second(),
                payload_len: config.payload_len,
                loss: config.loss,
            };
            tasks.spawn(peer.run(
                Some(publishing),
                clock.clone(),
                connected.clone(),
                stop.clone(),
            ));
        }
        for s in 0..config.subscribers {
            let name = format!("subscriber-{s}");
            let peer = match &config.target {
                Target::Confer { signal_url, key } => {
                    let mut peer = Peer::bind(config.client_ip, false, config.publishers).await?;
                    let offer = peer.offer()?;
                    let answer = confer::join(
                        signal_url,
                        key.as_deref(),
                        &room_name,
                        &name,
                        &offer,
                        stop.clone(),
                    )
                    .await?;
                    peer.accept_answer(answer)?;
                    peer
                }
                Target::Janus { api_url } => {
                    let mut peer = Peer::bind(config.client_ip, false, 0).await?;
                    let mut session = janus::Session::open(&http, api_url).await?;
                    let offer = subscribe_when_live(&mut session, janus_room, &janus_feeds).await?;
                    let answer = peer.answer(offer)?;
                    session.start(&answer).await?;
                    tokio::spawn(session.hold(stop.clone()));
                    peer
                }
            };
            tasks.spawn(peer.run(None, clock.clone(), connected.clone(), stop.clone()));
        }
    }
    let clients = tasks.len();
    tokio::time::timeout(
        CONNECT_TIMEOUT,
        connected.acquire_many(u32::try_from(clients)?),
    )
    .await
    .with_context(|| format!("not all {clients} clients connected in {CONNECT_TIMEOUT:?}"))??
    .forget();
    tokio::time::sleep(config.warmup).await;
    let before = ServerReading::take(&config, &http).await?;
    clock.open_window();
    tokio::time::sleep(config.duration).await;
    clock.close_window();
    let after = ServerReading::take(&config, &http).await?;
    tokio::time::sleep(GRACE).await;
    let _ = stop_tx.send(true);
    let tallies = collect(tasks).await?;
    let mut report = report(&config, &clock, tallies);
    after.since(&before, &mut report);
    Ok(report)
}

/// What is read off the server at each edge of the window.
struct ServerReading {
    cpu: Option<Duration>,
    threads: Vec<(String, Duration)>,
    forward_delay: Option<server_metrics::Buckets>,
}

impl ServerReading {
    async fn take(config: &Config, http: &reqwest::Client) -> anyhow::Result<Self> {
        let forward_delay = match &config.server_metrics {
            Some(url) => {
                Some(server_metrics::scrape(http, url, server_metrics::FORWARD_DELAY).await?)
            }
            None => None,
        };
        Ok(Self {
            cpu: config.server_pid.map(process_cpu).transpose()?,
            threads: config
                .server_pid
                .map(threads_cpu)
                .transpose()?
                .unwrap_or_default(),
            forward_delay,
        })
    }

    fn since(self, before: &Self, report: &mut Report) {
        report.server_cpu = self.cpu.zip(before.cpu).map(|(a, b)| a.saturating_sub(b));
        report.server_threads_cpu = cpu::threads_cpu_delta(&before.threads, &self.threads);
        report.forward_delay = self
            .forward_delay
            .zip(before.forward_delay.as_ref())
            .map(|(a, b)| a.since(b));
    }
}

/// Janus offers a feed only once its publisher's PeerConnection is up.
async fn subscribe_when_live(
    session: &mut janus::Session,
    room: u64,
    feeds: &[u64],
) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    loop {
        match session.subscribe(room, feeds).await {
            Err(err)
                if err.to_string().contains("No such feed")
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

async fn collect(mut tasks: JoinSet<anyhow::Result<Tally>>) -> anyhow::Result<Vec<Tally>> {
    let mut tallies = Vec::with_capacity(tasks.len());
    while let Some(joined) = tasks.join_next().await {
        tallies.push(joined.context("a client panicked")??);
    }
    Ok(tallies)
}

fn report(config: &Config, clock: &Clock, tallies: Vec<Tally>) -> Report {
    let mut sent = 0;
    let mut dropped = 0;
    let mut delivered = 0;
    let mut duplicates = 0;
    let mut latencies = Vec::new();
    let mut jitters = Vec::new();
    for tally in tallies {
        match tally {
            Tally::Publisher(p) => {
                sent += p.sent;
                dropped += p.dropped;
            }
            Tally::Subscriber(s) => {
                delivered += s.received;
                duplicates += s.duplicates;
                jitters.extend(s.jitter_us());
                latencies.extend_from_slice(&s.latencies_us);
            }
        }
    }
    // Every room has the same shape: each packet is due at each of its room's subscribers.
    let expected = sent * config.subscribers as u64;
    Report {
        window: clock.window(),
        sent,
        dropped_on_purpose: dropped,
        expected,
        delivered,
        duplicates,
        latency_us: percentiles(&mut latencies),
        jitter_us: jitters.iter().sum::<f64>() / jitters.len().max(1) as f64,
        server_cpu: None,
        server_threads_cpu: Vec::new(),
        forward_delay: None,
    }
}
