//! Confer started in-process the way `confer dev` starts it, on port 0.

use std::net::SocketAddr;
use std::sync::Arc;

use confer_auth::TokenKey;
use confer_gateway::GatewayConfig;
use confer_sfu::{SfuConfig, SfuHandle};
use tokio::sync::watch;

pub const TOKEN_SECRET: &str = "end-to-end test secret";

pub struct TestServer {
    pub http: SocketAddr,
    pub sfu: SfuHandle,
    shutdown: watch::Sender<bool>,
}

impl TestServer {
    /// Gateway and SFU in this process; joins need a token when `require_token`.
    pub async fn start(require_token: bool) -> anyhow::Result<Self> {
        let (shutdown, signal) = watch::channel(false);
        let sfu = confer_sfu::start(SfuConfig::default(), signal.clone()).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let http = listener.local_addr()?;
        let mut config = GatewayConfig::new(TokenKey::new("dev", TOKEN_SECRET.as_bytes()));
        config.require_token = require_token;
        config.sfu_stats = Some(sfu.stats().clone());
        tokio::spawn(confer_gateway::run(
            config,
            listener,
            Arc::new(sfu.clone()),
            signal,
        ));
        Ok(Self {
            http,
            sfu,
            shutdown,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn signal_url(&self) -> String {
        format!("ws://{}/v1/signal", self.http)
    }

    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(reqwest::get(self.url("/metrics")).await?.text().await?)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// The value of an unlabelled metric in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}
