//! W3C trace context (`traceparent`, `tracestate`) in gRPC metadata, and in the
//! messages of a long-lived stream, where each message is a call of its own.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// A client interceptor: puts the current span's context into the request.
pub fn inject(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut Metadata(request.metadata_mut()));
    });
    Ok(request)
}

/// The interceptor's type, for client fields: `Client<Traced<Channel>>`.
pub type Traced<S> = tonic::service::interceptor::InterceptedService<
    S,
    fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>,
>;

/// Wraps a channel so every call carries the caller's trace context.
pub fn traced<S>(channel: S) -> Traced<S> {
    tonic::service::interceptor::InterceptedService::new(channel, inject as _)
}

/// A server's per-request span (tonic's `trace_fn`): named after the RPC, following
/// OpenTelemetry's RPC conventions, and the child of the caller's span when the
/// request carries a `traceparent`.
pub fn server_span(request: &tonic::codegen::http::Request<()>) -> tracing::Span {
    let path = request.uri().path().trim_start_matches('/');
    let span = rpc_span(path);
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&Headers(request.headers()))
    });
    let _ = span.set_parent(parent);
    span
}

/// The current span's trace context as W3C fields (`traceparent`, `tracestate`), for
/// a message that is a call of its own on a long-lived stream. Empty when nothing is
/// traced.
pub fn current_fields() -> HashMap<String, String> {
    let context = tracing::Span::current().context();
    let mut fields = HashMap::new();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut fields);
    });
    fields
}

/// A server span for one call carried by a message of a long-lived stream (`path` is
/// `package.Service/Method`): as [`server_span`], the child of the caller's span whose
/// context the message carried ([`current_fields`]).
pub fn stream_call_span(path: &str, fields: &HashMap<String, String>) -> tracing::Span {
    let span = rpc_span(path);
    if !fields.is_empty() {
        let parent =
            opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(fields));
        let _ = span.set_parent(parent);
    }
    span
}

/// A span following OpenTelemetry's RPC conventions for `package.Service/Method`.
fn rpc_span(path: &str) -> tracing::Span {
    let (service, method) = path.split_once('/').unwrap_or((path, ""));
    tracing::info_span!(
        "grpc.server",
        otel.name = %path,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
    )
}

struct Metadata<'a>(&'a mut MetadataMap);

impl Injector for Metadata<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct Headers<'a>(&'a tonic::codegen::http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}
