//! The SFUs this gateway talks to: the in-process one (`confer dev`) or, for each
//! placement the room service hands out, a gRPC client made on first use. Each SFU's
//! event stream is relayed to this gateway's sessions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use confer_proto::tls::GrpcTls;
use confer_room::model::Placement;
use confer_sfu::{SfuApi, SfuError, grpc::GrpcSfu};

use crate::AppState;

/// Control address of the in-process SFU in placements.
pub const LOCAL_SFU: &str = "local";

pub struct SfuDirectory {
    local: Option<Arc<dyn SfuApi>>,
    remote: Mutex<HashMap<String, Arc<dyn SfuApi>>>,
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
        let sfu: Arc<dyn SfuApi> = Arc::new(client);
        remote.insert(placement.control.clone(), sfu.clone());
        tokio::spawn(crate::relay::relay_sfu_events(
            Arc::downgrade(state),
            sfu.subscribe(),
        ));
        Ok(sfu)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<dyn SfuApi>>> {
        self.remote
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Keeps the type of a weak state handle in one place.
pub(crate) type WeakState = Weak<AppState>;
