//! [`RoomApi`]: everything the gateway asks of the room service. Implemented in-process
//! by [`crate::RoomService`] and over gRPC by [`crate::grpc::GrpcRoom`]; the gateway holds
//! an `Arc<dyn RoomApi>` and cannot tell them apart.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::error::RoomResult;
use crate::model::{
    IceServer, ParticipantInfo, Permissions, Placement, Role, RoomSettings, RoomView, Source,
    TrackKind,
};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A join as the gateway received it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The gateway holding the connection; commands for this participant go there.
    pub gateway: String,
    /// Chosen by the gateway, so it can route commands for the participant from the
    /// moment the room service knows it.
    pub participant_id: String,
    pub room: String,
    /// The tenant the client addressed, when it named one; must match the token's.
    pub tenant: Option<String>,
    pub token: Option<String>,
    pub name: String,
    pub password: Option<String>,
    pub client_addr: IpAddr,
    /// The gateway's region, when it is deployed in one.
    #[serde(default)]
    pub region: Option<String>,
    /// The rejoin ticket of an earlier join whose connection was lost: the
    /// participant comes back as it was, if it may (see [`JoinDecision::rejoin`]).
    #[serde(default)]
    pub rejoin: Option<String>,
}

/// The room service's answer to a join.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinDecision {
    pub tenant: String,
    pub participant: ParticipantInfo,
    /// For the client only: shown with a join after this one's connection is lost
    /// (within the room service's rejoin grace), it brings the participant back as it
    /// was, past the lock, the password and the waiting room. Opaque.
    #[serde(default)]
    pub rejoin: String,
    /// Present once admitted; absent while in the waiting room.
    pub admission: Option<Admission>,
    pub ice_servers: Vec<IceServer>,
}

/// What a participant needs to enter the room: where the media goes and who is there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admission {
    pub placement: Placement,
    /// The room's SFUs in its other regions: the gateway links `placement` to each.
    #[serde(default)]
    pub relays: Vec<Placement>,
    pub others: Vec<ParticipantInfo>,
    pub settings: RoomSettings,
}

/// Something a host does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum HostAction {
    Admit {
        participant: String,
        allow: bool,
    },
    MuteTrack {
        participant: String,
        kind: TrackKind,
        muted: bool,
    },
    Remove {
        participant: String,
    },
    SetRole {
        participant: String,
        role: Role,
    },
    LockRoom {
        locked: bool,
    },
    AllowScreenShare {
        allowed: bool,
    },
    AllowChat {
        allowed: bool,
    },
    ResolveNameChange {
        participant: String,
        approve: bool,
    },
    /// Lowers a participant's raised hand (it was given the word, or it forgot it).
    LowerHand {
        participant: String,
    },
    /// Lowers every raised hand in the room (the question round is over).
    LowerAllHands,
    /// Starts or stops recording the room.
    Record {
        recording: bool,
    },
    /// Slow mode: seconds each participant waits between chat messages (0: off).
    ChatSlowMode {
        seconds: u32,
    },
    /// Mutes everyone but the hosts (a track kind at a time), as `MuteTrack` does
    /// each: whether they may unmute themselves is the room's `allow_self_unmute`.
    MuteAll {
        kind: TrackKind,
    },
}

impl HostAction {
    /// The action's name, as it is written (`admit`, `mute_track`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            HostAction::Admit { .. } => "admit",
            HostAction::MuteTrack { .. } => "mute_track",
            HostAction::Remove { .. } => "remove",
            HostAction::SetRole { .. } => "set_role",
            HostAction::LockRoom { .. } => "lock_room",
            HostAction::AllowScreenShare { .. } => "allow_screen_share",
            HostAction::AllowChat { .. } => "allow_chat",
            HostAction::ResolveNameChange { .. } => "resolve_name_change",
            HostAction::LowerHand { .. } => "lower_hand",
            HostAction::LowerAllHands => "lower_all_hands",
            HostAction::MuteAll { .. } => "mute_all",
            HostAction::Record { .. } => "record",
            HostAction::ChatSlowMode { .. } => "chat_slow_mode",
        }
    }
}

/// Something a participant does to itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "update", rename_all = "snake_case")]
pub enum SelfUpdate {
    Muted {
        kind: TrackKind,
        muted: bool,
    },
    Name {
        name: String,
    },
    /// Raises or lowers the participant's hand.
    Hand {
        raised: bool,
    },
}

