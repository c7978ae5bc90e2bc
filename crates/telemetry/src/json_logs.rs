//! JSON log lines that carry the trace and span ids of the span they were logged in,
//! so a log search and a trace view meet: `{"trace_id":"…","span_id":"…",…}` in the
//! W3C hex forms an OpenTelemetry backend shows. Lines logged outside a traced span
//! (or with tracing off) have neither field.

use std::fmt::{self, Write as _};
use std::sync::{Arc, OnceLock};

use opentelemetry::trace::TraceContextExt as _;
use tracing::dispatcher::WeakDispatch;
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// The JSON log layer: one object per line, with the current span and trace ids.
pub fn layer<S, W>(writer: W) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    let dispatch = DispatchCell::default();
    tracing_subscriber::fmt::layer()
        .fmt_fields(JsonFields::new())
        .event_format(WithTraceIds {
            format: tracing_subscriber::fmt::format()
                .json()
                .with_current_span(true),
            dispatch: dispatch.clone(),
        })
        .with_writer(writer)
        .and_then(CaptureDispatch(dispatch))
}

/// The subscriber the layer runs in: the trace ids live in the OpenTelemetry layer's
/// span data, reached through it (a formatter cannot ask for the current dispatcher:
/// while an event is being dispatched, there is none).
#[derive(Clone, Default)]
struct DispatchCell(Arc<OnceLock<WeakDispatch>>);

struct CaptureDispatch(DispatchCell);

impl<S: Subscriber> Layer<S> for CaptureDispatch {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.0.0.set(subscriber.downgrade());
    }
}

struct WithTraceIds {
    format: Format<Json>,
    dispatch: DispatchCell,
}

impl<S, N> FormatEvent<S, N> for WithTraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.format
            .format_event(ctx, Writer::new(&mut line), event)?;
        let span = ctx.lookup_current().map(|span| span.id());
        let ids = span.and_then(|span| self.ids(&span));
        let Some((ids, rest)) = ids.zip(line.strip_prefix('{')) else {
            return writer.write_str(&line);
        };
        let separator = if rest.starts_with('}') { "" } else { "," };
        write!(writer, "{{{ids}{separator}{rest}")
    }
}

impl WithTraceIds {
    /// `"trace_id":"…","span_id":"…"` of `span`, when it is traced.
    fn ids(&self, span: &tracing::span::Id) -> Option<String> {
        let dispatch = self.dispatch.0.get()?.upgrade()?;
        let context = tracing_opentelemetry::get_otel_context(span, &dispatch)?;
        let otel_span = context.span();
        let ids = otel_span.span_context();
        if !ids.is_valid() {
            return None;
        }
        let mut out = String::new();
        let _ = write!(
            out,
            "\"trace_id\":\"{}\",\"span_id\":\"{}\"",
            ids.trace_id(),
            ids.span_id()
        );
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lines").write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Lines {
        type Writer = Lines;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    fn logged(lines: &Lines) -> Vec<serde_json::Value> {
        let bytes = lines.0.lock().expect("lines").clone();
        String::from_utf8(bytes)
            .expect("utf-8")
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is JSON"))
            .collect()
    }

    #[test]
    fn lines_in_a_traced_span_carry_its_ids_and_others_none() {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let lines = Lines::default();
        let subscriber = tracing_subscriber::registry()
            .with(layer(lines.clone()))
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let (trace_id, span_id) = tracing::subscriber::with_default(subscriber, || {
            tracing::info!("before any span");
            let span = tracing::info_span!("signal.join", room = "r");
            let _entered = span.enter();
            tracing::info!(answer = 42, "inside");
            let context = span.context();
            let ids = context.span().span_context().clone();
            (ids.trace_id().to_string(), ids.span_id().to_string())
        });
        let lines = logged(&lines);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].get("trace_id").is_none(), "{}", lines[0]);
        assert_eq!(lines[0]["fields"]["message"], "before any span");
        assert_eq!(lines[1]["trace_id"], trace_id.as_str());
        assert_eq!(lines[1]["span_id"], span_id.as_str());
        assert_eq!(trace_id.len(), 32);
        assert_eq!(lines[1]["fields"]["answer"], 42);
        assert_eq!(lines[1]["span"]["name"], "signal.join");
    }
}
