//! What the SIP bridge counts, for `/metrics`: calls by outcome, calls up, how calls
//! ended, set-up time and call length, requests by method, messages that were not SIP,
//! and RTP in each direction. Labels are bounded sets (outcomes, reasons, methods).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use confer_metrics::{Exposition, Histogram, LabeledCounter};

use crate::keypad::KeyCommand;
use crate::prompt::Prompt;

/// INVITE → 200 OK, seconds: joining a room and negotiating with the SFU.
const SETUP_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Call length, seconds.
const DURATION_BUCKETS: &[f64] = &[10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0];

/// Shared counters; cloning shares them.
#[derive(Debug, Clone)]
pub struct SipStats(Arc<Counters>);

#[derive(Debug)]
struct Counters {
    calls: LabeledCounter,
    active: AtomicI64,
    ends: LabeledCounter,
    setup: Histogram,
    duration: Histogram,
    requests: LabeledCounter,
    bad_messages: AtomicU64,
    rtp_from_caller: AtomicU64,
    rtp_to_caller: AtomicU64,
    rtp_dropped: LabeledCounter,
    key_commands: LabeledCounter,
    prompts: LabeledCounter,
}

impl Default for SipStats {
    fn default() -> Self {
        Self(Arc::new(Counters {
            calls: LabeledCounter::default(),
            active: AtomicI64::new(0),
            ends: LabeledCounter::default(),
            setup: Histogram::new(SETUP_BUCKETS),
            duration: Histogram::new(DURATION_BUCKETS),
            requests: LabeledCounter::default(),
            bad_messages: AtomicU64::new(0),
            rtp_from_caller: AtomicU64::new(0),
            rtp_to_caller: AtomicU64::new(0),
            rtp_dropped: LabeledCounter::default(),
            key_commands: LabeledCounter::default(),
            prompts: LabeledCounter::default(),
        }))
    }
}

impl SipStats {
    /// A call was answered after `setup`.
    pub(crate) fn answered(&self, setup: Duration) {
        self.0.calls.inc("answered");
        self.0.active.fetch_add(1, Relaxed);
        self.0.setup.observe(setup);
    }

    /// A call got a final error response (`outcome`: not_found, forbidden, busy,
    /// not_acceptable, unavailable, cancelled, failed, bad_request).
    pub(crate) fn refused(&self, outcome: &str) {
        self.0.calls.inc(outcome);
    }

    /// An answered call ended, for `reason`, after `length`.
    pub(crate) fn ended(&self, reason: &str, length: Duration) {
        self.0.active.fetch_sub(1, Relaxed);
        self.0.ends.inc(reason);
        self.0.duration.observe(length);
    }

    pub(crate) fn request(&self, method: &str) {
        let method = match method {
            "INVITE" | "ACK" | "BYE" | "CANCEL" | "OPTIONS" | "REGISTER" | "INFO" | "UPDATE" => {
                method
            }
            _ => "other",
        };
        self.0.requests.inc(method);
    }

    pub(crate) fn bad_message(&self) {
        self.0.bad_messages.fetch_add(1, Relaxed);
    }

    pub(crate) fn rtp_from_caller(&self) {
        self.0.rtp_from_caller.fetch_add(1, Relaxed);
    }

    pub(crate) fn rtp_to_caller(&self) {
        self.0.rtp_to_caller.fetch_add(1, Relaxed);
    }

    /// An RTP datagram from the caller that was not forwarded (`reason`: malformed,
    /// payload_type, dtmf (keys, read by the keypad), not_connected: before the room's
    /// media connection is up, muted: the caller muted themselves).
    pub(crate) fn rtp_dropped(&self, reason: &str) {
        self.0.rtp_dropped.inc(reason);
    }

    /// A caller keyed a command (`*6`, `*9`).
    pub(crate) fn key_command(&self, command: KeyCommand) {
        self.0.key_commands.inc(match command {
            KeyCommand::ToggleMute => "mute",
            KeyCommand::ToggleHand => "hand",
        });
    }

    /// A caller was told something (a prompt played to them).
    pub(crate) fn prompt(&self, prompt: Prompt) {
        self.0.prompts.inc(prompt.name());
    }

    /// Calls up now.
    pub fn active(&self) -> i64 {
        self.0.active.load(Relaxed)
    }

    /// The SIP bridge's families on a `/metrics` page.
    pub fn render(&self, out: &mut Exposition) {
        let c = &self.0;
        out.counter_by(
            "confer_sip_calls",
            "Incoming calls by outcome: answered, or the refusal's reason.",
            "outcome",
            &c.calls.snapshot(),
        );
        out.gauge1(
            "confer_sip_calls_active",
            "Calls answered and not yet ended.",
            c.active.load(Relaxed) as f64,
        );
        out.counter_by(
            "confer_sip_call_ends",
            "Answered calls that ended, by reason.",
            "reason",
            &c.ends.snapshot(),
        );
        out.histogram(
            "confer_sip_call_setup_seconds",
            "From an INVITE's arrival to its 200 OK: joining the room and negotiating media.",
            &c.setup.snapshot(),
        );
        out.histogram(
            "confer_sip_call_duration_seconds",
            "Length of answered calls.",
            &c.duration.snapshot(),
        );
        out.counter_by(
            "confer_sip_requests",
            "SIP requests received, by method.",
            "method",
            &c.requests.snapshot(),
        );
        out.counter1(
            "confer_sip_bad_messages",
            "Datagrams on the SIP port that were not SIP messages, or lacked required headers.",
            c.bad_messages.load(Relaxed),
        );
        out.counter(
            "confer_sip_rtp_packets",
            "RTP packets bridged, by direction.",
            &[
                (
                    &[("direction", "from_caller")],
                    c.rtp_from_caller.load(Relaxed),
                ),
                (&[("direction", "to_caller")], c.rtp_to_caller.load(Relaxed)),
            ],
        );
        out.counter_by(
            "confer_sip_rtp_dropped",
            "RTP datagrams from callers not forwarded, by reason.",
            "reason",
            &c.rtp_dropped.snapshot(),
        );
        out.counter_by(
            "confer_sip_key_commands",
            "Commands callers keyed on their phones: mute (*6), hand (*9).",
            "command",
            &c.key_commands.snapshot(),
        );
        out.counter_by(
            "confer_sip_prompts",
            "Prompts played to callers: recording_started, recording_stopped, muted, unmuted, mute_refused, hand_raised, hand_lowered.",
            "prompt",
            &c.prompts.snapshot(),
        );
    }
}