/// One item of a gateway's command stream: a command and its cursor, or (first) only
/// the cursor the stream starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Watched {
    /// Where the stream stands after this item; opaque to the gateway.
    pub cursor: String,
    pub command: Option<GatewayCommand>,
}

/// Where a gateway's command watch starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchFrom {
    /// The gateway has just started and holds no one: participants the room service
    /// still lists for it are left over from its last run, and leave first. Then
    /// the commands from now.
    Start,
    /// The commands from now (the gateway's last cursor was refused).
    Now,
    /// The commands after this cursor, one an earlier watch gave.
    After(String),
}

impl WatchFrom {
    /// The cursor the commands follow, if any.
    pub fn cursor(&self) -> Option<&str> {
        match self {
            Self::After(cursor) => Some(cursor),
            Self::Start | Self::Now => None,
        }
    }
}

/// What the room service asks of a gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum GatewayCommand {
    /// Tell these participants about a change in their room.
    Notify {
        recipients: Vec<String>,
        event: RoomEvent,
    },
    /// A waiting participant was admitted: create its peer and answer its join.
    Admitted {
        participant: String,
        admission: Admission,
    },
    /// A waiting participant was turned away.
    Denied { participant: String },
    /// Stop or resume forwarding a participant's track.
    BlockTrack {
        participant: String,
        kind: TrackKind,
        blocked: bool,
    },
    /// Disconnect a participant; its client is told why (`code`, then `reason`).
    Remove {
        participant: String,
        reason: String,
        #[serde(default)]
        code: Removal,
    },
    /// The participant's SFU is going away: disconnect it and have it join again.
    Move { participant: String },
    /// The room service let the participant go while this gateway was out of its
    /// reach (its lease ran out): end the session without a word, so the client
    /// joins again as after a lost connection.
    Reconnect { participant: String },
}

/// Why a participant is disconnected for good: the error code its client gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Removal {
    /// Its identity joined the room again through another connection (another tab or
    /// device), which took its place.
    Replaced,
    /// A host or the tenant removed it. (Also what an older room service means, and
    /// what a code from a newer one is read as.)
    #[default]
    #[serde(other)]
    Removed,
}

impl Removal {
    pub fn code(self) -> &'static str {
        match self {
            Self::Removed => "removed",
            Self::Replaced => "replaced",
        }
    }
}

/// A change in a room that its members see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RoomEvent {
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantUpdated {
        participant: ParticipantInfo,
    },
    /// One change to several participants at once (a host muted everyone, or lowered
    /// every hand), with each of them as it is after it. Sent only to gateways that
    /// read it (they said so in their watch); others get one `ParticipantUpdated`
    /// each ([`GatewayCommand::unbatched`]).
    ParticipantsChanged {
        change: GroupChange,
        participants: Vec<ParticipantInfo>,
    },
    ParticipantLeft {
        participant: String,
        #[serde(default)]
        reason: LeaveReason,
        /// A lost participant may come back as it was for this long (its
        /// `ParticipantJoined` then names this id as `previous_id`); 0: it will not.
        #[serde(default)]
        rejoin_within_ms: u64,
    },
    /// Someone is in the waiting room (sent to hosts).
    Knock {
        participant: ParticipantInfo,
    },
    /// Someone left the waiting room, admitted or not (sent to hosts).
    KnockResolved {
        participant: String,
        admitted: bool,
    },
    RoomUpdated {
        settings: RoomSettings,
    },
    Data {
        from: Option<String>,
        topic: String,
        payload: String,
    },
}

/// What one change to several participants did to each of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum GroupChange {
    /// A host stopped their `kind` track: blocked, and so muted.
    Blocked { kind: TrackKind },
    /// Their raised hands were lowered.
    HandsLowered,
}

impl GatewayCommand {
    /// This command as a gateway that reads no batched room events gets it: a change
    /// to many participants becomes one `Notify` of `ParticipantUpdated` per
    /// participant; any other command stays as it is.
    pub fn unbatched(self) -> Vec<GatewayCommand> {
        match self {
            Self::Notify {
                recipients,
                event: RoomEvent::ParticipantsChanged { participants, .. },
            } => participants
                .into_iter()
                .map(|participant| Self::Notify {
                    recipients: recipients.clone(),
                    event: RoomEvent::ParticipantUpdated { participant },
                })
                .collect(),
            command => vec![command],
        }
    }
}

