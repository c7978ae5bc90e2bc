//! Recording: each recorded track to its own WebM file: Opus, VP8, or H.264 (as
//! Chromium's own recorder writes it, in a WebM file).
//!
//! The media workers hand a recorded track's packets to the [`Recorder`] and go on:
//! the files are written on a thread of their own, so a slow disk never holds up
//! forwarding (when the recorder falls behind, packets are dropped, the frames they
//! belonged to are lost and the track waits for a keyframe it asks for). The writer
//! puts each track's packets back in sequence order first, waiting a moment for a
//! missing one's resend ([`reorder`]). Packets are
//! handed over in batches, every [`BATCH`] packets or once the oldest has waited
//! [`HOLD`], so the writer thread is woken once a batch, not once a packet. A file is
//! opened at a track's first whole frame (a video's first keyframe), written as
//! `<name>.webm.part`, and renamed to `<name>.webm` once the track stops being
//! recorded: recording stopped, the track ended or its participant left. A file an
//! SFU never finished (it stopped mid-recording) is finished by the gateways' sweep
//! with [`recover`]: cut after its last whole block, its duration filled in.
//!
//! Files live under the recordings directory, one directory per room:
//! `<dir>/<room>/<participant>.<source>.<unix ms started>.webm`, room and participant
//! escaped by [`path_part`].

mod files;
mod frames;
mod h264;
mod reorder;
mod webm;

pub use files::{MARK_ALIVE_EVERY, Recorded, list, list_in, path_part};
pub use frames::{Frame, Frames, RecordCodec, RtpIn};
pub use webm::{Recovered, TrackFormat, Webm, recover};

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

use crate::core::TrackSource;
use crate::{ParticipantId, RoomId, SfuStats};

/// Notes the media workers leave for the writer thread.
#[derive(Debug)]
pub(crate) enum Note {
    Start {
        id: u64,
        room: RoomId,
        participant: ParticipantId,
        source: TrackSource,
        codec: RecordCodec,
        wants_keyframe: Arc<AtomicBool>,
    },
    Packets(Vec<(u64, RtpIn)>),
    Stop {
        id: u64,
    },
}

/// Packets waiting for the writer before more are dropped (a few seconds of a busy
/// worker's recorded media). Start and stop notes always go: they keep files whole.
const BACKLOG: usize = 16_384;

/// Packets a worker holds before it hands them over.
const BATCH: usize = 64;
/// How long a worker holds a packet for the writer at most (the worker's loop hands
/// them over when it passes by after that).
const HOLD: std::time::Duration = std::time::Duration::from_millis(20);

/// Where a media worker hands recorded packets; each worker has its own clone.
#[derive(Clone)]
pub struct Recorder {
    notes: mpsc::Sender<Note>,
    /// Packets taken since the last hand-over.
    pending: Vec<(u64, RtpIn)>,
    /// Packets sent and not yet taken by the writer.
    queued: Arc<AtomicUsize>,
    next_id: Arc<AtomicU64>,
    stats: SfuStats,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

/// One track being recorded, as the media worker holds it.
#[derive(Debug)]
pub(crate) struct TrackRecording {
    pub(crate) id: u64,
    pub(crate) codec: RecordCodec,
    /// The simulcast layer recorded (the best one sending, taken at its keyframe).
    pub(crate) ssrc: Option<u32>,
    /// Set by the writer when the track lost a frame and waits for a keyframe.
    pub(crate) wants_keyframe: Arc<AtomicBool>,
}

impl Recorder {
    /// Starts the writer thread, writing under `dir` (made if missing).
    pub fn start(dir: PathBuf, stats: SfuStats) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let (notes, incoming) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let writer = files::Writer::new(dir, queued.clone(), stats.clone());
        std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || writer.run(incoming))?;
        Ok(Self {
            notes,
            pending: Vec::new(),
            queued,
            next_id: Arc::new(AtomicU64::new(1)),
            stats,
        })
    }

    pub(crate) fn start_track(
        &mut self,
        room: &RoomId,
        participant: &ParticipantId,
        source: TrackSource,
        codec: RecordCodec,
    ) -> TrackRecording {
        self.flush();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let wants_keyframe = Arc::new(AtomicBool::new(false));
        let _ = self.notes.send(Note::Start {
            id,
            room: room.clone(),
            participant: participant.clone(),
            source,
            codec,
            wants_keyframe: wants_keyframe.clone(),
        });
        TrackRecording {
            id,
            codec,
            ssrc: None,
            wants_keyframe,
        }
    }

    pub(crate) fn packet(&mut self, id: u64, packet: RtpIn) {
        self.pending.push((id, packet));
        if self.pending.len() >= BATCH {
            self.flush();
        }
    }

    /// Hands the packets taken so far to the writer once the oldest waited [`HOLD`].
    pub(crate) fn flush_due(&mut self, now: std::time::Instant) {
        let due = self
            .pending
            .first()
            .is_some_and(|(_, packet)| now.saturating_duration_since(packet.at) >= HOLD);
        if due {
            self.flush();
        }
    }

    /// Hands the packets taken so far to the writer.
    pub(crate) fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        let n = batch.len();
        if self.queued.load(Ordering::Relaxed) >= BACKLOG {
            self.stats.recording_packets_dropped(n);
            return;
        }
        self.queued.fetch_add(n, Ordering::Relaxed);
        if self.notes.send(Note::Packets(batch)).is_err() {
            self.queued.fetch_sub(n, Ordering::Relaxed);
            self.stats.recording_packets_dropped(n);
        }
    }

    pub(crate) fn stop_track(&mut self, recording: TrackRecording) {
        self.flush();
        let _ = self.notes.send(Note::Stop { id: recording.id });
    }
}
