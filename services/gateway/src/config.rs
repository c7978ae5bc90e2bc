//! Gateway configuration.

use std::sync::Arc;

use confer_auth::TokenKey;

/// What the gateway needs to run; the binary fills it from flags and `CONFER_*` variables.
#[derive(Clone)]
pub struct GatewayConfig {
    /// Key that access tokens are verified with.
    pub token_key: Arc<TokenKey>,
    /// Refuse joins without a valid token. Off only in `confer dev`.
    pub require_token: bool,
    /// Chat messages kept per room for late joiners.
    pub chat_history: usize,
    /// The SFU's counters, exported on `/metrics` when it runs in this process.
    pub sfu_stats: Option<confer_sfu::SfuStats>,
}

impl GatewayConfig {
    pub fn new(token_key: TokenKey) -> Self {
        Self {
            token_key: Arc::new(token_key),
            require_token: true,
            chat_history: 200,
            sfu_stats: None,
        }
    }
}
