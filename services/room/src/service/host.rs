//! Host controls and what participants change about themselves.

use futures_util::StreamExt as _;

use super::notify::{Audience, WebhookEvent};
use super::{RoomService, split_room_key};
use crate::api::{GatewayCommand, GroupChange, HostAction, RoomEvent, SelfUpdate};
use crate::clock::unix_millis;
use crate::error::{RoomError, RoomResult};
use crate::model::{ParticipantInfo, ParticipantState, Role, RoomSettings, Source, TrackKind};
use crate::store::AuditEntry;

/// Participants of one room an evacuation moves at once.
const EVACUATION_LEAVES: usize = 64;

/// Participants a host's "mute everyone" mutes (or "lower all hands" lowers) at once.
const MUTED_AT_ONCE: usize = 16;

/// Runs `update` on each of `targets`, [`MUTED_AT_ONCE`] at a time; every one is
/// tried: those updated come back, and the first failure.
async fn at_once<Done>(
    targets: impl Iterator<Item = ParticipantInfo>,
    update: impl FnMut(ParticipantInfo) -> Done,
) -> Updates
where
    Done: Future<Output = RoomResult<ParticipantInfo>>,
{
    let results: Vec<RoomResult<ParticipantInfo>> = futures_util::stream::iter(targets)
        .map(update)
        .buffer_unordered(MUTED_AT_ONCE)
        .collect()
        .await;
    let mut updates = Updates::default();
    for result in results {
        match result {
            Ok(participant) => updates.done.push(participant),
            Err(err) => {
                updates.failed.get_or_insert(err);
            }
        }
    }
    updates
}

/// What updating many participants did: those updated, and the first failure.
#[derive(Default)]
struct Updates {
    done: Vec<ParticipantInfo>,
    failed: Option<RoomError>,
}

pub(super) fn not_joined() -> RoomError {
    RoomError::not_found("not_joined", "join a room first")
}

fn no_participant(id: &str) -> RoomError {
    RoomError::not_found(
        "participant_not_found",
        format!("no participant `{id}` in this room"),
    )
}

impl RoomService {
    pub(crate) async fn do_host_action(&self, actor: &str, action: HostAction) -> RoomResult<()> {
        let (key, actor) = self
            .0
            .live
            .participant(actor)
            .await?
            .ok_or_else(not_joined)?;
        if !actor.is_host() || actor.state != ParticipantState::Active {
            return Err(RoomError::forbidden("not_host", "only a host may do that"));
        }
        // The token that made this participant a host is checked again on every
        // privileged action, not only at join.
        if let Some(exp) = actor.token_expires_at
            && crate::clock::unix_secs() > exp.saturating_add(confer_auth::LEEWAY_SECS)
        {
            return Err(RoomError::new(
                crate::error::ErrorKind::Unauthorized,
                "token_expired",
                format!("the access token expired at {exp}; reconnect with a fresh one"),
            ));
        }
        self.audit(&key, &actor.identity, &action).await?;
        match action {
            HostAction::Admit { participant, allow } => self.admit(&key, &participant, allow).await,
            HostAction::MuteTrack {
                participant,
                kind,
                muted,
            } => {
                let target = self.member(&key, &participant).await?;
                self.set_blocked(&key, target, kind, muted).await.map(drop)
            }
            HostAction::Remove { participant } => self.remove(&key, &participant).await,
            HostAction::SetRole { participant, role } => {
                let mut target = self.member(&key, &participant).await?;
                target.role = role;
                if role == Role::Viewer {
                    target.permissions.can_publish = false;
                }
                self.updated(&key, &target).await
            }
            HostAction::LockRoom { locked } => {
                self.change_settings(&key, |s| s.locked = locked).await
            }
            HostAction::AllowScreenShare { allowed } => {
                self.change_settings(&key, |s| s.allow_screen_share = allowed)
                    .await
            }
            HostAction::AllowChat { allowed } => {
                self.change_settings(&key, |s| s.allow_chat = allowed).await
            }
            HostAction::Record { recording } => {
                self.change_settings(&key, |s| s.recording = recording)
                    .await
            }
            HostAction::ChatSlowMode { seconds } => {
                if seconds > crate::model::MAX_CHAT_SLOW_MODE_SECS {
                    return Err(RoomError::invalid(
                        "invalid_request",
                        format!(
                            "slow mode is at most {} seconds",
                            crate::model::MAX_CHAT_SLOW_MODE_SECS
                        ),
                    ));
                }
                self.change_settings(&key, |s| s.chat_slow_mode_secs = seconds)
                    .await
            }
            HostAction::ResolveNameChange {
                participant,
                approve,
            } => {
                let mut target = self.member(&key, &participant).await?;
                let pending = target.pending_name.take().ok_or_else(|| {
                    RoomError::invalid("no_pending_name", "no name change is waiting")
                })?;
                if approve {
                    target.name = pending;
                }
                self.updated(&key, &target).await
            }
            HostAction::MuteAll { kind } => self.mute_all(&key, kind).await,
            HostAction::LowerAllHands => self.lower_all_hands(&key).await,
            HostAction::LowerHand { participant } => {
                let mut target = self.member(&key, &participant).await?;
                if target.hand_raised_at.take().is_none() {
                    return Ok(());
                }
                self.updated(&key, &target).await
            }
        }
    }

