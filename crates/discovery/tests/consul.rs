//! The Consul registry against the Consul test double (no Consul binary runs here):
//! registration, heartbeats and load, health states, blocking-query index handling,
//! an outage, and an agent that forgets a node.

use std::time::Duration;

use confer_consul_double::{CheckStatus, ConsulDouble};
use confer_discovery::{
    ConsulRegistry, Health, NodeId, NodeReport, NodeState, Registration, Registry, Snapshot,
    announce, unix_ms,
};
use tokio::sync::watch;

fn registration(id: &str, region: &str) -> Registration {
    Registration {
        id: NodeId::from(id),
        region: region.to_owned(),
        zone: "a".to_owned(),
        control: "10.0.0.7:7881".to_owned(),
        capacity: 200,
    }
}

fn report(id: &str, region: &str, state: NodeState, participants: u32) -> NodeReport {
    NodeReport {
        id: NodeId::from(id),
        region: region.to_owned(),
        zone: "a".to_owned(),
        state,
        capacity: 200,
        participants,
        rooms: participants / 4,
        reported_at_ms: unix_ms(),
    }
}

async fn until(
    snapshots: &mut watch::Receiver<Snapshot>,
    what: &str,
    done: impl Fn(&Snapshot) -> bool,
) -> Snapshot {
    let waited = tokio::time::timeout(Duration::from_secs(10), snapshots.wait_for(|s| done(s)))
        .await
        .map(|found| found.map(|s| s.clone()));
    match waited {
        Ok(Ok(snapshot)) => snapshot,
        _ => panic!(
            "timed out waiting for {what}; last snapshot {:?}",
            *snapshots.borrow()
        ),
    }
}

async fn setup() -> (ConsulDouble, Registry) {
    let consul = ConsulDouble::start_with_max_wait(Duration::from_millis(300))
        .await
        .expect("double starts");
    let registry = Registry::Consul(ConsulRegistry::new(&consul.url(), None).expect("client"));
    (consul, registry)
}

