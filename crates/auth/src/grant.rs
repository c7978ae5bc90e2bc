//! The claims an access token carries.

use serde::{Deserialize, Serialize};

/// What a token holder may do in a room. Field names follow the grant vocabulary
/// tenants know from other video APIs, so their token code ports over unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VideoGrant {
    /// The room the grant is for. Empty only for grants that name no room.
    pub room: String,
    pub room_join: bool,
    pub room_admin: bool,
    pub can_publish: bool,
    pub can_subscribe: bool,
    pub can_publish_data: bool,
    /// Present in the room without being listed to others.
    pub hidden: bool,
    /// Track sources the holder may publish (`camera`, `microphone`, `screen_share`);
    /// empty means all of them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub can_publish_sources: Vec<String>,
}

impl Default for VideoGrant {
    fn default() -> Self {
        Self {
            room: String::new(),
            room_join: false,
            room_admin: false,
            can_publish: true,
            can_subscribe: true,
            can_publish_data: true,
            hidden: false,
            can_publish_sources: Vec::new(),
        }
    }
}

impl VideoGrant {
    /// A grant to join `room` as an ordinary participant.
    pub fn join(room: impl Into<String>) -> Self {
        Self {
            room: room.into(),
            room_join: true,
            ..Self::default()
        }
    }
}

/// The JWT claims set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: the API key that signed the token.
    pub iss: String,
    /// Subject: the participant's identity, stable across reconnects.
    pub sub: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Not before, seconds since the Unix epoch.
    #[serde(default)]
    pub nbf: u64,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// What joins with the token: a person in an app unless it says otherwise.
    #[serde(default, skip_serializing_if = "ParticipantKind::is_standard")]
    pub kind: ParticipantKind,
    pub video: VideoGrant,
}

/// What a participant is. Rooms may refuse some kinds (a room without dial-in refuses
/// `sip`); an unknown kind makes the token invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantKind {
    /// A person in the web app, the SDK or a tenant's own client.
    #[default]
    Standard,
    /// A caller dialled in over SIP, joined by the SIP bridge.
    Sip,
}

impl ParticipantKind {
    pub fn is_standard(&self) -> bool {
        *self == Self::Standard
    }
}
