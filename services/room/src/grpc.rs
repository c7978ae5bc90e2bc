//! The room service over gRPC: [`serve`] exposes a [`RoomService`]; [`GrpcRoom`] is
//! the gateway's client and implements [`RoomApi`] like the in-process service.
//! Calls carry the API's own types as JSON (see `proto/confer/room/v1/room.proto`).

use std::pin::Pin;
use std::time::Duration;

use confer_proto::room as pb;
use confer_proto::room::room_service_client::RoomServiceClient;
use confer_proto::room::room_service_server::{RoomService as RoomServiceRpc, RoomServiceServer};
use confer_proto::tls::GrpcTls;
use confer_telemetry::propagate::{Traced, traced};
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::watch;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::api::{BoxFuture, RoomApi, WatchFrom, Watched};
use crate::error::{ErrorKind, RoomError, RoomResult};
use crate::model::Source;
use crate::{RoomService, api};

/// Serves `service` on `listener` until `shutdown` fires; over mutual TLS with `tls`.
pub async fn serve(
    service: RoomService,
    listener: tokio::net::TcpListener,
    tls: Option<GrpcTls>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let incoming = confer_proto::tls::incoming(listener, tls.as_ref());
    tonic::transport::Server::builder()
        .trace_fn(confer_telemetry::propagate::server_span)
        // A gateway whose host vanished sends no reset: keep-alive pings find it, and
        // its command watch ends, so its lease runs out (see `service::gateways`).
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(5)))
        .add_service(RoomServiceServer::new(Rpc(service)))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = shutdown.changed().await;
        })
        .await?;
    Ok(())
}

struct Rpc(RoomService);

fn arg<T: DeserializeOwned>(args: &mut std::vec::IntoIter<Value>) -> RoomResult<T> {
    let value = args
        .next()
        .ok_or_else(|| RoomError::invalid("invalid_request", "missing argument"))?;
    serde_json::from_value(value)
        .map_err(|err| RoomError::invalid("invalid_request", err.to_string()))
}

/// The next argument, when the caller sent one (an argument added after the method).
fn optional_arg<T: DeserializeOwned>(
    args: &mut std::vec::IntoIter<Value>,
) -> RoomResult<Option<T>> {
    args.next()
        .map(|value| {
            serde_json::from_value(value)
                .map_err(|err| RoomError::invalid("invalid_request", err.to_string()))
        })
        .transpose()
}

fn answer<T: Serialize>(value: RoomResult<T>) -> RoomResult<Value> {
    value.and_then(|v| serde_json::to_value(v).map_err(RoomError::internal))
}

impl Rpc {
    async fn dispatch(&self, method: &str, args: Vec<Value>) -> RoomResult<Value> {
        let s = &self.0;
        let mut a = args.into_iter();
        let a = &mut a;
        match method {
            "join" => answer(s.join(arg(a)?).await),
            "leave" => answer(s.leave(arg(a)?).await),
            "disconnected" => answer(s.disconnected(arg(a)?).await),
            "host_action" => answer(s.host_action(arg(a)?, arg(a)?).await),
            "check_chat_poster" => answer(s.check_chat_poster(arg(a)?, arg(a)?).await),
            "chat_slow_mode_turn" => answer(s.chat_slow_mode_turn(arg(a)?, arg(a)?, arg(a)?).await),
            "chat_slow_mode_give_back" => {
                answer(s.chat_slow_mode_give_back(arg(a)?, arg(a)?).await)
            }
            "self_update" => answer(s.self_update(arg(a)?, arg(a)?).await),
            "publish_data" => answer(s.publish_data(arg(a)?, arg(a)?).await),
            "track_event" => {
                let (participant, kind, published) = (arg(a)?, arg(a)?, arg(a)?);
                // A gateway from before sources sends the kind alone.
                let source = optional_arg(a)?.unwrap_or(Source::of_kind(kind));
                answer(s.track_event(participant, source, published).await)
            }
            "authenticate" => answer(s.authenticate(arg(a)?, arg(a)?).await),
            "create_room" => answer(s.create_room(arg(a)?, arg(a)?).await),
            "list_rooms" => answer(s.list_rooms(arg(a)?).await),
            "get_room" => answer(s.get_room(arg(a)?, arg(a)?).await),
            "update_room" => answer(s.update_room(arg(a)?, arg(a)?, arg(a)?).await),
            "delete_room" => answer(s.delete_room(arg(a)?, arg(a)?).await),
            "evacuate" => answer(s.evacuate(arg(a)?).await),
            "list_participants" => answer(s.list_participants(arg(a)?, arg(a)?).await),
            "get_participant" => answer(s.get_participant(arg(a)?, arg(a)?, arg(a)?).await),
            "update_participant" => answer(
                s.update_participant(arg(a)?, arg(a)?, arg(a)?, arg(a)?)
                    .await,
            ),
            "mute_track" => answer(
                s.mute_track(arg(a)?, arg(a)?, arg(a)?, arg(a)?, arg(a)?)
                    .await,
            ),
            "remove_participant" => answer(s.remove_participant(arg(a)?, arg(a)?, arg(a)?).await),
            "send_data" => answer(s.send_data(arg(a)?, arg(a)?, arg(a)?).await),
            "create_webhook" => answer(s.create_webhook(arg(a)?, arg(a)?).await),
            "list_webhooks" => answer(s.list_webhooks(arg(a)?).await),
            "delete_webhook" => answer(s.delete_webhook(arg(a)?, arg(a)?).await),
            "dead_letters" => answer(s.dead_letters(arg(a)?).await),
            other => Err(RoomError::invalid(
                "invalid_request",
                format!("unknown method `{other}`"),
            )),
        }
    }
}

