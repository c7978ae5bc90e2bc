//! Joining and leaving: who may enter, the waiting room, placement, and the events
//! that follow.

use std::time::{Duration, Instant};

use confer_auth::{Claims, LEEWAY_SECS, ParticipantKind, TokenError, TokenKey};
use tracing::Instrument as _;

use super::notify::{Audience, WebhookEvent};
use super::rejoin::Departure;
use super::{RoomService, room_key};
use crate::api::{Admission, JoinDecision, JoinRequest};
use crate::clock::unix_secs;
use crate::error::{ErrorKind, RoomError, RoomResult};
use crate::model::{
    ParticipantInfo, ParticipantState, Permissions, Placement, Role, RoomSettings, Source,
};
use crate::store::{Presence, RoomRecord};

pub const MAX_ROOM_CHARS: usize = 64;
pub const MAX_NAME_CHARS: usize = 64;

pub fn validate_room(room: &str) -> RoomResult<()> {
    let valid = !room.is_empty()
        && room.chars().count() <= MAX_ROOM_CHARS
        && room
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !valid {
        return Err(RoomError::invalid(
            "invalid_room",
            format!(
                "room names are 1-{MAX_ROOM_CHARS} characters of letters, digits, '-', '_' and '.'"
            ),
        ));
    }
    Ok(())
}

pub fn validate_name(name: &str) -> RoomResult<String> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(RoomError::invalid(
            "invalid_name",
            format!("display names are 1-{MAX_NAME_CHARS} printable characters"),
        ));
    }
    Ok(name.to_owned())
}

/// Who is joining, once the token (if any) has been checked.
struct Joiner {
    tenant: String,
    identity: String,
    name: String,
    /// `None` for anonymous joins: host if first in, else participant.
    role: Option<Role>,
    permissions: Permissions,
    expires_at: Option<u64>,
    kind: ParticipantKind,
    /// The token has expired: it may only bring back a participant that joined while
    /// it was valid.
    lapsed: bool,
}

fn role_of(claims: &Claims) -> Role {
    if claims.video.room_admin {
        Role::Host
    } else if !claims.video.can_publish {
        Role::Viewer
    } else {
        Role::Participant
    }
}

fn permissions_of(claims: &Claims) -> RoomResult<Permissions> {
    let grant = &claims.video;
    let sources = if grant.can_publish_sources.is_empty() {
        Source::ALL.to_vec()
    } else {
        grant
            .can_publish_sources
            .iter()
            .map(|s| {
                Source::parse(s).ok_or_else(|| {
                    RoomError::new(
                        ErrorKind::Unauthorized,
                        "token_malformed",
                        format!("unknown source `{s}` in canPublishSources"),
                    )
                })
            })
            .collect::<RoomResult<Vec<_>>>()?
    };
    Ok(Permissions {
        can_publish: grant.can_publish,
        can_subscribe: grant.can_subscribe,
        can_publish_data: grant.can_publish_data,
        can_publish_sources: sources,
        hidden: grant.hidden,
    })
}

/// An expired token brings back only a participant that joined while it was valid.
fn joined_while_valid(joiner: &Joiner, returning: Option<&ParticipantInfo>) -> RoomResult<()> {
    let exp = joiner.expires_at.unwrap_or(0);
    if returning.is_some_and(|before| before.joined_at <= exp.saturating_add(LEEWAY_SECS)) {
        return Ok(());
    }
    Err(TokenError::Expired {
        exp,
        now: unix_secs(),
    }
    .into())
}

fn address_of(req: &JoinRequest) -> String {
    req.client_addr.to_string()
}

/// `before`, back through a new connection: as it was (name, role, rights, host
/// blocks, mute state), under the new connection's id, gateway and token.
fn returned(before: &ParticipantInfo, req: &JoinRequest, joiner: &Joiner) -> ParticipantInfo {
    ParticipantInfo {
        id: req.participant_id.clone(),
        previous_id: Some(before.id.clone()),
        state: ParticipantState::Active,
        tracks: Vec::new(),
        sources: Vec::new(),
        token_expires_at: joiner.expires_at,
        gateway: req.gateway.clone(),
        region: req.region.clone(),
        ..before.clone()
    }
}

