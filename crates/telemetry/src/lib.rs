//! Logs and traces for every role.
//!
//! - [`init`] installs the `tracing` subscriber: text or JSON logs on stderr, and, when
//!   asked, an OpenTelemetry layer that exports spans over OTLP/gRPC, configured by the
//!   standard `OTEL_EXPORTER_OTLP_*` variables (endpoint, headers, timeout). Off unless
//!   asked: `confer dev` runs without a collector.
//! - [`json_logs`]: JSON log lines carry the trace and span ids of their span.
//! - [`propagate`] carries W3C `traceparent` across the internal gRPC calls: clients
//!   inject the current span's context into request metadata, servers start each
//!   request's span as its child, so one join is one trace across gateway, room
//!   service and SFU.

pub mod json_logs;
pub mod propagate;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// How a process logs and traces.
#[derive(Debug, Clone)]
pub struct Options {
    /// `service.name` of the spans (`confer-gateway`, `confer-room`, ...).
    pub service: String,
    /// JSON log lines instead of text.
    pub json: bool,
    /// Export spans over OTLP/gRPC (endpoint from `OTEL_EXPORTER_OTLP_ENDPOINT`,
    /// default `http://localhost:4317`).
    pub traces: bool,
    /// Log filter when `CONFER_LOG` is unset.
    pub default_filter: String,
    /// The collector, when not from `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub otlp_endpoint: Option<String>,
}

/// Keeps the exporter alive; dropping it flushes the spans still queued.
#[must_use = "dropping the guard stops trace export"]
pub struct Guard(Option<SdkTracerProvider>);

impl Guard {
    /// Exports every span ended so far (tests, and before exit).
    pub fn flush(&self) {
        if let Some(provider) = &self.0 {
            let _ = provider.force_flush();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber (once per process).
pub fn init(options: Options) -> anyhow::Result<Guard> {
    let filter = || {
        EnvFilter::try_from_env("CONFER_LOG")
            .unwrap_or_else(|_| EnvFilter::new(&options.default_filter))
    };
    let logs = if options.json {
        json_logs::layer(std::io::stderr)
            .with_filter(filter())
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed()
    };
    let provider = if options.traces {
        Some(tracer_provider(
            &options.service,
            options.otlp_endpoint.as_deref(),
        )?)
    } else {
        None
    };
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("confer"))
            .with_filter(EnvFilter::new(
                "info,rtc=off,rtc_dtls=off,h2=off,hyper=off,tower=off",
            ))
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .map_err(|err| anyhow::anyhow!("logging already set up: {err}"))?;
    Ok(Guard(provider))
}

fn tracer_provider(service: &str, endpoint: Option<&str>) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig as _;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    let exporter = builder
        .build()
        .map_err(|err| anyhow::anyhow!("OTLP exporter: {err}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(provider)
}

/// A span's trace context, kept to continue its trace later (the offer that follows a
/// join belongs to the join's trace).
#[derive(Clone, Debug)]
pub struct TraceContext(opentelemetry::Context);

impl TraceContext {
    pub fn of(span: &tracing::Span) -> Self {
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        Self(span.context())
    }

    /// The context a W3C `traceparent` names (a client's own trace), if it is valid.
    pub fn from_traceparent(traceparent: &str) -> Option<Self> {
        use opentelemetry::trace::TraceContextExt as _;
        let carrier =
            std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
        let context = TraceContextPropagator::new().extract(&carrier);
        context
            .span()
            .span_context()
            .is_valid()
            .then_some(Self(context))
    }

    /// The W3C `traceparent` of `span`, when it is traced (to carry its context in a
    /// message, as chat entries do through Redis).
    pub fn traceparent(span: &tracing::Span) -> Option<String> {
        use opentelemetry::trace::TraceContextExt as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        let context = span.context();
        if !context.span().span_context().is_valid() {
            return None;
        }
        let mut carrier = std::collections::HashMap::new();
        TraceContextPropagator::new().inject_context(&context, &mut carrier);
        carrier.remove("traceparent")
    }

    /// Makes `span` a child of this context.
    pub fn adopt(&self, span: &tracing::Span) {
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        let _ = span.set_parent(self.0.clone());
    }
}
