use proptest::prelude::*;

use super::*;

fn report(id: &str, region: &str, participants: u32, at: u64) -> NodeReport {
    NodeReport {
        id: id.into(),
        region: region.to_owned(),
        zone: String::new(),
        state: NodeState::Serving,
        capacity: 100,
        participants,
        rooms: 0,
        reported_at_ms: at,
    }
}

fn placer() -> Placer {
    Placer::new(PlacementConfig::default(), Regions::default(), 7)
}

#[test]
fn the_lighter_of_two_nodes_wins() {
    let mut placer = placer();
    placer.observe(report("a", "eu", 60, 1_000));
    placer.observe(report("b", "eu", 10, 1_000));
    let choice = placer.choose("eu", 1_000).expect("capacity");
    assert_eq!(choice.node, NodeId::from("b"));
    assert_eq!(choice.region, "eu");
}

#[test]
fn rooms_placed_since_the_last_report_count_as_load() {
    let mut placer = placer();
    placer.observe(report("a", "eu", 0, 1_000));
    placer.observe(report("b", "eu", 6, 1_000));
    // a: 0, then 4, then 8 (> b's 6): the third room goes to b.
    let picks: Vec<NodeId> = (0..3)
        .map(|_| placer.choose("eu", 1_000).expect("capacity").node)
        .collect();
    assert_eq!(picks, vec!["a".into(), "a".into(), "b".into()]);
    // A newer report replaces the estimate.
    placer.observe(report("a", "eu", 0, 2_000));
    assert_eq!(
        placer.choose("eu", 2_000).expect("capacity").node,
        "a".into()
    );
}

#[test]
fn stale_draining_and_full_nodes_are_never_chosen() {
    let mut placer = placer();
    placer.observe(report("stale", "eu", 0, 1_000));
    placer.observe(NodeReport {
        state: NodeState::Draining,
        ..report("draining", "eu", 0, 7_000)
    });
    placer.observe(report("full", "eu", 97, 7_000));
    assert!(!placer.is_eligible(&"stale".into(), 6_001));
    assert!(placer.is_eligible(&"stale".into(), 6_000));
    assert_eq!(
        placer.choose("eu", 7_000),
        Err(PlacementError::NoCapacity {
            region: "eu".to_owned()
        })
    );
}

#[test]
fn an_older_report_does_not_replace_a_newer_one() {
    let mut placer = placer();
    placer.observe(report("a", "eu", 50, 2_000));
    placer.observe(report("a", "eu", 0, 1_000));
    assert_eq!(placer.report(&"a".into()).map(|r| r.participants), Some(50));
}

#[test]
fn a_full_region_falls_back_to_the_nearest_with_capacity() {
    let regions = Regions::parse("eu-west=eu-central,us-east").expect("spec");
    let mut placer = Placer::new(PlacementConfig::default(), regions, 1);
    placer.observe(report("west", "eu-west", 100, 1_000));
    placer.observe(report("us", "us-east", 0, 1_000));
    placer.observe(report("central", "eu-central", 50, 1_000));
    placer.observe(report("ap", "ap-south", 0, 1_000));
    let choice = placer.choose("eu-west", 1_000).expect("capacity");
    assert_eq!(choice.node, "central".into());
    assert_eq!(choice.region, "eu-central");
    // Unlisted regions fall back to every known region.
    let choice = placer.choose("sa-east", 1_000).expect("capacity");
    assert!(["us", "central", "ap"].contains(&choice.node.0.as_str()));
}

#[test]
fn a_snapshot_forgets_nodes_it_no_longer_holds() {
    let mut placer = placer();
    placer.observe(report("a", "eu", 0, 1_000));
    placer.observe_all([report("b", "eu", 0, 1_000)]);
    assert!(placer.report(&"a".into()).is_none());
    assert_eq!(placer.choose("eu", 1_000).expect("b").node, "b".into());
}

#[test]
fn region_specs_are_checked() {
    assert!(Regions::parse("eu=us;eu=ap").is_err());
    assert!(Regions::parse("=us").is_err());
    assert!(Regions::parse("eu").is_err());
    let regions = Regions::parse(" eu = us , ap ; us=eu ").expect("spec");
    assert_eq!(
        regions.search_order("eu", vec!["ap".into(), "eu".into(), "sa".into()]),
        vec!["eu", "us", "ap", "sa"]
    );
}

