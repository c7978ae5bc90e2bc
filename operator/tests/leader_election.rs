//! Leader election against a loopback emulation of the Kubernetes Lease API: two
//! operator replicas campaign for the `confer-operator` Lease through the real kube
//! client and kube-lease-manager; one leads, the other waits; when the leader gives
//! the Lease up, the other takes it within a Lease term.
//!
//! No package here ships a Kubernetes API server: `confer-kube-double` serves the Lease
//! endpoints the election uses. Replicas that start together race for an orphaned
//! Lease; one ends up leading.

use std::time::{Duration, Instant};

use confer_kube_double::KubeDouble;
use confer_operator::leader::{self, LEASE, LeaseConfig};
use tokio::sync::watch;

async fn emulator() -> anyhow::Result<(kube::Client, KubeDouble)> {
    let double = KubeDouble::start().await?;
    leader::install_tls_provider();
    let client = kube::Client::try_from(kube::Config::new(double.url().parse()?))?;
    Ok((client, double))
}

fn short_terms(identity: &str) -> LeaseConfig {
    LeaseConfig {
        duration_secs: 2,
        grace_secs: 1,
        ..LeaseConfig::new("confer", identity)
    }
}

async fn until_leading(
    leading: &mut watch::Receiver<bool>,
    within: Duration,
) -> anyhow::Result<()> {
    tokio::time::timeout(within, leading.wait_for(|leader| *leader))
        .await
        .map_err(|_| anyhow::anyhow!("not leading within {within:?}"))??;
    Ok(())
}

fn holder(double: &KubeDouble) -> Option<String> {
    double.holder("confer", LEASE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_the_other_takes_over_when_it_stops() -> anyhow::Result<()> {
    let (client, leases) = emulator().await?;
    let mut a = leader::campaign(client.clone(), &short_terms("replica-a")).await?;
    until_leading(&mut a, Duration::from_secs(5)).await?;
    assert_eq!(holder(&leases).as_deref(), Some("replica-a"));

    // A second replica campaigns while the first holds and renews the Lease: it never
    // leads, over more than two Lease terms.
    let mut b = leader::campaign(client.clone(), &short_terms("replica-b")).await?;
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(5) {
        assert!(!*b.borrow(), "two leaders at once");
        assert!(*a.borrow(), "the holder lost a Lease it renews");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(holder(&leases).as_deref(), Some("replica-a"));

    // The leader stops (its campaign ends and gives the Lease up): the other leads.
    drop(a);
    until_leading(&mut b, Duration::from_secs(6)).await?;
    assert_eq!(holder(&leases).as_deref(), Some("replica-b"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_get_one_leader() -> anyhow::Result<()> {
    let (client, leases) = emulator().await?;
    let terms = [
        short_terms("replica-a"),
        short_terms("replica-b"),
        short_terms("replica-c"),
    ];
    let (a, b, c) = tokio::join!(
        leader::campaign(client.clone(), &terms[0]),
        leader::campaign(client.clone(), &terms[1]),
        leader::campaign(client.clone(), &terms[2]),
    );
    let replicas = [a?, b?, c?];
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut led_by = None;
    while Instant::now() < deadline {
        let leading: Vec<usize> = (0..3).filter(|&i| *replicas[i].borrow()).collect();
        assert!(leading.len() <= 1, "several leaders at once: {leading:?}");
        if let Some(&one) = leading.first() {
            assert!(
                led_by.is_none_or(|before| before == one),
                "leadership moved while its holder renewed it"
            );
            led_by = Some(one);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let one = led_by.ok_or_else(|| anyhow::anyhow!("nobody leads"))?;
    let names = ["replica-a", "replica-b", "replica-c"];
    assert_eq!(holder(&leases).as_deref(), Some(names[one]));
    Ok(())
}