/// Why a participant left its room, as its members and the tenant hear it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// It left, or a host removed it: for good.
    #[default]
    Left,
    /// Its connection ended without a leave (the network, its gateway, its media
    /// server): it may come back as it was.
    ConnectionLost,
}

impl LeaveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Left => "left",
            Self::ConnectionLost => "connection_lost",
        }
    }
}

/// `POST /v1/rooms`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRoom {
    pub name: String,
    #[serde(default, deserialize_with = "RoomSettings::strict")]
    pub settings: RoomSettings,
    /// Participants (not hosts) must give it to enter; stored as an argon2 hash.
    #[serde(default)]
    pub password: Option<String>,
}

/// `PATCH /v1/rooms/{name}`: fields present are changed, within `settings` too.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoom {
    /// Settings to change, by their names in [`RoomSettings`]; those not named stay
    /// as they are (a host's lock, say). See [`RoomSettings::patched`].
    #[serde(default)]
    pub settings: Option<serde_json::Map<String, serde_json::Value>>,
    /// A new password; an empty string removes it.
    #[serde(default)]
    pub password: Option<String>,
}

/// `PATCH /v1/rooms/{name}/participants/{id}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateParticipant {
    #[serde(default, deserialize_with = "Permissions::strict")]
    pub permissions: Option<Permissions>,
    #[serde(default)]
    pub metadata: Option<String>,
    #[serde(default)]
    pub role: Option<Role>,
    #[serde(default)]
    pub name: Option<String>,
}

/// `POST /v1/rooms/{name}/data`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendData {
    pub payload: String,
    #[serde(default)]
    pub topic: String,
    /// Participant ids; empty means everyone in the room.
    #[serde(default)]
    pub destination: Vec<String>,
}

/// Data a participant sends the others in its room (signalling `send_data`): an
/// app's own messages (reactions, a shared cursor, a game move), relayed as they are
/// and kept nowhere.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantData {
    pub topic: String,
    pub payload: String,
    /// Participant ids; empty means everyone else in the room.
    #[serde(default)]
    pub destination: Vec<String>,
}

/// `POST /v1/webhooks`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    pub url: String,
}

/// A webhook endpoint; `secret` only in the answer to its creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub created_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// A delivery that ran out of attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub event_id: String,
    pub webhook_id: String,
    pub event: String,
    pub room: String,
    pub attempts: u32,
    pub last_error: String,
    pub created_at: u64,
}

/// A tenant and its first API key; the secret is shown only here.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantCreated {
    pub tenant: String,
    pub api_key: String,
    pub api_secret: String,
}

