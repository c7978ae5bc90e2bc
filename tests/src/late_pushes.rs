//! The room service as a gateway sees it when the room's pushes reach it late: every
//! answer at once, every command of its watch stream a fixed time after it was made.
//! With the room service across the network, a host's answer and the push about the
//! same change to another member travel different ways, and either may come first.

use std::sync::Arc;
use std::time::Duration;

use confer_room::RoomApi;
use confer_room::RoomResult;
use confer_room::api::*;
use confer_room::model::{ParticipantInfo, RoomView, Source, TrackKind};
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;

pub struct LatePushes {
    inner: Arc<dyn RoomApi>,
    late_by: Duration,
}

impl LatePushes {
    pub fn new(inner: Arc<dyn RoomApi>, late_by: Duration) -> Self {
        Self { inner, late_by }
    }
}

/// Methods passed to the room service as they are.
macro_rules! forward {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $out:ty;)*) => {
        $(fn $name(&self, $($arg: $ty),*) -> BoxFuture<'_, RoomResult<$out>> {
            self.inner.$name($($arg),*)
        })*
    };
}

impl RoomApi for LatePushes {
    fn watch(
        &self,
        gateway: String,
        from: WatchFrom,
    ) -> BoxFuture<'_, RoomResult<BoxStream<'static, Watched>>> {
        let late_by = self.late_by;
        Box::pin(async move {
            let commands = self.inner.watch(gateway, from).await?;
            // Each command is delayed from when it came, and they stay in order.
            let stamped = commands.map(move |command| (tokio::time::Instant::now(), command));
            let late = stamped.then(move |(at, command)| async move {
                tokio::time::sleep_until(at + late_by).await;
                command
            });
            Ok(late.boxed())
        })
    }

    forward! {
        join(req: JoinRequest) -> JoinDecision;
        leave(participant: String) -> ();
        disconnected(participant: String) -> ();
        host_action(actor: String, action: HostAction) -> ();
        self_update(participant: String, update: SelfUpdate) -> ParticipantInfo;
        publish_data(participant: String, data: ParticipantData) -> ();
        track_event(participant: String, source: Source, published: bool) -> ();
        check_chat_poster(room_key: String, participant: String) -> ();
        chat_slow_mode_turn(participant: String, client_id: String, wait_secs: u32) -> u64;
        chat_slow_mode_give_back(participant: String, client_id: String) -> ();
        authenticate(api_key: String, secret: String) -> String;
        create_room(tenant: String, req: CreateRoom) -> RoomView;
        list_rooms(tenant: String) -> Vec<RoomView>;
        get_room(tenant: String, room: String) -> RoomView;
        update_room(tenant: String, room: String, req: UpdateRoom) -> RoomView;
        delete_room(tenant: String, room: String) -> ();
        evacuate(sfu: String) -> u32;
        list_participants(tenant: String, room: String) -> Vec<ParticipantInfo>;
        get_participant(tenant: String, room: String, participant: String) -> ParticipantInfo;
        update_participant(tenant: String, room: String, participant: String, req: UpdateParticipant) -> ParticipantInfo;
        mute_track(tenant: String, room: String, participant: String, kind: TrackKind, muted: bool) -> ParticipantInfo;
        remove_participant(tenant: String, room: String, participant: String) -> ();
        send_data(tenant: String, room: String, req: SendData) -> ();
        create_webhook(tenant: String, req: CreateWebhook) -> Webhook;
        list_webhooks(tenant: String) -> Vec<Webhook>;
        delete_webhook(tenant: String, id: String) -> ();
        dead_letters(tenant: String) -> Vec<DeadLetter>;
    }
}
