//! The gateway's side of `Sends`: every send of this gateway goes on one long-lived
//! stream, opened when the first send comes and again after it breaks. A task owns the
//! stream; callers hand it their send and wait for the answer that carries its id.
//! A chat service of a release before the stream refuses to open it: then sends go as
//! unary calls, and the stream is tried again a minute later.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confer_proto::chat as pb;
use confer_proto::chat::chat_service_client::ChatServiceClient;
use futures_util::StreamExt as _;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

use super::{decode_answer, unavailable};
use crate::api::{SendRequest, Sent};
use crate::error::{ChatError, ChatResult};

/// The most sends waiting for their answers on the stream; callers past it wait.
const MAX_WAITING: usize = 4096;

/// How long a caller waits for its answer, as a unary call's deadline.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long sends go as unary calls after the chat service refused the stream.
const RETRY_STREAM_AFTER: Duration = Duration::from_secs(60);

/// Sends handed to the stream's task.
#[derive(Clone)]
pub(super) struct SendLink {
    calls: mpsc::Sender<Pending>,
    /// When the chat service last refused to open the stream (it has none).
    refused: Arc<Mutex<Option<Instant>>>,
    stats: SendStreamStats,
}

/// What the send stream counts, for the gateway's `/metrics`.
#[derive(Clone, Default)]
pub(super) struct SendStreamStats(Arc<StreamCounts>);

#[derive(Default)]
struct StreamCounts {
    opened: AtomicU64,
    refused: AtomicU64,
    broken: AtomicU64,
    unanswered: AtomicU64,
    waiting: AtomicU64,
}

impl SendStreamStats {
    pub(super) fn render(&self, out: &mut confer_metrics::Exposition) {
        let c = &self.0;
        out.counter1(
            "confer_gateway_chat_send_streams_opened",
            "Send streams opened to the chat service (one is open while sends come; more mean it broke or the service restarted).",
            c.opened.load(Relaxed),
        );
        out.counter1(
            "confer_gateway_chat_send_streams_broken",
            "Send streams that failed or could not be opened (not counting a refusal by a chat service without the stream).",
            c.broken.load(Relaxed),
        );
        out.counter1(
            "confer_gateway_chat_send_streams_refused",
            "Send streams refused by a chat service of a release without them; its sends then go as unary calls for a minute.",
            c.refused.load(Relaxed),
        );
        out.counter1(
            "confer_gateway_chat_sends_unanswered",
            "Sends the stream left unanswered when it ended or broke, failed as chat_unavailable (the client resends).",
            c.unanswered.load(Relaxed),
        );
        out.gauge1(
            "confer_gateway_chat_sends_waiting",
            "Sends on the stream waiting for the chat service's answer.",
            c.waiting.load(Relaxed) as f64,
        );
    }
}

struct Pending {
    body: Vec<u8>,
    trace: HashMap<String, String>,
    reply: oneshot::Sender<Result<pb::CallResponse, NoAnswer>>,
}

/// Why a send got no answer on the stream.
enum NoAnswer {
    Unavailable(String),
    /// The chat service has no send stream: nothing was read, send it as a call.
    NoStream,
}

impl SendLink {
    /// Starts the stream's task on the current runtime; it ends when every clone of the
    /// link is dropped.
    pub(super) fn start(client: ChatServiceClient<Channel>) -> Self {
        let (calls, waiting) = mpsc::channel(MAX_WAITING);
        let refused = Arc::new(Mutex::new(None));
        let stats = SendStreamStats::default();
        let stream = Stream {
            stats: stats.clone(),
            ..Stream::default()
        };
        tokio::spawn(drive(client, waiting, refused.clone(), stream));
        Self {
            calls,
            refused,
            stats,
        }
    }

    pub(super) fn stats(&self) -> &SendStreamStats {
        &self.stats
    }

    /// The send's answer, or `None` when the chat service has no send stream and the
    /// send is to go as a unary call.
    pub(super) async fn send(&self, request: &SendRequest) -> Option<ChatResult<Sent>> {
        if self.stream_refused_lately() {
            return None;
        }
        self.send_on_stream(request).await.transpose()
    }

    fn stream_refused_lately(&self) -> bool {
        let refused = *self.refused.lock().unwrap_or_else(|e| e.into_inner());
        refused.is_some_and(|at| at.elapsed() < RETRY_STREAM_AFTER)
    }

    /// `Ok(None)`: the stream was refused, nothing was read.
    async fn send_on_stream(&self, request: &SendRequest) -> ChatResult<Option<Sent>> {
        let body = serde_json::to_vec(request).map_err(ChatError::internal)?;
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            body,
            trace: confer_telemetry::propagate::current_fields(),
            reply,
        };
        self.calls
            .send(pending)
            .await
            .map_err(|_| unavailable("the gateway is shutting down"))?;
        match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
            Ok(Ok(Ok(answer))) => decode_answer(answer).map(Some),
            Ok(Ok(Err(NoAnswer::NoStream))) => Ok(None),
            Ok(Ok(Err(NoAnswer::Unavailable(why)))) => Err(unavailable(&why)),
            Ok(Err(_)) => Err(unavailable("the send stream closed")),
            Err(_) => Err(unavailable("no answer within 10 s")),
        }
    }
}

