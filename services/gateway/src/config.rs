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
    /// The region this gateway serves: its participants join the room's SFU there
    /// when the room spans it.
    pub region: Option<String>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            gateway_id: format!("gw-{:08x}", rand::random::<u32>()),
            sfu_stats: None,
            files: crate::FileConfig::default(),
            region: None,
        }
    }
}