/// `before`'s place, taken by a new connection of its identity (see `takeover`): as
/// it came back after a lost connection, but under the new token's name, role and
/// rights, with the new client's own mute state.
fn taken_over(before: &ParticipantInfo, req: &JoinRequest, joiner: &Joiner) -> ParticipantInfo {
    ParticipantInfo {
        name: joiner.name.clone(),
        role: joiner.role.unwrap_or(before.role),
        permissions: joiner.permissions.clone(),
        audio_muted: false,
        video_muted: false,
        pending_name: None,
        ..returned(before, req, joiner)
    }
}

/// A place in the room a join takes.
enum Place {
    /// Shown by a rejoin ticket: the participant comes back as it was.
    Ticket(ParticipantInfo),
    /// Its token's identity had it (see `takeover`).
    Identity(ParticipantInfo),
}

impl Place {
    fn before(&self) -> &ParticipantInfo {
        match self {
            Self::Ticket(before) | Self::Identity(before) => before,
        }
    }
}

/// Participant ids are chosen by gateways; this keeps them to a safe alphabet.
fn validate_participant_id(id: &str) -> RoomResult<()> {
    let valid = (4..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(RoomError::invalid(
            "invalid_participant_id",
            "participant ids are 4-64 characters of letters, digits, '_' and '-'",
        ));
    }
    Ok(())
}

impl RoomService {
    pub(crate) async fn do_join(&self, req: JoinRequest) -> RoomResult<JoinDecision> {
        validate_room(&req.room)?;
        validate_participant_id(&req.participant_id)?;
        let now = Instant::now();
        let address = req.client_addr.to_string();
        if !self.0.limiters.joins_per_address.check(&address, now) {
            return Err(RoomError::rate_limited("joins from this address"));
        }
        let joiner = self.identify(&req).await?;
        if !self.0.limiters.joins_per_tenant.check(&joiner.tenant, now) {
            return Err(RoomError::rate_limited("joins for this tenant"));
        }
        let record = self.room_for_join(&joiner, &req.room).await?;
        let key = room_key(&joiner.tenant, &req.room);
        // A token's identity joins in turn with its other joins to the room: it may
        // take one's place, or come back into it by ticket.
        let turn = match joiner.role {
            Some(_) => self.identity_turn(&key, &joiner.identity).await?,
            None => None,
        };
        let result = self.join_in_turn(req, joiner, &record, &key).await;
        if let Some(turn) = turn {
            turn.end().await;
        }
        result
    }

    /// [`RoomService::do_join`] once the join has its turn.
    async fn join_in_turn(
        &self,
        req: JoinRequest,
        joiner: Joiner,
        record: &RoomRecord,
        key: &str,
    ) -> RoomResult<JoinDecision> {
        let returning = match req.rejoin.as_deref().filter(|t| !t.is_empty()) {
            Some(ticket) => {
                let identity = joiner.role.is_some().then_some(joiner.identity.as_str());
                self.returning(key, ticket, identity).await?
            }
            None => None,
        };
        if joiner.lapsed
            && let Err(err) = joined_while_valid(&joiner, returning.as_ref())
        {
            if let Some(before) = &returning {
                self.keep_for_rejoin(key, before).await;
            }
            return Err(err);
        }
        let mut place = returning.map(Place::Ticket);
        let result = self.let_in(&req, joiner, record, key, &mut place).await;
        if result.is_err()
            && let Some(place) = &place
        {
            self.keep_for_rejoin(key, place.before()).await;
        }
        result
    }