/// Everything the gateway asks of the room service.
pub trait RoomApi: Send + Sync {
    // Join path (signalling).
    fn join(&self, req: JoinRequest) -> BoxFuture<'_, RoomResult<JoinDecision>>;
    fn leave(&self, participant: String) -> BoxFuture<'_, RoomResult<()>>;
    /// The participant's connection was lost without a leave: it leaves, and may
    /// come back as it was with its rejoin ticket.
    fn disconnected(&self, participant: String) -> BoxFuture<'_, RoomResult<()>>;
    fn host_action(&self, actor: String, action: HostAction) -> BoxFuture<'_, RoomResult<()>>;
    fn self_update(
        &self,
        participant: String,
        update: SelfUpdate,
    ) -> BoxFuture<'_, RoomResult<ParticipantInfo>>;
    /// Relays `data` from `participant` to the others in its room (or those of
    /// `destination` there).
    fn publish_data(
        &self,
        participant: String,
        data: ParticipantData,
    ) -> BoxFuture<'_, RoomResult<()>>;
    /// The participant started (`published`) or stopped sending from `source`.
    fn track_event(
        &self,
        participant: String,
        source: Source,
        published: bool,
    ) -> BoxFuture<'_, RoomResult<()>>;
    /// `Ok` when `participant` is an active member of room `room_key` (`tenant/room`)
    /// and may post in its chat now; forbidden (`not_a_member`, `chat_restricted`)
    /// when not.
    fn check_chat_poster(
        &self,
        room_key: String,
        participant: String,
    ) -> BoxFuture<'_, RoomResult<()>>;
    /// Slow mode: takes the turn of `participant`'s identity to post the message
    /// `client_id` in its room, for `wait_secs` (the room's setting, as the gateway
    /// has it): 0 when taken, or when `client_id` took it (a resend); otherwise the
    /// milliseconds until the turn is free. One turn per identity, across its
    /// connections and gateways; hosts are never held.
    fn chat_slow_mode_turn(
        &self,
        participant: String,
        client_id: String,
        wait_secs: u32,
    ) -> BoxFuture<'_, RoomResult<u64>>;
    /// Slow mode: the message `client_id` that took `participant`'s turn was not
    /// posted after all (refused further on, or the chat service failed): the turn is
    /// free again, unless another message took it since.
    fn chat_slow_mode_give_back(
        &self,
        participant: String,
        client_id: String,
    ) -> BoxFuture<'_, RoomResult<()>>;
    /// Commands for `gateway`'s participants, for as long as the stream is held (see
    /// [`WatchFrom`] for where it starts). The first item is where the stream starts;
    /// a gateway whose watch broke watches again after the last cursor it got, and
    /// loses nothing made meanwhile. While a watch is held, the gateway's lease is
    /// renewed: a gateway that stops watching for longer loses its participants.
    fn watch(
        &self,
        gateway: String,
        from: WatchFrom,
    ) -> BoxFuture<'_, RoomResult<BoxStream<'static, Watched>>>;

    // Tenant API.
    fn authenticate(&self, api_key: String, secret: String) -> BoxFuture<'_, RoomResult<String>>;
    fn create_room(&self, tenant: String, req: CreateRoom) -> BoxFuture<'_, RoomResult<RoomView>>;
    fn list_rooms(&self, tenant: String) -> BoxFuture<'_, RoomResult<Vec<RoomView>>>;
    fn get_room(&self, tenant: String, room: String) -> BoxFuture<'_, RoomResult<RoomView>>;
    fn update_room(
        &self,
        tenant: String,
        room: String,
        req: UpdateRoom,
    ) -> BoxFuture<'_, RoomResult<RoomView>>;
    fn delete_room(&self, tenant: String, room: String) -> BoxFuture<'_, RoomResult<()>>;
    /// Moves every room off the SFU `sfu` (a drain past its deadline): its placements
    /// are cleared and its participants told to join again, which places them anew.
    /// Returns how many rooms were moved.
    fn evacuate(&self, sfu: String) -> BoxFuture<'_, RoomResult<u32>>;
    fn list_participants(
        &self,
        tenant: String,
        room: String,
    ) -> BoxFuture<'_, RoomResult<Vec<ParticipantInfo>>>;
    fn get_participant(
        &self,
        tenant: String,
        room: String,
        participant: String,
    ) -> BoxFuture<'_, RoomResult<ParticipantInfo>>;
    fn update_participant(
        &self,
        tenant: String,
        room: String,
        participant: String,
        req: UpdateParticipant,
    ) -> BoxFuture<'_, RoomResult<ParticipantInfo>>;
    fn mute_track(
        &self,
        tenant: String,
        room: String,
        participant: String,
        kind: TrackKind,
        muted: bool,
    ) -> BoxFuture<'_, RoomResult<ParticipantInfo>>;
    fn remove_participant(
        &self,
        tenant: String,
        room: String,
        participant: String,
    ) -> BoxFuture<'_, RoomResult<()>>;
    fn send_data(
        &self,
        tenant: String,
        room: String,
        req: SendData,
    ) -> BoxFuture<'_, RoomResult<()>>;
    fn create_webhook(
        &self,
        tenant: String,
        req: CreateWebhook,
    ) -> BoxFuture<'_, RoomResult<Webhook>>;
    fn list_webhooks(&self, tenant: String) -> BoxFuture<'_, RoomResult<Vec<Webhook>>>;
    fn delete_webhook(&self, tenant: String, id: String) -> BoxFuture<'_, RoomResult<()>>;
    fn dead_letters(&self, tenant: String) -> BoxFuture<'_, RoomResult<Vec<DeadLetter>>>;
}
