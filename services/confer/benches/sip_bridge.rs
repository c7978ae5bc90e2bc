//! What a dial-in call costs the SIP bridge: `confer sip` as its own process (release
//! build) next to `confer dev`, sipp placing N concurrent calls, two per room, each
//! caller playing 10 s of 20 ms Opus packets, so every call carries audio both ways
//! (the caller's into the room, the other caller's back out). Calls start at 10 a
//! second. The bridge's CPU time over the calls, from `/proc`, per call-second and per
//! bridged packet.
//!
//! `cargo bench -p confer --bench sip_bridge` (needs sipp: Debian `sip-tester`).

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use confer_e2e::server::metric;
use confer_e2e::sip::{Offer, Script, scenario, write_voice_pcap};
use support::{SipDeployment, free_port, http_get};

/// 10 s of voice per caller.
const VOICE_PACKETS: u16 = 500;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    println!(
        "| concurrent calls | rooms | bridge CPU s | CPU ms per call-second | packets bridged | CPU µs per packet |"
    );
    println!("|---|---|---|---|---|---|");
    // At most 30: every call here comes from one address, and the room service lets
    // one address join 30 times at once, then once every 2 s.
    for calls in [10u32, 20, 30] {
        run(calls).await?;
    }
    Ok(())
}

async fn run(calls: u32) -> anyhow::Result<()> {
    let deployment = SipDeployment::start(&["--sip-max-calls", "1000"])?;
    let rooms = calls / 2;
    for room in 0..rooms {
        deployment.open_room(&format!("r{room}")).await?;
    }

    let dir = std::env::temp_dir().join(format!("confer-sip-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    write_voice_pcap(&dir.join("voice.pcap"), VOICE_PACKETS)?;
    // Each call's room from the injection file: two calls per room.
    let mut rooms_csv = String::from("SEQUENTIAL\n");
    for call in 0..calls {
        rooms_csv.push_str(&format!("r{};\n", call / 2));
    }
    std::fs::write(dir.join("rooms.csv"), rooms_csv)?;
    let xml =
        scenario(Offer::Speak, Script::HangUpAfter { ms: 11_000 }).replace("[service]", "[field0]");
    std::fs::write(dir.join("call.xml"), xml)?;

    let before = confer_loadtest::process_cpu(deployment.sip.id())?;
    let started = Instant::now();
    let count = calls.to_string();
    let output = tokio::process::Command::new("sipp")
        .current_dir(&dir)
        .arg(deployment.sip_addr.to_string())
        .args([
            "-sf",
            "call.xml",
            "-inf",
            "rooms.csv",
            "-m",
            &count,
            "-l",
            &count,
        ])
        // 10 calls a second: within the room service's joins per address (all calls
        // come from one address here, as from one trunk).
        .args(["-r", "10", "-rp", "1000", "-i", "127.0.0.1", "-nostdin"])
        .args([
            "-p",
            &free_port()?.to_string(),
            "-mp",
            &free_port()?.to_string(),
        ])
        .args(["-timeout", "60s", "-timeout_error"])
        .output()
        .await?;
    let wall = started.elapsed();
    let cpu = confer_loadtest::process_cpu(deployment.sip.id())? - before;
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(
        output.status.success(),
        "sipp failed:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let text = http_get(&deployment.metrics, "/metrics")?;
    let answered = metric(&text, "confer_sip_calls_total{outcome=\"answered\"}").unwrap_or(0);
    anyhow::ensure!(
        answered == u64::from(calls),
        "{answered} of {calls} calls answered:\n{text}"
    );
    let packets = metric(
        &text,
        "confer_sip_rtp_packets_total{direction=\"from_caller\"}",
    )
    .unwrap_or(0)
        + metric(
            &text,
            "confer_sip_rtp_packets_total{direction=\"to_caller\"}",
        )
        .unwrap_or(0);
    let duration =
        metric_f64(&text, "confer_sip_call_duration_seconds_sum").unwrap_or(wall.as_secs_f64());
    println!(
        "| {calls} | {rooms} | {:.2} | {:.2} | {packets} | {:.1} |",
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1000.0 / duration,
        cpu.as_secs_f64() * 1e6 / packets.max(1) as f64,
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

fn metric_f64(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
}
