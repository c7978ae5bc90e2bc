//! Shared pieces of Confer's benchmarks: per-thread CPU time and result lines.

use std::time::Duration;

/// CPU time (user + system) the calling thread has used, from
/// `/proc/thread-self/stat`.
pub fn thread_cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may contain spaces) start at state (3).
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let total = ticks(11) + ticks(12);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|hz| u64::try_from(hz).ok())
        .filter(|hz| *hz > 0)
        .unwrap_or(100);
    Duration::from_nanos(total * 1_000_000_000 / hz)
}

/// One measured case.
pub struct Measurement {
    pub name: &'static str,
    pub packets: u64,
    pub wall: Duration,
    pub cpu: Duration,
}

impl Measurement {
    /// CPU nanoseconds per packet.
    pub fn cpu_ns_per_packet(&self) -> f64 {
        self.cpu.as_nanos() as f64 / self.packets.max(1) as f64
    }

    /// Packets per second one core sustains at this cost.
    pub fn packets_per_core_second(&self) -> f64 {
        1e9 / self.cpu_ns_per_packet().max(f64::MIN_POSITIVE)
    }

    pub fn row(&self) -> String {
        format!(
            "| {} | {} | {:.0} | {:.0} | {:.2} |",
            self.name,
            self.packets,
            self.cpu_ns_per_packet(),
            self.packets_per_core_second(),
            self.wall.as_secs_f64(),
        )
    }
}
