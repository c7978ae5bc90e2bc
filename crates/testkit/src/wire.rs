//! The in-memory wire between clients and the SFU core, and its virtual clock.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use confer_sfu::core::{Sfu, Timeouts};
use confer_sfu::{ParticipantId, RoomId, SfuStats};
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::sansio::Protocol;

use crate::client::{Client, ClientKind};
use crate::link::Link;

/// The SFU's media address on the wire.
pub const SFU_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    7882,
));

/// How far the clock moves per [`Wire::step`].
const STEP: Duration = Duration::from_millis(5);

pub struct Wire {
    pub now: Instant,
    pub sfu: Sfu,
    pub stats: SfuStats,
    pub clients: Vec<Client>,
    /// Every datagram a client sent, when recording.
    pub recorded: Vec<Vec<u8>>,
    pub record: bool,
    /// Datagrams the SFU sent to addresses no client has (another SFU's, for relays).
    pub elsewhere: Vec<(SocketAddr, Vec<u8>)>,
}

impl Wire {
    pub fn new() -> Self {
        let stats = SfuStats::default();
        Self {
            now: Instant::now(),
            sfu: Sfu::new(SFU_ADDR, Timeouts::default(), stats.clone()),
            stats,
            clients: Vec::new(),
            recorded: Vec::new(),
            record: false,
            elsewhere: Vec::new(),
        }
    }

    /// Adds a client to `room` and negotiates it with the SFU; returns its index.
    pub fn join(&mut self, room: &str, kind: ClientKind) -> anyhow::Result<usize> {
        let index = self.clients.len();
        let port = 40_000 + u16::try_from(index)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut client = Client::new(self.now, kind, addr)?;
        let offer = client.pc.create_offer(None)?;
        client.pc.set_local_description(self.now, offer.clone())?;
        let answer = self.sfu.create_peer(
            self.now,
            RoomId::new(room),
            ParticipantId::new(format!("client-{index}")),
            &offer.sdp,
        )?;
        client
            .pc
            .set_remote_description(self.now, RTCSessionDescription::answer(answer)?)?;
        self.clients.push(client);
        Ok(index)
    }

    /// One publisher (client 0) and `subscribers` single-slot subscribers in `room`,
    /// connected, after a second of video with frequent keyframes, so that every slot
    /// forwards: the fan-out the benchmarks measure.
    pub fn fan_out(room: &str, subscribers: usize, payload: usize) -> anyhow::Result<Self> {
        let mut wire = Self::new();
        wire.join(room, ClientKind::Publisher)?;
        for _ in 0..subscribers {
            wire.join(room, ClientKind::Subscriber { video_slots: 1 })?;
        }
        wire.connect_all(4_000)?;
        for i in 0..200 {
            let now = wire.now;
            wire.clients[0].send_video(now, i % 20 == 0, payload);
            wire.step();
        }
        Ok(wire)
    }

    /// Steps until every client is connected, or fails after `limit` steps.
    pub fn connect_all(&mut self, limit: usize) -> anyhow::Result<()> {
        for _ in 0..limit {
            self.step();
            if self.clients.iter().all(|c| c.connected) {
                return Ok(());
            }
        }
        anyhow::bail!("clients did not connect within {limit} steps")
    }

    /// Datagrams from the SFU to client `index` leave at `bits_per_second` through a
    /// queue of at most 400 ms; `None` makes the link ideal again (what it still held
    /// is lost).
    pub fn limit_downlink(&mut self, index: usize, bits_per_second: Option<u64>) {
        self.clients[index].downlink = bits_per_second.map(Link::new);
    }

    /// Datagrams toward client `index` its limited downlink dropped.
    pub fn downlink_dropped(&self, index: usize) -> u64 {
        self.clients[index]
            .downlink
            .as_ref()
            .map_or(0, |l| l.dropped)
    }

    /// Client 0's next `n` video packets (`payload` bytes each) as the SRTP datagrams it
    /// sends, 100 µs of virtual time apart with a keyframe start every 300th: input for
    /// feeding the core directly, prepared outside a measurement.
    pub fn publisher_datagrams(&mut self, n: usize, payload: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            self.now += Duration::from_micros(100);
            let now = self.now;
            let publisher = &mut self.clients[0];
            publisher.send_video(now, i % 300 == 0, payload);
            while let Some(datagram) = publisher.pc.poll_write() {
                // RTCP the stack sends on the way is smaller than any media packet.
                if datagram.message.len() > payload {
                    out.push(datagram.message.to_vec());
                }
            }
        }
        out
    }

    /// Advances the clock one step and carries datagrams both ways until quiet.
    pub fn step(&mut self) {
        self.now += STEP;
        let now = self.now;
        for client in &mut self.clients {
            let _ = client.pc.handle_timeout(now);
            while let Some(datagram) = client.downlink.as_mut().and_then(|l| l.arrived(now)) {
                client.receive(now, datagram);
            }
        }
        if self.sfu.poll_timeout().is_some_and(|at| at <= now) {
            self.sfu.handle_timeout(now);
        }
        self.carry();
    }

    /// Delivers what the clients and the SFU have to send, until nothing is left.
    pub fn carry(&mut self) {
        let now = self.now;
        loop {
            let mut moved = false;
            for client in &mut self.clients {
                while let Some(out) = client.pc.poll_write() {
                    moved = true;
                    if client.silent {
                        continue;
                    }
                    if self.record {
                        self.recorded.push(out.message.to_vec());
                    }
                    self.sfu.handle_datagram(now, client.addr, &out.message);
                }
            }
            while let Some(transmit) = self.sfu.poll_transmit() {
                moved = true;
                let Some(client) = self.clients.iter_mut().find(|c| c.addr == transmit.to) else {
                    self.elsewhere.push((transmit.to, transmit.bytes.to_vec()));
                    continue;
                };
                match client.downlink.as_mut() {
                    Some(link) => link.send(now, transmit.bytes),
                    None => client.receive(now, transmit.bytes),
                }
            }
            for client in &mut self.clients {
                while let Some(read) = client.pc.poll_read() {
                    if matches!(read.message, RTCMessage::RtpPacket(..)) {
                        client.rtp_received += 1;
                    }
                }
                while let Some(event) = client.pc.poll_event() {
                    if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) = event {
                        client.connected = state == RTCPeerConnectionState::Connected;
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }
}

impl Default for Wire {
    fn default() -> Self {
        Self::new()
    }
}
