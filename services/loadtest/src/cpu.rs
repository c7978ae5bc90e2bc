//! CPU time of a process and of its threads, from `/proc/<pid>/stat` and
//! `/proc/<pid>/task/<tid>/stat`.

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

/// User + system CPU time of `pid`'s threads, summed by thread name (threads of one
/// pool share a name), sorted by name.
pub fn threads_cpu(pid: u32) -> anyhow::Result<Vec<(String, Duration)>> {
    let dir = format!("/proc/{pid}/task");
    let mut by_name = std::collections::BTreeMap::<String, Duration>::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("failed to list {dir}"))? {
        let path = entry?.path().join("stat");
        // A thread that ended since the listing is simply not counted.
        let Ok(stat) = std::fs::read_to_string(&path) else {
            continue;
        };
        let (Some(name), Some(cpu)) = (thread_name(&stat), parse_stat(&stat)) else {
            anyhow::bail!("unexpected contents of {}", path.display());
        };
        *by_name.entry(name.to_owned()).or_default() += cpu;
    }
    Ok(by_name.into_iter().collect())
}

/// What each thread name used between two [`threads_cpu`] readings, busiest first
/// (threads started in between count from zero).
pub fn threads_cpu_delta(
    before: &[(String, Duration)],
    after: &[(String, Duration)],
) -> Vec<(String, Duration)> {
    let mut delta: Vec<(String, Duration)> = after
        .iter()
        .map(|(name, cpu)| {
            let earlier = before
                .iter()
                .find(|(n, _)| n == name)
                .map_or(Duration::ZERO, |(_, c)| *c);
            (name.clone(), cpu.saturating_sub(earlier))
        })
        .collect();
    delta.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    delta
}

/// The command name between the first `(` and the last `)`.
fn thread_name(stat: &str) -> Option<&str> {
    stat.get(stat.find('(')? + 1..stat.rfind(')')?)
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
        assert_eq!(thread_name(stat), Some("my (odd) name"));
    }

    #[test]
    fn thread_deltas_are_per_name_and_busiest_first() {
        let secs = Duration::from_secs;
        let before = vec![
            ("media-0".to_owned(), secs(5)),
            ("tokio".to_owned(), secs(1)),
        ];
        let after = vec![
            ("media-0".to_owned(), secs(9)),
            ("media-1".to_owned(), secs(2)),
            ("tokio".to_owned(), secs(2)),
        ];
        assert_eq!(
            threads_cpu_delta(&before, &after),
            vec![
                ("media-0".to_owned(), secs(4)),
                ("media-1".to_owned(), secs(2)),
                ("tokio".to_owned(), secs(1)),
            ]
        );
    }

    #[test]
    fn this_process_threads_are_listed_by_name() {
        // The thread names itself once running: wait for that before listing.
        let (running, started) = std::sync::mpsc::channel();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("cpu-probe".into())
            .spawn(move || {
                let _ = running.send(());
                let _ = stopped.recv();
            })
            .expect("thread");
        started.recv().expect("the probe thread started");
        let threads = threads_cpu(std::process::id()).expect("own threads");
        drop(stop);
        let _ = handle.join();
        assert!(
            threads.iter().any(|(name, _)| name == "cpu-probe"),
            "{threads:?}"
        );
    }
}
