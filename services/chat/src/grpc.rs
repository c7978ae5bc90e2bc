//! The chat service over gRPC: [`serve`] exposes a [`ChatService`]; [`GrpcChat`] is the
//! gateway's client and implements [`ChatApi`] like the in-process service. Calls carry
//! the API's own types as JSON (see `proto/confer/chat/v1/chat.proto`). Sends, the hot
//! path, share one long-lived stream per gateway ([`send_link`] and [`sends`]); the
//! rest are unary calls.

mod send_link;
mod sends;

use std::time::Duration;

use confer_proto::chat as pb;
use confer_proto::chat::chat_service_client::ChatServiceClient;
use confer_proto::chat::chat_service_server::{ChatService as ChatServiceRpc, ChatServiceServer};
use confer_proto::tls::GrpcTls;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::watch;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use confer_telemetry::propagate::{Traced, traced};

use crate::api::{BoxFuture, ChatApi, HistoryPage, Page, Retention, SendRequest, Sent};
use crate::error::{ChatError, ChatResult, ErrorKind};
use crate::service::ChatService;

/// Serves `service` on `listener` until `shutdown` fires; over mutual TLS with `tls`.
pub async fn serve(
    service: ChatService,
    listener: tokio::net::TcpListener,
    tls: Option<GrpcTls>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let incoming = confer_proto::tls::incoming(listener, tls.as_ref());
    tonic::transport::Server::builder()
        .trace_fn(confer_telemetry::propagate::server_span)
        .add_service(ChatServiceServer::new(Rpc {
            service,
            shutdown: shutdown.clone(),
        }))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = shutdown.changed().await;
        })
        .await?;
    Ok(())
}

struct Rpc {
    service: ChatService,
    /// Ends the send streams, which would otherwise hold the server's graceful
    /// shutdown open for as long as their gateways live.
    shutdown: watch::Receiver<bool>,
}

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
        let s = &self.service;
        let mut a = args.into_iter();
        let a = &mut a;
        match method {
            "send" => answer(s.send(arg(a)?).await),
            "history" => answer(s.history(arg(a)?, arg(a)?).await),
            "set_retention" => answer(s.set_retention(arg(a)?, arg(a)?).await),
            "retention" => answer(s.retention(arg(a)?).await),
            "clear_retention" => answer(s.clear_retention(arg(a)?).await),
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
        Ok(Response::new(encode_answer(result)))
    }

    type SendsStream = sends::Answers;

    async fn sends(
        &self,
        request: Request<tonic::Streaming<pb::SendCall>>,
    ) -> Result<Response<Self::SendsStream>, Status> {
        Ok(Response::new(sends::answer_sends(
            self.service.clone(),
            request.into_inner(),
            self.shutdown.clone(),
        )))
    }
}

/// A result as it crosses gRPC: the answer's JSON, or the error's.
fn encode_answer<T: Serialize>(result: ChatResult<T>) -> pb::CallResponse {
    let result = match result.and_then(|v| serde_json::to_vec(&v).map_err(ChatError::internal)) {
        Ok(json) => pb::call_response::Result::Ok(json),
        Err(err) => pb::call_response::Result::Error(serde_json::to_vec(&err).unwrap_or_default()),
    };
    pb::CallResponse {
        result: Some(result),
    }
}

/// The result [`encode_answer`] sent.
fn decode_answer<R: DeserializeOwned>(answer: pb::CallResponse) -> ChatResult<R> {
    match answer.result {
        Some(pb::call_response::Result::Ok(json)) => {
            serde_json::from_slice(&json).map_err(ChatError::internal)
        }
        Some(pb::call_response::Result::Error(json)) => {
            Err(serde_json::from_slice(&json).unwrap_or_else(ChatError::internal))
        }
        None => Err(ChatError::internal("empty answer from the chat service")),
    }
}

/// The chat service could not be reached, or did not answer.
fn unavailable(why: &str) -> ChatError {
    ChatError::new(
        ErrorKind::Unavailable,
        "chat_unavailable",
        format!("the chat service is unavailable: {why}"),
    )
}

/// Client for a remote chat service.
#[derive(Clone)]
pub struct GrpcChat {
    client: ChatServiceClient<Traced<Channel>>,
    sends: send_link::SendLink,
}

impl GrpcChat {
    /// Connects lazily to `addr` (`host:port`), over mutual TLS with `tls`, within a
    /// Tokio runtime (the send stream's task runs on it). Sends go on one stream,
    /// opened with the first; HTTP/2 keep-alive finds a connection that died under it.
    pub fn connect(addr: &str, tls: Option<&GrpcTls>) -> anyhow::Result<Self> {
        let endpoint = confer_proto::tls::endpoint(addr)?
            .connect_timeout(Duration::from_secs(3))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        let channel = confer_proto::tls::lazy_channel(&endpoint, tls);
        Ok(Self {
            client: ChatServiceClient::new(traced(channel.clone())),
            sends: send_link::SendLink::start(ChatServiceClient::new(channel)),
        })
    }

    async fn call<R: DeserializeOwned>(&self, method: &str, args: Vec<Value>) -> ChatResult<R> {
        let body = serde_json::to_vec(&args).map_err(ChatError::internal)?;
        let mut request = Request::new(pb::CallRequest {
            method: method.to_owned(),
            body,
        });
        request.set_timeout(CALL_TIMEOUT);
        let response = self
            .client
            .clone()
            .call(request)
            .await
            .map_err(|status| unavailable(status.message()))?;
        decode_answer(response.into_inner())
    }
}

/// A unary call's deadline.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn v<T: Serialize>(value: T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

impl ChatApi for GrpcChat {
    fn send(&self, req: SendRequest) -> BoxFuture<'_, ChatResult<Sent>> {
        Box::pin(async move {
            match self.sends.send(&req).await {
                Some(answer) => answer,
                None => self.call("send", vec![v(req)]).await,
            }
        })
    }

    fn history(&self, room: String, page: Page) -> BoxFuture<'_, ChatResult<HistoryPage>> {
        Box::pin(async move { self.call("history", vec![v(room), v(page)]).await })
    }

    fn set_retention(&self, room: String, secs: u64) -> BoxFuture<'_, ChatResult<()>> {
        Box::pin(async move { self.call("set_retention", vec![v(room), v(secs)]).await })
    }

    fn retention(&self, room: String) -> BoxFuture<'_, ChatResult<Retention>> {
        Box::pin(async move { self.call("retention", vec![v(room)]).await })
    }

    fn clear_retention(&self, room: String) -> BoxFuture<'_, ChatResult<()>> {
        Box::pin(async move { self.call("clear_retention", vec![v(room)]).await })
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

    fn render_link_metrics(&self, out: &mut confer_metrics::Exposition) {
        self.sends.stats().render(out);
    }
}
