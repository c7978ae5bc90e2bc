//! The server side of `Sends`: one long-lived stream per gateway carrying many sends at
//! once. Each send is stored and published as if it had come alone (the pipeline
//! batches them); its answer goes back as soon as it is ready, under its id.

use confer_proto::chat as pb;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};
use tracing::Instrument as _;

use super::encode_answer;
use crate::api::{ChatApi, SendRequest};
use crate::error::ChatError;
use crate::service::ChatService;

/// The most sends of one stream in the service at once. Past it the stream is not read
/// until some are answered, and HTTP/2 flow control holds the gateway back.
const MAX_IN_FLIGHT: usize = 4096;

/// Answers buffered for the stream's writer.
const ANSWER_BUFFER: usize = 256;

/// The span name of one send: a call of its own, carried by the `Sends` stream (whose
/// own span covers only opening it).
const SEND_PATH: &str = "confer.chat.v1.ChatService/Send";

pub(super) type Answers = ReceiverStream<Result<pb::SendAnswer, Status>>;

/// Answers the sends arriving on `calls` until the gateway ends the stream or `shutdown`
/// fires; then the sends already read are answered before the stream ends.
pub(super) fn answer_sends(
    service: ChatService,
    calls: Streaming<pb::SendCall>,
    shutdown: watch::Receiver<bool>,
) -> Answers {
    let (answers, stream) = mpsc::channel(ANSWER_BUFFER);
    tokio::spawn(run(service, calls, shutdown, answers));
    ReceiverStream::new(stream)
}

async fn run(
    service: ChatService,
    mut calls: Streaming<pb::SendCall>,
    mut shutdown: watch::Receiver<bool>,
    answers: mpsc::Sender<Result<pb::SendAnswer, Status>>,
) {
    let mut in_flight = FuturesUnordered::new();
    let mut reading = !*shutdown.borrow();
    while reading || !in_flight.is_empty() {
        tokio::select! {
            call = calls.next(), if reading && in_flight.len() < MAX_IN_FLIGHT => match call {
                Some(Ok(call)) => in_flight.push(answer(&service, call)),
                Some(Err(status)) => {
                    tracing::debug!(error = %status, "a gateway's send stream failed");
                    reading = false;
                }
                None => reading = false,
            },
            Some(answer) = in_flight.next(), if !in_flight.is_empty() => {
                if answers.send(Ok(answer)).await.is_err() {
                    // The gateway is gone: nobody reads what is left.
                    return;
                }
            }
            _ = shutdown.changed(), if reading => reading = false,
        }
    }
}

/// Stores and publishes one send, inside a server span that continues the caller's.
async fn answer(service: &ChatService, call: pb::SendCall) -> pb::SendAnswer {
    let span = confer_telemetry::propagate::stream_call_span(SEND_PATH, &call.trace);
    let result = async {
        let request: SendRequest = serde_json::from_slice(&call.body)
            .map_err(|err| ChatError::invalid("invalid_request", err.to_string()))?;
        service.send(request).await
    }
    .instrument(span)
    .await;
    pb::SendAnswer {
        id: call.id,
        answer: Some(encode_answer(result)),
    }
}
