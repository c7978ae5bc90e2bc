//! A lossy network between chosen participants and the SFU. The SFU announces an
//! address on another loopback IP (`announce_ip`), where this relay listens on the
//! SFU's port and forwards both ways like a NAT: one socket toward the SFU per client
//! address, so the SFU (ICE-lite) learns each client's path from its checks as it
//! would behind a real one. A client whose ICE checks name a ufrag the relay was told
//! to degrade loses every `every`th RTP packet it sends; RTCP, STUN and DTLS pass, and
//! nothing toward the clients is lost.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// The loopback address the SFU announces when a test puts this relay in front of it.
pub const FRONT_IP: [u8; 4] = [127, 0, 0, 2];

pub struct LossyLink {
    degraded: Arc<Mutex<HashSet<String>>>,
    task: JoinHandle<()>,
}

struct Path {
    upstream: Arc<UdpSocket>,
    lossy: bool,
    rtp_sent: u64,
    task: JoinHandle<()>,
}

impl LossyLink {
    /// Listens on `front` (the address the SFU announces) and relays to `sfu`.
    pub async fn start(front: SocketAddr, sfu: SocketAddr, every: u64) -> anyhow::Result<Self> {
        let socket = Arc::new(UdpSocket::bind(front).await?);
        let degraded = Arc::new(Mutex::new(HashSet::new()));
        let task = tokio::spawn(relay(socket, sfu, every.max(1), degraded.clone()));
        Ok(Self { degraded, task })
    }

    /// From its next ICE check on, the client with ICE ufrag `ufrag` loses RTP.
    pub fn degrade(&self, ufrag: &str) {
        lock(&self.degraded).insert(ufrag.to_owned());
    }
}

impl Drop for LossyLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn relay(
    front: Arc<UdpSocket>,
    sfu: SocketAddr,
    every: u64,
    degraded: Arc<Mutex<HashSet<String>>>,
) {
    let mut paths: HashMap<SocketAddr, Path> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    while let Ok((len, client)) = front.recv_from(&mut buf).await {
        let datagram = &buf[..len];
        let path = match paths.entry(client) {
            Entry::Occupied(path) => path.into_mut(),
            Entry::Vacant(slot) => match open_path(front.clone(), client).await {
                Ok(path) => slot.insert(path),
                Err(_) => continue,
            },
        };
        if let Some(ufrag) = stun_client_ufrag(datagram) {
            path.lossy = lock(&degraded).contains(&ufrag);
        }
        if path.lossy && is_rtp(datagram) {
            path.rtp_sent += 1;
            if path.rtp_sent.is_multiple_of(every) {
                continue;
            }
        }
        let _ = path.upstream.send_to(datagram, sfu).await;
    }
    for path in paths.into_values() {
        path.task.abort();
    }
}

/// A socket toward the SFU for one client, and the task carrying the SFU's answers back.
async fn open_path(front: Arc<UdpSocket>, client: SocketAddr) -> anyhow::Result<Path> {
    let upstream = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    let back = upstream.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok(len) = back.recv(&mut buf).await {
            let _ = front.send_to(&buf[..len], client).await;
        }
    });
    Ok(Path {
        upstream,
        lossy: false,
        rtp_sent: 0,
        task,
    })
}

/// RTP, not RTCP (RFC 5761: payload types 64–95 with the marker bit masked are RTCP's).
fn is_rtp(datagram: &[u8]) -> bool {
    datagram.len() >= 12 && datagram[0] >> 6 == 2 && !(64..=95).contains(&(datagram[1] & 0x7f))
}

/// The sender's ufrag in a STUN message's USERNAME (`<receiver>:<sender>`, RFC 8445).
fn stun_client_ufrag(datagram: &[u8]) -> Option<String> {
    const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
    const USERNAME: u16 = 0x0006;
    if datagram.len() < 20 || datagram[0] >> 6 != 0 || datagram[4..8] != MAGIC_COOKIE {
        return None;
    }
    let mut rest = &datagram[20..];
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let value = rest.get(4..4 + len)?;
        if kind == USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username
                .split_once(':')
                .map(|(_, sender)| sender.to_owned());
        }
        rest = rest.get(4 + len.div_ceil(4) * 4..)?;
    }
    None
}
