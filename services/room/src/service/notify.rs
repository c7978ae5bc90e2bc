//! Telling people: room events to the gateways that hold the recipients, and webhook
//! events into the tenant's durable outbox.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde_json::json;

use super::{RoomService, split_room_key};
use crate::api::{GatewayCommand, LeaveReason, RoomEvent};
use crate::clock::unix_secs;
use crate::error::RoomResult;
use crate::model::{ParticipantInfo, ParticipantState, RoomSettings, Source};
use crate::store::{OutboxEvent, Presence, PresenceChange, tenants_random_token};

/// Who in a room hears an event.
pub(crate) enum Audience {
    /// Active hosts.
    Hosts,
    /// Everyone in the room (not the waiting room).
    Active,
    ActiveExcept(String),
    Only(Vec<String>),
    /// Those of these who are in the room (not the waiting room).
    ActiveAmong(Vec<String>),
}

impl Audience {
    fn includes(&self, member: &ParticipantInfo) -> bool {
        let active = member.state == ParticipantState::Active;
        match self {
            Audience::Hosts => active && member.is_host(),
            Audience::Active => active,
            Audience::ActiveExcept(id) => active && &member.id != id,
            Audience::Only(ids) => ids.contains(&member.id),
            Audience::ActiveAmong(ids) => active && ids.contains(&member.id),
        }
    }
}

/// What tenants hear about.
pub(crate) enum WebhookEvent {
    RoomStarted,
    RoomFinished,
    ParticipantJoined(ParticipantInfo),
    ParticipantLeft(ParticipantInfo, LeaveReason),
    TrackPublished(ParticipantInfo, Source),
    TrackUnpublished(ParticipantInfo, Source),
    /// The room's `recording` setting went on (by a host, the tenant API or an
    /// operator's Conference) ...
    RecordingStarted,
    /// ... or off: the files of what was recorded are finished moments later.
    RecordingStopped,
}

impl WebhookEvent {
    fn name(&self) -> &'static str {
        match self {
            WebhookEvent::RoomStarted => "room_started",
            WebhookEvent::RoomFinished => "room_finished",
            WebhookEvent::ParticipantJoined(_) => "participant_joined",
            WebhookEvent::ParticipantLeft(..) => "participant_left",
            WebhookEvent::TrackPublished(..) => "track_published",
            WebhookEvent::TrackUnpublished(..) => "track_unpublished",
            WebhookEvent::RecordingStarted => "recording_started",
            WebhookEvent::RecordingStopped => "recording_stopped",
        }
    }

    fn participant(&self) -> Option<&ParticipantInfo> {
        match self {
            WebhookEvent::ParticipantJoined(p)
            | WebhookEvent::ParticipantLeft(p, _)
            | WebhookEvent::TrackPublished(p, _)
            | WebhookEvent::TrackUnpublished(p, _) => Some(p),
            WebhookEvent::RoomStarted
            | WebhookEvent::RoomFinished
            | WebhookEvent::RecordingStarted
            | WebhookEvent::RecordingStopped => None,
        }
    }
}

fn participant_json(p: &ParticipantInfo) -> serde_json::Value {
    let mut json = json!({
        "id": p.id,
        "identity": p.identity,
        "name": p.name,
        "role": p.role,
        "metadata": p.metadata,
        "joined_at": p.joined_at,
    });
    // Back after a lost connection: the id its `participant_left` came with.
    if let Some(previous) = &p.previous_id {
        json["previous_id"] = json!(previous);
    }
    json
}

impl RoomService {
    /// Sends `event` to the members of `key` in `audience`, one command per gateway.
    pub(crate) async fn notify(
        &self,
        key: &str,
        audience: Audience,
        event: RoomEvent,
    ) -> RoomResult<()> {
        self.notify_all(key, audience, vec![event]).await
    }