type CommandStream = Pin<Box<dyn Stream<Item = Result<pb::GatewayCommand, Status>> + Send>>;

#[tonic::async_trait]
impl RoomServiceRpc for Rpc {
    async fn call(
        &self,
        request: Request<pb::CallRequest>,
    ) -> Result<Response<pb::CallResponse>, Status> {
        let request = request.into_inner();
        let result = match serde_json::from_slice::<Vec<Value>>(&request.body) {
            Ok(args) => self.dispatch(&request.method, args).await,
            Err(err) => Err(RoomError::invalid("invalid_request", err.to_string())),
        };
        let result = match result {
            Ok(value) => pb::call_response::Result::Ok(value.to_string().into_bytes()),
            Err(err) => {
                pb::call_response::Result::Error(serde_json::to_vec(&err).unwrap_or_default())
            }
        };
        Ok(Response::new(pb::CallResponse {
            result: Some(result),
        }))
    }

    type WatchStream = CommandStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let request = request.into_inner();
        let from = match (request.start, request.after) {
            (true, _) => WatchFrom::Start,
            (false, after) if after.is_empty() => WatchFrom::Now,
            (false, after) => WatchFrom::After(after),
        };
        let commands = self
            .0
            .watch(request.gateway_id, from)
            .await
            .map_err(|err| match err.kind {
                // The request itself was refused (a cursor it did not give): the
                // client gets the error as it is, to act on its code.
                ErrorKind::Invalid => {
                    Status::invalid_argument(serde_json::to_string(&err).unwrap_or_default())
                }
                _ => Status::unavailable(err.to_string()),
            })?;
        let batches = request.batches;
        let stream = commands
            .scan(String::new(), move |before, watched| {
                let items = watch_items(before, watched, batches);
                std::future::ready(Some(futures_util::stream::iter(items)))
            })
            .flatten()
            .map(Ok);
        Ok(Response::new(Box::pin(stream)))
    }
}

/// The stream items of one watched command. For a gateway that reads no batched
/// room events (`batches` false: an older one), a change to many participants goes
/// as one command per participant; all but the last carry the cursor `before` it, so
/// a watch broken among them takes them up again (a repeated update changes
/// nothing) rather than losing the rest.
fn watch_items(before: &mut String, watched: Watched, batches: bool) -> Vec<pb::GatewayCommand> {
    let cursor = std::mem::replace(before, watched.cursor.clone());
    let Some(command) = watched.command else {
        return vec![pb::GatewayCommand {
            body: Vec::new(),
            cursor: watched.cursor,
        }];
    };
    let commands = if batches {
        vec![command]
    } else {
        command.unbatched()
    };
    let last = commands.len().saturating_sub(1);
    commands
        .into_iter()
        .enumerate()
        .map(|(i, command)| pb::GatewayCommand {
            body: serde_json::to_vec(&command).unwrap_or_default(),
            cursor: if i == last {
                watched.cursor.clone()
            } else {
                cursor.clone()
            },
        })
        .collect()
}

/// Client for a remote room service.
#[derive(Clone)]
pub struct GrpcRoom {
    client: RoomServiceClient<Traced<Channel>>,
}

impl GrpcRoom {
    /// Connects lazily to `addr` (`host:port`; a DNS name such as a Kubernetes Service),
    /// over mutual TLS with `tls`.
    pub fn connect(addr: &str, tls: Option<&GrpcTls>) -> anyhow::Result<Self> {
        let endpoint = confer_proto::tls::endpoint(addr)?
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(15));
        Ok(Self {
            client: RoomServiceClient::new(traced(confer_proto::tls::lazy_channel(&endpoint, tls))),
        })
    }

    async fn call<R: DeserializeOwned>(&self, method: &str, args: Vec<Value>) -> RoomResult<R> {
        let body = serde_json::to_vec(&args).map_err(RoomError::internal)?;
        let response = self
            .client
            .clone()
            .call(pb::CallRequest {
                method: method.to_owned(),
                body,
            })
            .await
            .map_err(|status| {
                RoomError::new(
                    ErrorKind::Unavailable,
                    "room_service_unavailable",
                    status.message().to_owned(),
                )
            })?;
        match response.into_inner().result {
            Some(pb::call_response::Result::Ok(json)) => {
                serde_json::from_slice(&json).map_err(RoomError::internal)
            }
            Some(pb::call_response::Result::Error(json)) => {
                Err(serde_json::from_slice(&json).unwrap_or_else(RoomError::internal))
            }
            None => Err(RoomError::internal("empty answer from the room service")),
        }
    }
}

