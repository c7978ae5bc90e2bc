//! Consul's JSON, the parts the registry writes and reads.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{CHECK_TTL, DEREGISTER_AFTER, SERVICE};
use crate::{Health, NodeId, Registration};

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ServiceRegistration {
    #[serde(rename = "ID")]
    id: String,
    name: &'static str,
    tags: Vec<String>,
    address: String,
    port: u16,
    meta: HashMap<&'static str, String>,
    check: TtlCheck,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct TtlCheck {
    #[serde(rename = "CheckID")]
    check_id: String,
    name: String,
    #[serde(rename = "TTL")]
    ttl: &'static str,
    status: &'static str,
    deregister_critical_service_after: &'static str,
}

impl ServiceRegistration {
    pub(super) fn new(registration: &Registration, check_id: &str) -> Self {
        let (address, port) = match registration.control.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), port.parse().unwrap_or(0)),
            None => (registration.control.clone(), 0),
        };
        let meta = HashMap::from([
            ("region", registration.region.clone()),
            ("zone", registration.zone.clone()),
            ("control", registration.control.clone()),
            ("capacity", registration.capacity.to_string()),
        ]);
        Self {
            id: registration.id.0.clone(),
            name: SERVICE,
            tags: vec![format!("region={}", registration.region)],
            address,
            port,
            meta,
            check: TtlCheck {
                check_id: check_id.to_owned(),
                name: "confer SFU load report".to_owned(),
                ttl: CHECK_TTL,
                status: "passing",
                deregister_critical_service_after: DEREGISTER_AFTER,
            },
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct CheckUpdate {
    pub(super) status: &'static str,
    pub(super) output: String,
}

/// One entry of `GET /v1/health/service/:service`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ServiceEntry {
    service: AgentService,
    #[serde(default)]
    checks: Vec<HealthCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AgentService {
    #[serde(rename = "ID")]
    id: String,
    #[serde(default)]
    meta: Option<HashMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthCheck {
    status: String,
}

impl ServiceEntry {
    /// The registration and health this entry describes; `None` for an instance whose
    /// metadata is not a Confer SFU's.
    pub(super) fn member(&self) -> Option<(Registration, Health)> {
        let meta = self.service.meta.as_ref()?;
        let registration = Registration {
            id: NodeId(self.service.id.clone()),
            region: meta.get("region")?.clone(),
            zone: meta.get("zone").cloned().unwrap_or_default(),
            control: meta.get("control")?.clone(),
            capacity: meta.get("capacity")?.parse().ok()?,
        };
        let worst = |status: &str| self.checks.iter().any(|c| c.status == status);
        let health = if worst("critical") || self.checks.iter().any(|c| !known(&c.status)) {
            Health::Gone
        } else if worst("warning") {
            Health::Draining
        } else {
            Health::Serving
        };
        Some((registration, health))
    }
}

fn known(status: &str) -> bool {
    matches!(status, "passing" | "warning" | "critical")
}

/// One entry of `GET /v1/kv/:prefix?recurse`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct KvEntry {
    pub(super) key: String,
    pub(super) value: Option<String>,
}
