//! One media worker under a rising forwarding load: what it forwards per second of its
//! own CPU, and the SFU's own arrival-to-send delay at each load.
//!
//! `confer dev --media-workers 1` (so every packet goes through one event loop on one
//! core) is loaded by `confer loadtest`'s webrtc-rs clients (real ICE, DTLS, SRTP,
//! RTCP) in steps: rooms of one publisher and 25 subscribers, at rising bitrates.
//! For each step the table gives the media thread's CPU over the window (read from
//! `/proc/<pid>/task`) as a share of the window, which is how loaded its core is;
//! packets delivered per second of that CPU, the worker's forwarding rate per core;
//! and the SFU's `confer_sfu_forward_delay_seconds` histogram over the window (from
//! `/metrics`): from a datagram's arrival at the worker until each packet it caused
//! has been handed to the kernel. Bucket bounds, so p50 and p99 are upper bounds.
//! The ladder runs twice: once with the clients sharing every core with the server,
//! and once *apart* (`taskset`): the server on the last core, the clients on the
//! others. Apart, the worker's core is its own, so the delay is the SFU's and not time
//! spent preempted by the load generator. `MEDIA_WORKER_PLACEMENT=shared` or `apart`
//! runs one of them. A ladder stops where the clients can no longer deliver what the
//! publishers send.
//!
//! cargo bench -p confer --bench media_worker

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;

use confer_loadtest::{Config, Report, Target};
use support::{free_port, wait_listening};

/// Steps: rooms × (1 publisher → subscribers), publisher bitrate in kbit/s.
const STEPS: &[(usize, usize, u32)] = &[(4, 25, 1_000), (4, 25, 2_000), (4, 25, 4_000)];
/// A step that loses more than this ends the ladder: the clients, not the SFU, are
/// then the limit on this machine.
const MAX_LOSS: f64 = 0.01;
const MEDIA_THREAD: &str = "media-0";

fn config(listen: &str, pid: u32, shape: (usize, usize, u32)) -> Config {
    let target = Target::Confer {
        signal_url: format!("ws://{listen}/v1/signal"),
        key: None,
    };
    Config {
        server_pid: Some(pid),
        server_metrics: Some(format!("http://{listen}/metrics")),
        ..Config::one_publisher_rooms(target, shape)
    }
}

/// Where the server and the load generator run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Both on every core, as the scheduler likes.
    Shared,
    /// The server alone on the last core, the load generator on the others.
    Apart,
}

impl Placement {
    fn chosen() -> anyhow::Result<Vec<Placement>> {
        Ok(match std::env::var("MEDIA_WORKER_PLACEMENT").as_deref() {
            Err(_) => vec![Placement::Shared, Placement::Apart],
            Ok("shared") => vec![Placement::Shared],
            Ok("apart") => vec![Placement::Apart],
            Ok(other) => anyhow::bail!("MEDIA_WORKER_PLACEMENT is shared or apart, not {other}"),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Placement::Shared => "shared",
            Placement::Apart => "apart",
        }
    }

    /// Puts every thread of the server and of this process where the placement says,
    /// on a machine of `cores` cores (counted before any pinning: the count follows
    /// this process's affinity).
    fn apply(self, server: u32, cores: usize) -> anyhow::Result<()> {
        let (server_cores, own_cores) = match self {
            Placement::Shared => {
                let all = format!("0-{}", cores - 1);
                (all.clone(), all)
            }
            Placement::Apart => {
                anyhow::ensure!(cores >= 2, "placing the server apart needs two cores");
                (format!("{}", cores - 1), format!("0-{}", cores - 2))
            }
        };
        pin(server, &server_cores)?;
        pin(std::process::id(), &own_cores)
    }
}

/// Sets the CPU affinity of every thread of `pid` (later threads inherit it).
fn pin(pid: u32, cores: &str) -> anyhow::Result<()> {
    let status = Command::new("taskset")
        .args([
            "--all-tasks",
            "--cpu-list",
            "--pid",
            cores,
            &pid.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "taskset {cores} {pid}: {status}");
    Ok(())
}

fn row(placement: Placement, step: (usize, usize, u32), report: &Report) {
    let window = report.window.as_secs_f64();
    let media_cpu = report
        .thread_cpu(MEDIA_THREAD)
        .unwrap_or_default()
        .as_secs_f64();
    let per_cpu_second = report.delivered as f64 / media_cpu.max(f64::MIN_POSITIVE);
    let ms = |q| {
        report
            .forward_delay
            .as_ref()
            .and_then(|d| d.quantile_bound(q))
            .map_or("-".to_owned(), |s| format!("≤ {:.2}", s * 1e3))
    };
    let within_1ms = report
        .forward_delay
        .as_ref()
        .and_then(|d| d.share_within(0.001))
        .map_or("-".to_owned(), |share| format!("{:.2} %", share * 100.0));
    println!(
        "| {} | {} × 1→{} at {} kbit/s | {:.0} | {:.3} % | {:.0} % | {:.0}k | {} | {} | {within_1ms} | {:.2} |",
        placement.name(),
        step.0,
        step.1,
        step.2,
        report.delivered_per_second(),
        report.loss() * 100.0,
        media_cpu / window * 100.0,
        per_cpu_second / 1e3,
        ms(0.5),
        ms(0.99),
        f64::from(report.latency_us[2]) / 1000.0,
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!(
        "| placement | load | delivered/s | loss | {MEDIA_THREAD} CPU | delivered per {MEDIA_THREAD} CPU s | SFU in→out p50 ms | p99 ms | within 1 ms | end-to-end p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let cores = std::thread::available_parallelism()?.get();
    for placement in Placement::chosen()? {
        ladder(placement, cores).await?;
    }
    Ok(())
}

/// The steps, one after the other, on a fresh server placed as `placement` says.
async fn ladder(placement: Placement, cores: usize) -> anyhow::Result<()> {
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let confer = support::spawn(
        &[
            "dev",
            "--listen",
            &listen,
            "--media-bind",
            "127.0.0.1:0",
            "--media-workers",
            "1",
            // Every client joins from this machine's one address.
            "--join-burst-per-address",
            "1000",
        ],
        &[],
    )?;
    wait_listening(listen.parse()?)?;
    placement.apply(confer.id(), cores)?;
    for &step in STEPS {
        let report = match confer_loadtest::run(config(&listen, confer.id(), step)).await {
            Ok(report) => report,
            Err(err) => {
                // On a machine this size the clients' own handshakes are the first to
                // give out as the load climbs.
                println!(
                    "\n{} × 1→{} at {} kbit/s did not run {}: {err:#}; the ladder stops here",
                    step.0,
                    step.1,
                    step.2,
                    placement.name()
                );
                break;
            }
        };
        row(placement, step, &report);
        if report.loss() > MAX_LOSS {
            println!(
                "\nloss over {:.0} %: the ladder stops here",
                MAX_LOSS * 100.0
            );
            break;
        }
    }
    Ok(())
}