fn v<T: Serialize>(value: T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

macro_rules! remote {
    ($name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty) => {
        fn $name(&self, $($arg: $ty),*) -> BoxFuture<'_, RoomResult<$ret>> {
            Box::pin(async move { self.call(stringify!($name), vec![$(v($arg)),*]).await })
        }
    };
}

impl RoomApi for GrpcRoom {
    remote!(join(req: api::JoinRequest) -> api::JoinDecision);
    remote!(leave(participant: String) -> ());
    remote!(disconnected(participant: String) -> ());
    remote!(host_action(actor: String, action: api::HostAction) -> ());
    remote!(check_chat_poster(room_key: String, participant: String) -> ());
    remote!(chat_slow_mode_turn(participant: String, client_id: String, wait_secs: u32) -> u64);
    remote!(chat_slow_mode_give_back(participant: String, client_id: String) -> ());
    remote!(self_update(participant: String, update: api::SelfUpdate) -> crate::model::ParticipantInfo);
    remote!(publish_data(participant: String, data: api::ParticipantData) -> ());

    /// Sent as the kind, then the source: a room service from before sources reads
    /// the kind and leaves the rest.
    fn track_event(
        &self,
        participant: String,
        source: crate::model::Source,
        published: bool,
    ) -> BoxFuture<'_, RoomResult<()>> {
        let args = vec![v(participant), v(source.kind()), v(published), v(source)];
        Box::pin(async move { self.call("track_event", args).await })
    }

    remote!(authenticate(api_key: String, secret: String) -> String);
    remote!(create_room(tenant: String, req: api::CreateRoom) -> crate::model::RoomView);
    remote!(list_rooms(tenant: String) -> Vec<crate::model::RoomView>);
    remote!(get_room(tenant: String, room: String) -> crate::model::RoomView);
    remote!(update_room(tenant: String, room: String, req: api::UpdateRoom) -> crate::model::RoomView);
    remote!(delete_room(tenant: String, room: String) -> ());
    remote!(evacuate(sfu: String) -> u32);
    remote!(list_participants(tenant: String, room: String) -> Vec<crate::model::ParticipantInfo>);
    remote!(get_participant(tenant: String, room: String, participant: String) -> crate::model::ParticipantInfo);
    remote!(update_participant(tenant: String, room: String, participant: String, req: api::UpdateParticipant) -> crate::model::ParticipantInfo);
    remote!(mute_track(tenant: String, room: String, participant: String, kind: crate::model::TrackKind, muted: bool) -> crate::model::ParticipantInfo);
    remote!(remove_participant(tenant: String, room: String, participant: String) -> ());
    remote!(send_data(tenant: String, room: String, req: api::SendData) -> ());
    remote!(create_webhook(tenant: String, req: api::CreateWebhook) -> api::Webhook);
    remote!(list_webhooks(tenant: String) -> Vec<api::Webhook>);
    remote!(delete_webhook(tenant: String, id: String) -> ());
    remote!(dead_letters(tenant: String) -> Vec<api::DeadLetter>);

    fn watch(
        &self,
        gateway: String,
        from: WatchFrom,
    ) -> BoxFuture<'_, RoomResult<BoxStream<'static, Watched>>> {
        let mut client = self.client.clone();
        Box::pin(async move {
            let stream = client
                .watch(pb::WatchRequest {
                    gateway_id: gateway,
                    after: from.cursor().unwrap_or_default().to_owned(),
                    start: from == WatchFrom::Start,
                    batches: true,
                })
                .await
                .map_err(|status| {
                    let refused = (status.code() == tonic::Code::InvalidArgument)
                        .then(|| serde_json::from_str::<RoomError>(status.message()).ok())
                        .flatten();
                    refused.unwrap_or_else(|| {
                        RoomError::new(
                            ErrorKind::Unavailable,
                            "room_service_unavailable",
                            status.message().to_owned(),
                        )
                    })
                })?
                .into_inner();
            // A broken stream ends: the gateway watches again after the last cursor it
            // got, and so misses nothing. A command it cannot read still moves it on.
            Ok(stream
                .take_while(|item| std::future::ready(item.is_ok()))
                .filter_map(|item| std::future::ready(item.ok()))
                .map(|item| {
                    let command = match serde_json::from_slice(&item.body) {
                        Ok(command) => Some(command),
                        Err(_) if item.body.is_empty() => None,
                        Err(err) => {
                            tracing::warn!(%err, "an unreadable gateway command");
                            None
                        }
                    };
                    Watched {
                        cursor: item.cursor,
                        command,
                    }
                })
                .boxed())
        })
    }
}

#[cfg(test)]
mod tests;
