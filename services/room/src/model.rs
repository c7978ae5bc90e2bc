//! The shapes the room service deals in: rooms, their settings, participants, roles
//! and what the gateway is told. All of them travel as JSON (tenant API, gRPC bodies,
//! Redis), so unknown fields are refused where a client writes them. Room settings
//! and participants' permissions are read leniently everywhere else (what another
//! version stored or sent: a newer room service's settings reach an older gateway
//! during a rolling upgrade), and strictly where a tenant or an operator writes them
//! ([`RoomSettings::patched`], [`RoomSettings::strict`], [`Permissions::strict`]).

use serde::{Deserialize, Serialize};

pub use confer_auth::ParticipantKind;

/// The longest slow mode: an hour between messages.
pub const MAX_CHAT_SLOW_MODE_SECS: u32 = 3600;

/// Settings a tenant chooses per room. Security is on by default: a waiting room,
/// self-unmute allowed, screen sharing allowed for hosts and participants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoomSettings {
    /// Guests wait until a host admits them.
    pub waiting_room: bool,
    /// Nobody but hosts may enter.
    pub locked: bool,
    pub max_participants: u32,
    pub allow_screen_share: bool,
    /// A participant muted by a host may unmute themselves.
    pub allow_self_unmute: bool,
    /// Participants and viewers may post in the chat (send, edit, share files); when
    /// not, only hosts may. Everyone still reads it.
    pub allow_chat: bool,
    /// Slow mode: seconds each participant or viewer waits between chat messages (0:
    /// off; hosts never wait), up to [`MAX_CHAT_SLOW_MODE_SECS`].
    pub chat_slow_mode_secs: u32,
    /// Display name changes wait for a host's approval.
    pub name_changes_need_approval: bool,
    /// Callers may dial in over SIP (the SIP bridge's participants, of kind `sip`).
    pub sip_dial_in: bool,
    /// What participants publish is being recorded (each track to its own file);
    /// everyone in the room is told.
    pub recording: bool,
    /// Seconds an empty room is kept active before `room_finished`.
    pub empty_timeout_secs: u32,
    /// Region the room is placed in; empty means the service's default.
    pub region: String,
    /// Further regions the room spans: a participant whose gateway is in one of them
    /// joins an SFU there, linked to the room's other SFUs by relays.
    pub regions: Vec<String>,
    /// Opaque tenant data, up to 4 KiB.
    pub metadata: String,
}

impl Default for RoomSettings {
    fn default() -> Self {
        Self {
            waiting_room: true,
            locked: false,
            max_participants: 100,
            allow_screen_share: true,
            allow_self_unmute: true,
            allow_chat: true,
            chat_slow_mode_secs: 0,
            name_changes_need_approval: false,
            sip_dial_in: true,
            recording: false,
            empty_timeout_secs: 0,
            region: String::new(),
            regions: Vec::new(),
            metadata: String::new(),
        }
    }
}

impl RoomSettings {
    /// These settings with those `changes` names set to its values: an unknown name or
    /// a value of the wrong type is an error that names it.
    pub fn patched(
        &self,
        changes: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, serde_json::Error> {
        patched(self, changes)
    }

    /// Reads settings a tenant writes (`POST /v1/rooms`): the defaults with what it
    /// names, and an error naming what is no setting.
    pub fn strict<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let changes = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        Self::default()
            .patched(&changes)
            .map_err(serde::de::Error::custom)
    }

    /// The region the room lives in: its own, or `default` when it names none.
    pub fn home_region<'a>(&'a self, default: &'a str) -> &'a str {
        if self.region.is_empty() {
            default
        } else {
            &self.region
        }
    }

    /// Every region the room may be placed in, home first.
    pub fn all_regions(&self, default: &str) -> Vec<String> {
        let home = self.home_region(default).to_owned();
        let mut all = vec![home];
        for region in &self.regions {
            if !all.contains(region) {
                all.push(region.clone());
            }
        }
        all
    }

    /// Where a participant whose gateway is in `region` is served: that region when
    /// the room spans it, else the room's home.
    pub fn region_for(&self, region: Option<&str>, default: &str) -> String {
        match region {
            Some(region) if self.regions.iter().any(|r| r == region) => region.to_owned(),
            _ => self.home_region(default).to_owned(),
        }
    }

    /// Settings of a room opened by an anonymous join in `confer dev`: no waiting room
    /// (nobody could admit), the first participant becomes host.
    pub fn anonymous() -> Self {
        Self {
            waiting_room: false,
            ..Self::default()
        }
    }
}

/// A room as the tenant API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomView {
    pub name: String,
    pub settings: RoomSettings,
    pub has_password: bool,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    pub active: bool,
    pub num_participants: u32,
    /// The room's SFU in its home region.
    pub placement: Option<Placement>,
    /// Its SFUs in every region it is placed in, home first (linked by relays).
    #[serde(default)]
    pub placements: Vec<Placement>,
}

