//! Leader election: replicas compete for a Lease; only its holder reconciles.
//!
//! [`campaign`] takes part in the election (kube-lease-manager: the holder renews the
//! Lease; when it stops, or lets it lapse, another replica takes it). [`while_leading`]
//! runs the controllers for as long as this replica holds the Lease and stops them the
//! moment it does not.

use std::future::Future;

use anyhow::Context as _;
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tracing::{info, warn};

/// The Lease replicas of the operator compete for.
pub const LEASE: &str = "confer-operator";

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// This replica's name in the Lease (the pod name).
    pub identity: String,
    /// How long a Lease not renewed stays held.
    pub duration_secs: u64,
    /// How long before the end of its term the holder renews.
    pub grace_secs: u64,
}

impl LeaseConfig {
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            identity: identity.into(),
            duration_secs: 15,
            grace_secs: 5,
        }
    }
}

/// Makes ring the process's TLS provider for Kubernetes API clients. Two providers
/// are compiled in (kube's ring, the HTTP client's aws-lc-rs) and kube's client does not
/// name one, so without this it panics on its first connection. Idempotent.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Takes part in the election; the receiver turns true while this replica leads. The
/// Lease is given up when the receiver is dropped.
pub async fn campaign(
    client: Client,
    config: &LeaseConfig,
) -> anyhow::Result<watch::Receiver<bool>> {
    let manager = LeaseManagerBuilder::new(client, LEASE)
        .with_namespace(&config.namespace)
        .with_identity(&config.identity)
        .with_duration(config.duration_secs)
        .with_grace(config.grace_secs)
        .build()
        .await
        .context("cannot take part in leader election (Lease)")?;
    let (leading, _task) = manager.watch().await;
    Ok(leading)
}

/// Runs `work` while `leading` is true: started each time leadership is won, told to
/// stop (its argument turns true) and awaited when it is lost. Returns when `work`
/// ends by itself, when `shutdown` fires, or when the election ends.
pub async fn while_leading<W, F>(
    identity: &str,
    mut leading: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
    mut work: W,
) where
    W: FnMut(watch::Receiver<bool>) -> F,
    F: Future<Output = ()>,
{
    loop {
        tokio::select! {
            ended = async { leading.wait_for(|leader| *leader).await.is_err() } => if ended { return },
            () = stopped(shutdown.clone()) => return,
        }
        info!(%identity, "leading: reconciling");
        let (stop, stop_signal) = watch::channel(false);
        let running = work(stop_signal);
        tokio::pin!(running);
        tokio::select! {
            () = &mut running => return,
            ended = async { leading.wait_for(|leader| !*leader).await.is_err() } => {
                warn!(%identity, "lost the lease; another replica reconciles now");
                let _ = stop.send(true);
                running.await;
                if ended {
                    return;
                }
            }
            () = stopped(shutdown.clone()) => {
                let _ = stop.send(true);
                running.await;
                return;
            }
        }
    }
}

pub(crate) async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Counts starts and finished stops of the work.
    #[derive(Default)]
    struct Runs {
        started: AtomicUsize,
        stopped: AtomicUsize,
    }

    async fn eventually(what: &str, done: impl Fn() -> bool) {
        for _ in 0..200 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn work_runs_exactly_while_leading() {
        let (lead, leading) = watch::channel(false);
        let (shutdown, shutdown_signal) = watch::channel(false);
        let runs = Arc::new(Runs::default());
        let counted = runs.clone();
        let election = tokio::spawn(async move {
            while_leading("replica-0", leading, shutdown_signal, |mut stop| {
                let runs = counted.clone();
                async move {
                    runs.started.fetch_add(1, Ordering::SeqCst);
                    let _ = stop.wait_for(|stop| *stop).await;
                    runs.stopped.fetch_add(1, Ordering::SeqCst);
                }
            })
            .await;
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(
            runs.started.load(Ordering::SeqCst),
            0,
            "not leading: no work"
        );

        lead.send_replace(true);
        eventually("the work to start", || {
            runs.started.load(Ordering::SeqCst) == 1
        })
        .await;
        lead.send_replace(false);
        eventually("the work to stop", || {
            runs.stopped.load(Ordering::SeqCst) == 1
        })
        .await;
        lead.send_replace(true);
        eventually("the work to start again", || {
            runs.started.load(Ordering::SeqCst) == 2
        })
        .await;

        shutdown.send_replace(true);
        tokio::time::timeout(Duration::from_secs(1), election)
            .await
            .expect("shutdown ends the election")
            .expect("no panic");
        assert_eq!(
            runs.stopped.load(Ordering::SeqCst),
            2,
            "stopped before returning"
        );
    }
}
