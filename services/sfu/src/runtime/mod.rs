//! The event loops that drive [`crate::core::Sfu`]: one media worker per core, each a
//! thread with its own UDP socket, timer and [`Sfu`], holding whole rooms.
//!
//! Rooms are sharded, not packets: a room's publishers and subscribers share a worker,
//! so forwarding never crosses threads and needs no locks. [`router::Router`] puts a new
//! room on the worker with the fewest peers. Each worker has its own media port (the
//! configured port, then the ones after it), announced in its peers' ICE candidates.

mod outbox;
mod receive;
mod router;
mod worker;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::info;

use crate::SfuStats;
use crate::control::{SfuHandle, WorkerHandle};
use crate::core::{Sfu, Timeouts};
use crate::impair::{Impairer, Impairment};
pub(crate) use router::{Router, WorkerIndex, lock};

/// Configuration of the `sfu` role.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Where the first worker's media socket binds; worker `i` binds the port `i` above
    /// it. Port 0 gives every worker a free port.
    pub media_bind: SocketAddr,
    /// The address put in ICE candidates when it differs from the bound one
    /// (a wildcard bind, NAT, a load balancer).
    pub announce_ip: Option<IpAddr>,
    /// Media workers (event loops, each on its own thread); one per core is the rule.
    pub workers: usize,
    /// Sends each peer's burst of equal-size packets in one system call (UDP GSO)
    /// where the kernel allows it.
    pub gso: bool,
    pub timeouts: Timeouts,
    /// Drops a share of RTP datagrams (fault injection for tests and experiments).
    pub impairment: Impairment,
    /// Where recordings are written; `None`: nothing can be recorded here.
    pub recordings: Option<PathBuf>,
}

impl Default for SfuConfig {
    fn default() -> Self {
        Self {
            media_bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            announce_ip: None,
            workers: 1,
            gso: true,
            timeouts: Timeouts::default(),
            impairment: Impairment::default(),
            recordings: None,
        }
    }
}

/// One worker per available core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Binds every worker's media socket and starts the workers, each on its own thread.
pub async fn start(
    config: SfuConfig,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<SfuHandle> {
    anyhow::ensure!(
        config.workers > 0,
        "the SFU needs at least one media worker"
    );
    let sockets = bind_all(&config)?;
    let stats = SfuStats::new(config.workers);
    let (events, _) = broadcast::channel(1024);
    let router = Arc::new(Mutex::new(Router::new(config.workers)));
    if config.impairment.is_active() {
        tracing::warn!(impairment = ?config.impairment, "media impairment on: RTP is dropped on purpose");
    }
    let recorder = match &config.recordings {
        Some(dir) => Some(
            crate::record::Recorder::start(dir.clone(), stats.clone())
                .with_context(|| format!("cannot write recordings under {}", dir.display()))?,
        ),
        None => None,
    };
    let mut workers = Vec::with_capacity(sockets.len());
    for (index, (socket, media_addr)) in sockets.into_iter().enumerate() {
        let (commands, command_rx) = mpsc::channel(256);
        let impairment = Impairment {
            seed: config.impairment.seed.wrapping_add(index as u64),
            ..config.impairment
        };
        let worker = worker::Worker {
            index,
            sfu: Sfu::new(media_addr, config.timeouts, stats.for_worker(index))
                .with_recorder(recorder.clone()),
            impairer: Impairer::new(impairment),
            commands: command_rx,
            events: events.clone(),
            router: router.clone(),
            shutdown: shutdown.clone(),
            delays: SfuStats::forward_delay_tally(),
            outbox: outbox::Outbox::default(),
            gso: config.gso,
        };
        std::thread::Builder::new()
            .name(format!("media-{index}"))
            .spawn(move || worker.run_on_own_runtime(socket))
            .context("failed to start a media worker thread")?;
        info!(worker = index, %media_addr, "media port listening");
        workers.push(WorkerHandle {
            commands,
            media_addr,
        });
    }
    Ok(SfuHandle {
        draining: Default::default(),
        workers: workers.into(),
        router,
        events,
        stats,
    })
}

/// Binds one socket per worker: `(socket, address announced for it)`.
fn bind_all(config: &SfuConfig) -> anyhow::Result<Vec<(std::net::UdpSocket, SocketAddr)>> {
    let first = config.media_bind;
    (0..config.workers)
        .map(|index| {
            let port = match first.port() {
                0 => 0,
                port => u16::try_from(usize::from(port) + index)
                    .context("media ports run past 65535")?,
            };
            let bind = SocketAddr::new(first.ip(), port);
            let socket = std::net::UdpSocket::bind(bind)
                .with_context(|| format!("failed to bind media port {bind}"))?;
            socket
                .set_nonblocking(true)
                .context("failed to make the media socket non-blocking")?;
            // Only the forwarding-delay metric needs it: it then leaves out queueing.
            if let Err(err) = receive::stamp_arrivals(&socket) {
                tracing::warn!(%err, "no arrival stamps on the media socket: forwarding delay counts from reading");
            }
            let bound = socket.local_addr().context("media socket has no address")?;
            let announce_ip = match config.announce_ip {
                Some(ip) => ip,
                None if bound.ip().is_unspecified() => anyhow::bail!(
                    "media port bound to {bound}: set an announce address for ICE candidates"
                ),
                None => bound.ip(),
            };
            Ok((socket, SocketAddr::new(announce_ip, bound.port())))
        })
        .collect()
}
