//! The selective forwarding unit.
//!
//! ```text
//!  control (gRPC or in-process) ──► SfuHandle ──cmd──► runtime (worker per core) ──► core::Sfu
//!                                      ▲                    │ datagrams, timers
//!                                      └──── SfuEvent ◄─────┘
//! ```
//!
//! - [`core`] is sans-IO: datagrams, commands and `now` go in; datagrams to send,
//!   events and the next deadline come out. It never reads the clock or touches a socket.
//! - [`runtime`] runs one media worker per core; each owns a UDP socket its peers share
//!   (ICE-lite), a timer, a command channel and one core holding whole rooms.
//! - [`control`] is the API the gateway uses: [`SfuApi`], implemented in-process by
//!   [`SfuHandle`] and over gRPC by [`grpc::GrpcSfu`] / [`grpc::serve`].
//!
//! Not here: rooms as users see them (names, chat, permissions) — the SFU only knows which
//! peers share a forwarding group, by opaque [`RoomId`].

pub mod control;
pub mod core;
pub mod grpc;
mod ids;
pub mod impair;
pub mod record;
pub mod runtime;
mod stats;

pub use control::{RelayAddress, SfuApi, SfuError, SfuEvent, SfuHandle};
pub use ids::{ParticipantId, RoomId};
pub use impair::Impairment;
pub use runtime::{SfuConfig, default_workers, start};
pub use stats::{SfuStats, StatsSnapshot};
