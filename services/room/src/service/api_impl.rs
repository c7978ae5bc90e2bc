//! [`RoomApi`] in-process: each call runs [`RoomService`]'s logic directly.

use futures_util::stream::BoxStream;

use super::RoomService;
use crate::api::{
    BoxFuture, CreateRoom, CreateWebhook, DeadLetter, HostAction, JoinDecision, JoinRequest,
    ParticipantData, RoomApi, SelfUpdate, SendData, UpdateParticipant, UpdateRoom, WatchFrom,
    Watched, Webhook,
};
use crate::error::RoomResult;
use crate::model::{ParticipantInfo, RoomView, Source, TrackKind};

impl RoomApi for RoomService {
    fn join(&self, req: JoinRequest) -> BoxFuture<'_, RoomResult<JoinDecision>> {
        let span = tracing::info_span!("room.join", room = %req.room);
        Box::pin(tracing::Instrument::instrument(self.do_join(req), span))
    }

    fn leave(&self, participant: String) -> BoxFuture<'_, RoomResult<()>> {
        Box::pin(async move { self.do_leave(&participant).await })
    }

    fn disconnected(&self, participant: String) -> BoxFuture<'_, RoomResult<()>> {
        Box::pin(async move { self.do_disconnected(&participant).await })
    }

    fn host_action(&self, actor: String, action: HostAction) -> BoxFuture<'_, RoomResult<()>> {
        Box::pin(async move { self.do_host_action(&actor, action).await })
    }

    fn chat_slow_mode_turn(
        &self,
        participant: String,
        client_id: String,
        wait_secs: u32,
    ) -> BoxFuture<'_, RoomResult<u64>> {
        Box::pin(async move {
            self.do_chat_slow_mode_turn(&participant, &client_id, wait_secs)
                .await
        })
    }

    fn chat_slow_mode_give_back(
        &self,
        participant: String,
        client_id: String,
    ) -> BoxFuture<'_, RoomResult<()>> {
        Box::pin(async move {
            self.do_chat_slow_mode_give_back(&participant, &client_id)
                .await
        })
    }

    fn check_chat_poster(
        &self,
        room_key: String,
        participant: String,
    ) -> BoxFuture<'_, RoomResult<()>> {
        Box::pin(async move { self.do_check_chat_poster(&room_key, &participant).await })
    }

    fn self_update(
        &self,
        participant: String,
        update: SelfUpdate,
    ) -> BoxFuture<'_, RoomResult<ParticipantInfo>> {
        Box::pin(async move { self.do_self_update(&participant, update).await })
    }

    fn publish_data(
        &self,
        participant: String,
        data: ParticipantData,
    ) -> BoxFuture<'_, RoomResult<()>> {
        Box::pin(async move { self.do_publish_data(&participant, data).await })
    }

    fn track_event(
        &self,
        participant: String,
        source: Source,
        published: bool,
    ) -> BoxFuture<'_, RoomResult<()>> {
        Box::pin(async move { self.do_track_event(&participant, source, published).await })
    }

    fn watch(
        &self,
        gateway: String,
        from: WatchFrom,
    ) -> BoxFuture<'_, RoomResult<BoxStream<'static, Watched>>> {
        Box::pin(async move { self.do_watch(&gateway, from).await })
    }

    fn authenticate(&self, api_key: String, secret: String) -> BoxFuture<'_, RoomResult<String>> {
        Box::pin(async move { self.do_authenticate(&api_key, &secret).await })
    }

    fn create_room(&self, tenant: String, req: CreateRoom) -> BoxFuture<'_, RoomResult<RoomView>> {
        Box::pin(async move { self.do_create_room(&tenant, req).await })
    }

    fn list_rooms(&self, tenant: String) -> BoxFuture<'_, RoomResult<Vec<RoomView>>> {
        Box::pin(async move { self.do_list_rooms(&tenant).await })
    }

    fn get_room(&self, tenant: String, room: String) -> BoxFuture<'_, RoomResult<RoomView>> {
        Box::pin(async move { self.do_get_room(&tenant, &room).await })
    }

    fn update_room(
        &self,
        tenant: String,
        room: String,
        req: UpdateRoom,
    ) -> BoxFuture<'_, RoomResult<RoomView>> {
        Box::pin(async move { self.do_update_room(&tenant, &room, req).await })
    }

    fn delete_room(&self, tenant: String, room: String) -> BoxFuture<'_, RoomResult<()>> {
        Box::pin(async move { self.do_delete_room(&tenant, &room).await })
    }

    fn evacuate(&self, sfu: String) -> BoxFuture<'_, RoomResult<u32>> {
        Box::pin(async move { self.do_evacuate(&sfu).await })
    }

    fn list_participants(
        &self,
        tenant: String,
        room: String,
    ) -> BoxFuture<'_, RoomResult<Vec<ParticipantInfo>>> {
        Box::pin(async move { self.do_list_participants(&tenant, &room).await })
    }

    fn get_participant(
        &self,
        tenant: String,
        room: String,
        participant: String,
    ) -> BoxFuture<'_, RoomResult<ParticipantInfo>> {
        Box::pin(async move { self.do_get_participant(&tenant, &room, &participant).await })
    }

    fn update_participant(
        &self,
        tenant: String,
        room: String,
        participant: String,
        req: UpdateParticipant,
    ) -> BoxFuture<'_, RoomResult<ParticipantInfo>> {
        Box::pin(async move {
            self.do_update_participant(&tenant, &room, &participant, req)
                .await
        })
    }

    fn mute_track(
        &self,
        tenant: String,
        room: String,
        participant: String,
        kind: TrackKind,
        muted: bool,
    ) -> BoxFuture<'_, RoomResult<ParticipantInfo>> {
        Box::pin(async move {
            self.do_mute_track(&tenant, &room, &participant, kind, muted)
                .await
        })
    }

    fn remove_participant(
        &self,
        tenant: String,
        room: String,
        participant: String,
    ) -> BoxFuture<'_, RoomResult<()>> {
        Box::pin(async move {
            self.do_remove_participant(&tenant, &room, &participant)
                .await
        })
    }

    fn send_data(
        &self,
        tenant: String,
        room: String,
        req: SendData,
    ) -> BoxFuture<'_, RoomResult<()>> {
        Box::pin(async move { self.do_send_data(&tenant, &room, req).await })
    }

    fn create_webhook(
        &self,
        tenant: String,
        req: CreateWebhook,
    ) -> BoxFuture<'_, RoomResult<Webhook>> {
        Box::pin(async move { self.do_create_webhook(&tenant, req).await })
    }

    fn list_webhooks(&self, tenant: String) -> BoxFuture<'_, RoomResult<Vec<Webhook>>> {
        Box::pin(async move { self.do_list_webhooks(&tenant).await })
    }

    fn delete_webhook(&self, tenant: String, id: String) -> BoxFuture<'_, RoomResult<()>> {
        Box::pin(async move { self.do_delete_webhook(&tenant, &id).await })
    }

    fn dead_letters(&self, tenant: String) -> BoxFuture<'_, RoomResult<Vec<DeadLetter>>> {
        Box::pin(async move { self.do_dead_letters(&tenant).await })
    }
}
