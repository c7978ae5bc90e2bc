//! The double's catalog: services with one TTL check each, KV, and the raft index.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Passing,
    Warning,
    Critical,
}

impl CheckStatus {
    pub(crate) fn parse(status: &str) -> Option<Self> {
        match status {
            "passing" => Some(Self::Passing),
            "warning" => Some(Self::Warning),
            "critical" => Some(Self::Critical),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Check {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) status: CheckStatus,
    pub(crate) output: String,
    pub(crate) ttl: Option<Duration>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) deregister_after: Option<Duration>,
    pub(crate) critical_since: Option<Instant>,
}

#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) tags: Vec<String>,
    pub(crate) address: String,
    pub(crate) port: u16,
    pub(crate) meta: BTreeMap<String, String>,
    pub(crate) check: Option<Check>,
}

#[derive(Debug, Clone)]
pub(crate) struct KvValue {
    pub(crate) value: Vec<u8>,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Catalog {
    pub(crate) index: u64,
    pub(crate) services: BTreeMap<String, Service>,
    pub(crate) kv: BTreeMap<String, KvValue>,
}

impl Catalog {
    /// Raises the index for a write; returns it.
    pub(crate) fn bump(&mut self) -> u64 {
        self.index += 1;
        self.index
    }
}

pub(crate) struct Shared {
    catalog: Mutex<Catalog>,
    changes: watch::Sender<u64>,
    available: AtomicBool,
    blocking: AtomicU64,
    pub(crate) max_wait: Duration,
}

impl Shared {
    pub(crate) fn new(max_wait: Duration) -> Self {
        Self {
            catalog: Mutex::new(Catalog {
                index: 1,
                ..Catalog::default()
            }),
            changes: watch::Sender::new(1),
            available: AtomicBool::new(true),
            blocking: AtomicU64::new(0),
            max_wait,
        }
    }
}

impl Shared {
    pub(crate) fn catalog(&self) -> MutexGuard<'_, Catalog> {
        self.catalog.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a write and wakes blocked queries.
    pub(crate) fn write<T>(&self, change: impl FnOnce(&mut Catalog) -> T) -> T {
        let mut catalog = self.catalog();
        let before = catalog.index;
        let result = change(&mut catalog);
        if catalog.index != before {
            self.changes.send_replace(catalog.index);
        }
        result
    }

    pub(crate) fn available(&self) -> bool {
        self.available.load(Ordering::SeqCst)
    }

    pub(crate) fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::SeqCst);
        // Wake blocked queries so they answer with the outage.
        self.changes.send_modify(|_| {});
    }

    pub(crate) fn restore_older_index(&self) {
        let mut catalog = self.catalog();
        catalog.index = 1;
        let index = catalog.bump();
        self.changes.send_replace(index);
    }

    pub(crate) fn check_status(&self, check_id: &str) -> Option<CheckStatus> {
        self.catalog()
            .services
            .values()
            .filter_map(|s| s.check.as_ref())
            .find(|c| c.id == check_id)
            .map(|c| c.status)
    }

    pub(crate) fn services(&self) -> Vec<String> {
        self.catalog().services.keys().cloned().collect()
    }

    pub(crate) fn blocking_queries(&self) -> u64 {
        self.blocking.load(Ordering::SeqCst)
    }

    /// Waits, as a blocking query does, until the index passes `index` or `wait` ends.
    pub(crate) async fn block(&self, index: u64, wait: Duration) {
        if index == 0 {
            return;
        }
        self.blocking.fetch_add(1, Ordering::SeqCst);
        let mut changes = self.changes.subscribe();
        let deadline = tokio::time::Instant::now() + wait.min(self.max_wait);
        loop {
            if *changes.borrow_and_update() > index || !self.available() {
                return;
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// Turns checks whose TTL passed critical, and removes services critical for longer
/// than their `DeregisterCriticalServiceAfter`.
pub(crate) async fn expire_checks(shared: Arc<Shared>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    loop {
        ticker.tick().await;
        let now = Instant::now();
        shared.write(|catalog| {
            let mut changed = false;
            catalog.services.retain(|_, service| {
                let Some(check) = service.check.as_mut() else {
                    return true;
                };
                if check.status != CheckStatus::Critical && check.deadline.is_some_and(|d| d <= now)
                {
                    check.status = CheckStatus::Critical;
                    check.output = "TTL expired".to_owned();
                    check.critical_since = Some(now);
                    changed = true;
                }
                let expired = check.status == CheckStatus::Critical
                    && check
                        .deregister_after
                        .zip(check.critical_since)
                        .is_some_and(|(after, since)| now.duration_since(since) >= after);
                changed |= expired;
                !expired
            });
            if changed {
                catalog.bump();
            }
        });
    }
}

/// `10s`, `1m`, `500ms`, `1h` → a duration.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "ns" => number / 1e9,
        "us" | "µs" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    (seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// The JSON of a health entry, as `GET /v1/health/service/:service` answers it.
pub(crate) fn health_entry(service: &Service) -> Value {
    let mut checks = vec![serde_json::json!({
        "Node": "double", "CheckID": "serfHealth", "Name": "Serf Health Status",
        "Status": "passing", "Output": "Agent alive and reachable",
        "ServiceID": "", "ServiceName": "",
    })];
    if let Some(check) = &service.check {
        checks.push(serde_json::json!({
            "Node": "double", "CheckID": check.id, "Name": check.name,
            "Status": check.status, "Output": check.output,
            "ServiceID": service.id, "ServiceName": service.name,
        }));
    }
    serde_json::json!({
        "Node": {"ID": "00000000-0000-0000-0000-000000000001", "Node": "double",
                 "Address": "127.0.0.1", "Datacenter": "dc1"},
        "Service": {"ID": service.id, "Service": service.name, "Tags": service.tags,
                    "Address": service.address, "Port": service.port, "Meta": service.meta},
        "Checks": checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_consuls() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("5y"), None);
    }
}
