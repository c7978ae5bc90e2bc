//! `/metrics`: gateway counters (joins by outcome and reason, join time, signalling
//! errors, chat) and, in `confer dev`, the in-process SFU's; Prometheus text or
//! OpenMetrics by the scraper's `Accept`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use confer_metrics::{Exposition, Format, Histogram, LabeledCounter};

use crate::AppState;

pub(crate) struct Metrics {
    pub(crate) joins: AtomicU64,
    /// Failed joins by the error code the client was sent (a fixed set of codes).
    pub(crate) join_failures: LabeledCounter,
    /// Successful joins, request to answer.
    pub(crate) join_duration: Histogram,
    pub(crate) signal_errors: AtomicU64,
    /// Clients cut off because what waited for them outgrew the limit.
    pub(crate) clients_too_slow: AtomicU64,
    /// Clients let go after sending nothing, not even a pong, for the liveness
    /// setting's `silent_for`.
    pub(crate) clients_silent: AtomicU64,
    /// Watches of the room service's commands begun: one at start, one more each
    /// time the stream broke and was taken up again.
    pub(crate) command_watches: AtomicU64,
    pub(crate) chat_messages: AtomicU64,
    /// Chat posts refused for coming faster than the gateway's chat rate.
    pub(crate) chat_rate_limited: AtomicU64,
    pub(crate) chat_delivered: AtomicU64,
    /// An entry's store time to its delivery here (wall clocks of the chat service's
    /// and this host).
    pub(crate) chat_fanout: Histogram,
    /// A room's hand-off of chat entries to its last member's write of them.
    pub(crate) chat_write: Histogram,
    /// Live entries that arrived ahead of one not yet delivered: history was read to
    /// fill the gap before delivering.
    pub(crate) chat_gap_fills: AtomicU64,
    /// Times the chat feed said entries of any room may have been missed (it
    /// reconnected to the bus, or fell behind and dropped some), and every room was
    /// read from history after its last entry.
    pub(crate) chat_resyncs: AtomicU64,
    /// Live entries that arrived ahead of a missing one and went out in order once it
    /// came, without a history read.
    pub(crate) chat_reordered: AtomicU64,
    /// Hand-offs of a room's chat whose writes lengthened the room's period past its
    /// spacing (the hub's pacer's count).
    pub(crate) chat_rests: AtomicU64,
    /// Relay links set up between a joiner's SFU and the room's SFUs elsewhere.
    pub(crate) relay_links: AtomicU64,
    pub(crate) relay_link_failures: AtomicU64,
    /// Finished recordings removed for being older than the keep.
    pub(crate) recordings_expired: AtomicU64,
    /// Half-written recordings no SFU was writing any more, finished by the sweep.
    pub(crate) recordings_recovered: AtomicU64,
}

impl Metrics {
    pub(crate) fn relay_link(&self, ok: bool) {
        let counter = if ok {
            &self.relay_links
        } else {
            &self.relay_link_failures
        };
        counter.fetch_add(1, Relaxed);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            joins: AtomicU64::new(0),
            join_failures: LabeledCounter::default(),
            join_duration: Histogram::new(JOIN_BUCKETS),
            signal_errors: AtomicU64::new(0),
            clients_too_slow: AtomicU64::new(0),
            clients_silent: AtomicU64::new(0),
            command_watches: AtomicU64::new(0),
            chat_messages: AtomicU64::new(0),
            chat_rate_limited: AtomicU64::new(0),
            chat_delivered: AtomicU64::new(0),
            chat_fanout: Histogram::new(FANOUT_BUCKETS),
            chat_write: Histogram::new(FANOUT_BUCKETS),
            chat_gap_fills: AtomicU64::new(0),
            chat_resyncs: AtomicU64::new(0),
            chat_reordered: AtomicU64::new(0),
            chat_rests: AtomicU64::new(0),
            relay_links: AtomicU64::new(0),
            relay_link_failures: AtomicU64::new(0),
            recordings_expired: AtomicU64::new(0),
            recordings_recovered: AtomicU64::new(0),
        }
    }
}

