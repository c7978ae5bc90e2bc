//! The same fan-out load against Confer's SFU and against Janus's VideoRoom, in one
//! run: `confer loadtest`'s synthetic webrtc-rs clients (ICE, DTLS, SRTP, RTCP) send
//! one paced VP8-shaped stream per room and receive it at every subscriber; the
//! server's CPU time over the measurement window, read from `/proc`, gives CPU per
//! million delivered packets for each, and their ratio.
//!
//! Confer runs as `confer dev` (gateway, room service and SFU in one process; only the
//! SFU works while media flows). Janus is the Debian `janus` package, started here with
//! a configuration of its own (HTTP API and VideoRoom only). Janus's ICE (libnice)
//! leaves loopback out of its candidates, so everything (clients, both servers' media)
//! uses the machine's own non-loopback address; the packets still never leave it.
//!
//! cargo bench -p confer --bench sfu_vs_janus     (needs `janus` on PATH)

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};

use confer_loadtest::{Config, Report, Target};
use support::{free_port, wait_listening};

/// Fan-out shapes: rooms × (1 publisher → subscribers), publisher bitrate.
const CASES: &[(usize, usize, u32)] = &[(1, 10, 2_000), (1, 50, 2_000), (4, 25, 2_000)];
const JANUS_PLUGINS: &str = "/usr/lib/x86_64-linux-gnu/janus";

/// This machine's address on its default route (a UDP `connect` sends nothing).
fn host_ip() -> anyhow::Result<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket
        .connect("192.0.2.1:9")
        .or_else(|_| socket.connect("10.255.255.255:9"))
        .map_err(|err| anyhow::anyhow!("no non-loopback IPv4 address to run media on: {err}"))?;
    Ok(socket.local_addr()?.ip())
}

/// Janus with a configuration of its own in `dir`: HTTP API on `port`, VideoRoom only,
/// ICE candidates on `media_ip` only.
fn start_janus(dir: &Path, port: u16, media_ip: IpAddr) -> anyhow::Result<std::process::Child> {
    let disabled_plugins = "libjanus_audiobridge.so,libjanus_duktape.so,libjanus_echotest.so,\
        libjanus_lua.so,libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,\
        libjanus_streaming.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_voicemail.so";
    let disabled_transports = "libjanus_websockets.so,libjanus_pfunix.so,libjanus_mqtt.so,\
        libjanus_nanomsg.so,libjanus_rabbitmq.so";
    let dir_str = dir.display();
    std::fs::write(
        dir.join("janus.jcfg"),
        format!(
            "general: {{\n configs_folder = \"{dir_str}\"\n plugins_folder = \"{JANUS_PLUGINS}/plugins\"\n \
             transports_folder = \"{JANUS_PLUGINS}/transports\"\n events_folder = \"{JANUS_PLUGINS}/events\"\n \
             loggers_folder = \"{JANUS_PLUGINS}/loggers\"\n debug_level = 2\n session_timeout = 120\n}}\n\
             nat: {{\n ice_enforce_list = \"{media_ip}\"\n}}\n\
             media: {{\n ipv6 = false\n}}\n\
             plugins: {{\n disable = \"{disabled_plugins}\"\n}}\n\
             transports: {{\n disable = \"{disabled_transports}\"\n}}\n\
             events: {{\n broadcast = false\n}}\n"
        ),
    )?;
    std::fs::write(
        dir.join("janus.transport.http.jcfg"),
        format!(
            "general: {{\n json = \"compact\"\n base_path = \"/janus\"\n http = true\n port = {port}\n \
             interface = \"lo\"\n}}\nadmin: {{\n admin_http = false\n}}\n"
        ),
    )?;
    std::fs::write(dir.join("janus.plugin.videoroom.jcfg"), "general: {\n}\n")?;
    let child = Command::new("janus")
        .arg(format!("--config={}", dir.join("janus.jcfg").display()))
        .arg(format!("--configs-folder={dir_str}"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|err| anyhow::anyhow!("failed to start janus (apt-get install janus): {err}"))?;
    Ok(child)
}

fn config(target: Target, pid: u32, client_ip: IpAddr, shape: (usize, usize, u32)) -> Config {
    Config {
        server_pid: Some(pid),
        client_ip,
        ..Config::one_publisher_rooms(target, shape)
    }
}

fn row(server: &str, shape: (usize, usize, u32), report: &Report) -> Option<f64> {
    let per_million = report.cpu_per_million().map(|d| d.as_secs_f64());
    let [p50, _, p99, _] = report.latency_us.map(|us| f64::from(us) / 1000.0);
    println!(
        "| {} × 1→{} | {server} | {:.0} | {:.3} % | {p50:.2} | {p99:.2} | {:.2} | {} |",
        shape.0,
        shape.1,
        report.delivered_per_second(),
        report.loss() * 100.0,
        report.server_cpu.map_or(0.0, |d| d.as_secs_f64()),
        per_million.map_or("-".into(), |s| format!("{s:.2}")),
    );
    per_million
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let gateway_port = free_port()?;
    let listen = format!("127.0.0.1:{gateway_port}");
    let media_ip = host_ip()?;
    let media_bind = format!("{media_ip}:0");
    let confer = support::spawn(
        &["dev", "--listen", &listen, "--media-bind", &media_bind],
        &[],
    )?;
    wait_listening(listen.parse()?)?;
    let janus_dir = std::env::temp_dir().join(format!("confer-bench-janus-{}", std::process::id()));
    std::fs::create_dir_all(&janus_dir)?;
    let janus_port = free_port()?;
    let mut janus = start_janus(&janus_dir, janus_port, media_ip)?;
    let janus_pid = janus.id();
    let outcome = async {
        wait_listening(SocketAddr::from(([127, 0, 0, 1], janus_port)))?;
        println!("media on {media_ip}\n");
        println!("| rooms × fan-out | server | delivered/s | loss | p50 ms | p99 ms | server CPU s | CPU s per 1M delivered |");
        println!("|---|---|---|---|---|---|---|---|");
        let mut ratios = Vec::new();
        for &shape in CASES {
            let ours = confer_loadtest::run(config(
                Target::Confer {
                    signal_url: format!("ws://{listen}/v1/signal"),
                    key: None,
                },
                confer.id(),
                media_ip,
                shape,
            ))
            .await?;
            let theirs = confer_loadtest::run(config(
                Target::Janus {
                    api_url: format!("http://127.0.0.1:{janus_port}/janus"),
                },
                janus_pid,
                media_ip,
                shape,
            ))
            .await?;
            let a = row("Confer", shape, &ours);
            let b = row("Janus", shape, &theirs);
            if let (Some(a), Some(b)) = (a, b) {
                ratios.push((shape, a / b));
            }
        }
        for ((rooms, subscribers, _), ratio) in ratios {
            println!("{rooms} × 1→{subscribers}: Confer's CPU per delivered packet is {ratio:.2} × Janus's");
        }
        anyhow::Ok(())
    }
    .await;
    let _ = janus.kill();
    let _ = janus.wait();
    let _ = std::fs::remove_dir_all(&janus_dir);
    outcome
}
