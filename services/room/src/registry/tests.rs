use confer_discovery::{MemoryRegistry, Registration};

use super::*;
use crate::live::MemoryLive;

#[test]
fn node_specs_parse() {
    let node = SfuNode::parse("sfu-a@eu=10.0.0.1:7881").expect("parses");
    assert_eq!(node.id, "sfu-a");
    assert_eq!(node.region, "eu");
    assert_eq!(node.control, "10.0.0.1:7881");
    assert!(SfuNode::parse("sfu-a=10.0.0.1:7881").is_err());
    assert!(SfuNode::parse("@eu=x").is_err());
}

#[tokio::test]
async fn a_fixed_list_places_by_rooms_and_falls_back_to_any_region() {
    let live = Live::Memory(MemoryLive::default());
    let registry = SfuRegistry::new(vec![
        SfuNode::parse("a@eu=x:1").expect("a"),
        SfuNode::parse("b@us=y:1").expect("b"),
    ]);
    let eu = registry.choose("eu", &live).await.expect("eu");
    assert_eq!((eu.sfu.as_str(), eu.control.as_str()), ("a", "x:1"));
    let ap = registry.choose("ap", &live).await.expect("fallback");
    assert_eq!(
        ap.region, "ap",
        "the placement is the room's home for the asked region"
    );
    let empty = SfuRegistry::default().choose("eu", &live).await;
    assert_eq!(
        empty.map_err(|e| e.code).err(),
        Some("no_media_server".to_owned())
    );
}

fn registration(id: &str) -> Registration {
    Registration {
        id: NodeId::from(id),
        region: "eu".into(),
        zone: String::new(),
        control: format!("{id}:7881"),
        capacity: 100,
    }
}

fn report(id: &str, state: NodeState, participants: u32, at: u64) -> NodeReport {
    NodeReport {
        id: NodeId::from(id),
        region: "eu".into(),
        zone: String::new(),
        state,
        capacity: 100,
        participants,
        rooms: 0,
        reported_at_ms: at,
    }
}

#[tokio::test]
async fn discovered_nodes_are_chosen_by_load_never_draining() {
    let live = Live::Memory(MemoryLive::default());
    let discovery = MemoryRegistry::new();
    for id in ["busy", "idle", "draining"] {
        discovery.register(&registration(id)).expect("register");
    }
    let now = unix_ms();
    discovery
        .report(&report("busy", NodeState::Serving, 80, now))
        .expect("report");
    discovery
        .report(&report("idle", NodeState::Serving, 0, now))
        .expect("report");
    discovery
        .report(&report("draining", NodeState::Draining, 0, now))
        .expect("report");
    let registry = SfuRegistry::discovered(discovery.watch(), Regions::default());
    let mut chosen = std::collections::BTreeMap::<String, u32>::new();
    for _ in 0..12 {
        let placement = registry.choose("eu", &live).await.expect("capacity");
        assert_eq!(placement.control, format!("{}:7881", placement.sfu));
        *chosen.entry(placement.sfu).or_default() += 1;
    }
    assert!(!chosen.contains_key("draining"), "{chosen:?}");
    assert!(
        chosen["idle"] > chosen.get("busy").copied().unwrap_or(0),
        "{chosen:?}"
    );
}

#[tokio::test]
async fn a_stale_registry_keeps_placing_on_its_last_answer() {
    let live = Live::Memory(MemoryLive::default());
    let old = unix_ms() - 60_000;
    let member = |id: &str| confer_discovery::Member {
        registration: registration(id),
        health: confer_discovery::Health::Serving,
        report: Some(report(id, NodeState::Serving, 0, old)),
    };
    let (sender, snapshots) = watch::channel(Snapshot {
        members: vec![member("a")],
        stale: false,
        refreshed_at_ms: old,
    });
    let registry = SfuRegistry::discovered(snapshots, Regions::default());
    assert!(
        registry.choose("eu", &live).await.is_err(),
        "a minute-old report from a reachable registry: the node is gone"
    );
    sender.send_modify(|snapshot| snapshot.stale = true);
    assert!(registry.is_stale());
    let placement = registry
        .choose("eu", &live)
        .await
        .expect("last known snapshot");
    assert_eq!(placement.sfu, "a");
}
