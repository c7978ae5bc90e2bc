//! One join is one trace. Gateway, room service and SFU run as separate services over
//! gRPC (as in a split deployment, here in one process) with traces exported over
//! OTLP to a collector in this test: a tonic server implementing the OpenTelemetry
//! collector's `TraceService`. A client joins and then sends its offer, as the web
//! client does; the spans of the gateway (join, offer), the room service (its gRPC
//! server span, the join and the room's placement) and the SFU (its gRPC server span
//! and the peer it creates) must share one trace id, each linked to the span that
//! caused it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confer_e2e::signal::{SignalClient, client_offer};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use serde_json::json;

#[derive(Debug, Clone)]
struct Span {
    name: String,
    trace: Vec<u8>,
    id: Vec<u8>,
    parent: Vec<u8>,
    service: String,
}

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self
            .0
            .lock()
            .map_err(|_| tonic::Status::internal("poisoned"))?;
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push(Span {
                        name: span.name,
                        trace: span.trace_id,
                        id: span.span_id,
                        parent: span.parent_span_id,
                        service: service.clone(),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    fn spans(&self) -> Vec<Span> {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// An OTLP collector in this process, and this process's telemetry exporting to it.
async fn collect() -> anyhow::Result<(Collector, confer_telemetry::Guard)> {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let collector_addr = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(confer_proto::tls::incoming(listener, None)),
    );
    let telemetry = confer_telemetry::init(confer_telemetry::Options {
        service: "confer-test".into(),
        json: false,
        traces: true,
        default_filter: "warn".into(),
        otlp_endpoint: Some(format!("http://{collector_addr}")),
    })?;
    Ok((collector, telemetry))
}

/// The span named `name`; the test fails without one.
fn find<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no {name} span in {spans:#?}"))
}

/// The spans exported once every one of `names` is among them (a parent span can end,
/// and so be exported, after its children), within 10 s.
async fn spans_named(
    collector: &Collector,
    telemetry: &confer_telemetry::Guard,
    names: &[&str],
) -> Vec<Span> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        telemetry.flush();
        let spans = collector.spans();
        if names
            .iter()
            .all(|name| spans.iter().any(|s| s.name == *name))
        {
            return spans;
        }
        assert!(Instant::now() < deadline, "spans so far: {spans:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_traceparent_makes_the_join_part_of_the_clients_trace() -> anyhow::Result<()> {
    let (collector, telemetry) = collect().await?;
    let services = confer_e2e::split::SplitServices::start().await?;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let mut client = SignalClient::connect(&services.signal_url).await?;
    client
        .send(&json!({
            "request_id": "j",
            "traceparent": format!("00-{trace}-{parent}-01"),
            "join": {"room": "client-traced", "name": "Ada"},
        }))
        .await?;
    client.recv_kind("joined", Duration::from_secs(5)).await?;
    let spans = spans_named(&collector, &telemetry, &["signal.join", "room.join"]).await;
    let join = find(&spans, "signal.join");
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(hex(&join.trace), trace, "the join is in the client's trace");
    assert_eq!(
        hex(&join.parent),
        parent,
        "the client's span is the join's parent"
    );
    let room_join = find(&spans, "room.join");
    assert_eq!(
        hex(&room_join.trace),
        trace,
        "the room service continues it"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_is_one_trace_across_gateway_room_service_and_sfu() -> anyhow::Result<()> {
    let (collector, telemetry) = collect().await?;

    let services = confer_e2e::split::SplitServices::start().await?;
    let url = services.signal_url.clone();

    let mut client = SignalClient::connect(&url).await?;
    client
        .send(&json!({"request_id": "j", "join": {"room": "traced", "name": "Ada"}}))
        .await?;
    client.recv_kind("joined", Duration::from_secs(5)).await?;
    client
        .send(&json!({"request_id": "o", "offer": {"sdp": client_offer(2)?}}))
        .await?;
    client.recv_kind("answer", Duration::from_secs(5)).await?;

    // Everything the join caused, once exported.
    let spans = spans_named(
        &collector,
        &telemetry,
        &[
            "signal.join",
            "signal.offer",
            "room.join",
            "room.place",
            "sfu.create_peer",
        ],
    )
    .await;
    let by_id: HashMap<&[u8], &Span> = spans.iter().map(|s| (s.id.as_slice(), s)).collect();
    let find = |name: &str| find(&spans, name);
    let join = find("signal.join");
    assert!(
        join.parent.is_empty(),
        "the join starts the trace: {join:?}"
    );
    assert!(!join.service.is_empty());
    // Each span's chain of parents leads back to the join.
    let leads_to_join = |span: &Span| {
        let mut at = span;
        for _ in 0..16 {
            if at.id == join.id {
                return true;
            }
            match by_id.get(at.parent.as_slice()) {
                Some(parent) => at = parent,
                None => return false,
            }
        }
        false
    };
    let room_server = spans
        .iter()
        .find(|s| s.name.starts_with("confer.room.") && s.trace == join.trace)
        .unwrap_or_else(|| panic!("no room-service server span in the join's trace: {spans:#?}"));
    let sfu_server = spans
        .iter()
        .find(|s| s.name.starts_with("confer.sfu.") && s.name.ends_with("/CreatePeer"))
        .unwrap_or_else(|| panic!("no SFU CreatePeer server span: {spans:#?}"));
    for span in [
        room_server,
        find("room.join"),
        find("room.place"),
        find("signal.offer"),
        sfu_server,
        find("sfu.create_peer"),
    ] {
        assert_eq!(
            span.trace, join.trace,
            "{} is in the join's trace",
            span.name
        );
        assert!(
            leads_to_join(span),
            "{} links back to the join: {spans:#?}",
            span.name
        );
    }
    // The room service's and the SFU's spans are children of spans in the gateway.
    assert!(by_id.contains_key(room_server.parent.as_slice()));
    assert_eq!(
        by_id[find("room.join").parent.as_slice()].id,
        room_server.id,
        "the room service's join runs inside its gRPC server span"
    );
    Ok(())
}

/// A chat message is one trace from the sender's request, over the gateway's send
/// stream to the chat service, through the store and the bus to the gateway that
/// delivers it: the send is a server span of its own although its stream is shared, the
/// publish is a producer span, the delivery a consumer span continuing it from the
/// context the entry carried on the bus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_message_is_one_trace_from_send_through_the_bus_to_delivery() -> anyhow::Result<()> {
    let (collector, telemetry) = collect().await?;
    let services = confer_e2e::split::SplitServices::start().await?;
    let mut client = SignalClient::connect(&services.signal_url).await?;
    client
        .send(&json!({"request_id": "j", "join": {"room": "chatty", "name": "Ada"}}))
        .await?;
    client.recv_kind("joined", Duration::from_secs(5)).await?;
    client
        .send(&json!({"request_id": "c", "chat": {"text": "hello", "client_id": "c-1"}}))
        .await?;
    client.recv_kind("chat", Duration::from_secs(5)).await?;
    // The delivery can end before the request's own span does: wait for all of them.
    let spans = spans_named(
        &collector,
        &telemetry,
        &[
            "signal.chat",
            "confer.chat.v1.ChatService/Send",
            "chat.send",
            "chat.persist",
            "publish chat",
            "process chat",
        ],
    )
    .await;
    let find = |name: &str| find(&spans, name);
    let request = find("signal.chat");
    let server = find("confer.chat.v1.ChatService/Send");
    let send = find("chat.send");
    let persist = find("chat.persist");
    let publish = find("publish chat");
    let process = find("process chat");
    for span in [server, send, persist, publish, process] {
        assert_eq!(
            span.trace, request.trace,
            "{} is in the request's trace",
            span.name
        );
    }
    assert_eq!(
        server.parent, request.id,
        "the send's server span, on the gateway's send stream, is the request's child"
    );
    assert_eq!(
        send.parent, server.id,
        "the chat service's send runs inside its server span"
    );
    assert_eq!(persist.parent, send.id, "storing is part of the send");
    assert_eq!(publish.parent, send.id, "publishing is part of the send");
    assert_eq!(
        process.parent, publish.id,
        "the delivery continues the publish, through the bus"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sip_call_is_one_trace_from_the_invite_through_the_join() -> anyhow::Result<()> {
    use confer_e2e::sip::{Bridge, Offer, Script, create_room, run_sipp, scenario};
    let (collector, telemetry) = collect().await?;
    let server = confer_e2e::server::TestServer::start(false).await?;
    let bridge = Bridge::start(&server).await?;
    create_room(&server, "dial-traced", false).await?;
    let call = run_sipp(
        bridge.addr,
        "dial-traced",
        &scenario(Offer::Speak, Script::HangUpAfter { ms: 300 }),
    )
    .await?;
    assert!(call.success, "{}", call.output);
    let spans = spans_named(
        &collector,
        &telemetry,
        &["sip.invite", "signal.join", "room.join"],
    )
    .await;
    let invite = find(&spans, "sip.invite");
    let join = find(&spans, "signal.join");
    assert_eq!(
        join.trace, invite.trace,
        "the gateway's join is in the INVITE's trace"
    );
    assert_eq!(
        join.parent, invite.id,
        "the INVITE's span is the join's parent"
    );
    let room_join = find(&spans, "room.join");
    assert_eq!(
        room_join.trace, invite.trace,
        "the room service continues it"
    );
    Ok(())
}