#[tokio::test]
async fn registered_nodes_their_load_and_state_reach_every_watcher() {
    let (consul, registry) = setup().await;
    let mut snapshots = registry.watch();
    registry
        .register(&registration("sfu-0", "eu"))
        .await
        .expect("register");
    registry
        .register(&registration("sfu-1", "us"))
        .await
        .expect("register");
    registry
        .report(&report("sfu-0", "eu", NodeState::Serving, 12))
        .await
        .expect("report");
    registry
        .report(&report("sfu-1", "us", NodeState::Draining, 3))
        .await
        .expect("report");
    let snapshot = until(&mut snapshots, "both reports", |s| s.reports().count() == 2).await;
    let eu = snapshot.member(&"sfu-0".into()).expect("sfu-0");
    assert_eq!(eu.health, Health::Serving);
    assert_eq!(eu.registration, registration("sfu-0", "eu"));
    assert_eq!(eu.report.as_ref().map(|r| r.participants), Some(12));
    let us = snapshot.member(&"sfu-1".into()).expect("sfu-1");
    assert_eq!(us.health, Health::Draining, "warning check = draining");
    assert_eq!(
        consul.check_status("confer-sfu:sfu-1"),
        Some(CheckStatus::Warning)
    );
    assert!(!snapshot.stale);
    assert!(
        consul.blocking_queries() > 0,
        "the watch uses blocking queries"
    );

    // A critical check (a node that missed its TTL) takes the node out.
    confer_http::client()
        .expect("an HTTP client")
        .put(format!(
            "{}/v1/agent/check/update/confer-sfu:sfu-0",
            consul.url()
        ))
        .body(r#"{"Status":"critical","Output":"TTL expired"}"#)
        .send()
        .await
        .expect("update");
    let snapshot = until(&mut snapshots, "sfu-0 gone", |s| {
        s.member(&"sfu-0".into())
            .is_some_and(|m| m.health == Health::Gone)
    })
    .await;
    assert!(snapshot.reports().all(|r| r.id != NodeId::from("sfu-0")));

    registry
        .deregister(&"sfu-1".into())
        .await
        .expect("deregister");
    until(&mut snapshots, "sfu-1 deregistered", |s| {
        s.member(&"sfu-1".into()).is_none()
    })
    .await;
}

#[tokio::test]
async fn an_index_that_goes_backwards_restarts_the_watch() {
    let (consul, registry) = setup().await;
    let mut snapshots = registry.watch();
    registry
        .register(&registration("sfu-0", "eu"))
        .await
        .expect("register");
    registry
        .report(&report("sfu-0", "eu", NodeState::Serving, 1))
        .await
        .expect("report");
    until(&mut snapshots, "first report", |s| s.reports().count() == 1).await;
    // Many writes, then a restore puts the index far below what the watch holds.
    for participants in 2..30 {
        registry
            .report(&report("sfu-0", "eu", NodeState::Serving, participants))
            .await
            .expect("report");
    }
    until(&mut snapshots, "latest report", |s| {
        s.reports().any(|r| r.participants == 29)
    })
    .await;
    consul.restore_older_index();
    registry
        .register(&registration("sfu-1", "eu"))
        .await
        .expect("register");
    registry
        .report(&report("sfu-1", "eu", NodeState::Serving, 5))
        .await
        .expect("report");
    until(
        &mut snapshots,
        "the node registered after the restore",
        |s| s.reports().any(|r| r.id == NodeId::from("sfu-1")),
    )
    .await;
}

#[tokio::test]
async fn an_outage_keeps_the_last_snapshot_marked_stale() {
    let (consul, registry) = setup().await;
    let mut snapshots = registry.watch();
    registry
        .register(&registration("sfu-0", "eu"))
        .await
        .expect("register");
    registry
        .report(&report("sfu-0", "eu", NodeState::Serving, 7))
        .await
        .expect("report");
    until(&mut snapshots, "report", |s| s.reports().count() == 1).await;

    consul.set_available(false);
    let stale = until(&mut snapshots, "stale", |s| s.stale).await;
    assert_eq!(
        stale.reports().map(|r| r.participants).collect::<Vec<_>>(),
        vec![7]
    );
    let metrics = confer_discovery::metrics::render(&stale, unix_ms());
    assert!(metrics.contains("confer_discovery_stale 1\n"), "{metrics}");
    assert!(
        registry
            .report(&report("sfu-0", "eu", NodeState::Serving, 8))
            .await
            .is_err(),
        "writes fail during the outage"
    );

    consul.set_available(true);
    registry
        .report(&report("sfu-0", "eu", NodeState::Serving, 9))
        .await
        .expect("report after the outage");
    let fresh = until(&mut snapshots, "fresh again", |s| {
        !s.stale && s.reports().any(|r| r.participants == 9)
    })
    .await;
    assert!(fresh.refreshed_at_ms >= stale.refreshed_at_ms);
    let metrics = confer_discovery::metrics::render(&fresh, unix_ms());
    assert!(metrics.contains("confer_discovery_stale 0\n"), "{metrics}");
}

#[tokio::test]
async fn an_announcing_node_registers_again_when_the_agent_forgets_it() {
    let (consul, registry) = setup().await;
    let mut snapshots = registry.watch();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(announce(
        registry.clone(),
        registration("sfu-0", "eu"),
        || async { report("sfu-0", "eu", NodeState::Serving, 4) },
        async {
            let _ = stopped.await;
        },
    ));
    until(&mut snapshots, "announced", |s| s.reports().count() == 1).await;
    assert_eq!(
        consul.check_status("confer-sfu:sfu-0"),
        Some(CheckStatus::Passing)
    );

    confer_http::client()
        .expect("an HTTP client")
        .put(format!(
            "{}/v1/agent/service/deregister/sfu-0",
            consul.url()
        ))
        .send()
        .await
        .expect("deregister behind the node's back");
    until(&mut snapshots, "forgotten", |s| s.members.is_empty()).await;
    until(&mut snapshots, "registered again", |s| {
        s.member(&"sfu-0".into())
            .is_some_and(|m| m.health == Health::Serving)
    })
    .await;

    stop.send(()).expect("announcer running");
    task.await.expect("announcer ends");
    assert!(consul.services().is_empty(), "deregistered on the way out");
}