    /// Lets `joiner` in (or into the waiting room); into the `place` it takes, when
    /// it comes back after a lost connection (given) or its identity was in the room
    /// (found here).
    async fn let_in(
        &self,
        req: &JoinRequest,
        joiner: Joiner,
        record: &RoomRecord,
        key: &str,
        place: &mut Option<Place>,
    ) -> RoomResult<JoinDecision> {
        let mut members = self.0.live.participants(key).await?;
        // A token's identity already in the room takes its place (an expired token
        // only comes back with its ticket).
        if place.is_none() && joiner.role.is_some() && !joiner.lapsed {
            *place = self
                .take_over(key, &joiner.identity, &mut members)
                .await?
                .map(Place::Identity);
        }
        let place = place.as_ref();
        let active = members
            .iter()
            .filter(|m| m.state == ParticipantState::Active)
            .count();
        let role = match place {
            Some(Place::Ticket(before)) => before.role,
            Some(Place::Identity(before)) => joiner.role.unwrap_or(before.role),
            None => joiner.role.unwrap_or(if active == 0 {
                Role::Host
            } else {
                Role::Participant
            }),
        };
        // A participant coming back was let in before: the lock, the password and the
        // waiting room are behind it.
        let let_in_before = place.is_some() || role == Role::Host;
        if joiner.kind == ParticipantKind::Sip && !record.settings.sip_dial_in {
            return Err(RoomError::forbidden(
                "dial_in_disabled",
                "the room takes no calls over SIP",
            ));
        }
        if record.settings.locked && !let_in_before {
            return Err(RoomError::forbidden("room_locked", "the room is locked"));
        }
        if active >= record.settings.max_participants as usize {
            return Err(RoomError::forbidden("room_full", "the room is full"));
        }
        if let Some(hash) = record.password_hash.as_deref().filter(|_| !let_in_before) {
            self.check_password(&address_of(req), req.password.as_deref(), hash)?;
        }
        let waiting = record.settings.waiting_room && !let_in_before;
        let participant = match place {
            Some(Place::Ticket(before)) => returned(before, req, &joiner),
            Some(Place::Identity(before)) => taken_over(before, req, &joiner),
            None => ParticipantInfo {
                id: req.participant_id.clone(),
                identity: joiner.identity,
                name: joiner.name,
                role,
                permissions: joiner.permissions,
                metadata: String::new(),
                state: if waiting {
                    ParticipantState::Waiting
                } else {
                    ParticipantState::Active
                },
                audio_muted: false,
                video_muted: false,
                audio_blocked: false,
                video_blocked: false,
                pending_name: None,
                region: req.region.clone(),
                kind: joiner.kind,
                tracks: Vec::new(),
                sources: Vec::new(),
                token_expires_at: joiner.expires_at,
                joined_at: unix_secs(),
                gateway: req.gateway.clone(),
                previous_id: None,
                hand_raised_at: None,
            },
        };
        self.0.live.put_participant(key, &participant).await?;
        let admission = if waiting {
            self.notify(
                key,
                Audience::Hosts,
                crate::api::RoomEvent::Knock {
                    participant: participant.clone(),
                },
            )
            .await?;
            None
        } else {
            match self.enter(key, &record.settings, &participant).await {
                Ok(admission) => Some(admission),
                Err(err) => {
                    self.0.live.remove_participant(key, &participant).await?;
                    return Err(err);
                }
            }
        };
        let ice_servers = self
            .0
            .config
            .turn
            .iter()
            .map(|turn| turn.ice_server(&participant.id, unix_secs()))
            .collect();
        Ok(JoinDecision {
            tenant: joiner.tenant,
            rejoin: self.rejoin_ticket(key, &participant.id),
            participant,
            admission,
            ice_servers,
        })
    }

