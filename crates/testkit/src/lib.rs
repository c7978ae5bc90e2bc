//! Harness for tests and benchmarks of the SFU core: real WebRTC clients (webrtc-rs
//! `rtc`) connected to a [`confer_sfu::core::Sfu`] over an in-memory wire, on a virtual
//! clock. ICE, DTLS and SRTP run for real; nothing touches a socket or the system clock
//! beyond the starting instant.
//!
//! Not a mock: both ends are the real stacks. The network is ideal unless a client's
//! downlink is limited ([`Wire::limit_downlink`]: a rate and a drop-tail queue); the
//! event loop is left out, which the service's own tests cover.

mod client;
mod link;
mod wire;

pub use client::{Client, ClientKind, vp8_payload};
pub use wire::{SFU_ADDR, Wire};
