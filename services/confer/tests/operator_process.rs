//! `confer operator` as its own process, against the Kubernetes API test double
//! through a kubeconfig, as in a cluster: it builds its real kube client, takes part in
//! leader election, wins the Lease under its identity and keeps it, serves `/metrics`,
//! and stays up while its controllers watch a cluster with nothing declared yet and its
//! Consul and room service are unreachable.

mod support;

use std::time::{Duration, Instant};

use confer_kube_double::KubeDouble;
use support::{free_port, spawn, wait_listening};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_binary_wins_the_lease_and_serves_metrics() -> anyhow::Result<()> {
    let double = KubeDouble::start().await?;
    let dir = std::env::temp_dir().join(format!("confer-operator-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, double.kubeconfig("confer"))?;
    let metrics = format!("127.0.0.1:{}", free_port()?);
    let unreachable = format!("127.0.0.1:{}", free_port()?);
    let mut operator = spawn(
        &[
            "operator",
            "--consul-addr",
            &format!("http://{unreachable}"),
            "--room-service",
            &unreachable,
            "--sfu-image",
            "confer:test",
            "--metrics-listen",
            &metrics,
            "--lease-namespace",
            "confer",
            "--identity",
            "operator-0",
        ],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap_or_default())],
    )?;

    let deadline = Instant::now() + Duration::from_secs(20);
    while double.holder("confer", "confer-operator").as_deref() != Some("operator-0") {
        anyhow::ensure!(
            operator.try_wait()?.is_none(),
            "the operator exited before taking the Lease"
        );
        anyhow::ensure!(
            Instant::now() < deadline,
            "the operator never took the Lease"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_listening(metrics.parse()?)?;
    let page = confer_http::client()?
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await?;
    assert!(page.status().is_success(), "{}", page.status());
    // Still up, still the holder, a few seconds on.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(operator.try_wait()?.is_none(), "the operator exited");
    assert_eq!(
        double.holder("confer", "confer-operator").as_deref(),
        Some("operator-0")
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