    async fn audit(&self, key: &str, actor: &str, action: &HostAction) -> RoomResult<()> {
        let (tenant, room) = split_room_key(key);
        let entry = AuditEntry {
            actor: actor.to_owned(),
            action: action.name().to_owned(),
            room: room.to_owned(),
            detail: serde_json::to_string(action).unwrap_or_default(),
        };
        self.0.store.audit(tenant, &entry).await
    }

    /// A participant of room `key`, or `participant_not_found`.
    pub(crate) async fn member(&self, key: &str, id: &str) -> RoomResult<ParticipantInfo> {
        match self.0.live.participant(id).await? {
            Some((room, info)) if room == key => Ok(info),
            _ => Err(no_participant(id)),
        }
    }

    /// Stores `participant` and tells the room.
    pub(crate) async fn updated(&self, key: &str, participant: &ParticipantInfo) -> RoomResult<()> {
        self.0.live.put_participant(key, participant).await?;
        self.tell_updated(key, std::slice::from_ref(participant))
            .await
    }

    /// Tells the room of participants changed (and stored): those in it and listed,
    /// all with one read of its members.
    async fn tell_updated(&self, key: &str, changed: &[ParticipantInfo]) -> RoomResult<()> {
        let events = changed
            .iter()
            .filter(|p| p.state == ParticipantState::Active && !p.permissions.hidden)
            .map(|p| RoomEvent::ParticipantUpdated {
                participant: p.clone(),
            })
            .collect();
        self.notify_all(key, Audience::Active, events).await
    }

    /// Tells the room of one `change` to many participants (already stored): those in
    /// it and listed, as one event, so each gateway gets one command however many
    /// changed.
    async fn tell_changed(
        &self,
        key: &str,
        change: GroupChange,
        changed: Vec<ParticipantInfo>,
    ) -> RoomResult<()> {
        let participants: Vec<ParticipantInfo> = changed
            .into_iter()
            .filter(|p| p.state == ParticipantState::Active && !p.permissions.hidden)
            .collect();
        if participants.is_empty() {
            return Ok(());
        }
        let event = RoomEvent::ParticipantsChanged {
            change,
            participants,
        };
        self.notify_all(key, Audience::Active, vec![event]).await
    }

    async fn admit(&self, key: &str, id: &str, allow: bool) -> RoomResult<()> {
        let mut target = self.member(key, id).await?;
        if target.state != ParticipantState::Waiting {
            return Err(RoomError::invalid(
                "not_waiting",
                "that participant is not waiting",
            ));
        }
        self.notify(
            key,
            Audience::Hosts,
            RoomEvent::KnockResolved {
                participant: id.to_owned(),
                admitted: allow,
            },
        )
        .await?;
        if !allow {
            self.0.live.remove_participant(key, &target).await?;
            return self
                .command(
                    &target,
                    GatewayCommand::Denied {
                        participant: id.to_owned(),
                    },
                )
                .await;
        }
        target.state = ParticipantState::Active;
        self.0.live.put_participant(key, &target).await?;
        let settings = self.settings(key).await?;
        let admission = self.enter(key, &settings, &target).await?;
        self.command(
            &target,
            GatewayCommand::Admitted {
                participant: id.to_owned(),
                admission,
            },
        )
        .await
    }

