//! `confer loadtest`: synthetic load against a deployment's SFU (or a Janus VideoRoom),
//! reported on stdout.

use std::time::Duration;

use confer_loadtest::{Config, Report, Target};

use crate::cli::LoadtestArgs;

pub async fn run(args: LoadtestArgs) -> anyhow::Result<()> {
    let target = match args.janus_url {
        Some(api_url) => Target::Janus { api_url },
        None => Target::Confer {
            signal_url: args.signal_url,
            key: args
                .api_key
                .zip(args.api_secret)
                .map(|(key, secret)| confer_auth::TokenKey::new(key, secret.as_bytes()).into()),
        },
    };
    anyhow::ensure!(
        (0.0..100.0).contains(&args.loss_percent),
        "--loss-percent must be at least 0 and below 100"
    );
    let config = Config {
        target,
        rooms: args.rooms,
        publishers: args.publishers,
        subscribers: args.subscribers,
        bitrate_kbps: args.bitrate_kbps,
        payload_len: usize::from(args.payload_bytes),
        loss: args.loss_percent / 100.0,
        warmup: Duration::from_secs(args.warmup_secs),
        duration: Duration::from_secs(args.duration_secs),
        server_pid: args.server_pid,
        server_metrics: args.server_metrics,
        client_ip: args.client_ip,
    };
    let report = confer_loadtest::run(config).await?;
    if args.json {
        print_json(&report);
    } else {
        print(&report);
    }
    Ok(())
}

#[allow(clippy::print_stdout)] // The report is the command's output.
fn print_json(report: &Report) {
    let [p50, p90, p99, max] = report.latency_us;
    let json = serde_json::json!({
        "window_secs": report.window.as_secs_f64(),
        "sent": report.sent,
        "dropped_on_purpose": report.dropped_on_purpose,
        "expected": report.expected,
        "delivered": report.delivered,
        "duplicates": report.duplicates,
        "delivered_per_second": report.delivered_per_second(),
        "loss": report.loss(),
        "latency_us": {"p50": p50, "p90": p90, "p99": p99, "max": max},
        "jitter_us": report.jitter_us,
        "server_cpu_secs": report.server_cpu.map(|d| d.as_secs_f64()),
        "server_cpu_secs_per_million": report.cpu_per_million().map(|d| d.as_secs_f64()),
        "server_threads_cpu_secs": report
            .server_threads_cpu
            .iter()
            .map(|(name, cpu)| (name.clone(), serde_json::json!(cpu.as_secs_f64())))
            .collect::<serde_json::Map<_, _>>(),
        "forward_delay": report.forward_delay.as_ref().map(|d| serde_json::json!({
            "packets": d.count(),
            "p50_at_most_secs": d.quantile_bound(0.5),
            "p99_at_most_secs": d.quantile_bound(0.99),
            "share_within_1ms": d.share_within(0.001),
        })),
    });
    println!("{json}");
}

#[allow(clippy::print_stdout)] // The report is the command's output.
fn print(report: &Report) {
    let [p50, p90, p99, max] = report.latency_us.map(|us| f64::from(us) / 1000.0);
    println!("window               {:.1} s", report.window.as_secs_f64());
    println!(
        "sent                 {} packets ({} dropped on purpose)",
        report.sent, report.dropped_on_purpose
    );
    println!(
        "delivered            {} of {} expected ({} duplicates)",
        report.delivered, report.expected, report.duplicates
    );
    println!("delivered/s          {:.0}", report.delivered_per_second());
    println!("loss                 {:.3} %", report.loss() * 100.0);
    println!("latency ms           p50 {p50:.2}  p90 {p90:.2}  p99 {p99:.2}  max {max:.2}");
    println!("jitter ms            {:.3}", report.jitter_us / 1000.0);
    if let (Some(cpu), Some(per_million)) = (report.server_cpu, report.cpu_per_million()) {
        println!("server CPU           {:.2} s", cpu.as_secs_f64());
        println!("CPU per 1M delivered {:.2} s", per_million.as_secs_f64());
    }
    for (name, cpu) in report.server_threads_cpu.iter().take(THREADS_SHOWN) {
        println!("  thread {name:<13} {:.2} s", cpu.as_secs_f64());
    }
    if let Some(delay) = &report.forward_delay {
        let ms = |q| {
            delay
                .quantile_bound(q)
                .map_or("over the last bucket".to_owned(), |s| {
                    format!("≤ {:.2} ms", s * 1e3)
                })
        };
        println!(
            "SFU in→out           p50 {}  p99 {}  within 1 ms {:.2} % of {} packets",
            ms(0.5),
            ms(0.99),
            delay.share_within(0.001).unwrap_or(0.0) * 100.0,
            delay.count()
        );
    }
}

/// Busiest server threads printed.
const THREADS_SHOWN: usize = 5;
