//! A stand-in for a Consul agent, for tests: no Consul binary is available where
//! Confer's tests run. It serves, with Consul's documented request and response
//! shapes, exactly the endpoints Confer uses:
//!
//! - `PUT /v1/agent/service/register`, `PUT /v1/agent/service/deregister/:id`,
//!   `GET /v1/agent/service/:id`;
//! - `PUT /v1/agent/check/update/:check` (TTL checks start `critical` unless the
//!   registration says otherwise, turn `critical` when the TTL passes, and the service
//!   is removed after `DeregisterCriticalServiceAfter`);
//! - `GET /v1/health/service/:service` with `passing`, and blocking queries (`index`,
//!   `wait`, `X-Consul-Index`);
//! - `PUT`/`GET`/`DELETE /v1/kv/:key`, `recurse`, blocking the same way.
//!
//! Like a real agent, a check's output alone does not raise the index (agents sync
//! output changes lazily); a status change does. Tests can take the "cluster" down
//! (`500 No cluster leader`, the answer of a Consul without quorum) and move the index
//! backwards (a server restored from a snapshot).

mod routes;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use state::CheckStatus;
use state::Shared;

/// A running double; dropping it does not stop it (it lives as long as the runtime).
#[derive(Clone)]
pub struct ConsulDouble {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl ConsulDouble {
    /// Serves on `127.0.0.1:0`.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with_max_wait(std::time::Duration::from_secs(600)).await
    }

    /// Serves on `127.0.0.1:0`, answering blocking queries after at most `max_wait`
    /// whatever `wait` they ask for (Consul caps it at ten minutes).
    pub async fn start_with_max_wait(max_wait: std::time::Duration) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(max_wait));
        tokio::spawn(state::expire_checks(shared.clone()));
        let app = routes::router(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared })
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Takes the cluster down (`false`) or back up.
    pub fn set_available(&self, available: bool) {
        self.shared.set_available(available);
    }

    /// Moves the raft index below every index handed out so far, as a restore does.
    pub fn restore_older_index(&self) {
        self.shared.restore_older_index();
    }

    /// A check's status, if the check exists.
    pub fn check_status(&self, check_id: &str) -> Option<CheckStatus> {
        self.shared.check_status(check_id)
    }

    /// The registered service ids.
    pub fn services(&self) -> Vec<String> {
        self.shared.services()
    }

    /// How many blocking queries arrived with a non-zero `index`.
    pub fn blocking_queries(&self) -> u64 {
        self.shared.blocking_queries()
    }
}