    /// Blocks or unblocks forwarding of a participant's track (host mute), and tells
    /// the room.
    pub(crate) async fn set_blocked(
        &self,
        key: &str,
        target: ParticipantInfo,
        kind: TrackKind,
        blocked: bool,
    ) -> RoomResult<ParticipantInfo> {
        let target = self.block(key, target, kind, blocked).await?;
        self.tell_updated(key, std::slice::from_ref(&target))
            .await?;
        Ok(target)
    }

    /// Blocks or unblocks forwarding of a participant's track and stores it; the room
    /// is told by the caller.
    async fn block(
        &self,
        key: &str,
        mut target: ParticipantInfo,
        kind: TrackKind,
        blocked: bool,
    ) -> RoomResult<ParticipantInfo> {
        match kind {
            TrackKind::Audio => {
                target.audio_blocked = blocked;
                target.audio_muted |= blocked;
            }
            TrackKind::Video => {
                target.video_blocked = blocked;
                target.video_muted |= blocked;
            }
        }
        self.command(
            &target,
            GatewayCommand::BlockTrack {
                participant: target.id.clone(),
                kind,
                blocked,
            },
        )
        .await?;
        self.0.live.put_participant(key, &target).await?;
        Ok(target)
    }

    /// Mutes `kind` for everyone in room `key` who sends it and is not a host,
    /// [`MUTED_AT_ONCE`] at a time, then tells the room of them all at once; every one
    /// is tried, and the first failure returned.
    async fn mute_all(&self, key: &str, kind: TrackKind) -> RoomResult<()> {
        let targets = self
            .0
            .live
            .participants(key)
            .await?
            .into_iter()
            .filter(|p| {
                let blocked = match kind {
                    TrackKind::Audio => p.audio_blocked,
                    TrackKind::Video => p.video_blocked,
                };
                p.state == ParticipantState::Active
                    && !p.is_host()
                    && p.permissions.can_publish
                    && !blocked
            });
        let muted = at_once(targets, |target| self.block(key, target, kind, true)).await;
        let failed = muted.failed;
        self.tell_changed(key, GroupChange::Blocked { kind }, muted.done)
            .await?;
        failed.map_or(Ok(()), Err)
    }

    /// Lowers every raised hand in room `key`, [`MUTED_AT_ONCE`] at a time, then tells
    /// the room of them all at once; every one is tried, and the first failure
    /// returned.
    async fn lower_all_hands(&self, key: &str) -> RoomResult<()> {
        let raised = self
            .0
            .live
            .participants(key)
            .await?
            .into_iter()
            .filter(|p| p.hand_raised_at.is_some());
        let lowered = at_once(raised, |mut target| async move {
            target.hand_raised_at = None;
            self.0.live.put_participant(key, &target).await?;
            Ok(target)
        })
        .await;
        let failed = lowered.failed;
        self.tell_changed(key, GroupChange::HandsLowered, lowered.done)
            .await?;
        failed.map_or(Ok(()), Err)
    }

    /// Moves every room off `sfu`: placements first (so the rejoins place anew, away
    /// from the draining node), then each participant is told to join again and left.
    /// A room's participants move [`EVACUATION_LEAVES`] at a time, so their leaves share
    /// presence commits; every one is tried, and the first failure is returned.
    pub(crate) async fn do_evacuate(&self, sfu: &str) -> RoomResult<u32> {
        let rooms = self.0.live.rooms_placed_on(sfu).await?;
        for (key, region) in &rooms {
            self.0.live.clear_placement(key, region).await?;
            let participants = self.0.live.participants(key).await?;
            let moved: Vec<RoomResult<()>> = futures_util::stream::iter(participants)
                .map(|participant| self.evacuate_one(participant))
                .buffer_unordered(EVACUATION_LEAVES)
                .collect()
                .await;
            moved.into_iter().collect::<RoomResult<()>>()?;
        }
        Ok(u32::try_from(rooms.len()).unwrap_or(u32::MAX))
    }

