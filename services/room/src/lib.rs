//! The room service: tenants, rooms, participants, roles and permissions, admission
//! (tokens, passwords, the waiting room, locks, rate limits), host controls,
//! placement of rooms on SFUs, and webhooks.
//!
//! - [`api`]: [`RoomApi`], what the gateway asks; in-process ([`RoomService`]) or
//!   over gRPC ([`grpc`]).
//! - [`service`]: the logic. [`store`]: durable data (PostgreSQL / SQLite).
//!   [`live`]: shared live state and the gateway command bus (Redis / memory).
//! - [`webhook`]: delivery from the outbox. [`turn`]: TURN credentials.

pub mod api;
mod clock;
pub mod error;
pub mod grpc;
pub mod live;
pub mod model;
mod password;
mod ratelimit;
pub mod registry;
mod service;
mod start;
pub mod store;
pub mod turn;
pub mod webhook;

pub use api::RoomApi;
pub use error::{ErrorKind, RoomError, RoomResult};
pub use service::{
    GATEWAY_LEASE, Limits, REJOIN_GRACE, RoomConfig, RoomService, finish_empty_rooms,
    sweep_lost_gateways, validate_name, validate_room,
};
pub use start::{Backends, start};
