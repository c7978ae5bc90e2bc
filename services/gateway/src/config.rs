//! Gateway configuration.

/// What the gateway needs to run; the binary fills it from flags and `CONFER_*` variables.
#[derive(Clone)]
pub struct GatewayConfig {
    /// This gateway's id: where the room service sends commands for its participants.
    pub gateway_id: String,
    /// The SFU's counters, exported on `/metrics` when it runs in this process.
    pub sfu_stats: Option<confer_sfu::SfuStats>,
    /// Files shared in chat.
    pub files: crate::FileConfig,
    /// Where the SFUs write recordings (a volume they share with the gateways), for
    /// the tenant API to list and hand out; `None`: none are served here.
    pub recordings: Option<std::path::PathBuf>,
    /// How long a finished recording is kept, from its last write; `None`: until the
    /// tenant removes it.
    pub recordings_keep: Option<std::time::Duration>,
    /// The region this gateway serves: its participants join the room's SFU there
    /// when the room spans it.
    pub region: Option<String>,
    /// Other roles' families on this gateway's `/metrics`, when they run in this
    /// process (`confer dev`: the SIP bridge).
    pub extra_metrics: Vec<ExtraMetrics>,
    /// Proxies whose `X-Forwarded-For` names the client (an ingress, the SIP bridge):
    /// the room service's per-address limits then count the client, not the proxy.
    pub trusted_proxies: Vec<confer_netaddr::Network>,
    /// How fast each member may post in a room's chat.
    pub chat_rate: crate::ChatRate,
    /// When a client that has gone silent is let go.
    pub liveness: Liveness,
}

/// When a client that has gone silent is let go. A connection that died without a
/// close (a laptop shut, a network gone) would otherwise keep its participant in the
/// room for good, a frozen tile for everyone else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Liveness {
    /// How long a client may send nothing, not even the answer to a ping, before its
    /// connection is dropped and its participant leaves the room.
    pub silent_for: std::time::Duration,
}

impl Liveness {
    pub const DEFAULT: Self = Self {
        silent_for: std::time::Duration::from_secs(45),
    };

    /// How often each client is pinged (a WebSocket ping, which browsers answer by
    /// themselves): a third of `silent_for`, so a live client answers twice or more
    /// before it could be let go.
    pub fn ping_every(self) -> std::time::Duration {
        self.silent_for / 3
    }
}

/// Writes one role's families on a `/metrics` page.
pub type ExtraMetrics = std::sync::Arc<dyn Fn(&mut confer_metrics::Exposition) + Send + Sync>;

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            gateway_id: format!("gw-{:08x}", rand::random::<u32>()),
            sfu_stats: None,
            files: crate::FileConfig::default(),
            recordings: None,
            recordings_keep: None,
            region: None,
            extra_metrics: Vec::new(),
            trusted_proxies: Vec::new(),
            chat_rate: crate::ChatRate::DEFAULT,
            liveness: Liveness::DEFAULT,
        }
    }
}