/// Which SFU holds a room in a region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub region: String,
    /// The SFU's id in discovery.
    pub sfu: String,
    /// The SFU's control API address (`host:port`), or `local` for the in-process SFU.
    pub control: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Host,
    Participant,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Host => "host",
            Role::Participant => "participant",
            Role::Viewer => "viewer",
        }
    }
}

/// A kind of track a participant may publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Camera,
    Microphone,
    ScreenShare,
}

impl Source {
    pub const ALL: [Source; 3] = [Source::Camera, Source::Microphone, Source::ScreenShare];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|source| source.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Camera => "camera",
            Source::Microphone => "microphone",
            Source::ScreenShare => "screen_share",
        }
    }

    pub fn kind(self) -> TrackKind {
        match self {
            Source::Microphone => TrackKind::Audio,
            Source::Camera | Source::ScreenShare => TrackKind::Video,
        }
    }

    /// The source a track of `kind` comes from when nothing else says: the
    /// microphone or the camera.
    pub fn of_kind(kind: TrackKind) -> Self {
        match kind {
            TrackKind::Audio => Source::Microphone,
            TrackKind::Video => Source::Camera,
        }
    }
}

/// `base` with the fields `changes` names set to its values: an unknown name or a value
/// of the wrong type is an error that names it.
fn patched<T: Serialize + serde::de::DeserializeOwned>(
    base: &T,
    changes: &serde_json::Map<String, serde_json::Value>,
) -> Result<T, serde_json::Error> {
    let mut merged = match serde_json::to_value(base)? {
        serde_json::Value::Object(fields) => fields,
        _ => serde_json::Map::new(),
    };
    if let Some(unknown) = changes.keys().find(|name| !merged.contains_key(*name)) {
        let known: Vec<&str> = merged.keys().map(String::as_str).collect();
        return Err(serde::de::Error::custom(format!(
            "unknown field `{unknown}`, expected one of `{}`",
            known.join("`, `")
        )));
    }
    for (name, value) in changes {
        merged.insert(name.clone(), value.clone());
    }
    serde_json::from_value(serde_json::Value::Object(merged))
}

/// What a participant may do; starts from the token's grants, hosts may change it.
/// Read leniently where it travels or is stored, as [`RoomSettings`] are (a permission
/// a newer release adds must not break an older one reading it during a rolling
/// upgrade), and strictly where a tenant writes it ([`Permissions::strict`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Permissions {
    pub can_publish: bool,
    pub can_subscribe: bool,
    pub can_publish_data: bool,
    pub can_publish_sources: Vec<Source>,
    pub hidden: bool,
}

impl Default for Permissions {
    fn default() -> Self {
        Self {
            can_publish: true,
            can_subscribe: true,
            can_publish_data: true,
            can_publish_sources: Source::ALL.to_vec(),
            hidden: false,
        }
    }
}

impl Permissions {
    /// Reads permissions a tenant writes (`PATCH …/participants/{id}`): the defaults
    /// with what it names, and an error naming what is no permission.
    pub fn strict<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Self>, D::Error> {
        let Some(changes) =
            Option::<serde_json::Map<String, serde_json::Value>>::deserialize(deserializer)?
        else {
            return Ok(None);
        };
        patched(&Self::default(), &changes)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }

    pub fn may_publish(&self, source: Source) -> bool {
        self.can_publish && self.can_publish_sources.contains(&source)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantState {
    /// In the waiting room.
    Waiting,
    /// In the room.
    Active,
}

/// One participant: who, with which role and rights, and where it is connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    /// Unique per connection.
    pub id: String,
    /// Stable identity from the token (`sub`); random for anonymous joins.
    pub identity: String,
    pub name: String,
    pub role: Role,
    pub permissions: Permissions,
    pub metadata: String,
    pub state: ParticipantState,
    pub audio_muted: bool,
    pub video_muted: bool,
    /// A host muted this track; the SFU does not forward it.
    pub audio_blocked: bool,
    pub video_blocked: bool,
    /// A name change waiting for a host's approval.
    pub pending_name: Option<String>,
    /// When the access token the participant joined with expires (seconds since the
    /// epoch); host controls are refused after it. `None` for anonymous joins.
    #[serde(default)]
    pub token_expires_at: Option<u64>,
    /// Kinds of track the participant is publishing (those of `sources`).
    #[serde(default)]
    pub tracks: Vec<TrackKind>,
    /// What the participant is publishing from, in the order it started: its
    /// microphone, camera, a shared screen (while it sends one).
    #[serde(default)]
    pub sources: Vec<Source>,
    /// Seconds since the Unix epoch.
    pub joined_at: u64,
    /// The gateway that holds this participant's connection.
    pub gateway: String,
    /// The region of that gateway, when it names one: the participant is served by
    /// the room's SFU there if the room spans it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// A person in an app, or a caller dialled in over SIP (from the access token).
    #[serde(default, skip_serializing_if = "ParticipantKind::is_standard")]
    pub kind: ParticipantKind,
    /// The id it had before it came back after a lost connection (its rejoin ticket's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_id: Option<String>,
    /// When it raised its hand (Unix milliseconds), while the hand is up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hand_raised_at: Option<u64>,
}

impl ParticipantInfo {
    pub fn is_host(&self) -> bool {
        self.role == Role::Host
    }

