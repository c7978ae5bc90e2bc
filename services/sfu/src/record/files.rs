//! The writer thread, and the recordings directory as readers see it.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{debug, warn};

use super::Note;
use super::frames::{Frame, Frames, RecordCodec};
use super::reorder::Reorder;
use super::webm::{TrackFormat, Webm};
use crate::core::TrackSource;
use crate::{ParticipantId, RoomId, SfuStats};

const PART: &str = ".part";
const EXTENSION: &str = ".webm";

/// How often the writer marks the files it is still writing as alive (their
/// modification time), so that one whose track sends nothing for a while (a camera
/// taken away, a sender that stops sending without leaving) is not taken for a file
/// an SFU left behind: the gateways' sweep finishes a `.part` untouched for an hour.
pub const MARK_ALIVE_EVERY: Duration = Duration::from_secs(300);

/// A room or participant id as one file name part: ASCII letters, digits, `_` and
/// `-` as they are, every other byte as `%XX` (so no name can climb out of its
/// directory, and two ids never share a name).
pub fn path_part(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// One recorded file of a room, as the directory holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The file's name in the room's directory.
    pub file: String,
    /// The participant id, unescaped.
    pub participant: String,
    /// `microphone`, `camera` or `screen_share`.
    pub source: String,
    pub started_unix_ms: u64,
    pub bytes: u64,
    /// Still being written (`.webm.part`).
    pub in_progress: bool,
    /// Its length, as written into a finished file; `None` while being written (or
    /// for a file an SFU left unfinished).
    pub duration_ms: Option<u64>,
}

impl Recorded {
    /// Reads a file name this writer gives; `None` for anything else.
    fn parse(file: &str, bytes: u64) -> Option<Self> {
        let (stem, in_progress) = match file.strip_suffix(PART) {
            Some(stem) => (stem, true),
            None => (file, false),
        };
        let stem = stem.strip_suffix(EXTENSION)?;
        let mut parts = stem.split('.');
        let (participant, source, started) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || TrackSource::parse(source).is_none() {
            return None;
        }
        Some(Self {
            file: file.to_owned(),
            participant: unescape(participant)?,
            source: source.to_owned(),
            started_unix_ms: started.parse().ok()?,
            bytes,
            in_progress,
            duration_ms: None,
        })
    }
}

impl Recorded {
    /// The name the file has, or will have, once finished.
    pub fn finished_name(&self) -> &str {
        self.file.strip_suffix(PART).unwrap_or(&self.file)
    }
}

