//! The floor under the SFU's per-packet cost on this machine: SRTP protect alone, UDP
//! send alone, and both together with one `sendmsg` per packet, `sendmmsg` batches and
//! UDP GSO (one `sendmsg` carrying a batch of equal-size segments). Loopback, to a
//! receiver thread that drains the socket. CPU time is the sending thread's own.
//!
//! cargo bench -p confer-bench --bench send_floor

#![allow(clippy::print_stdout)] // A benchmark reports its table on stdout.

use std::io::IoSlice;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use confer_bench::{Measurement, thread_cpu_time};
use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrIn, sendmmsg, sendmsg, setsockopt,
    sockopt::{RcvBuf, SndBuf},
};
use rtc::crypto::providers::RingCrypto;
use rtc::srtp::context::Context;
use rtc::srtp::protection_profile::ProtectionProfile;

/// RTP payload bytes: a typical video packet.
const PAYLOAD: usize = 1100;
const PACKETS: u64 = 300_000;
const BATCH: usize = 32;

fn rtp_packet(seq: u16) -> Vec<u8> {
    let mut packet = vec![0u8; 12 + PAYLOAD];
    packet[0] = 0x80;
    packet[1] = 96;
    packet[2..4].copy_from_slice(&seq.to_be_bytes());
    packet[4..8].copy_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
    packet[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    packet
}

fn srtp(profile: ProtectionProfile) -> Context {
    let key = vec![7u8; profile.key_len()];
    let salt = vec![9u8; profile.salt_len()];
    Context::new(&key, &salt, profile, None, None, &RingCrypto)
        .unwrap_or_else(|err| panic!("SRTP context: {err}"))
}

/// A receiver draining its socket on another thread until `stop`.
struct Sink {
    addr: SocketAddr,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sink {
    fn start() -> std::io::Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let _ = setsockopt(&socket, RcvBuf, &(8 << 20));
        socket.set_read_timeout(Some(std::time::Duration::from_millis(50)))?;
        let addr = socket.local_addr()?;
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, done) = (received.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !done.load(Ordering::Relaxed) {
                if socket.recv(&mut buf).is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Ok(Self {
            addr,
            received,
            stop,
            thread: Some(thread),
        })
    }

    fn finish(mut self) -> u64 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.received.load(Ordering::Relaxed)
    }
}

fn sender() -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let _ = setsockopt(&socket, SndBuf, &(8 << 20));
    Ok(socket)
}

fn measure(name: &'static str, run: impl FnOnce() -> u64) -> Measurement {
    let (cpu0, wall0) = (thread_cpu_time(), Instant::now());
    let packets = run();
    Measurement {
        name,
        packets,
        wall: wall0.elapsed(),
        cpu: thread_cpu_time() - cpu0,
    }
}

fn protect_only(profile: ProtectionProfile) -> u64 {
    let mut ctx = srtp(profile);
    let mut bytes = 0usize;
    for i in 0..PACKETS {
        let packet = rtp_packet(i as u16);
        bytes += ctx.encrypt_rtp(&packet).map(|p| p.len()).unwrap_or(0);
    }
    std::hint::black_box(bytes);
    PACKETS
}

fn send_each(protect: bool, sink: SocketAddr) -> std::io::Result<u64> {
    let socket = sender()?;
    let mut ctx = srtp(ProtectionProfile::Aes128CmHmacSha1_80);
    let plain = rtp_packet(1);
    for i in 0..PACKETS {
        if protect {
            let packet = ctx
                .encrypt_rtp(&rtp_packet(i as u16))
                .map_err(std::io::Error::other)?;
            socket.send_to(&packet, sink)?;
        } else {
            socket.send_to(&plain, sink)?;
        }
    }
    Ok(PACKETS)
}

