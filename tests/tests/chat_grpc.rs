//! The chat service over gRPC as a gateway uses it: sends share one long-lived stream
//! and each gets its own answer; a bad send is refused on its own and the stream goes
//! on; a shutdown answers what was read, ends the stream (so the server stops), and the
//! next send after a restart opens a new stream. Nothing acknowledged is lost, and a
//! resend of what failed is stored once. A chat service of the release before the
//! stream gets the sends as unary calls.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use confer_chat::grpc::GrpcChat;
use confer_chat::{ChatAction, ChatApi, ChatService, ErrorKind, Page, SendRequest};
use confer_proto::chat as pb;
use confer_proto::chat::chat_service_client::ChatServiceClient;
use confer_proto::chat::chat_service_server::{ChatService as ChatServiceRpc, ChatServiceServer};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::sync::watch;

fn text(room: &str, client_id: &str, text: &str) -> SendRequest {
    SendRequest {
        room: room.into(),
        sender_id: "ada".into(),
        sender_name: "Ada".into(),
        sender_identity: "ada".into(),
        sender_is_host: false,
        client_id: client_id.into(),
        action: ChatAction::Text {
            text: text.into(),
            reply_to: 0,
        },
    }
}

/// The chat service serving on `addr` (port 0: any), until the returned sender fires.
struct Served {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn serve(service: &ChatService, addr: &str) -> anyhow::Result<Served> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(confer_chat::grpc::serve(
        service.clone(),
        listener,
        None,
        stopped,
    ));
    Ok(Served { addr, stop, task })
}

impl Served {
    /// Shuts the server down and waits for it to stop.
    async fn stop(self) -> anyhow::Result<()> {
        self.stop.send(true)?;
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .map_err(|_| anyhow::anyhow!("the server did not stop within 5 s of shutdown"))???;
        Ok(())
    }
}

/// The gateway's send stream metrics, by name (counters with their `_total`).
fn link_metrics(chat: &GrpcChat) -> BTreeMap<String, f64> {
    let mut out = confer_metrics::Exposition::new(confer_metrics::Format::Prometheus);
    chat.render_link_metrics(&mut out);
    out.finish()
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(' '))
        .filter_map(|(name, value)| Some((name.to_owned(), value.parse().ok()?)))
        .collect()
}

