//! CPU time of a process, from `/proc/<pid>/stat`.

use std::time::Duration;

use anyhow::Context as _;

/// Clock ticks per second of `/proc` times (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
const TICKS_PER_SECOND: u64 = 100;

/// User + system CPU time `pid` has used, all its threads together.
pub fn process_cpu(pid: u32) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("failed to read {path}"))?;
    parse_stat(&stat).with_context(|| format!("unexpected contents of {path}"))
}

fn parse_stat(stat: &str) -> Option<Duration> {
    // The command name is in parentheses and may hold spaces: count fields after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the name.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis(
        (utime + stime) * 1000 / TICKS_PER_SECOND,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_user_and_system_time_past_a_name_with_spaces() {
        let stat =
            "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat(stat), Some(Duration::from_secs(3)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_cpu_grows_while_it_computes() {
        let before = process_cpu(std::process::id()).expect("own stat");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut spin = 0u64;
        let grew = loop {
            for i in 0..100_000u64 {
                spin = std::hint::black_box(spin.wrapping_add(i));
            }
            let now = process_cpu(std::process::id()).expect("own stat");
            if now > before {
                break true;
            }
            if std::time::Instant::now() > deadline {
                break false;
            }
        };
        assert!(grew, "10 s of spinning never showed in /proc/self/stat");
    }
}