    async fn identify(&self, req: &JoinRequest) -> RoomResult<Joiner> {
        let Some(token) = req.token.as_deref().filter(|t| !t.is_empty()) else {
            let Some(tenant) = self.0.config.anonymous_tenant.clone() else {
                return Err(RoomError::new(
                    ErrorKind::Unauthorized,
                    "token_required",
                    "this server requires an access token",
                ));
            };
            return Ok(Joiner {
                tenant,
                identity: format!("guest-{:08x}", rand::random::<u32>()),
                name: validate_name(&req.name)?,
                role: None,
                permissions: Permissions::default(),
                expires_at: None,
                kind: ParticipantKind::Standard,
                lapsed: false,
            });
        };
        let issuer = TokenKey::peek_issuer(token)?;
        let Some((tenant, secret)) = self.0.store.api_key(&issuer).await? else {
            return Err(confer_auth::TokenError::UnknownIssuer(issuer).into());
        };
        let key = TokenKey::new(issuer, secret.as_bytes());
        let now = unix_secs();
        let rejoining = req.rejoin.as_deref().is_some_and(|t| !t.is_empty());
        let (claims, lapsed) = match key.verify_join(token, &req.room, now) {
            // Back after a lost connection, a token that ran out during the call
            // still names who comes back (see `do_join`).
            Err(TokenError::Expired { .. }) if rejoining => {
                (key.verify_join_lapsed(token, &req.room, now)?, true)
            }
            verified => (verified?, false),
        };
        if let Some(addressed) = req.tenant.as_deref().filter(|t| !t.is_empty())
            && addressed != tenant
        {
            return Err(RoomError::new(
                ErrorKind::Unauthorized,
                "token_wrong_tenant",
                format!("the token belongs to another tenant than `{addressed}`"),
            ));
        }
        let name = if claims.name.is_empty() {
            req.name.clone()
        } else {
            claims.name.clone()
        };
        Ok(Joiner {
            tenant,
            identity: claims.sub.clone(),
            name: validate_name(&name)?,
            role: Some(role_of(&claims)),
            permissions: permissions_of(&claims)?,
            expires_at: Some(claims.exp),
            kind: claims.kind,
            lapsed,
        })
    }

    /// The room's record, creating it on first join with the tenant defaults.
    async fn room_for_join(&self, joiner: &Joiner, room: &str) -> RoomResult<RoomRecord> {
        if let Some(record) = self.0.store.room(&joiner.tenant, room).await? {
            return Ok(record);
        }
        let settings = if joiner.role.is_none() {
            RoomSettings::anonymous()
        } else {
            RoomSettings::default()
        };
        self.0
            .store
            .insert_room(&joiner.tenant, room, &settings, None)
            .await?;
        self.0
            .store
            .room(&joiner.tenant, room)
            .await?
            .ok_or_else(|| RoomError::internal("room vanished after creation"))
    }

    fn check_password(&self, address: &str, given: Option<&str>, hash: &str) -> RoomResult<()> {
        let Some(given) = given.filter(|p| !p.is_empty()) else {
            return Err(RoomError::new(
                ErrorKind::Unauthorized,
                "password_required",
                "this room needs a password",
            ));
        };
        if !self
            .0
            .limiters
            .passwords_per_address
            .check(address, Instant::now())
        {
            return Err(RoomError::rate_limited(
                "password attempts from this address",
            ));
        }
        if !crate::password::verify(given, hash) {
            return Err(RoomError::new(
                ErrorKind::Unauthorized,
                "password_invalid",
                "the room password is wrong",
            ));
        }
        Ok(())
    }

    /// Places the room if needed and tells the room and the tenant that `participant`
    /// is in.
    pub(crate) async fn enter(
        &self,
        key: &str,
        settings: &RoomSettings,
        participant: &ParticipantInfo,
    ) -> RoomResult<Admission> {
        let region =
            settings.region_for(participant.region.as_deref(), &self.0.config.default_region);
        let placement = self.place(key, &region).await?;
        let mut relays = Vec::new();
        for other in settings.all_regions(&self.0.config.default_region) {
            if other != region
                && let Some(there) = self.0.live.placement(key, &other).await?
            {
                relays.push(there);
            }
        }
        if self
            .presence(
                key,
                1,
                &[WebhookEvent::ParticipantJoined(participant.clone())],
                Duration::ZERO,
            )
            .await?
            == Presence::Started
        {
            self.0.live.activate(key).await?;
        }
        if !participant.permissions.hidden {
            self.notify(
                key,
                Audience::ActiveExcept(participant.id.clone()),
                crate::api::RoomEvent::ParticipantJoined {
                    participant: participant.clone(),
                },
            )
            .await?;
        }
        let others = self
            .0
            .live
            .participants(key)
            .await?
            .into_iter()
            .filter(|p| {
                p.id != participant.id
                    && p.state == ParticipantState::Active
                    && !p.permissions.hidden
            })
            .collect();
        Ok(Admission {
            placement,
            relays,
            others,
            settings: settings.clone(),
        })
    }