fn unescape(part: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(part.len());
    let mut rest = part.as_bytes();
    while let [first, tail @ ..] = rest {
        if *first == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(*first);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// The room's recordings under `dir`, oldest first; none when it has no directory.
pub fn list(dir: &Path, room: &str) -> std::io::Result<Vec<Recorded>> {
    list_in(&dir.join(path_part(room)))
}

/// The recordings in one room's directory, oldest first; none when it is missing.
pub fn list_in(room_dir: &Path) -> std::io::Result<Vec<Recorded>> {
    let entries = match std::fs::read_dir(room_dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut all = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let bytes = match entry.metadata() {
            Ok(metadata) => metadata.len(),
            // Removed since the directory was read (a tenant's delete, a sweep).
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        if let Some(mut recorded) = Recorded::parse(&name, bytes) {
            if !recorded.in_progress {
                recorded.duration_ms = duration_of(&entry.path());
            }
            all.push(recorded);
        }
    }
    all.sort_by(|a, b| (a.started_unix_ms, &a.file).cmp(&(b.started_unix_ms, &b.file)));
    Ok(all)
}

/// The duration written into a finished file's head; `None` when it cannot be read.
fn duration_of(path: &Path) -> Option<u64> {
    use std::io::Read as _;
    let mut head = Vec::with_capacity(HEAD_BYTES);
    File::open(path)
        .ok()?
        .take(HEAD_BYTES as u64)
        .read_to_end(&mut head)
        .ok()?;
    super::webm::read_duration_ms(&head)
}

/// Bytes read from a file's start for its duration: the headers this writer puts
/// first are a few hundred (H.264's codec data included).
const HEAD_BYTES: usize = 4096;

/// A track's file: waiting for its first frame, being written, or given up on.
enum Output {
    Waiting,
    Writing {
        webm: Webm<BufWriter<File>>,
        part: PathBuf,
    },
    Failed,
}

struct Track {
    room: RoomId,
    participant: ParticipantId,
    source: TrackSource,
    codec: RecordCodec,
    reorder: Reorder,
    frames: Frames,
    wants_keyframe: Arc<AtomicBool>,
    output: Output,
}

pub(super) struct Writer {
    dir: PathBuf,
    queued: Arc<AtomicUsize>,
    stats: SfuStats,
    tracks: HashMap<u64, Track>,
    /// When the files being written were last marked alive.
    marked_at: Instant,
}

impl Writer {
    pub(super) fn new(dir: PathBuf, queued: Arc<AtomicUsize>, stats: SfuStats) -> Self {
        Self {
            dir,
            queued,
            stats,
            tracks: HashMap::new(),
            marked_at: Instant::now(),
        }
    }

    /// Until every sender is gone; then every file is finished.
    pub(super) fn run(mut self, notes: mpsc::Receiver<Note>) {
        loop {
            match notes.recv_timeout(MARK_ALIVE_EVERY) {
                Ok(note) => self.take(note),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            self.mark_alive_if_due(Instant::now());
        }
        for (_, track) in self.tracks.drain() {
            finish(&self.dir, track, &self.stats);
        }
    }

    /// Marks the files being written alive, once every [`MARK_ALIVE_EVERY`].
    fn mark_alive_if_due(&mut self, now: Instant) {
        if now.duration_since(self.marked_at) < MARK_ALIVE_EVERY {
            return;
        }
        self.marked_at = now;
        let at = SystemTime::now();
        for track in self.tracks.values() {
            if let Output::Writing { part, .. } = &track.output
                && let Err(err) = File::options()
                    .write(true)
                    .open(part)
                    .and_then(|file| file.set_modified(at))
            {
                debug!(file = %part.display(), %err, "could not mark a recording alive");
            }
        }
    }

    fn packet(&mut self, id: u64, packet: super::RtpIn) {
        let Some(track) = self.tracks.get_mut(&id) else {
            return;
        };
        for packet in track.reorder.push(packet) {
            take_packet(&self.dir, track, &packet, &self.stats);
        }
    }

    fn take(&mut self, note: Note) {
        match note {
            Note::Start {
                id,
                room,
                participant,
                source,
                codec,
                wants_keyframe,
            } => {
                wants_keyframe.store(codec != RecordCodec::Opus, Ordering::Relaxed);
                self.tracks.insert(
                    id,
                    Track {
                        room,
                        participant,
                        source,
                        codec,
                        reorder: Reorder::default(),
                        frames: Frames::new(codec),
                        wants_keyframe,
                        output: Output::Waiting,
                    },
                );
            }
            Note::Packets(batch) => {
                self.queued.fetch_sub(batch.len(), Ordering::Relaxed);
                for (id, packet) in batch {
                    self.packet(id, packet);
                }
            }
            Note::Stop { id } => {
                if let Some(track) = self.tracks.remove(&id) {
                    finish(&self.dir, track, &self.stats);
                }
            }
        }
    }
}

/// One packet, in order, into the track's frames; a frame it completes is written.
fn take_packet(dir: &Path, track: &mut Track, packet: &super::RtpIn, stats: &SfuStats) {
    let frame = track.frames.push(packet);
    if track.frames.needs_keyframe() {
        track.wants_keyframe.store(true, Ordering::Relaxed);
    }
    if let Some(frame) = frame {
        write(dir, track, frame, stats);
    }
}

fn write(dir: &Path, track: &mut Track, frame: Frame, stats: &SfuStats) {
    if matches!(track.output, Output::Waiting) {
        track.output = match open(dir, track, &frame) {
            Ok(Some(output)) => {
                stats.recording_opened();
                output
            }
            Ok(None) => return,
            Err(err) => {
                warn!(participant = %track.participant, source = track.source.as_str(), %err, "recording failed to start");
                stats.recording_failed();
                Output::Failed
            }
        };
    }
    if let Output::Writing { webm, part } = &mut track.output
        && let Err(err) = webm.frame(frame.at_ms, frame.keyframe, &frame.data)
    {
        warn!(file = %part.display(), %err, "recording failed: the file stops here");
        let failed = std::mem::replace(&mut track.output, Output::Failed);
        if let Output::Writing { webm, part } = failed {
            // What was written stays, under its final name, as far as it goes.
            close(webm, &part);
        }
        stats.recording_closed(false);
    }
}

fn open(dir: &Path, track: &Track, frame: &Frame) -> std::io::Result<Option<Output>> {
    let format = match (track.codec, frame.size, &frame.config) {
        (RecordCodec::Opus, ..) => TrackFormat::Opus,
        (RecordCodec::Vp8, Some((width, height)), _) => TrackFormat::Vp8 { width, height },
        (RecordCodec::H264, Some((width, height)), Some(config)) => TrackFormat::H264 {
            width,
            height,
            config: config.clone(),
        },
        // A video file starts at a keyframe that says its size (and, for H.264, its
        // decoder configuration).
        (RecordCodec::Vp8 | RecordCodec::H264, ..) => return Ok(None),
    };
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let room_dir = dir.join(path_part(track.room.as_str()));
    std::fs::create_dir_all(&room_dir)?;
    let name = format!(
        "{}.{}.{started}{EXTENSION}{PART}",
        path_part(track.participant.as_str()),
        track.source.as_str(),
    );
    let part = room_dir.join(name);
    let file = BufWriter::new(File::create_new(&part)?);
    debug!(file = %part.display(), "recording started");
    Ok(Some(Output::Writing {
        webm: Webm::start(file, format, started)?,
        part,
    }))
}

/// Takes what the track still holds out of order, then closes its file, if it has
/// one.
fn finish(dir: &Path, mut track: Track, stats: &SfuStats) {
    for packet in track.reorder.drain() {
        take_packet(dir, &mut track, &packet, stats);
    }
    if let Output::Writing { webm, part } = track.output {
        stats.recording_closed(close(webm, &part));
    }
}

/// Fills in the file's duration, flushes it and gives it its final name: whether
/// all of that went.
fn close(webm: Webm<BufWriter<File>>, part: &Path) -> bool {
    let duration = webm.duration_ms();
    let done = webm
        .finish(duration)
        .and_then(|out| out.into_inner().map_err(|err| err.into_error()))
        .and_then(|file| file.sync_all());
    let finished = part.with_extension("");
    match done.and_then(|()| std::fs::rename(part, &finished)) {
        Ok(()) => {
            debug!(file = %finished.display(), duration_ms = duration, "recording finished");
            true
        }
        Err(err) => {
            warn!(file = %part.display(), %err, "recording could not be finished");
            false
        }
    }
}

#[cfg(test)]
mod tests;
