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
//! The clients share the machine's cores with the server, so the ladder stops where
//! they can no longer deliver what the publishers send.
//!
//! cargo bench -p confer --bench media_worker

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use confer_loadtest::{Config, Report, Target};
use support::{free_port, wait_listening};

/// Steps: rooms × (1 publisher → subscribers), publisher bitrate in kbit/s.
const STEPS: &[(usize, usize, u32)] = &[(4, 25, 1_000), (4, 25, 2_000), (4, 25, 4_000)];
/// A step that loses more than this ends the ladder: the clients, not the SFU, are
/// then the limit on this machine.
const MAX_LOSS: f64 = 0.01;
const MEDIA_THREAD: &str = "media-0";

fn config(listen: &str, pid: u32, (rooms, subscribers, kbps): (usize, usize, u32)) -> Config {
    Config {
        target: Target::Confer {
            signal_url: format!("ws://{listen}/v1/signal"),
            key: None,
        },
        rooms,
        publishers: 1,
        subscribers,
        bitrate_kbps: kbps,
        payload_len: 1100,
        loss: 0.0,
        warmup: Duration::from_secs(2),
        duration: Duration::from_secs(10),
        server_pid: Some(pid),
        server_metrics: Some(format!("http://{listen}/metrics")),
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
    }
}

fn row(step: (usize, usize, u32), report: &Report) {
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
        "| {} × 1→{} at {} kbit/s | {:.0} | {:.3} % | {:.0} % | {:.0}k | {} | {} | {within_1ms} | {:.2} |",
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
    println!(
        "| load | delivered/s | loss | {MEDIA_THREAD} CPU | delivered per {MEDIA_THREAD} CPU s | SFU in→out p50 ms | p99 ms | within 1 ms | end-to-end p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for &step in STEPS {
        let report = match confer_loadtest::run(config(&listen, confer.id(), step)).await {
            Ok(report) => report,
            Err(err) => {
                // On a machine this size the clients' own handshakes are the first to
                // give out as the load climbs.
                println!(
                    "\n{} × 1→{} at {} kbit/s did not run: {err:#}; the ladder stops here",
                    step.0, step.1, step.2
                );
                break;
            }
        };
        row(step, &report);
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