    /// Sends each of `events`, in order, to the members of `key` in `audience`: the
    /// room's member list is read once for all of them (a change to everyone in a big
    /// room costs one read, not one per participant changed), one command per event
    /// per gateway.
    pub(crate) async fn notify_all(
        &self,
        key: &str,
        audience: Audience,
        events: Vec<RoomEvent>,
    ) -> RoomResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.0.member_list_reads.fetch_add(1, Relaxed);
        let members = self.0.live.participants(key).await?;
        let mut by_gateway: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for member in members.iter().filter(|m| audience.includes(m)) {
            by_gateway
                .entry(member.gateway.as_str())
                .or_default()
                .push(member.id.clone());
        }
        for (gateway, recipients) in by_gateway {
            for event in &events {
                let command = GatewayCommand::Notify {
                    recipients: recipients.clone(),
                    event: event.clone(),
                };
                self.0.live.publish(gateway, &command).await?;
                self.0.notifications.fetch_add(1, Relaxed);
            }
        }
        Ok(())
    }

    /// The room's settings changed from `before` to `after` (already stored): its
    /// members are told, and the tenant when recording started or stopped.
    pub(crate) async fn settings_changed(
        &self,
        key: &str,
        before: &RoomSettings,
        after: RoomSettings,
    ) -> RoomResult<()> {
        if *before == after {
            return Ok(());
        }
        let recording = (before.recording != after.recording).then_some(after.recording);
        self.notify(
            key,
            Audience::Active,
            RoomEvent::RoomUpdated { settings: after },
        )
        .await?;
        match recording {
            Some(true) => self.webhook(key, WebhookEvent::RecordingStarted).await,
            Some(false) => self.webhook(key, WebhookEvent::RecordingStopped).await,
            None => Ok(()),
        }
    }

    /// Sends a command to the gateway holding `participant`.
    pub(crate) async fn command(
        &self,
        participant: &ParticipantInfo,
        command: GatewayCommand,
    ) -> RoomResult<()> {
        self.0.live.publish(&participant.gateway, &command).await
    }

    /// Queues a webhook event for every endpoint of the room's tenant.
    pub(crate) async fn webhook(&self, key: &str, event: WebhookEvent) -> RoomResult<()> {
        let (tenant, room) = split_room_key(key);
        self.0
            .store
            .enqueue(tenant, room, &outbox_event(room, &event))
            .await?;
        self.0.outbox_wake.notify_one();
        Ok(())
    }

    /// Counts a participant in or out and queues `events` with it; the first in and
    /// the last out also queue `room_started` / `room_finished`, in order. The last
    /// out leaves the session waiting, empty, for the room's empty timeout or
    /// `linger` (a lost participant's time to come back), whichever is longer.
    pub(crate) async fn presence(
        &self,
        key: &str,
        delta: i64,
        events: &[WebhookEvent],
        linger: Duration,
    ) -> RoomResult<Presence> {
        let (tenant, room) = split_room_key(key);
        let change = PresenceChange {
            tenant: tenant.to_owned(),
            room: room.to_owned(),
            delta,
            events: events.iter().map(|e| outbox_event(room, e)).collect(),
            started: outbox_event(room, &WebhookEvent::RoomStarted),
            finished: outbox_event(room, &WebhookEvent::RoomFinished),
            linger_ms: i64::try_from(linger.as_millis()).unwrap_or(i64::MAX),
        };
        let presence = self.presence_log().record(change).await?;
        self.0.outbox_wake.notify_one();
        Ok(presence)
    }
}

/// A room's `room_finished`, for a session that ended after waiting empty.
pub(crate) fn room_finished(room: &str) -> OutboxEvent {
    outbox_event(room, &WebhookEvent::RoomFinished)
}

fn outbox_event(room: &str, event: &WebhookEvent) -> OutboxEvent {
    let id = format!("EV_{}", tenants_random_token(12));
    let mut body = json!({
        "id": id,
        "event": event.name(),
        "created_at": unix_secs(),
        "room": { "name": room },
    });
    if let Some(participant) = event.participant() {
        body["participant"] = participant_json(participant);
    }
    // Lost: it may come back, as a `participant_joined` naming this id as its `previous_id`.
    if let WebhookEvent::ParticipantLeft(_, reason) = event {
        body["reason"] = json!(reason.as_str());
    }
    if let WebhookEvent::TrackPublished(_, source) | WebhookEvent::TrackUnpublished(_, source) =
        event
    {
        body["track"] = json!({ "kind": source.kind().as_str(), "source": source.as_str() });
    }
    OutboxEvent {
        name: event.name(),
        id,
        body: body.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ada as a room service of the version before stored her, with `tracks`.
    fn ada(tracks: serde_json::Value) -> ParticipantInfo {
        serde_json::from_value(json!({
            "id": "PA_2", "identity": "ada", "name": "Ada", "role": "host",
            "permissions": {}, "metadata": "", "state": "active",
            "audio_muted": false, "video_muted": false,
            "audio_blocked": false, "video_blocked": false, "pending_name": null,
            "tracks": tracks, "joined_at": 1, "gateway": "gw"
        }))
        .expect("a participant")
    }

    #[test]
    fn a_participant_back_after_a_lost_connection_names_its_previous_id() {
        let first = ada(json!([]));
        assert_eq!(participant_json(&first).get("previous_id"), None);
        let back = ParticipantInfo {
            previous_id: Some("PA_1".into()),
            ..first
        };
        assert_eq!(participant_json(&back)["previous_id"], "PA_1");
    }

    #[test]
    fn a_track_event_names_its_kind_and_source() {
        let ada = ada(json!(["video"]));
        assert_eq!(
            ada.sending_from(),
            [Source::Camera],
            "its video read as its camera"
        );
        for (event, name, kind, source) in [
            (
                WebhookEvent::TrackPublished(ada.clone(), Source::ScreenShare),
                "track_published",
                "video",
                "screen_share",
            ),
            (
                WebhookEvent::TrackUnpublished(ada.clone(), Source::Microphone),
                "track_unpublished",
                "audio",
                "microphone",
            ),
        ] {
            let body: serde_json::Value =
                serde_json::from_str(&outbox_event("standup", &event).body).expect("json");
            assert_eq!(body["event"], name);
            assert_eq!(body["track"], json!({ "kind": kind, "source": source }));
            assert_eq!(body["participant"]["id"], "PA_2");
        }
    }
}
