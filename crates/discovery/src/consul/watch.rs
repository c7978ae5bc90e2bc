//! Blocking queries on the health and KV endpoints, combined into [`Snapshot`]s.
//!
//! Index handling follows Consul's rules for blocking queries: pass the last
//! `X-Consul-Index` back; if it goes backwards (a server restored from a snapshot),
//! start again from 0; never pass an index below 1 after the first answer; and do not
//! loop faster than every 50 ms when the index does not move. On an error the last
//! snapshot stays, marked stale, and the query retries with jittered backoff.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::wire::{KvEntry, ServiceEntry};
use super::{ConsulRegistry, LOAD_PREFIX, SERVICE};
use crate::{
    DiscoveryError, Health, Member, NodeId, NodeReport, Registration, Result, Snapshot, unix_ms,
};

/// How long one blocking query may wait on the server.
const WAIT: &str = "30s";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(40);
const MIN_LOOP: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Default)]
struct State {
    members: Option<Vec<(Registration, Health)>>,
    loads: BTreeMap<NodeId, NodeReport>,
    health_failing: bool,
    kv_failing: bool,
    refreshed_at_ms: u64,
}

impl State {
    fn snapshot(&self) -> Snapshot {
        let members = self
            .members
            .iter()
            .flatten()
            .map(|(registration, health)| Member {
                report: self.loads.get(&registration.id).cloned(),
                registration: registration.clone(),
                health: *health,
            })
            .collect();
        Snapshot {
            members,
            stale: self.health_failing || self.kv_failing,
            refreshed_at_ms: self.refreshed_at_ms,
        }
    }
}

type Shared = Arc<(Mutex<State>, watch::Sender<Snapshot>)>;

fn update(shared: &Shared, change: impl FnOnce(&mut State)) {
    let (state, sender) = &**shared;
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    change(&mut state);
    sender.send_replace(state.snapshot());
}

pub(super) fn start(registry: ConsulRegistry) -> watch::Receiver<Snapshot> {
    let (sender, receiver) = watch::channel(Snapshot::default());
    let shared: Shared = Arc::new((Mutex::new(State::default()), sender));
    tokio::spawn(follow(registry.clone(), shared.clone(), Query::Health));
    tokio::spawn(follow(registry, shared, Query::Load));
    receiver
}

#[derive(Clone, Copy, Debug)]
enum Query {
    Health,
    Load,
}

