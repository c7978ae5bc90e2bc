//! Time from opening the join link to the first decoded remote video frame, with two
//! headless Chromium browsers on loopback. Median of 10 rooms.
//!
//! `cargo bench -p confer-e2e --bench first_frame`

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use confer_e2e::browser::Driver;
use confer_e2e::server::TestServer;

const ROUNDS: usize = 10;
const FIRST_FRAME: &str = r#"
const pc = window.conferClient && window.conferClient.pc;
if (!pc) return false;
const stats = await pc.getStats();
let decoded = false;
stats.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded > 0) decoded = true; });
return decoded;
"#;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let server = TestServer::start(false).await?;
    let driver = Driver::start().await?;
    let first = driver.browser().await?;
    let second = driver.browser().await?;
    let mut samples = Vec::new();
    for round in 0..ROUNDS {
        first
            .goto(&server.url(&format!("/r/bench-{round}?name=First")))
            .await?;
        first
            .wait_for(
                "first joined",
                "return !!(window.conferClient && window.conferClient.self);",
                Duration::from_secs(10),
            )
            .await?;
        let opened = Instant::now();
        second
            .goto(&server.url(&format!("/r/bench-{round}?name=Second")))
            .await?;
        loop {
            if second.eval(FIRST_FRAME).await? == serde_json::Value::Bool(true) {
                break;
            }
            anyhow::ensure!(
                opened.elapsed() < Duration::from_secs(20),
                "no frame in round {round}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        samples.push(opened.elapsed());
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "join link -> first decoded remote frame, {ROUNDS} rooms: median {:.0} ms, min {:.0} ms, max {:.0} ms",
        ms(samples[ROUNDS / 2]),
        ms(samples[0]),
        ms(samples[ROUNDS - 1])
    );
    Ok(())
}