    /// What the participant sends from; one stored before sources were kept is taken
    /// to send from its microphone and camera, by the kinds it names.
    pub fn sending_from(&self) -> Vec<Source> {
        if self.sources.is_empty() {
            return self
                .tracks
                .iter()
                .map(|kind| Source::of_kind(*kind))
                .collect();
        }
        self.sources.clone()
    }
}

/// A track kind as host controls name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    Audio,
    Video,
}

impl TrackKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "audio" => Some(TrackKind::Audio),
            "video" => Some(TrackKind::Video),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TrackKind::Audio => "audio",
            TrackKind::Video => "video",
        }
    }
}

/// An ICE server for the client, with ephemeral TURN credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_changes_the_settings_it_names_and_refuses_what_it_cannot() {
        let current = RoomSettings {
            locked: true,
            waiting_room: false,
            ..RoomSettings::default()
        };
        let changes = |value: serde_json::Value| value.as_object().cloned().unwrap_or_default();
        let patched = current
            .patched(&changes(
                serde_json::json!({"allow_chat": false, "max_participants": 7}),
            ))
            .expect("valid");
        assert_eq!(
            patched,
            RoomSettings {
                allow_chat: false,
                max_participants: 7,
                ..current.clone()
            }
        );
        let unknown = current
            .patched(&changes(serde_json::json!({"lockd": true})))
            .expect_err("unknown");
        assert!(unknown.to_string().contains("lockd"), "{unknown}");
        // Read as they travel or are stored, settings of a newer version (a setting
        // this one does not know) are taken for what this one knows of them.
        let newer: RoomSettings = serde_json::from_value(
            serde_json::json!({"locked": true, "waiting_room": false, "holograms": true}),
        )
        .expect("lenient");
        assert_eq!(newer, current);
        assert!(
            current
                .patched(&changes(serde_json::json!({"locked": "yes"})))
                .is_err()
        );
        assert_eq!(current.patched(&serde_json::Map::new()).ok(), Some(current));
    }

    #[test]
    fn permissions_are_read_leniently_and_written_strictly() {
        // A permission a newer release added, in live state or a gRPC body.
        let newer: Permissions =
            serde_json::from_value(serde_json::json!({"can_publish": false, "can_levitate": true}))
                .expect("lenient");
        assert!(!newer.can_publish);
        assert!(newer.can_subscribe, "what is not named keeps its default");
        // A tenant's misspelt permission is refused by name; `null` is no change.
        let update =
            |json: serde_json::Value| serde_json::from_value::<crate::api::UpdateParticipant>(json);
        let refused =
            update(serde_json::json!({"permissions": {"can_publsh": false}})).expect_err("strict");
        assert!(refused.to_string().contains("can_publsh"), "{refused}");
        let written = update(serde_json::json!({"permissions": {"hidden": true}})).expect("known");
        assert_eq!(
            written.permissions,
            Some(Permissions {
                hidden: true,
                ..Permissions::default()
            })
        );
        let none = update(serde_json::json!({"permissions": null})).expect("null");
        assert_eq!(none.permissions, None);
        assert_eq!(
            update(serde_json::json!({})).expect("absent").permissions,
            None
        );
    }

    fn spanning() -> RoomSettings {
        RoomSettings {
            region: "eu".into(),
            regions: vec!["us".into(), "eu".into(), "ap".into()],
            ..RoomSettings::default()
        }
    }

    #[test]
    fn a_participant_is_served_in_its_region_when_the_room_spans_it() {
        let room = spanning();
        assert_eq!(room.region_for(Some("us"), "local"), "us");
        assert_eq!(room.region_for(Some("ap"), "local"), "ap");
        // Elsewhere, or from a gateway without a region: the room's home.
        assert_eq!(room.region_for(Some("sa"), "local"), "eu");
        assert_eq!(room.region_for(None, "local"), "eu");
        let unset = RoomSettings::default();
        assert_eq!(unset.region_for(Some("us"), "local"), "local");
    }

    #[test]
    fn every_region_is_listed_once_home_first() {
        assert_eq!(spanning().all_regions("local"), ["eu", "us", "ap"]);
        assert_eq!(RoomSettings::default().all_regions("local"), ["local"]);
    }

    #[test]
    fn settings_without_regions_still_parse() {
        let settings: RoomSettings = serde_json::from_str(r#"{"region": "eu"}"#).expect("parses");
        assert!(settings.regions.is_empty());
        // A misspelt name is refused where a tenant writes settings, not where they
        // are read back (see the patch test).
        let strict =
            |json: &str| RoomSettings::strict(&mut serde_json::Deserializer::from_str(json));
        let refused = strict(r#"{"regionz": []}"#).expect_err("strict");
        assert!(refused.to_string().contains("regionz"), "{refused}");
        assert_eq!(strict(r#"{"region": "eu"}"#).expect("strict").region, "eu");
    }
}