/// Follows one endpoint until nobody watches any more.
async fn follow(registry: ConsulRegistry, shared: Shared, query: Query) {
    let mut index = 0u64;
    let mut backoff = Duration::from_millis(250);
    loop {
        if shared.1.is_closed() {
            return;
        }
        let started = Instant::now();
        match fetch(&registry, query, index).await {
            Ok((next, body)) => {
                backoff = Duration::from_millis(250);
                let moved = next != index;
                index = next_index(index, next);
                let applied = apply(&shared, query, &body);
                if let Err(error) = applied {
                    warn!(?query, %error, "consul answer ignored");
                }
                if !moved && started.elapsed() < MIN_LOOP {
                    tokio::time::sleep(MIN_LOOP).await;
                }
            }
            Err(error) => {
                warn!(?query, %error, "consul unreachable; keeping the last snapshot");
                update(&shared, |state| match query {
                    Query::Health => state.health_failing = true,
                    Query::Load => state.kv_failing = true,
                });
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// The index to pass next, by Consul's rules.
fn next_index(previous: u64, answered: u64) -> u64 {
    if answered < previous {
        debug!(
            previous,
            answered, "consul index went backwards; starting over"
        );
        return 0;
    }
    answered.max(1)
}

fn jitter(base: Duration) -> Duration {
    base.mul_f64(0.5 + rand::random::<f64>())
}

async fn fetch(registry: &ConsulRegistry, query: Query, index: u64) -> Result<(u64, Vec<u8>)> {
    let path = match query {
        Query::Health => format!("/v1/health/service/{SERVICE}?index={index}&wait={WAIT}"),
        Query::Load => format!("/v1/kv/{LOAD_PREFIX}?recurse=true&index={index}&wait={WAIT}"),
    };
    let response = registry
        .request(reqwest::Method::GET, &path)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await?;
    let status = response.status();
    let next = response
        .headers()
        .get("X-Consul-Index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or(DiscoveryError::Malformed {
            what: "blocking query",
            detail: "no X-Consul-Index header".into(),
        })?;
    // An empty KV prefix is a 404 with an index: no reports.
    if matches!(query, Query::Load) && status == reqwest::StatusCode::NOT_FOUND {
        return Ok((next, b"[]".to_vec()));
    }
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(DiscoveryError::Status {
            what: "blocking query",
            status: status.as_u16(),
            body: body.chars().take(200).collect(),
        });
    }
    Ok((next, response.bytes().await?.to_vec()))
}

fn apply(shared: &Shared, query: Query, body: &[u8]) -> Result<()> {
    let malformed = |detail: String| DiscoveryError::Malformed {
        what: "blocking query",
        detail,
    };
    match query {
        Query::Health => {
            let entries: Vec<ServiceEntry> =
                serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
            let members = entries.iter().filter_map(ServiceEntry::member).collect();
            update(shared, |state| {
                state.members = Some(members);
                state.health_failing = false;
                state.refreshed_at_ms = unix_ms();
            });
        }
        Query::Load => {
            let entries: Vec<KvEntry> =
                serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
            let loads = entries.iter().filter_map(load_report).collect();
            update(shared, |state| {
                state.loads = loads;
                state.kv_failing = false;
                state.refreshed_at_ms = unix_ms();
            });
        }
    }
    Ok(())
}

/// A KV entry's report, if it is one (a node's own key, a JSON report of that node).
fn load_report(entry: &KvEntry) -> Option<(NodeId, NodeReport)> {
    let id = entry.key.strip_prefix(LOAD_PREFIX)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(entry.value.as_deref()?)
        .ok()?;
    let report: NodeReport = serde_json::from_slice(&bytes).ok()?;
    (report.id.0 == id).then(|| (report.id.clone(), report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_never_goes_backwards_or_below_one() {
        assert_eq!(next_index(0, 0), 1);
        assert_eq!(next_index(5, 9), 9);
        assert_eq!(next_index(9, 9), 9);
        assert_eq!(next_index(9, 3), 0);
    }

    #[test]
    fn load_entries_must_name_their_own_node() {
        let report = |id: &str| {
            let json = format!(
                r#"{{"id":"{id}","region":"eu","state":"serving","capacity":1,"participants":0,"rooms":0,"reported_at_ms":1}}"#
            );
            base64::engine::general_purpose::STANDARD.encode(json)
        };
        let entry = |key: &str, value: Option<String>| KvEntry {
            key: key.to_owned(),
            value,
        };
        assert!(load_report(&entry("confer/sfu-load/a", Some(report("a")))).is_some());
        assert!(load_report(&entry("confer/sfu-load/a", Some(report("b")))).is_none());
        assert!(load_report(&entry("confer/sfu-load/a", None)).is_none());
        assert!(load_report(&entry("other/a", Some(report("a")))).is_none());
        assert!(load_report(&entry("confer/sfu-load/a", Some("!!".into()))).is_none());
    }
    /// One serving SFU, as Consul's health endpoint lists it.
    const HEALTHY: &str = r#"[{"Service":{"ID":"sfu-0","Meta":{"region":"eu","control":"http://sfu-0:7000","capacity":"100"}},"Checks":[{"Status":"passing"}]}]"#;

    fn arbitrary_body() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            // JSON-shaped: arrays of objects with Consul's field names, in any state.
            r#"\[(\{("Service"|"Checks"|"Key"|"Value"|"ID"|"Meta"|[a-z]{1,3})?:?[\[\]{}",:0-9a-z]{0,40}\}?,?){0,4}\]?"#
                .prop_map(String::into_bytes),
        ]
    }

    proptest::proptest! {
        /// Consul's answers come from the network: whatever a body holds, it is taken
        /// whole or refused as malformed, and a refused one leaves the snapshot as it
        /// was (the last good members stay).
        #[test]
        fn a_body_is_taken_whole_or_refused_leaving_the_snapshot(
            body in arbitrary_body(),
            health in proptest::prelude::any::<bool>(),
        ) {
            let (sender, receiver) = watch::channel(Snapshot::default());
            let shared: Shared = Arc::new((Mutex::new(State::default()), sender));
            proptest::prop_assert!(apply(&shared, Query::Health, HEALTHY.as_bytes()).is_ok());
            let before = receiver.borrow().clone();
            proptest::prop_assert_eq!(before.members.len(), 1);
            let query = if health { Query::Health } else { Query::Load };
            match apply(&shared, query, &body) {
                Err(DiscoveryError::Malformed { .. }) => {
                    proptest::prop_assert_eq!(&*receiver.borrow(), &before);
                }
                Err(other) => proptest::prop_assert!(false, "not a malformed answer: {other}"),
                Ok(()) => {}
            }
        }
    }
}
