//! The SFUs this gateway talks to: the in-process one (`confer dev`) or, for each
//! placement the room service hands out, a gRPC client made on first use. Each SFU's
//! event stream is relayed to this gateway's sessions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use confer_proto::tls::GrpcTls;
use confer_room::model::Placement;
use confer_sfu::{SfuApi, SfuError, grpc::GrpcSfu};

use crate::AppState;

/// Control address of the in-process SFU in placements.
pub const LOCAL_SFU: &str = "local";

/// An SFU whose events could not be watched for this long is forgotten: the next
/// placement naming it connects afresh. Sessions still on it keep their handle.
const GONE_AFTER: Duration = Duration::from_secs(600);

pub struct SfuDirectory {
    local: Option<Arc<dyn SfuApi>>,
    remote: Mutex<HashMap<String, Arc<GrpcSfu>>>,
    /// How SFUs' control APIs are reached: over mutual TLS, or plaintext.
    tls: Option<GrpcTls>,
}

impl SfuDirectory {
    /// SFUs reached over gRPC only, over mutual TLS with `tls`.
    pub fn remote(tls: Option<GrpcTls>) -> Self {
        Self {
            local: None,
            remote: Mutex::new(HashMap::new()),
            tls,
        }
    }

    /// The in-process SFU, named `local` in placements.
    pub fn with_local(sfu: Arc<dyn SfuApi>) -> Self {
        Self {
            local: Some(sfu),
            remote: Mutex::new(HashMap::new()),
            tls: None,
        }
    }

    pub(crate) fn local(&self) -> Option<Arc<dyn SfuApi>> {
        self.local.clone()
    }

    /// The SFU a placement names, connecting (and relaying its events) on first use.
    pub(crate) async fn get(
        &self,
        placement: &Placement,
        state: &Arc<AppState>,
    ) -> Result<Arc<dyn SfuApi>, SfuError> {
        if placement.control == LOCAL_SFU {
            return self
                .local
                .clone()
                .ok_or_else(|| SfuError::Unavailable("no in-process SFU here".into()));
        }
        self.forget_gone(GONE_AFTER);
        if let Some(sfu) = self.lock().get(&placement.control) {
            return Ok(sfu.clone());
        }
        let addr = tokio::net::lookup_host(&placement.control)
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| {
                SfuError::Unavailable(format!("cannot resolve {}", placement.control))
            })?;
        let client = GrpcSfu::connect(addr, self.tls.as_ref())
            .map_err(|err| SfuError::Unavailable(err.to_string()))?;
        let mut remote = self.lock();
        if let Some(existing) = remote.get(&placement.control) {
            return Ok(existing.clone());
        }
        let sfu = Arc::new(client);
        remote.insert(placement.control.clone(), sfu.clone());
        tokio::spawn(crate::relay::relay_sfu_events(
            Arc::downgrade(state),
            sfu.subscribe(),
        ));
        Ok(sfu)
    }

    /// Drops the SFUs whose events could not be watched for `after` (an SFU that
    /// went away: a pod replaced, a node scaled down).
    fn forget_gone(&self, after: Duration) {
        self.lock().retain(|control, sfu| {
            let gone = sfu.unreachable_for().is_some_and(|d| d >= after);
            if gone {
                tracing::info!(sfu = %control, "forgetting an SFU unreachable for long");
            }
            !gone
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<GrpcSfu>>> {
        self.remote
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Keeps the type of a weak state handle in one place.
pub(crate) type WeakState = Weak<AppState>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_sfu_unreachable_for_long_is_forgotten_and_a_live_one_kept() {
        let (_stop, signal) = tokio::sync::watch::channel(false);
        let live = confer_sfu::start(confer_sfu::SfuConfig::default(), signal.clone())
            .await
            .expect("sfu");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let live_addr = listener.local_addr().expect("addr");
        tokio::spawn(confer_sfu::grpc::serve(live, listener, None, signal));
        // Nothing listens here once the listener is dropped.
        let gone_addr = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("addr");

        let directory = SfuDirectory::remote(None);
        for addr in [live_addr, gone_addr] {
            let sfu = GrpcSfu::connect(addr, None).expect("client");
            directory.lock().insert(addr.to_string(), Arc::new(sfu));
        }
        tokio::time::sleep(Duration::from_millis(800)).await;
        directory.forget_gone(Duration::from_millis(500));
        let kept: Vec<String> = directory.lock().keys().cloned().collect();
        assert_eq!(kept, [live_addr.to_string()]);
    }
}
