//! Compiles `confer/**/*.proto` with protox (pure Rust: no system `protoc`).

/// Signalling messages a client sends inside the envelope: strict, so a typo in a field
/// name is an error rather than a silently ignored default.
const CLIENT_BODIES: [&str; 18] = [
    "SendData",
    "FileUploadRequest",
    "RaiseHand",
    "EditChat",
    "DeleteChat",
    "ChatHistoryRequest",
    "SessionDescription",
    "TrackSettings",
    "Offer",
    "HostControl",
    "SetName",
    "Join",
    "Trickle",
    "SendChat",
    "SetMuted",
    "Leave",
    "Ping",
    "Participant",
];

/// Signalling messages only the server sends.
const SERVER_BODIES: [&str; 27] = [
    "ParticipantsChanged",
    "ParticipantChange",
    "ConnectionQuality",
    "ParticipantQuality",
    "ChatLimit",
    "ChatBatch",
    "FileUpload",
    "ChatSent",
    "ChatHistory",
    "ActiveSpeaker",
    "IceServer",
    "Waiting",
    "Answer",
    "Knock",
    "KnockResolved",
    "RoomState",
    "DataMessage",
    "Ack",
    "Joined",
    "ParticipantJoined",
    "ParticipantLeft",
    "ParticipantUpdated",
    "TrackAssigned",
    "TrackUnassigned",
    "ChatMessage",
    "Error",
    "Pong",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "confer/signal/v1/signal.proto",
        "confer/sfu/v1/control.proto",
        "confer/room/v1/room.proto",
        "confer/chat/v1/chat.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["."])?;
    // The signalling messages travel as JSON. The envelopes (`ClientMessage`,
    // `ServerMessage`) are framed by hand in `signal::codec`, which puts the `oneof`
    // variant at the top level: {"request_id": "1", "join": {...}}.
    let mut config = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true);
    for oneof in [
        ".confer.signal.v1.ClientMessage.msg",
        ".confer.signal.v1.ServerMessage.msg",
    ] {
        config = config.enum_attribute(
            oneof,
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(rename_all = \"snake_case\")]",
        );
    }
    for message in CLIENT_BODIES {
        config = config.message_attribute(
            format!(".confer.signal.v1.{message}"),
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default, deny_unknown_fields)]",
        );
    }
    for message in SERVER_BODIES {
        config = config.message_attribute(
            format!(".confer.signal.v1.{message}"),
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]",
        );
    }
    // Fields most messages leave unset are left out of their JSON.
    config = config
        .field_attribute(
            ".confer.signal.v1.Error.retry_after_ms",
            "#[serde(skip_serializing_if = \"crate::signal::is_zero\")]",
        )
        .field_attribute(
            ".confer.signal.v1.ParticipantLeft.rejoin_within_ms",
            "#[serde(skip_serializing_if = \"crate::signal::is_zero\")]",
        )
        .field_attribute(
            ".confer.signal.v1.Participant.hand_raised_at",
            "#[serde(skip_serializing_if = \"crate::signal::is_zero_u64\")]",
        )
        .field_attribute(
            ".confer.signal.v1.ParticipantChange",
            "#[serde(skip_serializing_if = \"Option::is_none\")]",
        )
        .field_attribute(
            ".confer.signal.v1.Joined.chat_limit",
            "#[serde(skip_serializing_if = \"Option::is_none\")]",
        );
    config.compile_fds(descriptors)?;
    Ok(())
}