/// Opens a stream when a send comes, and carries sends and answers on it until it ends
/// or breaks; the sends it leaves unanswered fail as unavailable (a resend with the same
/// client id cannot duplicate). Returns when every link is dropped.
async fn drive(
    mut client: ChatServiceClient<Channel>,
    mut calls: mpsc::Receiver<Pending>,
    refused: Arc<Mutex<Option<Instant>>>,
    mut stream: Stream,
) {
    while let Some(first) = calls.recv().await {
        let (out, requests) = mpsc::channel(MAX_WAITING);
        stream.hand_over(first, &out);
        let answers = match client.sends(ReceiverStream::new(requests)).await {
            Ok(response) => {
                stream.stats.0.opened.fetch_add(1, Relaxed);
                response.into_inner()
            }
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                tracing::warn!(
                    "the chat service has no send stream (a release before it): sends go as calls for a minute"
                );
                *refused.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                stream.stats.0.refused.fetch_add(1, Relaxed);
                stream.fail_all(|| NoAnswer::NoStream);
                continue;
            }
            Err(status) => {
                stream.stats.0.broken.fetch_add(1, Relaxed);
                stream.fail_all(|| NoAnswer::Unavailable(status.message().to_owned()));
                continue;
            }
        };
        let links_left = stream.carry(&mut calls, out, answers).await;
        let unanswered = stream.waiting.len() as u64;
        stream.stats.0.unanswered.fetch_add(unanswered, Relaxed);
        stream
            .fail_all(|| NoAnswer::Unavailable("the send stream to the chat service ended".into()));
        if !links_left {
            return;
        }
    }
}

/// The sends on the current stream waiting for their answers, by id.
#[derive(Default)]
struct Stream {
    next_id: u64,
    waiting: HashMap<u64, oneshot::Sender<Result<pb::CallResponse, NoAnswer>>>,
    stats: SendStreamStats,
}

impl Stream {
    /// Puts `pending` on the stream. `out` has room: it holds at most the sends waiting,
    /// and no more than [`MAX_WAITING`] wait.
    fn hand_over(&mut self, pending: Pending, out: &mpsc::Sender<pb::SendCall>) {
        self.next_id += 1;
        let call = pb::SendCall {
            id: self.next_id,
            body: pending.body,
            trace: pending.trace,
        };
        match out.try_send(call) {
            Ok(()) => {
                self.waiting.insert(self.next_id, pending.reply);
                self.show_waiting();
            }
            Err(_) => {
                let _ = pending.reply.send(Err(NoAnswer::Unavailable(
                    "the send stream to the chat service ended".into(),
                )));
            }
        }
    }

    /// Carries sends and answers until the stream ends or breaks. Returns whether any
    /// link is left to send more.
    async fn carry(
        &mut self,
        calls: &mut mpsc::Receiver<Pending>,
        out: mpsc::Sender<pb::SendCall>,
        mut answers: Streaming<pb::SendAnswer>,
    ) -> bool {
        let mut out = Some(out);
        loop {
            tokio::select! {
                pending = calls.recv(), if out.is_some() && self.waiting.len() < MAX_WAITING => {
                    match (pending, &out) {
                        (Some(pending), Some(sender)) => self.hand_over(pending, sender),
                        // Every link is gone: end the stream once the answers are in.
                        _ => out = None,
                    }
                }
                answer = answers.next() => match answer {
                    Some(Ok(answer)) => self.answer(answer),
                    Some(Err(status)) => {
                        self.stats.0.broken.fetch_add(1, Relaxed);
                        tracing::warn!(error = %status, "the send stream to the chat service broke");
                        return out.is_some();
                    }
                    None => return out.is_some(),
                },
            }
        }
    }

    fn answer(&mut self, answer: pb::SendAnswer) {
        let Some(reply) = self.waiting.remove(&answer.id) else {
            tracing::warn!(
                id = answer.id,
                "the chat service answered a send nobody waits for"
            );
            return;
        };
        self.show_waiting();
        // An answer without a result decodes as an internal error.
        let _ = reply.send(Ok(answer.answer.unwrap_or_default()));
    }

    fn fail_all(&mut self, why: impl Fn() -> NoAnswer) {
        for (_, reply) in self.waiting.drain() {
            let _ = reply.send(Err(why()));
        }
        self.show_waiting();
    }

    /// The `waiting` gauge is the map's size, set whenever it changes.
    fn show_waiting(&self) {
        self.stats
            .0
            .waiting
            .store(self.waiting.len() as u64, Relaxed);
    }
}
