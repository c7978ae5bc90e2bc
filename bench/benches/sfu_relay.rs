//! What a relay between regions costs: one publisher's VP8 stream reaching N
//! subscribers on another SFU core over a relay link, against the same N subscribers
//! on the publisher's own core. Both cores run the real `rtc` stacks; the relay path
//! adds, on the sending core, the RTP marshal and AES-GCM seal per packet and, on the
//! receiving core, the open, the RTP parse and the usual fan-out. Sockets are left out
//! (the testkit's in-memory wire); datagrams are prepared before the clock starts.
//!
//! cargo bench -p confer-bench --bench sfu_relay

#![allow(clippy::print_stdout)] // A benchmark reports its table on stdout.

use std::net::SocketAddr;
use std::time::Duration;

use confer_bench::thread_cpu_time;
use confer_sfu::RoomId;
use confer_testkit::{ClientKind, Wire};

const PAYLOAD: usize = 1100;
/// Enough packets that the CPU clock's 10 ms ticks are under 100 ns a packet.
const PACKETS: usize = 100_000;
const A_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(10, 0, 0, 1),
    7882,
));
const B_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(10, 0, 0, 2),
    7882,
));

/// Relay datagrams one way, then the other, until quiet.
fn shuttle(a: &mut Wire, b: &mut Wire) {
    loop {
        let from_a: Vec<_> = a.elsewhere.drain(..).collect();
        let from_b: Vec<_> = b.elsewhere.drain(..).collect();
        if from_a.is_empty() && from_b.is_empty() {
            return;
        }
        for (_, bytes) in from_a {
            b.sfu.handle_datagram(b.now, A_ADDR, &bytes);
        }
        for (_, bytes) in from_b {
            a.sfu.handle_datagram(a.now, B_ADDR, &bytes);
        }
        a.carry();
        b.carry();
    }
}

/// A publisher alone on core A, `subscribers` on core B, linked and warmed up.
fn relayed(subscribers: usize) -> anyhow::Result<(Wire, Wire)> {
    let mut a = Wire::new();
    let mut b = Wire::new();
    a.join("bench", ClientKind::Publisher)?;
    for _ in 0..subscribers {
        b.join("bench", ClientKind::Subscriber { video_slots: 1 })?;
    }
    a.connect_all(4_000)?;
    b.now = a.now;
    b.connect_all(4_000)?;
    a.now = b.now;
    let room = RoomId::new("bench");
    let at_a = a.sfu.relay_endpoint(a.now, &room, "b");
    let at_b = b.sfu.relay_endpoint(b.now, &room, "a");
    a.sfu.connect_relay(a.now, &room, "b", B_ADDR, &at_b);
    b.sfu.connect_relay(b.now, &room, "a", A_ADDR, &at_a);
    for i in 0..400 {
        let now = a.now;
        a.clients[0].send_video(now, i % 20 == 0, PAYLOAD);
        a.step();
        b.now = a.now;
        b.step();
        shuttle(&mut a, &mut b);
    }
    let before = b.stats.snapshot().rtp_forwarded;
    let now = a.now;
    a.clients[0].send_video(now, false, PAYLOAD);
    a.carry();
    shuttle(&mut a, &mut b);
    let per_packet = b.stats.snapshot().rtp_forwarded - before;
    anyhow::ensure!(
        per_packet == subscribers as u64,
        "warm-up: a relayed packet reached {per_packet} of {subscribers} subscribers"
    );
    Ok((a, b))
}

/// Feeds `input` to `wire`'s core; returns its CPU time, and what it sent to other
/// SFUs (relay datagrams), kept.
fn feed(wire: &mut Wire, from: SocketAddr, input: &[Vec<u8>]) -> (Duration, Vec<Vec<u8>>) {
    let mut relayed = Vec::new();
    let mut now = wire.now;
    let start = thread_cpu_time();
    for datagram in input {
        now += Duration::from_micros(100);
        wire.sfu.handle_datagram(now, from, datagram);
        while let Some(transmit) = wire.sfu.poll_transmit() {
            if transmit.to == B_ADDR {
                relayed.push(transmit.bytes.to_vec());
            }
        }
    }
    let cpu = thread_cpu_time() - start;
    wire.now = now;
    (cpu, relayed)
}

fn main() -> anyhow::Result<()> {
    println!(
        "| subscribers | local: CPU ns per packet in | relayed: sending core ns | receiving core ns | relay overhead ns per packet | relay overhead % of local |"
    );
    println!("|---|---|---|---|---|---|");
    for subscribers in [1, 10, 50] {
        let mut alone = Wire::fan_out("bench", subscribers, PAYLOAD)?;
        let input = alone.publisher_datagrams(PACKETS, PAYLOAD);
        let from = alone.clients[0].addr;
        let (local_cpu, _) = feed(&mut alone, from, &input);

        let (mut a, mut b) = relayed(subscribers)?;
        let input = a.publisher_datagrams(PACKETS, PAYLOAD);
        let from = a.clients[0].addr;
        let (send_cpu, relayed) = feed(&mut a, from, &input);
        anyhow::ensure!(
            relayed.len() >= PACKETS,
            "every packet crossed the relay: {} of {PACKETS}",
            relayed.len()
        );
        let before = b.stats.snapshot().rtp_forwarded;
        b.now = a.now;
        let (receive_cpu, _) = feed(&mut b, A_ADDR, &relayed);
        let delivered = b.stats.snapshot().rtp_forwarded - before;
        anyhow::ensure!(
            delivered >= (PACKETS * subscribers) as u64 * 99 / 100,
            "relayed packets reached the subscribers: {delivered}"
        );
        let per = |cpu: Duration| cpu.as_nanos() as f64 / PACKETS as f64;
        let (local_ns, send_ns, receive_ns) = (per(local_cpu), per(send_cpu), per(receive_cpu));
        let overhead = send_ns + receive_ns - local_ns;
        println!(
            "| {subscribers} | {local_ns:.0} | {send_ns:.0} | {receive_ns:.0} | {overhead:.0} | {:.0} % |",
            100.0 * overhead / local_ns
        );
    }
    Ok(())
}
