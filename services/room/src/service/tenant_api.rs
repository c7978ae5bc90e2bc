//! The tenant API's operations: rooms, participants, data messages, webhooks.

use super::data::MAX_DATA_BYTES;
use super::notify::Audience;
use super::{RoomService, room_key};
use crate::api::{
    CreateRoom, CreateWebhook, DeadLetter, RoomEvent, SendData, UpdateParticipant, UpdateRoom,
    Webhook,
};
use crate::error::{ErrorKind, RoomError, RoomResult};
use crate::model::{ParticipantInfo, ParticipantState, RoomSettings, RoomView, TrackKind};
use crate::store::RoomRecord;

const MAX_METADATA_BYTES: usize = 4096;
const MAX_URL_CHARS: usize = 2048;
/// Regions one room may span.
const MAX_REGIONS: usize = 8;

fn room_not_found(name: &str) -> RoomError {
    RoomError::not_found("room_not_found", format!("no room `{name}`"))
}

fn validate_settings(settings: &RoomSettings) -> RoomResult<()> {
    if settings.max_participants == 0 {
        return Err(RoomError::invalid(
            "invalid_settings",
            "max_participants must be at least 1",
        ));
    }
    if settings.regions.len() > MAX_REGIONS
        || settings
            .regions
            .iter()
            .any(|r| r.is_empty() || r.len() > 64 || r.contains(char::is_whitespace))
    {
        return Err(RoomError::invalid(
            "invalid_settings",
            format!("regions: at most {MAX_REGIONS} names of 1 to 64 characters without spaces"),
        ));
    }
    if settings.chat_slow_mode_secs > crate::model::MAX_CHAT_SLOW_MODE_SECS {
        return Err(RoomError::invalid(
            "invalid_settings",
            format!(
                "chat_slow_mode_secs is at most {}",
                crate::model::MAX_CHAT_SLOW_MODE_SECS
            ),
        ));
    }
    if settings.metadata.len() > MAX_METADATA_BYTES {
        return Err(RoomError::invalid(
            "invalid_settings",
            format!("metadata is limited to {MAX_METADATA_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Constant-time comparison, so a wrong secret's timing says nothing about the right one.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl RoomService {
    pub(crate) async fn do_authenticate(&self, key: &str, secret: &str) -> RoomResult<String> {
        let refused = || {
            RoomError::new(
                ErrorKind::Unauthorized,
                "unauthorized",
                "unknown API key or wrong secret",
            )
        };
        match self.0.store.api_key(key).await? {
            Some((tenant, stored)) if same_secret(&stored, secret) => Ok(tenant),
            _ => Err(refused()),
        }
    }

    async fn view(&self, tenant: &str, record: RoomRecord) -> RoomResult<RoomView> {
        let key = room_key(tenant, &record.name);
        let mut placements = Vec::new();
        for region in record.settings.all_regions(&self.0.config.default_region) {
            if let Some(placement) = self.0.live.placement(&key, &region).await? {
                placements.push(placement);
            }
        }
        let home = record
            .settings
            .home_region(&self.0.config.default_region)
            .to_owned();
        let members = self.0.live.participants(&key).await?;
        let active = members
            .iter()
            .filter(|m| m.state == ParticipantState::Active)
            .count();
        Ok(RoomView {
            placement: placements.first().filter(|p| p.region == home).cloned(),
            placements,
            active: self.0.live.is_active(&key).await?,
            num_participants: u32::try_from(active).unwrap_or(u32::MAX),
            has_password: record.password_hash.is_some(),
            created_at: record.created_at,
            settings: record.settings,
            name: record.name,
        })
    }

    async fn record(&self, tenant: &str, room: &str) -> RoomResult<RoomRecord> {
        self.0
            .store
            .room(tenant, room)
            .await?
            .ok_or_else(|| room_not_found(room))
    }

    pub(crate) async fn do_create_room(
        &self,
        tenant: &str,
        req: CreateRoom,
    ) -> RoomResult<RoomView> {
        super::validate_room(&req.name)?;
        validate_settings(&req.settings)?;
        let hash = req
            .password
            .as_deref()
            .map(crate::password::hash)
            .transpose()?;
        if !self
            .0
            .store
            .insert_room(tenant, &req.name, &req.settings, hash.as_deref())
            .await?
        {
            return Err(RoomError::new(
                ErrorKind::Conflict,
                "room_exists",
                format!("a room named `{}` exists", req.name),
            ));
        }
        let record = self.record(tenant, &req.name).await?;
        self.view(tenant, record).await
    }

    pub(crate) async fn do_list_rooms(&self, tenant: &str) -> RoomResult<Vec<RoomView>> {
        let mut views = Vec::new();
        for record in self.0.store.rooms(tenant).await? {
            views.push(self.view(tenant, record).await?);
        }
        Ok(views)
    }

    pub(crate) async fn do_get_room(&self, tenant: &str, room: &str) -> RoomResult<RoomView> {
        let record = self.record(tenant, room).await?;
        self.view(tenant, record).await
    }

    pub(crate) async fn do_update_room(
        &self,
        tenant: &str,
        room: &str,
        req: UpdateRoom,
    ) -> RoomResult<RoomView> {
        let record = self.record(tenant, room).await?;
        let settings = match &req.settings {
            Some(changes) => record.settings.patched(changes).map_err(|err| {
                RoomError::invalid("invalid_settings", format!("settings: {err}"))
            })?,
            None => record.settings.clone(),
        };
        validate_settings(&settings)?;
        let hash = match req.password.as_deref() {
            None => record.password_hash.clone(),
            Some("") => None,
            Some(password) => Some(crate::password::hash(password)?),
        };
        self.0
            .store
            .update_room(tenant, room, &settings, hash.as_deref())
            .await?;
        self.settings_changed(&room_key(tenant, room), &record.settings, settings)
            .await?;
        self.do_get_room(tenant, room).await
    }

    /// Ends the room: everyone is disconnected, then the room is deleted.
    pub(crate) async fn do_delete_room(&self, tenant: &str, room: &str) -> RoomResult<()> {
        self.record(tenant, room).await?;
        let key = room_key(tenant, room);
        for member in self.0.live.participants(&key).await? {
            self.remove(&key, &member.id).await?;
        }
        self.0.store.delete_room(tenant, room).await?;
        Ok(())
    }

    pub(crate) async fn do_list_participants(
        &self,
        tenant: &str,
        room: &str,
    ) -> RoomResult<Vec<ParticipantInfo>> {
        self.record(tenant, room).await?;
        self.0.live.participants(&room_key(tenant, room)).await
    }

    pub(crate) async fn do_get_participant(
        &self,
        tenant: &str,
        room: &str,
        id: &str,
    ) -> RoomResult<ParticipantInfo> {
        self.record(tenant, room).await?;
        self.member(&room_key(tenant, room), id).await
    }

    pub(crate) async fn do_update_participant(
        &self,
        tenant: &str,
        room: &str,
        id: &str,
        req: UpdateParticipant,
    ) -> RoomResult<ParticipantInfo> {
        let key = room_key(tenant, room);
        let mut target = self.do_get_participant(tenant, room, id).await?;
        if let Some(metadata) = req.metadata {
            if metadata.len() > MAX_METADATA_BYTES {
                return Err(RoomError::invalid(
                    "invalid_metadata",
                    format!("metadata is limited to {MAX_METADATA_BYTES} bytes"),
                ));
            }
            target.metadata = metadata;
        }
        if let Some(name) = req.name {
            target.name = super::validate_name(&name)?;
        }
        if let Some(role) = req.role {
            target.role = role;
        }
        if let Some(permissions) = req.permissions {
            // Publishing rights withdrawn: stop what is already flowing.
            for (kind, allowed) in [
                (
                    TrackKind::Audio,
                    permissions.may_publish(crate::model::Source::Microphone),
                ),
                (
                    TrackKind::Video,
                    permissions.may_publish(crate::model::Source::Camera),
                ),
            ] {
                let blocked = match kind {
                    TrackKind::Audio => target.audio_blocked,
                    TrackKind::Video => target.video_blocked,
                };
                if !allowed && !blocked {
                    target = self.set_blocked(&key, target, kind, true).await?;
                }
            }
            target.permissions = permissions;
        }
        self.updated(&key, &target).await?;
        Ok(target)
    }

    pub(crate) async fn do_mute_track(
        &self,
        tenant: &str,
        room: &str,
        id: &str,
        kind: TrackKind,
        muted: bool,
    ) -> RoomResult<ParticipantInfo> {
        let target = self.do_get_participant(tenant, room, id).await?;
        self.set_blocked(&room_key(tenant, room), target, kind, muted)
            .await
    }

    pub(crate) async fn do_remove_participant(
        &self,
        tenant: &str,
        room: &str,
        id: &str,
    ) -> RoomResult<()> {
        self.record(tenant, room).await?;
        self.remove(&room_key(tenant, room), id).await
    }

    pub(crate) async fn do_send_data(
        &self,
        tenant: &str,
        room: &str,
        req: SendData,
    ) -> RoomResult<()> {
        self.record(tenant, room).await?;
        if req.payload.len() > MAX_DATA_BYTES {
            return Err(RoomError::invalid(
                "payload_too_large",
                format!("data messages are limited to {MAX_DATA_BYTES} bytes"),
            ));
        }
        let audience = if req.destination.is_empty() {
            Audience::Active
        } else {
            Audience::Only(req.destination)
        };
        let event = RoomEvent::Data {
            from: None,
            topic: req.topic,
            payload: req.payload,
        };
        self.notify(&room_key(tenant, room), audience, event).await
    }

    pub(crate) async fn do_create_webhook(
        &self,
        tenant: &str,
        req: CreateWebhook,
    ) -> RoomResult<Webhook> {
        let url = req.url.trim();
        let valid = url.len() <= MAX_URL_CHARS
            && (url.starts_with("https://") || url.starts_with("http://"))
            && reqwest::Url::parse(url).is_ok_and(|u| u.host().is_some());
        if !valid {
            return Err(RoomError::invalid(
                "invalid_url",
                "webhook URLs are absolute http(s) URLs",
            ));
        }
        self.0.store.create_webhook(tenant, url).await
    }

    pub(crate) async fn do_list_webhooks(&self, tenant: &str) -> RoomResult<Vec<Webhook>> {
        self.0.store.webhooks(tenant).await
    }

    pub(crate) async fn do_delete_webhook(&self, tenant: &str, id: &str) -> RoomResult<()> {
        if self.0.store.delete_webhook(tenant, id).await? {
            Ok(())
        } else {
            Err(RoomError::not_found(
                "webhook_not_found",
                format!("no webhook `{id}`"),
            ))
        }
    }

    pub(crate) async fn do_dead_letters(&self, tenant: &str) -> RoomResult<Vec<DeadLetter>> {
        self.0.store.dead_letters(tenant).await
    }
}