/// Chat fan-out buckets, seconds: a bus hop is milliseconds; a catch-up from history
/// after a Redis outage, seconds.
const FANOUT_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Join time buckets, seconds: from a warm in-region join to one that waited on a
/// slow room service.
const JOIN_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub(crate) async fn render(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let mut out = Exposition::new(format);
    let m = &state.metrics;
    out.counter1(
        "confer_gateway_joins",
        "Successful joins.",
        m.joins.load(Relaxed),
    );
    out.counter_by(
        "confer_gateway_join_failures",
        "Refused or failed joins, by reason (the error code the client got).",
        "reason",
        &m.join_failures.snapshot(),
    );
    out.histogram(
        "confer_gateway_join_duration_seconds",
        "Time from a join request to the joined answer, successful joins.",
        &m.join_duration.snapshot(),
    );
    out.counter1(
        "confer_gateway_signal_errors",
        "Signalling messages answered with an error.",
        m.signal_errors.load(Relaxed),
    );
    out.counter1(
        "confer_gateway_clients_too_slow",
        "Signalling connections cut off because their client read nothing while 4 MiB waited for it (gone, or too slow to follow its room); a reconnect resumes chat from its last seq.",
        m.clients_too_slow.load(Relaxed),
    );
    out.counter1(
        "confer_gateway_clients_silent",
        "Signalling connections dropped because their client sent nothing, not even the answer to a ping, for the gateway's --client-silent-secs (a connection that died without a close); its participant left the room.",
        m.clients_silent.load(Relaxed),
    );
    out.counter1(
        "confer_gateway_command_watches",
        "Watches of the room service's commands this gateway began: 1 at start, one more each time the stream broke and was taken up again after its last cursor (a room-service replica restarting, a Redis failover).",
        m.command_watches.load(Relaxed),
    );
    out.counter1(
        "confer_gateway_chat_messages",
        "Chat messages stored for senders on this gateway.",
        m.chat_messages.load(Relaxed),
    );
    out.counter1(
        "confer_gateway_chat_rate_limited",
        "Chat posts refused because their member posted faster than the chat rate allows.",
        m.chat_rate_limited.load(Relaxed),
    );
    out.counter1(
        "confer_gateway_chat_deliveries",
        "Chat entries fanned out to this gateway's rooms (once per room).",
        m.chat_delivered.load(Relaxed),
    );
    out.counter1(
        "confer_gateway_chat_gap_fills",
        "History reads to fill a gap in a room's live chat stream that outlasted the reorder wait (an entry lost on the bus).",
        m.chat_gap_fills.load(Relaxed),
    );
    out.counter1(
        "confer_gateway_chat_resyncs",
        "Times this gateway's chat feed may have missed entries (it reconnected to the bus, or fell behind and dropped what it could not hold) and read every room's from history.",
        m.chat_resyncs.load(Relaxed),
    );
    out.counter1(
        "confer_gateway_chat_reordered",
        "Live chat entries that arrived ahead of a missing one and went out in order when it came, without a history read.",
        m.chat_reordered.load(Relaxed),
    );
    out.counter1(
        "confer_gateway_chat_rests",
        "Hand-offs of a room's chat whose writes (one lane's, times the room's lanes) took longer than the room's spacing less a rest, so that the room's period grew to that and the rest: a big, busy room pacing itself.",
        m.chat_rests.load(Relaxed),
    );
    out.counter1(
        "confer_gateway_recordings_expired",
        "Finished recordings this gateway removed for being older than --recordings-keep-days.",
        m.recordings_expired.load(Relaxed),
    );
    out.counter1(
        "confer_gateway_recordings_recovered",
        "Half-written recordings (.webm.part) nothing had written to for an hour, an SFU having stopped without finishing them, that this gateway finished under their final names.",
        m.recordings_recovered.load(Relaxed),
    );
    out.gauge1(
        "confer_gateway_whip_publishers",
        "Publishers in rooms over WHIP through this gateway.",
        state.whip.count(crate::whip::Direction::Publish) as f64,
    );
    out.gauge1(
        "confer_gateway_whep_players",
        "Players watching rooms over WHEP through this gateway.",
        state.whip.count(crate::whip::Direction::Play) as f64,
    );
    out.gauge1(
        "confer_gateway_participants",
        "Participants in rooms on this gateway.",
        state.rooms.n_participants() as f64,
    );
    out.histogram(
        "confer_gateway_chat_fanout_seconds",
        "From a chat entry stored (the chat service's clock) to its live hand-off to this gateway's members, once per lane of a big room's members (this gateway's clock; history caught up after a gap or resync is not counted).",
        &m.chat_fanout.snapshot(),
    );
    out.histogram(
        "confer_gateway_chat_write_seconds",
        "From a room's chat entries handed to its members here (or to one lane of a big room's members) to the last of them having written them: that lane's next turn waits for this.",
        &m.chat_write.snapshot(),
    );
    out.counter(
        "confer_gateway_relay_links",
        "Relay link set-ups between a joiner's SFU and the room's SFUs in other regions, by outcome.",
        &[
            (&[("outcome", "linked")], m.relay_links.load(Relaxed)),
            (&[("outcome", "failed")], m.relay_link_failures.load(Relaxed)),
        ],
    );
    if let Some(stats) = &state.config.sfu_stats {
        stats.snapshot().render(&mut out);
        stats.render_quality(&mut out);
    }
    if let Some(stats) = &state.chat.stats {
        stats.render(&mut out);
    }
    state.chat.api.render_link_metrics(&mut out);
    for render in &state.config.extra_metrics {
        render(&mut out);
    }
    (
        [(header::CONTENT_TYPE, format.content_type())],
        out.finish(),
    )
}