/// Every stored entry of `room` as (client id, seq), paging through the history.
async fn stored_seqs(service: &ChatService, room: &str) -> anyhow::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = service
            .history(room.into(), Page::After { after, limit: 200 })
            .await?;
        after = page.entries.last().map_or(after, |e| e.seq);
        out.extend(page.entries.into_iter().map(|e| (e.client_id, e.seq)));
        if !page.more {
            return Ok(out);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sends_at_once_each_get_their_own_answer() -> anyhow::Result<()> {
    let service = confer_chat::connect("sqlite::memory:", None).await?;
    let served = serve(&service, "127.0.0.1:0").await?;
    let chat = GrpcChat::connect(&served.addr.to_string(), None)?;
    let mut sends = FuturesUnordered::new();
    for room in 0..20 {
        for i in 0..100 {
            let chat = chat.clone();
            let request = text(&format!("room-{room}"), &format!("r{room}-m{i}"), "hi");
            sends.push(async move { (request.clone(), chat.send(request).await) });
        }
    }
    let mut seqs: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    while let Some((request, sent)) = sends.next().await {
        let sent = sent?;
        assert_eq!(sent.entry.room, request.room, "the answer is this send's");
        assert_eq!(
            sent.entry.client_id, request.client_id,
            "the answer is this send's"
        );
        assert!(!sent.duplicate);
        assert!(
            seqs.entry(request.room).or_default().insert(sent.entry.seq),
            "no two sends of a room share a seq"
        );
    }
    assert_eq!(seqs.len(), 20);
    for (room, seqs) in seqs {
        assert_eq!(seqs, (1..=100).collect(), "{room} is numbered without gaps");
    }
    let metrics = link_metrics(&chat);
    assert_eq!(
        metrics["confer_gateway_chat_send_streams_opened_total"], 1.0,
        "one stream: {metrics:?}"
    );
    assert_eq!(
        metrics["confer_gateway_chat_send_streams_broken_total"], 0.0,
        "{metrics:?}"
    );
    assert_eq!(
        metrics["confer_gateway_chat_sends_unanswered_total"], 0.0,
        "{metrics:?}"
    );
    assert_eq!(
        metrics["confer_gateway_chat_sends_waiting"], 0.0,
        "{metrics:?}"
    );
    served.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_send_is_refused_alone_and_the_stream_goes_on() -> anyhow::Result<()> {
    let service = confer_chat::connect("sqlite::memory:", None).await?;
    let served = serve(&service, "127.0.0.1:0").await?;
    let chat = GrpcChat::connect(&served.addr.to_string(), None)?;
    let long = "x".repeat(confer_chat::api::MAX_TEXT_CHARS + 1);
    let err = chat.send(text("r", "too-long", &long)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid, "{err}");
    assert_eq!(err.code, "message_too_long", "{err}");
    assert_eq!(chat.send(text("r", "fine", "hi")).await?.entry.seq, 1);

    // A body that is not a send, on the raw stream: its own error, under its id.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", served.addr))?
        .connect()
        .await?;
    let mut raw = ChatServiceClient::new(channel);
    let calls = futures_util::stream::iter([
        pb::SendCall {
            id: 7,
            body: br#"{"room": "r", "unknown": 1"#.to_vec(),
            trace: Default::default(),
        },
        pb::SendCall {
            id: 8,
            body: serde_json::to_vec(&text("r", "after-bad", "hi"))?,
            trace: Default::default(),
        },
    ]);
    let mut answers = raw.sends(calls).await?.into_inner();
    let mut by_id = BTreeMap::new();
    while let Some(answer) = answers.message().await? {
        by_id.insert(answer.id, answer.answer);
    }
    let bad = by_id.remove(&7).flatten().and_then(|a| a.result);
    let Some(pb::call_response::Result::Error(json)) = bad else {
        panic!("the malformed send is refused: {bad:?}");
    };
    let err: confer_chat::ChatError = serde_json::from_slice(&json)?;
    assert_eq!(err.code, "invalid_request", "{err}");
    let good = by_id.remove(&8).flatten().and_then(|a| a.result);
    assert!(
        matches!(good, Some(pb::call_response::Result::Ok(_))),
        "the send after it is stored: {good:?}"
    );
    assert_eq!(
        stored_seqs(&service, "r").await?,
        [("fine".to_owned(), 1), ("after-bad".to_owned(), 2)]
    );
    served.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_stream_loses_no_acknowledged_send_and_resends_store_once()
-> anyhow::Result<()> {
    let service = confer_chat::connect("sqlite::memory:", None).await?;
    let served = serve(&service, "127.0.0.1:0").await?;
    let addr = served.addr;
    let chat = GrpcChat::connect(&addr.to_string(), None)?;
    assert_eq!(chat.send(text("r", "first", "hi")).await?.entry.seq, 1);

    // Sends keep coming, 32 at a time, until the server has stopped and turned some
    // away. It stops once some are acknowledged, with others in flight; it must stop
    // although the gateway's stream is open.
    let send = |i: usize| {
        let chat = chat.clone();
        let request = text("r", &format!("m{i}"), "hi");
        async move { (request.clone(), chat.send(request).await) }
    };
    let mut sends: FuturesUnordered<_> = (0..32).map(send).collect();
    let mut issued = 32;
    let mut acked = BTreeMap::new();
    let mut failed = Vec::new();
    let stopping = served.stop();
    tokio::pin!(stopping);
    let mut stopped = false;
    loop {
        tokio::select! {
            result = &mut stopping, if !stopped && acked.len() >= 100 => {
                result?;
                stopped = true;
            }
            Some((request, result)) = sends.next() => {
                match result {
                    Ok(sent) => {
                        acked.insert(request.client_id, sent.entry.seq);
                    }
                    Err(err) => {
                        assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
                        assert_eq!(err.code, "chat_unavailable", "{err}");
                        failed.push(request);
                    }
                }
                if !stopped || failed.is_empty() {
                    sends.push(send(issued));
                    issued += 1;
                }
            }
            else => break,
        }
    }
    // While it is down, a send fails clearly.
    let err = chat.send(text("r", "while-down", "hi")).await.unwrap_err();
    assert_eq!(err.code, "chat_unavailable", "{err}");

    // Back on the same address: the next sends open a new stream.
    let served = serve(&service, &addr.to_string()).await?;
    let failed_count = failed.len();
    for request in failed {
        let sent = chat.send(request.clone()).await?;
        acked.insert(request.client_id, sent.entry.seq);
    }
    let stored: BTreeMap<String, u64> = stored_seqs(&service, "r").await?.into_iter().collect();
    assert_eq!(stored.len(), issued + 1, "every send is stored once");
    for (client_id, seq) in &acked {
        assert_eq!(
            stored.get(client_id),
            Some(seq),
            "{client_id} is stored as acknowledged"
        );
    }
    assert_eq!(
        stored.values().copied().collect::<BTreeSet<_>>(),
        (1..=issued as u64 + 1).collect(),
        "numbered without gaps"
    );
    let metrics = link_metrics(&chat);
    assert!(
        metrics["confer_gateway_chat_send_streams_opened_total"] >= 2.0,
        "a stream before the restart and one after: {metrics:?}"
    );
    assert!(
        metrics["confer_gateway_chat_send_streams_broken_total"] >= 1.0,
        "the send while it was down could not open one: {metrics:?}"
    );
    assert!(
        metrics["confer_gateway_chat_sends_unanswered_total"] <= failed_count as f64,
        "{metrics:?}"
    );
    assert_eq!(
        metrics["confer_gateway_chat_sends_waiting"], 0.0,
        "{metrics:?}"
    );
    assert_eq!(
        metrics["confer_gateway_chat_send_streams_refused_total"], 0.0,
        "{metrics:?}"
    );
    served.stop().await
}

/// A chat service of the release before the send stream: sends only as unary calls
/// (a real service behind the calls).
struct CallsOnly(ChatService);

#[tonic::async_trait]
impl ChatServiceRpc for CallsOnly {
    async fn call(
        &self,
        request: tonic::Request<pb::CallRequest>,
    ) -> Result<tonic::Response<pb::CallResponse>, tonic::Status> {
        let request = request.into_inner();
        if request.method != "send" {
            return Err(tonic::Status::unimplemented(request.method));
        }
        let (send,): (SendRequest,) = serde_json::from_slice(&request.body)
            .map_err(|err| tonic::Status::invalid_argument(err.to_string()))?;
        let result = match self.0.send(send).await {
            Ok(sent) => {
                pb::call_response::Result::Ok(serde_json::to_vec(&sent).unwrap_or_default())
            }
            Err(err) => {
                pb::call_response::Result::Error(serde_json::to_vec(&err).unwrap_or_default())
            }
        };
        Ok(tonic::Response::new(pb::CallResponse {
            result: Some(result),
        }))
    }

    type SendsStream = futures_util::stream::Empty<Result<pb::SendAnswer, tonic::Status>>;

    async fn sends(
        &self,
        _: tonic::Request<tonic::Streaming<pb::SendCall>>,
    ) -> Result<tonic::Response<Self::SendsStream>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "no send stream in this release",
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_service_without_the_send_stream_gets_sends_as_calls() -> anyhow::Result<()> {
    let service = confer_chat::connect("sqlite::memory:", None).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ChatServiceServer::new(CallsOnly(service.clone())))
            .serve_with_incoming(confer_proto::tls::incoming(listener, None)),
    );
    let chat = GrpcChat::connect(&addr.to_string(), None)?;
    assert_eq!(chat.send(text("r", "first", "hi")).await?.entry.seq, 1);
    let mut sends: FuturesUnordered<_> = (0..50)
        .map(|i| {
            let chat = chat.clone();
            async move { chat.send(text("r", &format!("m{i}"), "hi")).await }
        })
        .collect();
    while let Some(sent) = sends.next().await {
        sent?;
    }
    let stored: BTreeSet<u64> = stored_seqs(&service, "r")
        .await?
        .into_iter()
        .map(|(_, seq)| seq)
        .collect();
    assert_eq!(stored, (1..=51).collect(), "every send stored once");
    let metrics = link_metrics(&chat);
    assert!(
        metrics["confer_gateway_chat_send_streams_refused_total"] >= 1.0,
        "{metrics:?}"
    );
    assert_eq!(
        metrics["confer_gateway_chat_send_streams_opened_total"], 0.0,
        "{metrics:?}"
    );
    Ok(())
}

/// A room's retention over gRPC: set, read back, dropped for the service's default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rooms_retention_is_set_read_and_cleared_over_grpc() -> anyhow::Result<()> {
    let hour = Some(std::time::Duration::from_secs(3_600));
    let service = confer_chat::connect_with("sqlite::memory:", None, 1, hour).await?;
    let served = serve(&service, "127.0.0.1:0").await?;
    let chat = GrpcChat::connect(&served.addr.to_string(), None)?;
    let by = |seconds, own| confer_chat::Retention { seconds, own };
    assert_eq!(chat.retention("t/r".into()).await?, by(3_600, false));
    chat.set_retention("t/r".into(), 0).await?;
    assert_eq!(chat.retention("t/r".into()).await?, by(0, true));
    chat.clear_retention("t/r".into()).await?;
    assert_eq!(chat.retention("t/r".into()).await?, by(3_600, false));
    served.stop().await
}
