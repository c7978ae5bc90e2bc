//! Placement: which SFU a new room goes to.
//!
//! A [`Placer`] holds the latest load report of every SFU it has been told about and
//! answers [`Placer::choose`] for a region. It never reads the clock (`now_ms` is
//! passed in), never touches the network and draws its random choices from a seeded
//! generator, so the room service and the operator get the same answers and tests
//! replay exactly.
//!
//! The rules, in order:
//! - a node is a candidate only while it is serving (never draining), its report is at
//!   most [`PlacementConfig::max_report_age_ms`] old, and it has headroom for one more
//!   room's expected participants;
//! - the load of a node is its reported participants plus the expected participants of
//!   every room placed on it since that report (so a burst of joins between two
//!   reports does not all land on the node that looked emptiest);
//! - among the candidates of the requested region, two are drawn at random and the one
//!   with the lower load relative to its capacity wins (power of two choices: close to
//!   least-loaded, without every placer herding onto the same node);
//! - with no candidate in the region, the regions nearest to it are tried in order
//!   ([`Regions`]), then every other region.
//!
//! What this crate does not do: remember which room is where. A room's one home per
//! region is the caller's atomic record (the room service's live store).

mod regions;
mod rng;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use regions::Regions;
use rng::SplitMix64;

/// An SFU's identity: its pod name in Kubernetes, its `--node-id` elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub String);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for NodeId {
    fn from(id: &str) -> Self {
        Self(id.to_owned())
    }
}

/// Whether a node takes new rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    #[default]
    Serving,
    /// Keeps its rooms, takes no new ones.
    Draining,
}

/// What a node says about itself, at `reported_at_ms` (milliseconds since the Unix
/// epoch on the reporter's clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    pub id: NodeId,
    pub region: String,
    #[serde(default)]
    pub zone: String,
    pub state: NodeState,
    /// Participants the node is sized for.
    pub capacity: u32,
    pub participants: u32,
    pub rooms: u32,
    pub reported_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementConfig {
    /// Reports older than this make a node ineligible.
    pub max_report_age_ms: u64,
    /// Participants a newly placed room is expected to bring, counted against its node
    /// until the node's next report.
    pub participants_per_room: u32,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        Self {
            max_report_age_ms: 5_000,
            participants_per_room: 4,
        }
    }
}

/// Where a room goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub node: NodeId,
    /// The node's region: the requested one, or the nearest with capacity.
    pub region: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error(
        "no serving SFU with a fresh load report and free capacity, in `{region}` or any region near it"
    )]
    NoCapacity { region: String },
}

#[derive(Debug, Clone)]
struct Entry {
    report: NodeReport,
    placed_since_report: u32,
}

impl Entry {
    fn load(&self, config: &PlacementConfig) -> u64 {
        u64::from(self.report.participants)
            + u64::from(self.placed_since_report) * u64::from(config.participants_per_room)
    }

    fn eligible(&self, now_ms: u64, config: &PlacementConfig) -> bool {
        self.report.state == NodeState::Serving
            && now_ms.saturating_sub(self.report.reported_at_ms) <= config.max_report_age_ms
            && self.load(config) + u64::from(config.participants_per_room)
                <= u64::from(self.report.capacity)
    }

    /// Load relative to capacity, compared by cross-multiplication (no floats).
    fn lighter_than(&self, other: &Entry, config: &PlacementConfig) -> bool {
        let mine = u128::from(self.load(config)) * u128::from(other.report.capacity);
        let theirs = u128::from(other.load(config)) * u128::from(self.report.capacity);
        mine < theirs || (mine == theirs && self.report.id < other.report.id)
    }
}

/// The placement state machine; see the crate docs.
#[derive(Debug, Clone)]
pub struct Placer {
    config: PlacementConfig,
    regions: Regions,
    nodes: BTreeMap<NodeId, Entry>,
    rng: SplitMix64,
}

impl Placer {
    pub fn new(config: PlacementConfig, regions: Regions, seed: u64) -> Self {
        Self {
            config,
            regions,
            nodes: BTreeMap::new(),
            rng: SplitMix64::new(seed),
        }
    }

    /// Takes a node's report. An older report than the one held is ignored; a newer
    /// one replaces it and clears the rooms counted since.
    pub fn observe(&mut self, report: NodeReport) {
        match self.nodes.get_mut(&report.id) {
            Some(entry) if entry.report.reported_at_ms > report.reported_at_ms => {}
            Some(entry) if entry.report.reported_at_ms == report.reported_at_ms => {
                entry.report = report;
            }
            _ => {
                let id = report.id.clone();
                self.nodes.insert(
                    id,
                    Entry {
                        report,
                        placed_since_report: 0,
                    },
                );
            }
        }
    }

    /// Replaces the known nodes with `reports` (a registry snapshot): nodes missing
    /// from it are gone.
    pub fn observe_all(&mut self, reports: impl IntoIterator<Item = NodeReport>) {
        let mut seen = std::collections::BTreeSet::new();
        for report in reports {
            seen.insert(report.id.clone());
            self.observe(report);
        }
        self.nodes.retain(|id, _| seen.contains(id));
    }

    pub fn forget(&mut self, id: &NodeId) {
        self.nodes.remove(id);
    }

    /// The node's report, if known.
    pub fn report(&self, id: &NodeId) -> Option<&NodeReport> {
        self.nodes.get(id).map(|entry| &entry.report)
    }

    /// Whether `id` would be considered for a new room at `now_ms`.
    pub fn is_eligible(&self, id: &NodeId, now_ms: u64) -> bool {
        self.nodes
            .get(id)
            .is_some_and(|entry| entry.eligible(now_ms, &self.config))
    }

    /// Picks the node for a new room in `region` and counts the room against it.
    pub fn choose(&mut self, region: &str, now_ms: u64) -> Result<Choice, PlacementError> {
        for candidate_region in self.regions.search_order(region, self.known_regions()) {
            if let Some(id) = self.choose_in(&candidate_region, now_ms) {
                if let Some(entry) = self.nodes.get_mut(&id) {
                    entry.placed_since_report += 1;
                }
                return Ok(Choice {
                    node: id,
                    region: candidate_region,
                });
            }
        }
        Err(PlacementError::NoCapacity {
            region: region.to_owned(),
        })
    }

    fn known_regions(&self) -> Vec<String> {
        let mut regions: Vec<String> = self
            .nodes
            .values()
            .map(|entry| entry.report.region.clone())
            .collect();
        regions.sort();
        regions.dedup();
        regions
    }

    fn choose_in(&mut self, region: &str, now_ms: u64) -> Option<NodeId> {
        let candidates: Vec<&Entry> = self
            .nodes
            .values()
            .filter(|entry| entry.report.region == region && entry.eligible(now_ms, &self.config))
            .collect();
        let n = candidates.len() as u64;
        let winner = match candidates.as_slice() {
            [] => return None,
            [only] => only,
            _ => {
                let first = self.rng.below(n);
                let second = (first + 1 + self.rng.below(n - 1)) % n;
                let (a, b) = (candidates[first as usize], candidates[second as usize]);
                if a.lighter_than(b, &self.config) {
                    a
                } else {
                    b
                }
            }
        };
        Some(winner.report.id.clone())
    }
}

#[cfg(test)]
mod tests;