fn send_mmsg(sink: SocketAddr) -> std::io::Result<u64> {
    let socket = sender()?;
    let mut ctx = srtp(ProtectionProfile::Aes128CmHmacSha1_80);
    let SocketAddr::V4(v4) = sink else {
        return Err(std::io::Error::other("IPv4 only"));
    };
    let addr = SockaddrIn::from(v4);
    let addrs = vec![Some(addr); BATCH];
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let mut sent = 0u64;
    while sent < PACKETS {
        let batch: Vec<Vec<u8>> = (0..BATCH)
            .map(|i| {
                ctx.encrypt_rtp(&rtp_packet((sent as usize + i) as u16))
                    .map(|p| p.to_vec())
                    .unwrap_or_default()
            })
            .collect();
        let slices: Vec<[IoSlice<'_>; 1]> = batch.iter().map(|p| [IoSlice::new(p)]).collect();
        let results = sendmmsg(
            socket.as_raw_fd(),
            &mut headers,
            &slices,
            &addrs,
            [],
            MsgFlags::empty(),
        )
        .map_err(std::io::Error::from)?;
        sent += results.count() as u64;
    }
    Ok(sent)
}

fn send_gso(sink: SocketAddr) -> std::io::Result<u64> {
    let socket = sender()?;
    let mut ctx = srtp(ProtectionProfile::Aes128CmHmacSha1_80);
    let SocketAddr::V4(v4) = sink else {
        return Err(std::io::Error::other("IPv4 only"));
    };
    let addr = SockaddrIn::from(v4);
    let mut sent = 0u64;
    let mut buffer = Vec::with_capacity(BATCH * (PAYLOAD + 64));
    while sent < PACKETS {
        buffer.clear();
        let mut segment = 0u16;
        for i in 0..BATCH {
            let packet = ctx
                .encrypt_rtp(&rtp_packet((sent as usize + i) as u16))
                .map_err(std::io::Error::other)?;
            segment = packet.len() as u16;
            buffer.extend_from_slice(&packet);
        }
        let iov = [IoSlice::new(&buffer)];
        let cmsg = [ControlMessage::UdpGsoSegments(&segment)];
        sendmsg(
            socket.as_raw_fd(),
            &iov,
            &cmsg,
            MsgFlags::empty(),
            Some(&addr),
        )
        .map_err(std::io::Error::from)?;
        sent += BATCH as u64;
    }
    Ok(sent)
}

fn main() -> std::io::Result<()> {
    println!(
        "send floor: {PACKETS} RTP packets of {} bytes (+ SRTP tag), loopback, batches of {BATCH}\n",
        12 + PAYLOAD
    );
    println!("| case | packets | CPU ns/packet | packets per core-second | wall s |");
    println!("|---|---|---|---|---|");
    let mut rows = vec![
        measure("SRTP protect, AES-128-CM-HMAC-SHA1-80", || {
            protect_only(ProtectionProfile::Aes128CmHmacSha1_80)
        }),
        measure("SRTP protect, AEAD-AES-128-GCM", || {
            protect_only(ProtectionProfile::AeadAes128Gcm)
        }),
    ];
    type Case = (&'static str, fn(SocketAddr) -> std::io::Result<u64>);
    let cases: [Case; 4] = [
        ("UDP sendmsg per packet (no SRTP)", |sink| {
            send_each(false, sink)
        }),
        ("SRTP + sendmsg per packet", |sink| send_each(true, sink)),
        ("SRTP + sendmmsg (32 per call)", send_mmsg),
        ("SRTP + UDP GSO (32 segments per call)", send_gso),
    ];
    for (name, case) in cases {
        let sink = Sink::start()?;
        let addr = sink.addr;
        let mut result = Err(std::io::Error::other("not run"));
        let measurement = measure(name, || {
            result = case(addr);
            *result.as_ref().unwrap_or(&0)
        });
        let delivered = sink.finish();
        match result {
            Ok(_) => {
                rows.push(measurement);
                eprintln!("{name}: receiver got {delivered}");
            }
            Err(err) => eprintln!("{name}: not available here: {err}"),
        }
    }
    for row in &rows {
        println!("{}", row.row());
    }
    Ok(())
}
