//! An answered call's media: the caller's RTP into the room, the room's audio (one
//! speaker at a time) to the caller, until someone hangs up or the room moves; and
//! the bridge's own prompts to the caller (recording, what their keys did).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::CallCommand;
use super::room::RoomSide;
use crate::SipConfig;
use crate::keypad::{KeyCommand, Keypad};
use crate::peer::PeerOutput;
use crate::prompt::{Announcer, Prompt, PromptSet};
use crate::rtp::{RtpView, Splicer, write_packet};
use crate::sdp::AudioOffer;
use crate::signal::SignalEvent;
use crate::stats::SipStats;

/// Signalling keep-alive.
const PING_EVERY: Duration = Duration::from_secs(15);
const IDLE_WAKEUP: Duration = Duration::from_millis(200);
/// A prompt at the start of a call waits this long: the caller's phone has the 200 OK
/// and its audio path is up.
const FIRST_PROMPT_AFTER: Duration = Duration::from_millis(500);

/// Why [`Media::run`] returned.
pub(super) enum MediaEnd {
    /// The room's SFU is going away (`node_draining`): join again.
    Moved,
    /// The call is over; `left`: the room side is gone already (nothing to leave).
    Ended { reason: &'static str, left: bool },
}

pub(super) struct Media {
    caller: UdpSocket,
    offer: AudioOffer,
    /// Where the caller's RTP goes: the offer's address until the caller's first packet
    /// shows where it really comes from (symmetric RTP, through NATs).
    remote: SocketAddr,
    latched: bool,
    from_caller: Splicer,
    to_caller: Splicer,
    last_from_caller: Instant,
    out: Vec<u8>,
    stats: SipStats,
    media_timeout: Duration,
    /// The caller's keys (`*6`, `*9`).
    keypad: Keypad,
    /// The caller is muted, by themselves (`*6`) or a host, as the room last said:
    /// their audio does not go into the room.
    muted: bool,
    /// The caller's hand is up, as the room last said.
    hand_raised: bool,
    /// What the bridge says to the caller, in place of the room's audio meanwhile.
    announcer: Announcer,
    /// Which prompts the deployment plays.
    prompts: PromptSet,
    /// What the caller was last told.
    told: Told,
}

/// What a caller has been told (by a prompt), to tell them only of changes.
#[derive(Debug, Default, Clone, Copy)]
struct Told {
    muted: bool,
    hand_raised: bool,
    recording: bool,
}

impl Media {
    pub fn new(caller: UdpSocket, offer: &AudioOffer, stats: SipStats, config: &SipConfig) -> Self {
        Self {
            caller,
            offer: offer.clone(),
            remote: offer.remote,
            latched: false,
            from_caller: Splicer::new(0, 0),
            to_caller: Splicer::new(rand::random::<u32>() | 1, offer.opus_pt),
            last_from_caller: Instant::now(),
            out: Vec::with_capacity(1500),
            stats,
            media_timeout: config.media_timeout,
            keypad: Keypad::default(),
            muted: false,
            hand_raised: false,
            announcer: Announcer::default(),
            prompts: config.prompts,
            told: Told::default(),
        }
    }

