//! Confer's wire contracts, generated from `proto/confer/**.proto`.
//!
//! - [`signal`]: the client signalling protocol (JSON over WebSocket), plus its decoder
//!   [`signal::decode_client_message`], which turns any byte string into a message or a
//!   typed error and never panics.
//! - [`sfu`]: the internal gateway -> SFU control API (gRPC).
//! - [`room`]: the internal gateway -> room service API (gRPC).
//! - [`chat`]: the internal gateway -> chat service API (gRPC).
//!
//! This crate knows nothing about rooms or media; it defines shapes, plus the
//! transport every internal gRPC server and client shares ([`tls`]): accepted
//! connections with TCP_NODELAY, and mutual TLS when it is set up.

pub mod tls;

pub mod signal {
    //! Client signalling protocol, `confer.signal.v1`.
    tonic::include_proto!("confer.signal.v1");

    mod codec;
    pub use codec::{
        DecodeError, MAX_MESSAGE_BYTES, chat_batch_text, chat_text, decode_client_message,
        encode_chat_entry, encode_server_message, is_traceparent,
    };

    /// A number the JSON leaves out when unset.
    pub(crate) fn is_zero(value: &u32) -> bool {
        *value == 0
    }

    /// [`is_zero`] for a 64-bit number.
    pub(crate) fn is_zero_u64(value: &u64) -> bool {
        *value == 0
    }
}

pub mod room {
    //! Internal room-service API, `confer.room.v1`.
    tonic::include_proto!("confer.room.v1");
}

pub mod sfu {
    //! Internal SFU control API, `confer.sfu.v1`.
    tonic::include_proto!("confer.sfu.v1");
}

pub mod chat {
    //! Internal chat-service API, `confer.chat.v1`.
    tonic::include_proto!("confer.chat.v1");
}
