//! The chat service over gRPC: [`serve`] exposes a [`ChatService`]; [`GrpcChat`] is the
//! gateway's client and implements [`ChatApi`] like the in-process service. Calls carry
//! the API's own types as JSON (see `proto/confer/chat/v1/chat.proto`).

use std::time::Duration;

use confer_proto::chat as pb;
use confer_proto::chat::chat_service_client::ChatServiceClient;
use confer_proto::chat::chat_service_server::{ChatService as ChatServiceRpc, ChatServiceServer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};

use confer_telemetry::propagate::{Traced, traced};

use crate::api::{BoxFuture, ChatApi, HistoryPage, Page, SendRequest, Sent};
use crate::error::{ChatError, ChatResult, ErrorKind};
use crate::service::ChatService;

/// Serves `service` on `listener` until `shutdown` fires.
pub async fn serve(
    service: ChatService,
    listener: tokio::net::TcpListener,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let incoming = confer_proto::grpc_incoming(listener);
    Server::builder()
        .trace_fn(confer_telemetry::propagate::server_span)
        .add_service(ChatServiceServer::new(Rpc(service)))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = shutdown.changed().await;
        })
        .await?;
    Ok(())
}

struct Rpc(ChatService);

fn arg<T: DeserializeOwned>(args: &mut std::vec::IntoIter<Value>) -> ChatResult<T> {
    let value = args
        .next()
        .ok_or_else(|| ChatError::invalid("invalid_request", "missing argument"))?;
    serde_json::from_value(value)
        .map_err(|err| ChatError::invalid("invalid_request", err.to_string()))
}

fn answer<T: Serialize>(value: ChatResult<T>) -> ChatResult<Value> {
    value.and_then(|v| serde_json::to_value(v).map_err(ChatError::internal))
}

impl Rpc {
    async fn dispatch(&self, method: &str, args: Vec<Value>) -> ChatResult<Value> {
        let s = &self.0;
        let mut a = args.into_iter();
        let a = &mut a;
        match method {
            "send" => answer(s.send(arg(a)?).await),
            "history" => answer(s.history(arg(a)?, arg(a)?).await),
            "set_retention" => answer(s.set_retention(arg(a)?, arg(a)?).await),
            "delete_room" => answer(s.delete_room(arg(a)?).await),
            "files_to_remove" => answer(s.files_to_remove(arg(a)?).await),
            "files_removed" => answer(s.files_removed(arg(a)?).await),
            other => Err(ChatError::invalid(
                "invalid_request",
                format!("unknown method `{other}`"),
            )),
        }
    }
}

#[tonic::async_trait]
impl ChatServiceRpc for Rpc {
    async fn call(
        &self,
        request: Request<pb::CallRequest>,
    ) -> Result<Response<pb::CallResponse>, Status> {
        let request = request.into_inner();
        let result = match serde_json::from_slice::<Vec<Value>>(&request.body) {
            Ok(args) => self.dispatch(&request.method, args).await,
            Err(err) => Err(ChatError::invalid("invalid_request", err.to_string())),
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
}

/// Client for a remote chat service.
#[derive(Clone)]
pub struct GrpcChat {
    client: ChatServiceClient<Traced<Channel>>,
}

impl GrpcChat {
    /// Connects lazily to `addr` (`host:port`).
    pub fn connect(addr: &str) -> anyhow::Result<Self> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10));
        Ok(Self {
            client: ChatServiceClient::new(traced(endpoint.connect_lazy())),
        })
    }

    async fn call<R: DeserializeOwned>(&self, method: &str, args: Vec<Value>) -> ChatResult<R> {
        let body = serde_json::to_vec(&args).map_err(ChatError::internal)?;
        let response = self
            .client
            .clone()
            .call(pb::CallRequest {
                method: method.to_owned(),
                body,
            })
            .await
            .map_err(|status| {
                ChatError::new(
                    ErrorKind::Unavailable,
                    "chat_unavailable",
                    format!("the chat service is unavailable: {}", status.message()),
                )
            })?;
        match response.into_inner().result {
            Some(pb::call_response::Result::Ok(json)) => {
                serde_json::from_slice(&json).map_err(ChatError::internal)
            }
            Some(pb::call_response::Result::Error(json)) => {
                Err(serde_json::from_slice(&json).unwrap_or_else(ChatError::internal))
            }
            None => Err(ChatError::internal("empty answer from the chat service")),
        }
    }
}

fn v<T: Serialize>(value: T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

impl ChatApi for GrpcChat {
    fn send(&self, req: SendRequest) -> BoxFuture<'_, ChatResult<Sent>> {
        Box::pin(async move { self.call("send", vec![v(req)]).await })
    }

    fn history(&self, room: String, page: Page) -> BoxFuture<'_, ChatResult<HistoryPage>> {
        Box::pin(async move { self.call("history", vec![v(room), v(page)]).await })
    }

    fn set_retention(&self, room: String, secs: u64) -> BoxFuture<'_, ChatResult<()>> {
        Box::pin(async move { self.call("set_retention", vec![v(room), v(secs)]).await })
    }

    fn delete_room(&self, room: String) -> BoxFuture<'_, ChatResult<()>> {
        Box::pin(async move { self.call("delete_room", vec![v(room)]).await })
    }

    fn files_to_remove(&self, limit: u32) -> BoxFuture<'_, ChatResult<Vec<String>>> {
        Box::pin(async move { self.call("files_to_remove", vec![v(limit)]).await })
    }

    fn files_removed(&self, files: Vec<String>) -> BoxFuture<'_, ChatResult<()>> {
        Box::pin(async move { self.call("files_removed", vec![v(files)]).await })
    }
}