    /// Bridges until the call ends or the room moves.
    pub async fn run(
        &mut self,
        room: &mut RoomSide,
        commands: &mut mpsc::Receiver<CallCommand>,
    ) -> MediaEnd {
        let mut caller_buf = vec![0u8; 2048];
        let mut peer_buf = vec![0u8; 2048];
        let mut next_ping = Instant::now() + PING_EVERY;
        // A rejoin takes a moment; the caller's silence meanwhile is not theirs.
        self.last_from_caller = self.last_from_caller.max(Instant::now());
        // Joined muted (a host's mute the room kept), or into a room that records.
        self.muted |= room.joined_muted;
        let first_prompt = Instant::now() + FIRST_PROMPT_AFTER;
        self.tell_recording(room.recording, first_prompt);
        self.tell_mute_and_hand(first_prompt);
        // Joined again (the room moved): as the caller was.
        if self.muted && room.signal.mute(true).await.is_err()
            || self.hand_raised && room.signal.raise_hand(true).await.is_err()
        {
            return MediaEnd::Ended {
                reason: "room_closed",
                left: true,
            };
        }
        loop {
            flush_peer(room).await;
            let now = Instant::now();
            if self.offer.direction.caller_sends()
                && now.saturating_duration_since(self.last_from_caller) > self.media_timeout
            {
                warn!(remote = %self.remote, "no RTP from the caller: hanging up");
                return ended("media_timeout");
            }
            if next_ping <= now {
                next_ping = now + PING_EVERY;
                if room.signal.ping().await.is_err() {
                    return MediaEnd::Ended {
                        reason: "room_closed",
                        left: true,
                    };
                }
            }
            let deadline = room
                .peer
                .poll_timeout()
                .unwrap_or(now + IDLE_WAKEUP)
                .min(now + IDLE_WAKEUP)
                .min(self.announcer.next_due().unwrap_or(now + IDLE_WAKEUP));
            tokio::select! {
                command = commands.recv() => match command {
                    Some(CallCommand::Media(offer)) => self.redirect(offer),
                    _ => return ended("caller_hangup"),
                },
                received = self.caller.recv_from(&mut caller_buf) => {
                    if let Ok((len, from)) = received
                        && let Some(command) = self.caller_datagram(room, &caller_buf[..len], from)
                        && self.keyed(room, command).await.is_err()
                    {
                        return MediaEnd::Ended { reason: "room_closed", left: true };
                    }
                }
                received = room.socket.recv_from(&mut peer_buf) => {
                    if let Ok((len, from)) = received {
                        room.peer.handle_datagram(&peer_buf[..len], from, Instant::now());
                    }
                }
                event = room.signal.next() => match event {
                    SignalEvent::TrackAssigned { mid, participant, kind } if kind == "audio" => {
                        room.speaker.assigned(&mid, &participant);
                    }
                    SignalEvent::TrackUnassigned { mid } => room.speaker.unassigned(&mid),
                    SignalEvent::ActiveSpeaker { participant } => {
                        room.speaker.active_speaker(&participant);
                    }
                    SignalEvent::ParticipantUpdated { participant, audio_muted, hand_raised } if participant == room.you => {
                        // As the room has the caller: muted by a host too (so `*6`
                        // unmutes), its hand lowered by a host. The caller hears
                        // what changed (their own keys' effect included).
                        self.muted = audio_muted;
                        self.hand_raised = hand_raised;
                        self.tell_mute_and_hand(Instant::now());
                    }
                    SignalEvent::ParticipantsChanged { participants, audio_muted, hand_raised } if participants.contains(&room.you) => {
                        // A host muted everyone, or lowered every hand.
                        self.muted = audio_muted.unwrap_or(self.muted);
                        self.hand_raised = hand_raised.unwrap_or(self.hand_raised);
                        self.tell_mute_and_hand(Instant::now());
                    }
                    SignalEvent::RoomState { recording } => {
                        room.recording = recording;
                        self.tell_recording(recording, Instant::now());
                    }
                    SignalEvent::Error { request_id, code, .. } if request_id == "mute" => {
                        // A host muted the caller and the room keeps it so.
                        info!(%code, "the caller's unmute was refused");
                        self.muted = true;
                        self.told.muted = true;
                        self.tell(Prompt::MuteRefused, Instant::now());
                    }
                    SignalEvent::Error { request_id, code, .. } if request_id.is_empty() => {
                        if code == "node_draining" {
                            return MediaEnd::Moved;
                        }
                        info!(%code, "the room ended the call");
                        return MediaEnd::Ended { reason: "room_closed", left: true };
                    }
                    SignalEvent::Closed => return MediaEnd::Ended { reason: "room_closed", left: true },
                    _ => {}
                },
                _ = tokio::time::sleep_until(deadline.into()) => {
                    if let Err(err) = room.peer.handle_timeout(Instant::now()) {
                        debug!(error = %err, "room peer timeout handling failed");
                    }
                }
            }
            if let Some(reason) = self.drain_peer(room) {
                return ended(reason);
            }
            self.play_prompts();
        }
    }

    /// Tells the caller that recording started or stopped, if that is news to them.
    fn tell_recording(&mut self, recording: bool, at: Instant) {
        if recording != self.told.recording {
            self.told.recording = recording;
            let prompt = if recording {
                Prompt::RecordingStarted
            } else {
                Prompt::RecordingStopped
            };
            self.tell(prompt, at);
        }
    }

    /// Tells the caller that they were muted or unmuted, or their hand went up or
    /// down, where that is news to them.
    fn tell_mute_and_hand(&mut self, at: Instant) {
        if self.muted != self.told.muted {
            self.told.muted = self.muted;
            self.tell(
                if self.muted {
                    Prompt::Muted
                } else {
                    Prompt::Unmuted
                },
                at,
            );
        }
        if self.hand_raised != self.told.hand_raised {
            self.told.hand_raised = self.hand_raised;
            let prompt = if self.hand_raised {
                Prompt::HandRaised
            } else {
                Prompt::HandLowered
            };
            self.tell(prompt, at);
        }
    }

    /// Plays `prompt` to the caller from `at` (after what plays already), if the
    /// caller hears anything at all and the deployment plays it.
    fn tell(&mut self, prompt: Prompt, at: Instant) {
        if !self.offer.direction.caller_receives() || !self.prompts.plays(prompt) {
            return;
        }
        info!(prompt = prompt.name(), "telling the caller");
        self.stats.prompt(prompt);
        self.announcer.announce(prompt, at);
    }

