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
    pub(crate) chat_delivered: AtomicU64,
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
        "Chat messages stored for senders on this gateway.",
        m.chat_messages.load(Relaxed),
    );
    counter(
        &mut out,
        "confer_gateway_chat_deliveries_total",
        "Chat entries fanned out to this gateway's rooms (once per room).",
        m.chat_delivered.load(Relaxed),
    );
    gauge(
        &mut out,
        "confer_gateway_participants",
        "Participants in rooms on this gateway.",
        state.rooms.n_participants() as u64,
    );
    if let Some(stats) = &state.config.sfu_stats {
        let s = stats.snapshot();
        let counters = [
            (
                "confer_sfu_datagrams_received_total",
                "Datagrams received on the media port.",
                s.datagrams_received,
            ),
            (
                "confer_sfu_datagrams_unroutable_total",
                "Datagrams dropped because no peer owns their source.",
                s.datagrams_unroutable,
            ),
            (
                "confer_sfu_datagrams_rejected_total",
                "Datagrams a peer's WebRTC stack refused.",
                s.datagrams_rejected,
            ),
            (
                "confer_sfu_rtp_forwarded_total",
                "RTP packets forwarded to subscribers.",
                s.rtp_forwarded,
            ),
            (
                "confer_sfu_rtp_blocked_total",
                "RTP packets not forwarded because their track is blocked.",
                s.rtp_blocked,
            ),
            (
                "confer_sfu_keyframe_requests_total",
                "Keyframe requests sent to publishers.",
                s.keyframe_requests,
            ),
            (
                "confer_sfu_nacks_received_total",
                "RTCP NACKs received from subscribers.",
                s.nacks_received,
            ),
            (
                "confer_sfu_nack_packets_requested_total",
                "Lost packets named by subscribers' NACKs.",
                s.nack_packets_requested,
            ),
            (
                "confer_sfu_nacks_sent_total",
                "RTCP NACKs sent to publishers for packets lost on the way in.",
                s.nacks_sent,
            ),
            (
                "confer_sfu_retransmissions_total",
                "Packets resent to subscribers from the packet cache.",
                s.retransmissions_sent,
            ),
            (
                "confer_sfu_layer_switches_total",
                "Simulcast layer switches of subscriber slots.",
                s.layer_switches,
            ),
            (
                "confer_sfu_slots_paused_total",
                "Video slots paused (hidden tile or too little bandwidth).",
                s.slots_paused,
            ),
            (
                "confer_sfu_impaired_dropped_total",
                "Datagrams dropped by configured impairment (fault injection).",
                s.impaired_dropped,
            ),
        ];
        for (name, help, value) in counters {
            counter(&mut out, name, help, value);
        }
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
