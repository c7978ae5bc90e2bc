//! `Conference`: a declared, long-lived conference room.
// `printcolumn(...)` repeats `type_ = …` by design; clippy reads the derive's
// arguments as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::api::core::v1::SecretKeySelector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A conference the operator keeps in existence in the room service, with its
/// settings, placed in its home region (and the allowed regions its members join from).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "confer.dev",
    version = "v1alpha1",
    kind = "Conference",
    doc = "A declared Confer conference, kept in the room service and placed by region",
    plural = "conferences",
    shortname = "conf",
    namespaced,
    status = "ConferenceStatus",
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenant"),
    printcolumn(name = "Home", type_ = "string", json_path = ".spec.homeRegion"),
    printcolumn(
        name = "Participants",
        type_ = "integer",
        json_path = ".status.participants"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("size(self.allowedRegions) == 0 || self.homeRegion in self.allowedRegions").message("homeRegion must be one of allowedRegions"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConferenceSpec {
    /// The tenant (API key) the room belongs to.
    #[x_kube(validation = Rule::new("self == oldSelf").message("tenant is immutable"))]
    #[x_kube(validation = Rule::new("size(self) > 0").message("tenant must not be empty"))]
    pub tenant: String,
    /// Region the room is placed in first.
    #[x_kube(validation = Rule::new("self == oldSelf").message("homeRegion is immutable"))]
    pub home_region: String,
    /// Further regions the room spans: a member joining through a gateway in one of
    /// them is served by an SFU there, linked to the room's other SFUs by relays.
    /// Empty: the home region only.
    #[serde(default)]
    pub allowed_regions: Vec<String>,
    #[serde(default = "default_max_participants")]
    #[x_kube(validation = Rule::new("self > 0 && self <= 10000").message("maxParticipants must be between 1 and 10000"))]
    pub max_participants: i32,
    #[serde(default)]
    pub waiting_room: bool,
    /// Secret key holding the room password, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeySelector>,
    /// Record the room from the start: what participants publish goes to the
    /// recordings directory, each track to its own WebM file. Given to the room as a
    /// host control is (when declared, and when changed): hosts may stop and start
    /// recording during the call.
    #[serde(default)]
    pub recording: bool,
    /// Callers may dial in over SIP (`sip:<room>@<bridge>`); when false the SIP
    /// bridge's calls to the room are refused (403).
    #[serde(default)]
    pub sip_dial_in: bool,
    /// How long the room's chat is kept, in seconds (0: for as long as the room
    /// exists). Applied when it changes; unset, the room keeps what its tenant set
    /// through the API, or else the deployment's default, and removing it returns the
    /// room to that default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0").message("chatRetentionSeconds must not be negative"))]
    pub chat_retention_seconds: Option<i64>,
    /// How long the room's session waits, empty, after its last participant left
    /// before it finishes (`room_finished`), in seconds; someone entering meanwhile
    /// continues it. Unset, the room keeps what it has (at first, no wait but for a
    /// participant whose connection was lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 86400").message("emptyTimeoutSeconds must be between 0 and 86400"))]
    pub empty_timeout_seconds: Option<i32>,
    /// Where the room's host controls start: its lock, screen sharing and the chat for
    /// everyone. Each one set is given to the room when it is first declared and
    /// whenever its value here changes; between changes, what a host sets during the
    /// call stands. Unset, the room keeps what it has.
    #[serde(default, skip_serializing_if = "HostControls::is_empty")]
    pub host_controls: HostControls,
}

fn default_max_participants() -> i32 {
    100
}

/// Room settings that hosts also change during a call.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostControls {
    /// Nobody but hosts may enter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked: Option<bool>,
    /// Participants may share their screen (hosts always may).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_screen_share: Option<bool>,
    /// Participants and viewers may post in the chat; when false only hosts may
    /// (everyone still reads it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_chat: Option<bool>,
    /// What participants publish is recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<bool>,
    /// Slow mode: seconds each participant or viewer waits between chat messages
    /// (0: off; hosts never wait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 3600))]
    pub chat_slow_mode_seconds: Option<u32>,
}

impl ConferenceSpec {
    /// The host controls this conference gives its room: its `hostControls`, and
    /// recording when `recording` is declared.
    pub fn given_controls(&self) -> HostControls {
        let mut controls = self.host_controls.clone();
        if self.recording {
            controls.recording = Some(true);
        }
        controls
    }
}

impl HostControls {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The room settings these set to a value other than `given` (what was given
    /// before), by their names in the room service.
    pub fn changes_from(&self, given: &HostControls) -> serde_json::Map<String, serde_json::Value> {
        let slow_mode = (self.chat_slow_mode_seconds != given.chat_slow_mode_seconds)
            .then_some(self.chat_slow_mode_seconds)
            .flatten()
            .map(|seconds| ("chat_slow_mode_secs".to_owned(), seconds.into()));
        [
            ("locked", self.locked, given.locked),
            (
                "allow_screen_share",
                self.allow_screen_share,
                given.allow_screen_share,
            ),
            ("allow_chat", self.allow_chat, given.allow_chat),
            ("recording", self.recording, given.recording),
        ]
        .into_iter()
        .filter(|(_, wanted, given)| wanted != given)
        .filter_map(|(name, wanted, _)| Some((name.to_owned(), serde_json::Value::Bool(wanted?))))
        .chain(slow_mode)
        .collect()
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConferenceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The room's SFU in each region it is placed in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placements: Vec<RegionPlacement>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relays: Vec<Relay>,
    #[serde(default)]
    pub participants: i64,
    /// `resourceVersion` of the password Secret last given to the room service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_version: Option<String>,
    /// The chat retention last given to the chat service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_retention_seconds: Option<i64>,
    /// The host controls last given to the room.
    #[serde(default, skip_serializing_if = "HostControls::is_empty")]
    pub host_controls: HostControls,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RegionPlacement {
    pub region: String,
    pub node: String,
}

/// A relay link between two of the room's SFUs (nodes), in different regions.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Relay {
    pub from: String,
    pub to: String,
    /// Both ends are serving and reporting load; each SFU's own view of the link is
    /// `confer_sfu_relay_links_down` on its `/metrics`.
    pub healthy: bool,
}
