//! The registry of `confer dev`: process memory, same contract as Consul's.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use crate::{
    DiscoveryError, Health, Member, NodeId, NodeReport, NodeState, Registration, Result, Snapshot,
    unix_ms,
};

#[derive(Debug, Clone)]
pub struct MemoryRegistry {
    members: Arc<Mutex<BTreeMap<NodeId, Member>>>,
    snapshots: Arc<watch::Sender<Snapshot>>,
}

impl Default for MemoryRegistry {
    fn default() -> Self {
        Self {
            members: Arc::default(),
            snapshots: Arc::new(watch::Sender::new(Snapshot::default())),
        }
    }
}

impl MemoryRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<NodeId, Member>> {
        self.members
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish(&self, members: &BTreeMap<NodeId, Member>) {
        self.snapshots.send_replace(Snapshot {
            members: members.values().cloned().collect(),
            stale: false,
            refreshed_at_ms: unix_ms(),
        });
    }

    pub fn register(&self, registration: &Registration) -> Result<()> {
        let mut members = self.lock();
        members.insert(
            registration.id.clone(),
            Member {
                registration: registration.clone(),
                health: Health::Serving,
                report: None,
            },
        );
        self.publish(&members);
        Ok(())
    }

    pub fn report(&self, report: &NodeReport) -> Result<()> {
        let mut members = self.lock();
        let member = members
            .get_mut(&report.id)
            .ok_or_else(|| DiscoveryError::NotRegistered(report.id.clone()))?;
        member.health = match report.state {
            NodeState::Serving => Health::Serving,
            NodeState::Draining => Health::Draining,
        };
        member.report = Some(report.clone());
        self.publish(&members);
        Ok(())
    }

    pub fn deregister(&self, id: &NodeId) -> Result<()> {
        let mut members = self.lock();
        members.remove(id);
        self.publish(&members);
        Ok(())
    }

    pub fn watch(&self) -> watch::Receiver<Snapshot> {
        self.snapshots.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_follow_registration_and_health() {
        let registry = MemoryRegistry::new();
        let id = NodeId::from("sfu-0");
        let report = NodeReport {
            id: id.clone(),
            region: "eu".into(),
            zone: String::new(),
            state: NodeState::Draining,
            capacity: 10,
            participants: 3,
            rooms: 1,
            reported_at_ms: 5,
        };
        assert!(matches!(
            registry.report(&report),
            Err(DiscoveryError::NotRegistered(_))
        ));
        let watch = registry.watch();
        registry
            .register(&Registration {
                id: id.clone(),
                region: "eu".into(),
                zone: String::new(),
                control: "127.0.0.1:1".into(),
                capacity: 10,
            })
            .expect("register");
        assert_eq!(watch.borrow().reports().count(), 0, "no report yet");
        registry.report(&report).expect("report");
        let snapshot = watch.borrow().clone();
        assert_eq!(
            snapshot.member(&id).map(|m| m.health),
            Some(Health::Draining)
        );
        assert_eq!(snapshot.reports().next().map(|r| r.participants), Some(3));
        registry.deregister(&id).expect("deregister");
        assert!(watch.borrow().members.is_empty());
    }
}