fn arb_report(n_nodes: usize) -> impl Strategy<Value = NodeReport> {
    (
        0..n_nodes,
        prop::sample::select(vec!["eu", "us", "ap"]),
        any::<bool>(),
        1u32..200,
        0u32..220,
        0u64..20_000,
    )
        .prop_map(
            |(i, region, draining, capacity, participants, at)| NodeReport {
                id: NodeId(format!("n{i}")),
                region: region.to_owned(),
                zone: String::new(),
                state: if draining {
                    NodeState::Draining
                } else {
                    NodeState::Serving
                },
                capacity,
                participants,
                rooms: 0,
                reported_at_ms: at,
            },
        )
}

#[derive(Debug, Clone)]
enum Step {
    Report(NodeReport),
    Place {
        region: &'static str,
        advance_ms: u64,
    },
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        arb_report(8).prop_map(Step::Report),
        (prop::sample::select(vec!["eu", "us", "ap"]), 0u64..3_000)
            .prop_map(|(region, advance_ms)| Step::Place { region, advance_ms }),
    ]
}

proptest! {
    /// Whatever the reports, a chosen node was serving, fresh and had room for one more
    /// room's participants counting every room placed on it since its report; and a
    /// refusal means no node anywhere qualified.
    #[test]
    fn never_over_capacity_stale_or_draining(
        steps in prop::collection::vec(arb_step(), 1..80),
        seed in any::<u64>(),
    ) {
        let config = PlacementConfig::default();
        let mut placer = Placer::new(config.clone(), Regions::default(), seed);
        let mut now = 10_000u64;
        let mut placed: BTreeMap<NodeId, u32> = BTreeMap::new();
        for step in steps {
            match step {
                Step::Report(report) => {
                    let newer = placer
                        .report(&report.id)
                        .is_none_or(|held| held.reported_at_ms < report.reported_at_ms);
                    if newer {
                        placed.remove(&report.id);
                    }
                    placer.observe(report);
                }
                Step::Place { region, advance_ms } => {
                    now += advance_ms;
                    let before = placer.clone();
                    match placer.choose(region, now) {
                        Ok(choice) => {
                            let report = before.report(&choice.node).expect("known node").clone();
                            let earlier = placed.get(&choice.node).copied().unwrap_or(0);
                            prop_assert_eq!(report.state, NodeState::Serving);
                            prop_assert!(now - report.reported_at_ms.min(now) <= config.max_report_age_ms);
                            let load = u64::from(report.participants)
                                + u64::from(earlier + 1) * u64::from(config.participants_per_room);
                            prop_assert!(load <= u64::from(report.capacity));
                            prop_assert_eq!(&choice.region, &report.region);
                            *placed.entry(choice.node).or_default() += 1;
                        }
                        Err(_) => {
                            for id in before.nodes.keys() {
                                prop_assert!(!before.is_eligible(id, now));
                            }
                        }
                    }
                }
            }
        }
    }

    /// With equal nodes and no reports in between, rooms spread evenly: no node gets
    /// more than three rooms above the average.
    #[test]
    fn load_spreads_across_nodes(n_nodes in 2usize..24, rooms_per_node in 1usize..12, seed in any::<u64>()) {
        let config = PlacementConfig { participants_per_room: 1, ..PlacementConfig::default() };
        let mut placer = Placer::new(config, Regions::default(), seed);
        for i in 0..n_nodes {
            placer.observe(NodeReport { capacity: 10_000, ..report(&format!("n{i}"), "eu", 0, 1_000) });
        }
        let n_rooms = n_nodes * rooms_per_node;
        let mut counts: BTreeMap<NodeId, usize> = BTreeMap::new();
        for _ in 0..n_rooms {
            let choice = placer.choose("eu", 1_000).expect("capacity");
            *counts.entry(choice.node).or_default() += 1;
        }
        let max = counts.values().copied().max().unwrap_or(0);
        prop_assert!(max <= rooms_per_node + 3, "max {} with {} per node", max, rooms_per_node);
    }
}
