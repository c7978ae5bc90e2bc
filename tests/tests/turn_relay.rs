//! TURN with a real coturn configured for the shared-secret scheme (`use-auth-secret`):
//! two Chromium clients forced to relay-only complete a call with the credentials the
//! join hands out; an expired credential is refused by coturn itself.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use confer_e2e::backing::free_udp_port;
use confer_e2e::browser::{Browser, Driver};
use confer_e2e::server::{Options, TestServer};
use confer_room::RoomConfig;
use confer_room::turn::{TurnConfig, credentials};
use serde_json::{Value, json};

const SECRET: &str = "coturn shared secret";

/// A coturn server on loopback, stopped when dropped.
struct Coturn {
    child: Child,
    url: String,
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_coturn() -> anyhow::Result<Coturn> {
    let port = free_udp_port()?;
    let relay_min = 40_000 + (std::process::id() % 2000) as u16 * 10;
    let child = Command::new("turnserver")
        .args([
            "-n",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--allow-loopback-peers",
        ])
        .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"])
        .args(["--listening-port", &port.to_string()])
        .args([
            "--min-port",
            &relay_min.to_string(),
            "--max-port",
            &(relay_min + 9).to_string(),
        ])
        .args([
            "--use-auth-secret",
            "--static-auth-secret",
            SECRET,
            "--realm",
            "confer.test",
        ])
        .args(["--log-file", "stdout", "--simple-log"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| anyhow::anyhow!("cannot start turnserver (install coturn): {err}"))?;
    // coturn binds within a moment; a STUN binding request tells when.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let request = [
        0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 512];
    loop {
        socket.send_to(&request, ("127.0.0.1", port))?;
        if socket.recv(&mut buf).is_ok() {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "coturn did not answer on {port}");
    }
    Ok(Coturn {
        child,
        url: format!("turn:127.0.0.1:{port}?transport=udp"),
    })
}

/// The type of the local candidate of the selected pair: `relay` when media goes
/// through TURN.
const SELECTED_LOCAL_TYPE: &str = r#"
const pc = window.conferClient && window.conferClient.pc;
if (!pc) return null;
const stats = await pc.getStats();
let pair = null;
stats.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
if (!pair) return null;
const local = stats.get(pair.localCandidateId);
let decoding = 0;
stats.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded > 0) decoding++; });
return {type: local && local.candidateType, decoding};
"#;

/// Gathers candidates for `server` under relay-only policy; reports relay candidates
/// and ICE candidate errors.
fn gather_script(server: &Value) -> String {
    format!(
        r#"
const pc = new RTCPeerConnection({{iceServers: [{server}], iceTransportPolicy: 'relay'}});
const result = {{relay: 0, errors: []}};
pc.onicecandidateerror = (e) => result.errors.push(e.errorCode);
pc.addTransceiver('audio');
const done = new Promise((resolve) => {{
  pc.onicecandidate = (e) => {{
    if (!e.candidate) resolve();
    else if (e.candidate.type === 'relay') result.relay++;
  }};
  setTimeout(resolve, 8000);
}});
await pc.setLocalDescription(await pc.createOffer());
await done;
pc.close();
return result;
"#
    )
}

async fn wait_relayed_call(browser: &Browser) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        last = browser.eval(SELECTED_LOCAL_TYPE).await?;
        if last["type"] == "relay" && last["decoding"].as_u64() >= Some(1) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    anyhow::bail!("no relayed call within 20 s: {last}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_clients_call_through_coturn_and_expired_credentials_are_refused()
-> anyhow::Result<()> {
    let coturn = start_coturn()?;
    let server = TestServer::start_with(Options {
        room: RoomConfig {
            turn: Some(TurnConfig {
                urls: vec![coturn.url.clone()],
                secret: SECRET.into(),
                ttl_secs: 600,
            }),
            ..RoomConfig::default()
        },
        ..Options::default()
    })
    .await?;
    let driver = Driver::start().await?;
    let ada = driver.browser().await?;
    let bob = driver.browser().await?;
    ada.goto(&server.url("/r/relayed?name=Ada&relay=1")).await?;
    bob.goto(&server.url("/r/relayed?name=Bob&relay=1")).await?;
    wait_relayed_call(&ada).await?;
    wait_relayed_call(&bob).await?;

    // The same server with credentials minted the same way: valid ones allocate,
    // expired ones are refused by coturn (401).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let fresh = credentials(
        std::slice::from_ref(&coturn.url),
        SECRET,
        "probe",
        now + 600,
    );
    let expired = credentials(std::slice::from_ref(&coturn.url), SECRET, "probe", now - 60);
    let as_json = |s: &confer_room::model::IceServer| json!({"urls": s.urls, "username": s.username, "credential": s.credential});
    let valid = ada.eval(&gather_script(&as_json(&fresh))).await?;
    assert!(
        valid["relay"].as_u64() >= Some(1),
        "fresh credentials allocate: {valid}"
    );
    let refused = ada.eval(&gather_script(&as_json(&expired))).await?;
    assert_eq!(
        refused["relay"], 0,
        "expired credentials allocate nothing: {refused}"
    );
    assert!(
        refused["errors"]
            .as_array()
            .is_some_and(|e| e.iter().any(|c| c == 401)),
        "coturn answers 401 Unauthorized: {refused}"
    );

    for browser in [ada, bob] {
        browser.close().await?;
    }
    Ok(())
}