    /// The room's SFU in `region`: where it already is, or a new choice (a
    /// `room.place` span records which, and where).
    async fn place(&self, key: &str, region: &str) -> RoomResult<Placement> {
        let span = tracing::info_span!(
            "room.place",
            region = %region,
            outcome = tracing::field::Empty,
            sfu = tracing::field::Empty,
        );
        let result: RoomResult<(Placement, &str)> = async {
            if let Some(placement) = self.0.live.placement(key, region).await? {
                return Ok((placement, "existing"));
            }
            let candidate = self.0.registry.choose(region, &self.0.live).await?;
            Ok((self.0.live.place(key, candidate).await?, "placed"))
        }
        .instrument(span.clone())
        .await;
        let outcome = match &result {
            Ok((placement, outcome)) => {
                span.record("sfu", placement.sfu.as_str());
                *outcome
            }
            Err(err) => err.code.as_str(),
        };
        span.record("outcome", outcome);
        self.0.placements.inc(outcome);
        result.map(|(placement, _)| placement)
    }

    pub(crate) async fn do_leave(&self, participant: &str) -> RoomResult<()> {
        if !self.depart(participant, Departure::Left).await? {
            self.left_after_all(participant).await?;
        }
        Ok(())
    }

    /// The participant's connection was lost: it leaves, and may come back as it was
    /// (see `rejoin`).
    pub(crate) async fn do_disconnected(&self, participant: &str) -> RoomResult<()> {
        self.depart(participant, Departure::Lost).await.map(drop)
    }

    /// A participant leaves; `false` when it was not there (it left already, or
    /// another replica let it go first).
    pub(crate) async fn depart(&self, participant: &str, why: Departure) -> RoomResult<bool> {
        let Some((key, info)) = self.0.live.participant(participant).await? else {
            return Ok(false);
        };
        if !self.0.live.remove_participant(&key, &info).await? {
            return Ok(false);
        }
        let active = info.state == ParticipantState::Active;
        // How long the others keep its place: as long as it may come back.
        let rejoin_within = match why {
            Departure::Lost if active && self.keep_for_rejoin(&key, &info).await => {
                self.0.config.rejoin_grace
            }
            Departure::Replaced => self.0.config.rejoin_grace,
            Departure::Left | Departure::Lost => Duration::ZERO,
        };
        let reason = why.reason();
        match info.state {
            ParticipantState::Waiting => {
                self.notify(
                    &key,
                    Audience::Hosts,
                    crate::api::RoomEvent::KnockResolved {
                        participant: participant.to_owned(),
                        admitted: false,
                    },
                )
                .await?;
            }
            ParticipantState::Active => {
                if !info.permissions.hidden {
                    self.notify(
                        &key,
                        Audience::Active,
                        crate::api::RoomEvent::ParticipantLeft {
                            participant: participant.to_owned(),
                            reason,
                            rejoin_within_ms: u64::try_from(rejoin_within.as_millis())
                                .unwrap_or(u64::MAX),
                        },
                    )
                    .await?;
                }
                let mut events: Vec<WebhookEvent> = info
                    .sending_from()
                    .into_iter()
                    .map(|source| WebhookEvent::TrackUnpublished(info.clone(), source))
                    .collect();
                events.push(WebhookEvent::ParticipantLeft(info, reason));
                // An empty room waits for a participant that may come back.
                if self.presence(&key, -1, &events, rejoin_within).await? == Presence::Finished {
                    self.end_session(&key).await?;
                }
            }
        }
        Ok(true)
    }

    /// The room's last participant left: forget its placement, unless someone
    /// entered meanwhile.
    pub(crate) async fn end_session(&self, key: &str) -> RoomResult<()> {
        self.0.live.deactivate(key).await?;
        let members = self.0.live.participants(key).await?;
        if members.iter().any(|m| m.state == ParticipantState::Active) {
            return Ok(());
        }
        for region in self.regions_of(key).await? {
            self.0.live.clear_placement(key, &region).await?;
        }
        Ok(())
    }

    async fn regions_of(&self, key: &str) -> RoomResult<Vec<String>> {
        let (tenant, name) = super::split_room_key(key);
        let default = &self.0.config.default_region;
        Ok(match self.0.store.room(tenant, name).await? {
            Some(record) => record.settings.all_regions(default),
            None => vec![default.clone()],
        })
    }
}
