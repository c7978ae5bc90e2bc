//! Discovery: which SFUs exist, whether they take rooms, and how loaded they are.
//!
//! SFUs *announce* themselves ([`announce`]): they register once, then every
//! [`REPORT_INTERVAL`] publish their state (a TTL health check: passing = serving,
//! warning = draining; a node that stops reporting turns critical and is gone) and
//! their load (a [`NodeReport`]). Placers *watch*: [`Registry::watch`] yields
//! [`Snapshot`]s, kept current in the background.
//!
//! Two implementations: [`MemoryRegistry`] for `confer dev` and single-process tests,
//! and [`ConsulRegistry`] over Consul's HTTP API (agent service registration, TTL
//! checks, KV for load, blocking queries on the health and KV endpoints). When Consul
//! cannot be reached the last snapshot stays in force, marked stale.
//!
//! This crate does not choose nodes (that is `confer-placement`) and does not know
//! about rooms.

mod announce;
mod consul;
mod memory;
pub mod metrics;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use announce::{REPORT_INTERVAL, announce};
pub use confer_placement::{NodeId, NodeReport, NodeState};
pub use consul::ConsulRegistry;
pub use memory::MemoryRegistry;

/// What a node registers once: who it is and where its control API listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub id: NodeId,
    pub region: String,
    #[serde(default)]
    pub zone: String,
    /// `host:port` of the SFU's internal control API.
    pub control: String,
    /// Participants the node is sized for.
    pub capacity: u32,
}

/// A node's health as the registry sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Serving,
    Draining,
    /// Missed its reports, or deregistering: not a candidate for anything.
    Gone,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub registration: Registration,
    pub health: Health,
    /// The latest load report, if one was published.
    pub report: Option<NodeReport>,
}

/// The registry's view at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub members: Vec<Member>,
    /// The registry could not be reached at the last attempt: this is the last
    /// snapshot it answered.
    pub stale: bool,
    /// When the registry last answered (ms since the Unix epoch, the watcher's clock).
    pub refreshed_at_ms: u64,
}

impl Snapshot {
    /// Load reports of the nodes that are not gone, with the registry's health
    /// folded in (a node the registry says is draining is draining).
    pub fn reports(&self) -> impl Iterator<Item = NodeReport> + '_ {
        self.members.iter().filter_map(|member| {
            let mut report = member.report.clone()?;
            match member.health {
                Health::Gone => return None,
                Health::Draining => report.state = NodeState::Draining,
                Health::Serving => {}
            }
            Some(report)
        })
    }

    pub fn member(&self, id: &NodeId) -> Option<&Member> {
        self.members.iter().find(|m| &m.registration.id == id)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("registry request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("registry answered {status} to {what}: {body}")]
    Status {
        what: &'static str,
        status: u16,
        body: String,
    },
    #[error("registry answer to {what} is not what was expected: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("node `{0}` is not registered")]
    NotRegistered(NodeId),
}

pub type Result<T, E = DiscoveryError> = std::result::Result<T, E>;

/// One of the registries; cheap to clone.
#[derive(Debug, Clone)]
pub enum Registry {
    Memory(MemoryRegistry),
    Consul(ConsulRegistry),
}

impl Registry {
    pub async fn register(&self, registration: &Registration) -> Result<()> {
        match self {
            Self::Memory(r) => r.register(registration),
            Self::Consul(r) => r.register(registration).await,
        }
    }

    /// Publishes a node's state and load; also its heartbeat.
    pub async fn report(&self, report: &NodeReport) -> Result<()> {
        match self {
            Self::Memory(r) => r.report(report),
            Self::Consul(r) => r.report(report).await,
        }
    }

    pub async fn deregister(&self, id: &NodeId) -> Result<()> {
        match self {
            Self::Memory(r) => r.deregister(id),
            Self::Consul(r) => r.deregister(id).await,
        }
    }

    /// The current snapshot and every later one.
    pub fn watch(&self) -> watch::Receiver<Snapshot> {
        match self {
            Self::Memory(r) => r.watch(),
            Self::Consul(r) => r.watch(),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
