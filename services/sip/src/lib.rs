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
//! `sdp` offer/answer, `stats` the metrics.

mod call;
mod dialog;
pub mod level;
pub mod message;
mod peer;
pub mod rtp;
pub mod sdp;
mod server;
pub mod signal;
pub mod speaker;
mod stats;

use std::net::IpAddr;
use std::time::Duration;

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
}

impl SipConfig {
    /// An access token for one call: `identity` in `room`, valid for a day.
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
            video: confer_auth::VideoGrant::join(room),
        })
    }
}

/// An IP network (`10.0.0.0/8`, `2001:db8::/32`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = text.split_once('/').unwrap_or((text, ""));
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .parse()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}` has a bad prefix length"))?
        };
        Ok(Self { addr, prefix })
    }
}

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => mask_eq(&net.octets(), &ip.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => mask_eq(&net.octets(), &ip.octets(), self.prefix),
            (IpAddr::V6(_), IpAddr::V4(v4)) => self.contains(IpAddr::V6(v4.to_ipv6_mapped())),
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6
                .to_ipv4_mapped()
                .is_some_and(|v4| self.contains(IpAddr::V4(v4))),
        }
    }
}

fn mask_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    a[..full] == b[..full]
        && (rest == 0 || {
            let mask = 0xffu8 << (8 - rest);
            a[full] & mask == b[full] & mask
        })
}

#[cfg(test)]
mod tests;
