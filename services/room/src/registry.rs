//! The SFUs rooms can be placed on, and the choice among them.
//!
//! Either a fixed list (`--sfu` flags, or the in-process SFU of `confer dev`), loaded
//! by the rooms the live store counts on each; or a discovery registry (Consul, or
//! memory), where every SFU reports its state and load. Both go through one
//! [`Placer`]: least-loaded of two random candidates, fresh reports only, never a
//! draining node, nearest region with capacity as the fallback.

use std::sync::{Mutex, MutexGuard};

use confer_discovery::{NodeId, NodeReport, NodeState, Snapshot, unix_ms};
use confer_placement::{PlacementConfig, Placer, Regions};
use tokio::sync::watch;

use crate::error::{ErrorKind, RoomError, RoomResult};
use crate::live::Live;
use crate::model::Placement;

/// One SFU: its id, region and control API address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SfuNode {
    pub id: String,
    pub region: String,
    pub control: String,
}

impl SfuNode {
    /// Parses `id@region=host:port`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (name, control) = spec
            .split_once('=')
            .ok_or_else(|| format!("`{spec}`: expected id@region=host:port"))?;
        let (id, region) = name
            .split_once('@')
            .ok_or_else(|| format!("`{spec}`: expected id@region=host:port"))?;
        if id.is_empty() || region.is_empty() || control.is_empty() {
            return Err(format!(
                "`{spec}`: id, region and address must be non-empty"
            ));
        }
        Ok(Self {
            id: id.to_owned(),
            region: region.to_owned(),
            control: control.to_owned(),
        })
    }
}

enum Source {
    Fixed(Vec<SfuNode>),
    Discovered(watch::Receiver<Snapshot>),
}

pub struct SfuRegistry {
    source: Source,
    placer: Mutex<Placer>,
}

impl Default for SfuRegistry {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl SfuRegistry {
    /// A fixed list of SFUs.
    pub fn new(nodes: Vec<SfuNode>) -> Self {
        Self::with(Source::Fixed(nodes), Regions::default())
    }

    /// The SFUs a discovery registry reports.
    pub fn discovered(snapshots: watch::Receiver<Snapshot>, regions: Regions) -> Self {
        Self::with(Source::Discovered(snapshots), regions)
    }

    /// Which regions stand in for a region without capacity.
    pub fn with_regions(self, regions: Regions) -> Self {
        Self::with(self.source, regions)
    }

    fn with(source: Source, regions: Regions) -> Self {
        let seed = rand::random();
        Self {
            source,
            placer: Mutex::new(Placer::new(PlacementConfig::default(), regions, seed)),
        }
    }

    fn placer(&self) -> MutexGuard<'_, Placer> {
        self.placer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The registry could not be reached; placement runs on its last answer.
    pub fn is_stale(&self) -> bool {
        match &self.source {
            Source::Fixed(_) => false,
            Source::Discovered(snapshots) => snapshots.borrow().stale,
        }
    }

    /// The node a new room in `region` goes to.
    pub(crate) async fn choose(&self, region: &str, live: &Live) -> RoomResult<Placement> {
        let (reports, controls, now) = match &self.source {
            Source::Fixed(nodes) => fixed_reports(nodes, live).await?,
            Source::Discovered(snapshots) => discovered_reports(&snapshots.borrow()),
        };
        let mut placer = self.placer();
        placer.observe_all(reports);
        let choice = placer.choose(region, now).map_err(|error| {
            RoomError::new(ErrorKind::Unavailable, "no_media_server", error.to_string())
        })?;
        let control = controls
            .into_iter()
            .find_map(|(id, control)| (id == choice.node).then_some(control))
            .ok_or_else(|| RoomError::internal("chosen node has no control address"))?;
        Ok(Placement {
            region: region.to_owned(),
            sfu: choice.node.0,
            control,
        })
    }
}

type Reports = (Vec<NodeReport>, Vec<(NodeId, String)>, u64);

/// A fixed list has no reports: each node's load is the rooms placed on it.
async fn fixed_reports(nodes: &[SfuNode], live: &Live) -> RoomResult<Reports> {
    let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    let rooms = live.rooms_on(&ids).await?;
    let now = unix_ms();
    let per_room = PlacementConfig::default().participants_per_room;
    let reports = nodes
        .iter()
        .zip(rooms)
        .map(|(node, rooms)| NodeReport {
            id: NodeId(node.id.clone()),
            region: node.region.clone(),
            zone: String::new(),
            state: NodeState::Serving,
            capacity: u32::MAX,
            participants: u32::try_from(rooms)
                .unwrap_or(u32::MAX)
                .saturating_mul(per_room),
            rooms: u32::try_from(rooms).unwrap_or(u32::MAX),
            reported_at_ms: now,
        })
        .collect();
    let controls = nodes
        .iter()
        .map(|n| (NodeId(n.id.clone()), n.control.clone()))
        .collect();
    Ok((reports, controls, now))
}

/// While the registry is unreachable, time stands still at its last answer: nodes
/// fresh then stay candidates, and rooms placed since still count against them.
fn discovered_reports(snapshot: &Snapshot) -> Reports {
    let now = if snapshot.stale {
        snapshot.refreshed_at_ms
    } else {
        unix_ms()
    };
    let controls = snapshot
        .members
        .iter()
        .map(|m| (m.registration.id.clone(), m.registration.control.clone()))
        .collect();
    (snapshot.reports().collect(), controls, now)
}

#[cfg(test)]
mod tests;
