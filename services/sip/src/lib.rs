//! `confer sip`: dial-in over SIP. A caller's INVITE to `sip:<room>@<bridge>` (or
//! `sip:<room>*<password>@<bridge>`) joins the room as a participant: the bridge signs
//! an access token with its tenant's key, joins through a gateway's signalling like the
//! web client, publishes the caller's audio into the room and plays the room's active
//! speaker to the caller. Opus on plain RTP only: no transcoding, no SRTP towards the
//! caller (trunks terminate that).
//!
//! Layout: `message` parses SIP, `dialog` builds responses and BYE, `server` runs the
//! UDP SIP endpoint and its transactions, `call` bridges one call (`signal` the
//! gateway session, `peer` the WebRTC peer, `rtp` and `speaker` the caller's stream),
//! `sdp` offer/answer, `prompt` what the bridge itself says to a caller (Opus made
//! ahead of time), `stats` the metrics.

mod call;
mod dialog;
pub mod keypad;
pub mod level;
pub mod message;
pub mod opus;
mod peer;
pub mod prompt;
pub mod rtp;
pub mod sdp;
mod server;
pub mod signal;
pub mod speaker;
mod stats;

use std::net::IpAddr;
use std::time::Duration;

pub use confer_netaddr::Network;

pub use server::serve;
pub use stats::SipStats;

/// How the bridge reaches rooms and what it tells callers.
#[derive(Clone)]
pub struct SipConfig {
    /// A gateway's signalling WebSocket (`ws://gateway:8080/v1/signal`).
    pub signal_url: String,
    /// Signs each call's access token (the tenant's API key and secret).
    pub token_key: std::sync::Arc<confer_auth::TokenKey>,
    /// Where media sockets bind.
    pub media_ip: IpAddr,
    /// The address callers send RTP to (SDP `c=`) and that Via/Contact carry.
    pub advertise_ip: IpAddr,
    /// Caller-side RTP ports, inclusive (any free port when `None`).
    pub rtp_ports: Option<(u16, u16)>,
    /// Source networks allowed to call (any when empty): the trunk's addresses.
    pub allow: Vec<Network>,
    /// Calls up at once; more are answered 503.
    pub max_calls: usize,
    /// An answered call whose caller sends no RTP for this long is hung up.
    pub media_timeout: Duration,
    /// Which prompts callers hear.
    pub prompts: prompt::PromptSet,
}

impl SipConfig {
    /// An access token for one call: `identity` in `room`, a SIP participant, valid
    /// for a day.
    fn token(&self, room: &str, identity: &str, name: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.token_key.sign(&confer_auth::Claims {
            iss: self.token_key.issuer().to_owned(),
            sub: identity.to_owned(),
            name: name.to_owned(),
            nbf: now.saturating_sub(60),
            exp: now + 24 * 60 * 60,
            kind: confer_auth::ParticipantKind::Sip,
            video: confer_auth::VideoGrant::join(room),
        })
    }
}

#[cfg(test)]
mod tests;
