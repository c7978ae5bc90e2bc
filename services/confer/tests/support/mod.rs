//! Confer's own binary as separate processes, for the multi-process suites and
//! benchmarks (each uses part of it).

#![allow(dead_code, unused_imports)]

mod chat_cluster;
mod sip_deployment;

use std::process::{Child, Command, Stdio};

pub use chat_cluster::ChatCluster;
pub use sip_deployment::SipDeployment;

pub const CONFER: &str = env!("CARGO_BIN_EXE_confer");

pub use confer_e2e::backing::{free_port, free_udp_port};

/// Waits up to 30 s for something to accept TCP connections on `addr`.
pub fn wait_listening(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "nothing listens on {addr}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(())
}

/// A child process killed when dropped.
pub struct Proc(Child);

impl Proc {
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// The exit status, once it has exited.
    pub fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        self.0.try_wait()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `confer <args>` with `env`, logging warnings to this test's stderr.
pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Proc> {
    let mut command = Command::new(CONFER);
    command
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (key, value) in env {
        command.env(key, value);
    }
    command.env("CONFER_LOG", "warn");
    Ok(Proc(command.spawn()?))
}

/// A tenant made through the operator command (`confer tenant create`); its API key
/// and secret.
pub fn create_tenant(env: &[(&str, &str)]) -> anyhow::Result<(String, String)> {
    let output = Command::new(CONFER)
        .args(["tenant", "create", "--name", "Acme"])
        .envs(env.iter().copied())
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "tenant create: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout)?;
    let field = |label: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(label))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let (api_key, api_secret) = (field("api key:"), field("api secret:"));
    anyhow::ensure!(
        !api_key.is_empty() && !api_secret.is_empty(),
        "tenant create printed {text}"
    );
    Ok((api_key, api_secret))
}

/// Joins `room` through the gateway at `gateway` (host:port) with `token`; the
/// client and the SFU media port named in the answer's candidate.
pub async fn join_for_port(
    gateway: &str,
    room: &str,
    token: &str,
) -> anyhow::Result<(confer_e2e::signal::SignalClient, u16)> {
    use confer_e2e::signal::{SignalClient, client_offer};
    let mut client = SignalClient::connect(&format!("ws://{gateway}/v1/signal")).await?;
    client
        .send(&serde_json::json!({"request_id": "j", "join": {"room": room, "token": token, "offer": {"type": "offer", "sdp": client_offer(1)?}}}))
        .await?;
    let joined = client
        .recv_kind("joined", std::time::Duration::from_secs(10))
        .await?;
    let port = joined["joined"]["answer"]["sdp"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("a=candidate"))
        .and_then(|l| l.split_whitespace().nth(5))
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no candidate in {joined}"))?;
    Ok((client, port))
}

/// A host's access token for `room` (hosts skip the waiting room), signed with the
/// tenant's API key and secret.
pub fn host_token(api_key: &str, api_secret: &str, room: &str, identity: &str) -> String {
    use confer_auth::{Claims, TokenKey, VideoGrant};
    TokenKey::new(api_key.to_owned(), api_secret.as_bytes()).sign(&Claims {
        iss: api_key.to_owned(),
        sub: identity.into(),
        name: identity.into(),
        nbf: 0,
        exp: u64::MAX / 2,
        kind: Default::default(),
        video: VideoGrant {
            room_admin: true,
            ..VideoGrant::join(room)
        },
    })
}

/// The body of a plain HTTP GET (HTTP/1.0: the server closes after answering).
#[allow(dead_code)]
pub fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no HTTP response from {addr}{path}"))?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "{head}"
    );
    Ok(body.to_owned())
}

/// A `confer room` process on a fresh PostgreSQL database with one tenant, placing
/// rooms from the Consul agent at `consul_url`; rooms naming no region go to `region`.
pub struct RoomProcess {
    pub port: u16,
    pub metrics: u16,
    pub api_key: String,
    pub api_secret: String,
    pub process: Proc,
}

pub async fn room_with_consul(consul_url: &str, region: &str) -> anyhow::Result<RoomProcess> {
    use base64::Engine as _;
    let database = confer_e2e::backing::fresh_postgres().await?;
    let master_key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let env = [
        ("CONFER_DATABASE_URL", database.as_str()),
        ("CONFER_MASTER_KEY", master_key.as_str()),
    ];
    let (api_key, api_secret) = create_tenant(&env)?;
    let (port, metrics) = (free_port()?, free_port()?);
    let process = spawn(
        &[
            "room",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            &format!("127.0.0.1:{metrics}"),
            "--region",
            region,
            "--consul-addr",
            consul_url,
        ],
        &env,
    )?;
    Ok(RoomProcess {
        port,
        metrics,
        api_key,
        api_secret,
        process,
    })
}

/// A `confer sfu` process with one media worker on a loopback port, registered with
/// the Consul agent at `consul_url` as `id` in `region`.
pub struct SfuProcess {
    pub id: String,
    pub media: u16,
    pub control: u16,
    pub metrics: u16,
    pub process: Proc,
}

pub fn sfu_with_consul(
    consul_url: &str,
    id: &str,
    region: &str,
    capacity: u32,
) -> anyhow::Result<SfuProcess> {
    let media = free_udp_port()?;
    let (control, metrics) = (free_port()?, free_port()?);
    let process = spawn(
        &[
            "sfu",
            "--metrics-listen",
            &format!("127.0.0.1:{metrics}"),
            "--media-bind",
            &format!("127.0.0.1:{media}"),
            // One media port per SFU: the suites tell SFUs apart by it.
            "--media-workers",
            "1",
            "--control-listen",
            &format!("127.0.0.1:{control}"),
            "--consul-addr",
            consul_url,
            "--node-id",
            id,
            "--region",
            region,
            "--capacity",
            &capacity.to_string(),
        ],
        &[],
    )?;
    Ok(SfuProcess {
        id: id.to_owned(),
        media,
        control,
        metrics,
        process,
    })
}

/// The value of the first line of `addr`'s `/metrics` that starts with `line_start`
/// (a series and the space after it).
pub async fn metric(addr: &str, line_start: &str) -> anyhow::Result<Option<f64>> {
    let page = confer_http::client()?
        .get(format!("http://{addr}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(page
        .lines()
        .find_map(|line| line.strip_prefix(line_start))
        .and_then(|value| value.trim().parse().ok()))
}

/// Waits up to `within` until that value is `wanted`.
pub async fn until_metric(
    addr: &str,
    line_start: &str,
    within: std::time::Duration,
    wanted: impl Fn(f64) -> bool,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let value = metric(addr, line_start).await?;
        if value.is_some_and(&wanted) {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "`{line_start}` on {addr} is {value:?} after {within:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
