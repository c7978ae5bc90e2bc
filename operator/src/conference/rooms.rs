//! What the Conference controller asks of the room service: a narrow seam over its
//! `RoomApi` (gRPC in production, a recording fake in tests).

use std::sync::Arc;

use confer_room::RoomApi;
use confer_room::api::{CreateRoom, UpdateRoom};
use confer_room::model::RoomView;
use confer_room::{ErrorKind, RoomError};
use futures_util::future::BoxFuture;

pub trait Rooms: Send + Sync {
    /// The room, or `None` when the tenant has no room of that name.
    fn get(&self, tenant: &str, room: &str) -> BoxFuture<'_, Result<Option<RoomView>, RoomError>>;
    fn create(
        &self,
        tenant: &str,
        create: CreateRoom,
    ) -> BoxFuture<'_, Result<RoomView, RoomError>>;
    fn update(
        &self,
        tenant: &str,
        room: &str,
        update: UpdateRoom,
    ) -> BoxFuture<'_, Result<RoomView, RoomError>>;
    /// Moves every room off the SFU `node`; how many moved.
    fn evacuate(&self, node: &str) -> BoxFuture<'_, Result<u32, RoomError>>;
    /// Deletes the room; a room already gone is not an error.
    fn delete(&self, tenant: &str, room: &str) -> BoxFuture<'_, Result<(), RoomError>>;
}

/// [`Rooms`] over any `RoomApi` (the room service's gRPC client).
pub struct RoomService(pub Arc<dyn RoomApi>);

impl Rooms for RoomService {
    fn get(&self, tenant: &str, room: &str) -> BoxFuture<'_, Result<Option<RoomView>, RoomError>> {
        let (tenant, room) = (tenant.to_owned(), room.to_owned());
        Box::pin(async move {
            match self.0.get_room(tenant, room).await {
                Ok(view) => Ok(Some(view)),
                Err(error) if error.kind == ErrorKind::NotFound => Ok(None),
                Err(error) => Err(error),
            }
        })
    }

    fn create(
        &self,
        tenant: &str,
        create: CreateRoom,
    ) -> BoxFuture<'_, Result<RoomView, RoomError>> {
        self.0.create_room(tenant.to_owned(), create)
    }

    fn update(
        &self,
        tenant: &str,
        room: &str,
        update: UpdateRoom,
    ) -> BoxFuture<'_, Result<RoomView, RoomError>> {
        self.0
            .update_room(tenant.to_owned(), room.to_owned(), update)
    }

    fn evacuate(&self, node: &str) -> BoxFuture<'_, Result<u32, RoomError>> {
        self.0.evacuate(node.to_owned())
    }

    fn delete(&self, tenant: &str, room: &str) -> BoxFuture<'_, Result<(), RoomError>> {
        let (tenant, room) = (tenant.to_owned(), room.to_owned());
        Box::pin(async move {
            match self.0.delete_room(tenant, room).await {
                Err(error) if error.kind != ErrorKind::NotFound => Err(error),
                _ => Ok(()),
            }
        })
    }
}
