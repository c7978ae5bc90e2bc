//! `confer dev` (its own SIP bridge off) and `confer sip` joining through it, as two
//! processes: what the SIP process suite and the SIP bridge benchmark run against.

use serde_json::json;

use super::{Proc, free_port, spawn, wait_listening};

/// The built-in tenant's secret in these deployments.
const SECRET: &str = "sip deployment secret";

pub struct SipDeployment {
    _dev: Proc,
    pub sip: Proc,
    /// The gateway's HTTP address.
    pub http: String,
    /// Where the bridge takes SIP.
    pub sip_addr: std::net::SocketAddr,
    /// The bridge's `/metrics` address.
    pub metrics: String,
}

impl SipDeployment {
    /// Both processes, the bridge with `extra` flags.
    pub fn start(extra: &[&str]) -> anyhow::Result<Self> {
        let http = format!("127.0.0.1:{}", free_port()?);
        let dev = spawn(
            &[
                "dev",
                "--listen",
                &http,
                "--sip-listen",
                "off",
                "--token-secret",
                SECRET,
            ],
            &[],
        )?;
        wait_listening(http.parse()?)?;
        let udp = confer_e2e::backing::free_udp_port()?;
        let sip_addr: std::net::SocketAddr = format!("127.0.0.1:{udp}").parse()?;
        let metrics = format!("127.0.0.1:{}", free_port()?);
        let signal = format!("ws://{http}/v1/signal");
        let sip_listen = sip_addr.to_string();
        let mut args = vec![
            "sip",
            "--listen",
            &sip_listen,
            "--metrics-listen",
            &metrics,
            "--signal-url",
            &signal,
        ];
        args.extend_from_slice(extra);
        let sip = spawn(
            &args,
            &[("CONFER_API_KEY", "dev"), ("CONFER_API_SECRET", SECRET)],
        )?;
        wait_listening(metrics.parse()?)?;
        Ok(Self {
            _dev: dev,
            sip,
            http,
            sip_addr,
            metrics,
        })
    }

    /// Opens `room` without a waiting room, through the tenant API: callers are
    /// answered at once.
    pub async fn open_room(&self, room: &str) -> anyhow::Result<()> {
        let response = confer_http::client()?
            .post(format!("http://{}/v1/rooms", self.http))
            .basic_auth("dev", Some(SECRET))
            .json(&json!({"name": room, "settings": {"waiting_room": false}}))
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "{}", response.text().await?);
        Ok(())
    }
}