    async fn evacuate_one(&self, participant: ParticipantInfo) -> RoomResult<()> {
        let id = participant.id.clone();
        self.command(
            &participant,
            GatewayCommand::Move {
                participant: id.clone(),
            },
        )
        .await?;
        self.do_disconnected(&id).await
    }

    pub(crate) async fn remove(&self, key: &str, id: &str) -> RoomResult<()> {
        let target = self.member(key, id).await?;
        self.command(
            &target,
            GatewayCommand::Remove {
                participant: id.to_owned(),
                reason: "removed by a host".into(),
                code: crate::api::Removal::Removed,
            },
        )
        .await?;
        self.do_leave(id).await
    }

    pub(crate) async fn settings(&self, key: &str) -> RoomResult<RoomSettings> {
        let (tenant, room) = split_room_key(key);
        Ok(self
            .0
            .store
            .room(tenant, room)
            .await?
            .map(|r| r.settings)
            .unwrap_or_default())
    }

    async fn change_settings(
        &self,
        key: &str,
        change: impl FnOnce(&mut RoomSettings),
    ) -> RoomResult<()> {
        let (tenant, room) = split_room_key(key);
        let record = self
            .0
            .store
            .room(tenant, room)
            .await?
            .ok_or_else(|| RoomError::not_found("room_not_found", "no such room"))?;
        let mut settings = record.settings.clone();
        change(&mut settings);
        self.0
            .store
            .update_room(tenant, room, &settings, record.password_hash.as_deref())
            .await?;
        self.settings_changed(key, &record.settings, settings).await
    }

    pub(crate) async fn do_self_update(
        &self,
        id: &str,
        update: SelfUpdate,
    ) -> RoomResult<ParticipantInfo> {
        let (key, mut me) = self.0.live.participant(id).await?.ok_or_else(not_joined)?;
        match update {
            SelfUpdate::Muted { kind, muted } => {
                let blocked = match kind {
                    TrackKind::Audio => me.audio_blocked,
                    TrackKind::Video => me.video_blocked,
                };
                if blocked && !muted {
                    if !self.settings(&key).await?.allow_self_unmute && !me.is_host() {
                        return Err(RoomError::forbidden(
                            "muted_by_host",
                            "a host muted you; ask them to unmute you",
                        ));
                    }
                    me = self.set_blocked(&key, me, kind, false).await?;
                }
                match kind {
                    TrackKind::Audio => me.audio_muted = muted,
                    TrackKind::Video => me.video_muted = muted,
                }
            }
            SelfUpdate::Name { name } => {
                let name = super::validate_name(&name)?;
                if self.settings(&key).await?.name_changes_need_approval && !me.is_host() {
                    me.pending_name = Some(name);
                    self.0.live.put_participant(&key, &me).await?;
                    self.notify(
                        &key,
                        Audience::Hosts,
                        RoomEvent::ParticipantUpdated {
                            participant: me.clone(),
                        },
                    )
                    .await?;
                    return Ok(me);
                }
                me.name = name;
            }
            SelfUpdate::Hand { raised } => {
                // A hand raised again keeps its place in the queue.
                let at = raised.then(|| me.hand_raised_at.unwrap_or_else(unix_millis));
                if at == me.hand_raised_at {
                    return Ok(me);
                }
                me.hand_raised_at = at;
            }
        }
        self.updated(&key, &me).await?;
        Ok(me)
    }

    /// The participant `id` started (`published`) or stopped sending from `source`.
    pub(crate) async fn do_track_event(
        &self,
        id: &str,
        source: Source,
        published: bool,
    ) -> RoomResult<()> {
        let (key, mut me) = self.0.live.participant(id).await?.ok_or_else(not_joined)?;
        me.sources = me.sending_from();
        if me.sources.contains(&source) == published {
            return Ok(());
        }
        if published {
            me.sources.push(source);
        } else {
            me.sources.retain(|s| *s != source);
        }
        me.tracks = [TrackKind::Audio, TrackKind::Video]
            .into_iter()
            .filter(|kind| me.sources.iter().any(|s| s.kind() == *kind))
            .collect();
        self.0.live.put_participant(&key, &me).await?;
        let event = if published {
            WebhookEvent::TrackPublished(me, source)
        } else {
            WebhookEvent::TrackUnpublished(me, source)
        };
        self.webhook(&key, event).await
    }
}
