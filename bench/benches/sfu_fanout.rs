//! What the SFU core costs per forwarded packet: one publisher's VP8 stream fanned out
//! to N subscribers in one room, through the real `rtc` stacks (SRTP unprotect on the
//! way in, rewrite, SRTP protect and interceptors per subscriber on the way out), with
//! the socket left out. Clients are real webrtc-rs peers connected over the testkit's
//! in-memory wire; their datagrams are prepared before the clock starts, and what the
//! SFU sends is counted and dropped.
//!
//! Reported per fan-out: CPU ns per forwarded packet (the thread's own CPU time), the
//! packets per second one core forwards at that cost, and the time from a datagram's
//! arrival to its last copy leaving the core (p50/p99). The core handles one datagram
//! at a time, so that time is its processing time; queueing in front of it is the
//! event loop's and is not measured here. Heap allocations (and bytes asked for) per
//! forwarded packet are counted by the instrumented system allocator over the same span.
//!
//! Each fan-out runs twice: as is, and with the publisher recorded (its packets also
//! handed to the recorder, whose thread writes the WebM file under the system's
//! temporary directory). The CPU column is the media thread's alone, which is what
//! recording must not slow; the allocations are the whole process's, the writer's
//! included.
//!
//! cargo bench -p confer-bench --bench sfu_fanout

#![allow(clippy::print_stdout)] // A benchmark reports its table on stdout.

use std::time::{Duration, Instant};

use confer_bench::thread_cpu_time;
use confer_testkit::Wire;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// RTP payload bytes of each video packet.
const PAYLOAD: usize = 1100;
const PACKETS: usize = 20_000;

struct Run {
    subscribers: usize,
    forwarded: u64,
    cpu: Duration,
    latencies: Vec<Duration>,
    allocations: usize,
    allocated_bytes: usize,
}

/// Where the recorded runs' files go (removed at the end).
fn recordings_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("confer-bench-recordings-{}", std::process::id()))
}

fn setup(subscribers: usize, recorded: bool) -> anyhow::Result<Wire> {
    // Warmed up until every subscriber's slot forwards (it waits for a keyframe).
    let mut wire = Wire::fan_out("bench", subscribers, PAYLOAD)?;
    if recorded {
        let recorder = confer_sfu::record::Recorder::start(recordings_dir(), wire.stats.clone())?;
        wire.sfu.set_recorder(Some(recorder));
        wire.sfu
            .set_recording(&confer_sfu::ParticipantId::new("client-0"), true)?;
    }
    let before = wire.stats.snapshot().rtp_forwarded;
    let now = wire.now;
    wire.clients[0].send_video(now, false, PAYLOAD);
    wire.carry();
    let per_packet = wire.stats.snapshot().rtp_forwarded - before;
    anyhow::ensure!(
        per_packet == subscribers as u64,
        "warm-up: a packet reached {per_packet} of {subscribers} subscribers"
    );
    Ok(wire)
}

/// Feeds the datagrams to the core, `gap` of virtual time apart.
fn measure(wire: &mut Wire, subscribers: usize, gap: Duration) -> Run {
    let input = wire.publisher_datagrams(PACKETS, PAYLOAD);
    let from = wire.clients[0].addr;
    let before = wire.stats.snapshot().rtp_forwarded;
    let mut latencies = Vec::with_capacity(input.len());
    let mut sent = 0u64;
    let mut now = wire.now;
    let cpu_start = thread_cpu_time();
    let heap = Region::new(ALLOCATOR);
    for datagram in &input {
        now += gap;
        let arrived = Instant::now();
        wire.sfu.handle_datagram(now, from, datagram);
        while let Some(transmit) = wire.sfu.poll_transmit() {
            sent += u64::from(!transmit.bytes.is_empty());
        }
        latencies.push(arrived.elapsed());
    }
    let heap = heap.change();
    let cpu = thread_cpu_time() - cpu_start;
    wire.now = now;
    let forwarded = wire.stats.snapshot().rtp_forwarded - before;
    assert!(sent >= forwarded, "every forwarded packet left the core");
    latencies.sort_unstable();
    Run {
        subscribers,
        forwarded,
        cpu,
        latencies,
        allocations: heap.allocations + heap.reallocations,
        allocated_bytes: heap.bytes_allocated,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn main() -> anyhow::Result<()> {
    println!(
        "| subscribers | publisher recorded | forwarded | CPU ns/forwarded packet | forwarded packets per core-second | in→out p50 µs | in→out p99 µs | allocations/forwarded packet | bytes allocated/forwarded packet |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (subscribers, recorded) in [1, 10, 50]
        .into_iter()
        .flat_map(|n| [(n, false), (n, true)])
    {
        let mut wire = setup(subscribers, recorded)?;
        let run = measure(&mut wire, subscribers, Duration::from_micros(100));
        let ns = run.cpu.as_nanos() as f64 / run.forwarded.max(1) as f64;
        let per_packet = |n: usize| n as f64 / run.forwarded.max(1) as f64;
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.0} |",
            run.subscribers,
            if recorded { "yes" } else { "no" },
            run.forwarded,
            ns,
            1e9 / ns.max(f64::MIN_POSITIVE),
            percentile(&run.latencies, 0.50).as_secs_f64() * 1e6,
            percentile(&run.latencies, 0.99).as_secs_f64() * 1e6,
            per_packet(run.allocations),
            per_packet(run.allocated_bytes),
        );
    }
    let _ = std::fs::remove_dir_all(recordings_dir());
    Ok(())
}
