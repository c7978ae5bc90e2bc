//! `confer loadtest` against `confer dev`, both as separate processes: synthetic
//! webrtc-rs publishers and subscribers join through the real signalling and send real
//! media; the report's counts must add up, and with loss injected on the publishers'
//! uplink the SFU's loss repair (NACK → retransmission) must hide most of it.

mod support;

use std::process::Command;

use serde_json::Value;
use support::{CONFER, free_port, wait_listening};

struct Dev {
    proc: support::Proc,
    listen: String,
}

fn dev(media_workers: u16) -> anyhow::Result<Dev> {
    let listen = format!("127.0.0.1:{}", free_port()?);
    let workers = media_workers.to_string();
    let proc = support::spawn(
        &["dev", "--listen", &listen, "--media-workers", &workers],
        &[],
    )?;
    wait_listening(listen.parse()?)?;
    Ok(Dev { proc, listen })
}

fn loadtest(dev: &Dev, extra: &[&str]) -> anyhow::Result<Value> {
    let signal_url = format!("ws://{}/v1/signal", dev.listen);
    let metrics_url = format!("http://{}/metrics", dev.listen);
    let pid = dev.proc.id().to_string();
    let output = Command::new(CONFER)
        .args([
            "loadtest",
            "--signal-url",
            &signal_url,
            "--server-pid",
            &pid,
            "--server-metrics",
            &metrics_url,
            "--json",
        ])
        .args(["--warmup-secs", "1", "--duration-secs", "3"])
        .args(extra)
        .env("CONFER_LOG", "warn")
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "loadtest failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_slice(&output.stdout)?)
}

fn count(report: &Value, field: &str) -> u64 {
    report[field].as_u64().unwrap_or_default()
}

#[test]
fn every_subscriber_gets_every_publisher_and_the_counts_add_up() -> anyhow::Result<()> {
    // Two media workers: the two rooms go one to each, and media flows on both.
    let dev = dev(2)?;
    let report = loadtest(
        &dev,
        &[
            "--rooms",
            "2",
            "--publishers",
            "2",
            "--subscribers",
            "3",
            "--bitrate-kbps",
            "800",
        ],
    )?;
    eprintln!("{report}");
    let sent = count(&report, "sent");
    // 2 rooms × 2 publishers × ~90 packets/s × 3 s.
    assert!((900..=1300).contains(&sent), "sent {sent}");
    assert_eq!(
        count(&report, "expected"),
        sent * 3,
        "each packet is due at 3 subscribers"
    );
    let delivered = count(&report, "delivered");
    assert!(
        delivered * 1000 >= count(&report, "expected") * 995,
        "loss on a clean loopback: {report}"
    );
    let p50 = report["latency_us"]["p50"].as_u64().unwrap_or_default();
    let max = report["latency_us"]["max"].as_u64().unwrap_or_default();
    assert!(p50 > 0 && p50 <= max && max < 1_000_000, "latency {report}");
    assert!(
        report["server_cpu_secs"].as_f64().unwrap_or_default() > 0.0,
        "the SFU's CPU is read from /proc: {report}"
    );
    for worker in ["media-0", "media-1"] {
        let cpu = report["server_threads_cpu_secs"][worker].as_f64();
        assert!(cpu.is_some_and(|s| s > 0.0), "{worker}'s CPU: {report}");
    }
    // The SFU's own arrival-to-send delay: one observation per packet forwarded in the
    // window, which are the deliveries give or take the packets in flight at its edges.
    let delay = &report["forward_delay"];
    let forwarded = delay["packets"].as_u64().unwrap_or_default();
    assert!(
        forwarded * 100 >= delivered * 95 && forwarded * 100 <= delivered * 105,
        "{forwarded} forwarding delays for {delivered} deliveries: {report}"
    );
    let p99 = delay["p99_at_most_secs"].as_f64();
    assert!(
        p99.is_some_and(|s| s <= 0.05),
        "in→out p99 on an idle machine: {report}"
    );
    let metrics = support::http_get(&dev.listen, "/metrics")?;
    for worker in ["0", "1"] {
        let sample = format!("confer_sfu_worker_datagrams_received_total{{worker=\"{worker}\"}} ");
        let received: u64 = metrics
            .lines()
            .find_map(|line| line.strip_prefix(sample.as_str()))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_default();
        // A room's publishers send ~90 packets/s each for 4 s; the subscribers report back.
        assert!(
            received > 500,
            "worker {worker} received {received}:\n{metrics}"
        );
    }
    Ok(())
}

#[test]
fn injected_uplink_loss_is_repaired_by_retransmission() -> anyhow::Result<()> {
    let dev = dev(1)?;
    let report = loadtest(
        &dev,
        &[
            "--subscribers",
            "2",
            "--bitrate-kbps",
            "1500",
            "--loss-percent",
            "5",
        ],
    )?;
    eprintln!("{report}");
    let sent = count(&report, "sent");
    let dropped = count(&report, "dropped_on_purpose");
    // 5 % of what was sent, give or take what chance does over ~540 packets.
    assert!(
        dropped * 100 >= sent * 2 && dropped * 100 <= sent * 9,
        "dropped {dropped} of {sent}"
    );
    let loss = report["loss"].as_f64().unwrap_or(1.0);
    assert!(
        loss < 0.01,
        "5 % uplink loss left {loss} at the subscribers: {report}"
    );
    Ok(())
}

#[test]
fn an_unreachable_deployment_is_a_clear_error() -> anyhow::Result<()> {
    let port = free_port()?;
    let output = Command::new(CONFER)
        .args([
            "loadtest",
            "--signal-url",
            &format!("ws://127.0.0.1:{port}/v1/signal"),
        ])
        .env("CONFER_LOG", "off")
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("failed to open ws://127.0.0.1"), "{stderr}");
    Ok(())
}
