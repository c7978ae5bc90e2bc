//! Prometheus text exposition of gateway and SFU counters.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::AppState;

#[derive(Default)]
pub(crate) struct Metrics {
    pub(crate) joins: AtomicU64,
    pub(crate) join_failures: AtomicU64,
    pub(crate) signal_errors: AtomicU64,
    pub(crate) chat_messages: AtomicU64,
}

pub(crate) async fn render(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let mut out = String::new();
    let m = &state.metrics;
    counter(
        &mut out,
        "confer_gateway_joins_total",
        "Successful joins.",
        m.joins.load(Relaxed),
    );
    counter(
        &mut out,
        "confer_gateway_join_failures_total",
        "Refused or failed joins.",
        m.join_failures.load(Relaxed),
    );
    counter(
        &mut out,
        "confer_gateway_signal_errors_total",
        "Signalling messages answered with an error.",
        m.signal_errors.load(Relaxed),
    );
    counter(
        &mut out,
        "confer_gateway_chat_messages_total",
        "Chat messages relayed.",
        m.chat_messages.load(Relaxed),
    );
    gauge(
        &mut out,
        "confer_gateway_participants",
        "Participants in rooms on this gateway.",
        state.rooms.n_participants() as u64,
    );
    if let Some(stats) = &state.config.sfu_stats {
        let s = stats.snapshot();
        counter(
            &mut out,
            "confer_sfu_datagrams_received_total",
            "Datagrams received on the media port.",
            s.datagrams_received,
        );
        counter(
            &mut out,
            "confer_sfu_datagrams_unroutable_total",
            "Datagrams dropped because no peer owns their source.",
            s.datagrams_unroutable,
        );
        counter(
            &mut out,
            "confer_sfu_datagrams_rejected_total",
            "Datagrams a peer's WebRTC stack refused.",
            s.datagrams_rejected,
        );
        counter(
            &mut out,
            "confer_sfu_rtp_forwarded_total",
            "RTP packets forwarded to subscribers.",
            s.rtp_forwarded,
        );
        counter(
            &mut out,
            "confer_sfu_keyframe_requests_total",
            "Keyframe requests sent to publishers.",
            s.keyframe_requests,
        );
        gauge(&mut out, "confer_sfu_peers", "Peers on the SFU.", s.peers);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}
