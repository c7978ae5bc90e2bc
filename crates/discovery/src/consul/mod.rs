//! The registry over Consul's HTTP API.
//!
//! Endpoints used, all documented by Consul:
//! - `PUT /v1/agent/service/register`: the SFU as service `confer-sfu`, its region,
//!   zone, control address and capacity in `Meta`, with a TTL check;
//! - `PUT /v1/agent/check/update/:check`: the heartbeat, `passing` (serving) or
//!   `warning` (draining); a node that misses its TTL turns `critical` and Consul
//!   deregisters it a minute later;
//! - `PUT /v1/kv/confer/sfu-load/:node`: the load report. Consul agents sync a check's
//!   output to the servers only every few minutes, so load goes through KV, where every
//!   write is visible at once;
//! - `GET /v1/health/service/confer-sfu` and `GET /v1/kv/confer/sfu-load/?recurse`,
//!   both as blocking queries ([`watch`]);
//! - `PUT /v1/agent/service/deregister/:id` and `DELETE /v1/kv/…` on the way out.

mod watch;
mod wire;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::StatusCode;
use tokio::sync::watch as channel;

use crate::{DiscoveryError, NodeId, NodeReport, NodeState, Registration, Result, Snapshot};

/// The Consul service name SFUs register under.
pub const SERVICE: &str = "confer-sfu";
/// The KV prefix load reports are written under.
pub const LOAD_PREFIX: &str = "confer/sfu-load/";
/// A node that does not report within this is critical.
pub const CHECK_TTL: &str = "10s";
const DEREGISTER_AFTER: &str = "1m";

#[derive(Debug, Clone)]
pub struct ConsulRegistry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    snapshots: OnceLock<channel::Receiver<Snapshot>>,
}

fn check_id(id: &NodeId) -> String {
    format!("{SERVICE}:{id}")
}

impl ConsulRegistry {
    /// `address` is the agent's HTTP address (`http://127.0.0.1:8500`); `token` an ACL
    /// token, if the cluster uses ACLs.
    pub fn new(address: &str, token: Option<String>) -> Result<Self> {
        let http = confer_http::builder()
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base: address.trim_end_matches('/').to_owned(),
                token,
                snapshots: OnceLock::new(),
            }),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self
            .inner
            .http
            .request(method, format!("{}{path}", self.inner.base))
            .timeout(Duration::from_secs(5));
        match &self.inner.token {
            Some(token) => request.header("X-Consul-Token", token),
            None => request,
        }
    }

    async fn send(
        what: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let response = request.send().await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(DiscoveryError::Status {
            what,
            status: status.as_u16(),
            body: body.chars().take(200).collect(),
        })
    }

    pub async fn register(&self, registration: &Registration) -> Result<()> {
        let body = wire::ServiceRegistration::new(registration, &check_id(&registration.id));
        let request = self
            .request(reqwest::Method::PUT, "/v1/agent/service/register")
            .json(&body);
        Self::send("service registration", request).await?;
        Ok(())
    }

    pub async fn report(&self, report: &NodeReport) -> Result<()> {
        let status = match report.state {
            NodeState::Serving => "passing",
            NodeState::Draining => "warning",
        };
        let update = wire::CheckUpdate {
            status,
            output: format!(
                "{status}: {} participants in {} rooms",
                report.participants, report.rooms
            ),
        };
        let path = format!("/v1/agent/check/update/{}", check_id(&report.id));
        let request = self.request(reqwest::Method::PUT, &path).json(&update);
        match Self::send("check update", request).await {
            Ok(_) => {}
            // The agent forgot the node (it restarted, or deregistered it as critical).
            Err(DiscoveryError::Status { status, .. })
                if status == StatusCode::NOT_FOUND.as_u16()
                    || status == StatusCode::INTERNAL_SERVER_ERROR.as_u16()
                        && !self.agent_knows(&report.id).await =>
            {
                return Err(DiscoveryError::NotRegistered(report.id.clone()));
            }
            Err(other) => return Err(other),
        }
        let path = format!("/v1/kv/{LOAD_PREFIX}{}", report.id);
        let request = self.request(reqwest::Method::PUT, &path).json(report);
        Self::send("load report", request).await?;
        Ok(())
    }

    /// Whether the local agent has the node's service (older agents answer an update
    /// of an unknown check with a 500).
    async fn agent_knows(&self, id: &NodeId) -> bool {
        let path = format!("/v1/agent/service/{id}");
        let request = self.request(reqwest::Method::GET, &path);
        Self::send("service lookup", request).await.is_ok()
    }

    pub async fn deregister(&self, id: &NodeId) -> Result<()> {
        let path = format!("/v1/agent/service/deregister/{id}");
        Self::send("deregistration", self.request(reqwest::Method::PUT, &path)).await?;
        let path = format!("/v1/kv/{LOAD_PREFIX}{id}");
        Self::send("load removal", self.request(reqwest::Method::DELETE, &path)).await?;
        Ok(())
    }

    /// Snapshots kept current by blocking queries; the watch starts on the first call.
    pub fn watch(&self) -> channel::Receiver<Snapshot> {
        self.inner
            .snapshots
            .get_or_init(|| watch::start(self.clone()))
            .clone()
    }
}
