//! How an SFU keeps itself in the registry: register, report every
//! [`REPORT_INTERVAL`], register again if the registry forgot it, deregister on the way
//! out.

use std::future::Future;
use std::time::Duration;

use tracing::{info, warn};

use crate::{DiscoveryError, NodeReport, Registration, Registry};

/// How often a node reports; placers ignore reports older than 5 s.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(2);

/// Runs until `shutdown` resolves, then deregisters. `report` is asked for the node's
/// current state and load before each report.
pub async fn announce<F, R>(
    registry: Registry,
    registration: Registration,
    mut report: F,
    shutdown: impl Future<Output = ()>,
) where
    F: FnMut() -> R,
    R: Future<Output = NodeReport>,
{
    tokio::pin!(shutdown);
    let mut registered = false;
    let mut ticker = tokio::time::interval(REPORT_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = ticker.tick() => {}
        }
        if !registered {
            match registry.register(&registration).await {
                Ok(()) => {
                    info!(node = %registration.id, region = %registration.region, "registered for placement");
                    registered = true;
                }
                Err(error) => {
                    warn!(%error, "registration failed; retrying");
                    continue;
                }
            }
        }
        let current = report().await;
        match registry.report(&current).await {
            Ok(()) => {}
            Err(DiscoveryError::NotRegistered(_)) => {
                warn!("the registry forgot this node; registering again");
                registered = false;
                ticker.reset_immediately();
            }
            Err(error) => warn!(%error, "load report failed"),
        }
    }
    let deregistered = tokio::time::timeout(
        Duration::from_secs(2),
        registry.deregister(&registration.id),
    )
    .await;
    match deregistered {
        Ok(Ok(())) => info!(node = %registration.id, "deregistered"),
        Ok(Err(error)) => warn!(%error, "deregistration failed; the registry expires the node"),
        Err(_) => warn!("deregistration timed out; the registry expires the node"),
    }
}