    /// Sends the prompt packets that are due.
    fn play_prompts(&mut self) {
        let now = Instant::now();
        while let Some(due) = self.announcer.due(now) {
            let Some(header) = self
                .to_caller
                .header(due.key, due.sequence, due.timestamp, now)
            else {
                continue;
            };
            write_packet(&mut self.out, &header, due.payload);
            if self.caller.try_send_to(&self.out, self.remote).is_ok() {
                self.stats.rtp_to_caller();
            }
        }
    }

    fn redirect(&mut self, offer: AudioOffer) {
        if offer.remote != self.offer.remote {
            self.remote = offer.remote;
            self.latched = false;
        }
        self.to_caller = Splicer::new(rand::random::<u32>() | 1, offer.opus_pt);
        self.offer = offer;
    }

    /// What a key command does: `*6` mutes or unmutes the caller, `*9` raises or
    /// lowers their hand. Fails when the room's session is gone.
    async fn keyed(&mut self, room: &mut RoomSide, command: KeyCommand) -> anyhow::Result<()> {
        self.stats.key_command(command);
        match command {
            KeyCommand::ToggleMute => {
                self.muted = !self.muted;
                info!(muted = self.muted, "the caller keyed *6");
                room.signal.mute(self.muted).await
            }
            KeyCommand::ToggleHand => {
                self.hand_raised = !self.hand_raised;
                info!(raised = self.hand_raised, "the caller keyed *9");
                room.signal.raise_hand(self.hand_raised).await
            }
        }
    }

    /// One datagram from the caller: Opus goes to the room (unless the caller is
    /// muted), keys to the keypad, the rest is counted. A key command the caller
    /// completed is returned.
    fn caller_datagram(
        &mut self,
        room: &mut RoomSide,
        datagram: &[u8],
        from: SocketAddr,
    ) -> Option<KeyCommand> {
        let Ok(view) = RtpView::parse(datagram) else {
            self.stats.rtp_dropped("malformed");
            return None;
        };
        if !self.latched {
            // Symmetric RTP: answer where the caller's media really comes from.
            self.remote = from;
            self.latched = true;
        }
        self.last_from_caller = Instant::now();
        let payload = &datagram[view.payload.0..view.payload.1];
        // What does not go into the room (keys, other payload types, audio held back)
        // takes sequence numbers in the caller's stream: the room's stream resumes
        // right after the last packet it had, or the gap would read as loss on the
        // caller's link.
        if Some(view.payload_type) == self.offer.dtmf_pt {
            self.stats.rtp_dropped("dtmf");
            self.from_caller.pause();
            return self.keypad.press(payload, view.timestamp, Instant::now());
        }
        if view.payload_type != self.offer.opus_pt {
            self.stats.rtp_dropped("payload_type");
            self.from_caller.pause();
            return None;
        }
        if !room.connected {
            // The peer cannot protect media before DTLS is done: a moment after the
            // answer, and after a move to another SFU.
            self.stats.rtp_dropped("not_connected");
            self.from_caller.pause();
            return None;
        }
        if self.muted {
            self.stats.rtp_dropped("muted");
            self.from_caller.pause();
            return None;
        }
        let now = Instant::now();
        let header =
            self.from_caller
                .header(u64::from(view.ssrc), view.sequence, view.timestamp, now)?;
        let marker = view.marker || header.marker;
        let level = crate::level::estimate(payload);
        if room.peer.send_audio(
            now,
            header.sequence,
            header.timestamp,
            marker,
            payload,
            level,
        ) {
            self.stats.rtp_from_caller();
        }
        None
    }

    /// Acts on what the peer connection produced; `Some(reason)` ends the call.
    fn drain_peer(&mut self, room: &mut RoomSide) -> Option<&'static str> {
        while let Some(output) = room.peer.poll_output() {
            match output {
                PeerOutput::Connected => {
                    debug!("room peer connected");
                    room.connected = true;
                }
                PeerOutput::Failed => return Some("media_failed"),
                PeerOutput::Audio { mid, ssrc, packet } => {
                    let now = Instant::now();
                    if !self.offer.direction.caller_receives() || !room.speaker.forward(&mid, now) {
                        continue;
                    }
                    if self.announcer.playing() {
                        // A prompt is playing: the caller hears it alone.
                        continue;
                    }
                    let Some(header) = self.to_caller.header(
                        u64::from(ssrc),
                        packet.header.sequence_number,
                        packet.header.timestamp,
                        now,
                    ) else {
                        continue;
                    };
                    write_packet(&mut self.out, &header, &packet.payload);
                    if self.caller.try_send_to(&self.out, self.remote).is_ok() {
                        self.stats.rtp_to_caller();
                    }
                }
            }
        }
        None
    }
}

fn ended(reason: &'static str) -> MediaEnd {
    MediaEnd::Ended {
        reason,
        left: false,
    }
}

async fn flush_peer(room: &mut RoomSide) {
    while let Some((datagram, to)) = room.peer.poll_transmit() {
        // One lost datagram is repaired by the media stack (NACK, retransmits).
        let _ = room.socket.send_to(&datagram, to).await;
    }
}
