//! Playing prompts into the caller's stream: one at a time, in the order asked,
//! each packet when its audio is due (20 ms apart), a newer prompt on the same
//! subject cutting short or dropping an older one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Prompt;

/// Splicer keys of prompts: above every SSRC (a `u32`), one per prompt played, so a
/// prompt that follows another is spliced in as a new source.
const PROMPT_KEYS: u64 = 1 << 32;

/// One Opus packet of a prompt and how much audio it holds (48 kHz ticks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptPacket {
    pub payload: Vec<u8>,
    pub ticks: u32,
}

/// A prompt packet to send now, numbered within its prompt (sequence from 0,
/// timestamp from 0): the caller's stream splices it in under `key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub prompt: Prompt,
    pub key: u64,
    pub sequence: u16,
    pub timestamp: u32,
    pub payload: &'static [u8],
}

/// The prompts a caller is to hear, and the one playing.
#[derive(Debug, Default)]
pub struct Announcer {
    queue: VecDeque<(Prompt, Instant)>,
    playing: Option<Playing>,
    started: u64,
}

#[derive(Debug)]
struct Playing {
    prompt: Prompt,
    key: u64,
    /// The next packet to send, and the audio before it (ticks).
    next: usize,
    elapsed: u64,
    start: Instant,
}

impl Playing {
    /// When the audio sent so far ends: the next packet is due then.
    fn next_at(&self) -> Instant {
        self.start + Duration::from_micros(self.elapsed * 1_000_000 / 48_000)
    }
}

impl Announcer {
    /// Plays `prompt` from `at` (or after what plays before it), in place of one on
    /// the same subject not yet heard to its end: one playing is cut short (the new
    /// one follows at once), one waiting gives the new one its turn.
    pub fn announce(&mut self, prompt: Prompt, at: Instant) {
        let subject = prompt.subject();
        if let Some(playing) = self.playing.take_if(|p| p.prompt.subject() == subject) {
            self.queue.retain(|(queued, _)| queued.subject() != subject);
            // Not before the one it replaces was to start (the call's first prompt
            // waits for the phone).
            let start = at.max(playing.start);
            self.queue.push_front((prompt, start));
            self.start_next(start);
            return;
        }
        match self
            .queue
            .iter_mut()
            .find(|(queued, _)| queued.subject() == subject)
        {
            Some(waiting) => *waiting = (prompt, at),
            None => self.queue.push_back((prompt, at)),
        }
        if self.playing.is_none() {
            self.start_next(at);
        }
    }

    /// A prompt is playing (or waits for its start): the room's audio is held back.
    pub fn playing(&self) -> bool {
        self.playing.is_some()
    }

    /// When [`Announcer::due`] next has something to do.
    pub fn next_due(&self) -> Option<Instant> {
        self.playing.as_ref().map(Playing::next_at)
    }

    /// The next packet due by `now`, if any: call until `None`. A prompt counts as
    /// playing until its last packet's audio has ended.
    pub fn due(&mut self, now: Instant) -> Option<Due> {
        loop {
            let playing = self.playing.as_mut()?;
            let at = playing.next_at();
            if at > now {
                return None;
            }
            let Some(packet) = playing.prompt.packets().get(playing.next) else {
                self.playing = None;
                self.start_next(at);
                continue;
            };
            let due = Due {
                prompt: playing.prompt,
                key: playing.key,
                sequence: playing.next as u16,
                timestamp: playing.elapsed as u32,
                payload: &packet.payload,
            };
            playing.next += 1;
            playing.elapsed += u64::from(packet.ticks);
            return Some(due);
        }
    }

    /// Starts the first queued prompt, no earlier than `after` (when the last one
    /// ended) nor than it was asked for.
    fn start_next(&mut self, after: Instant) {
        if let Some((prompt, at)) = self.queue.pop_front() {
            self.started += 1;
            self.playing = Some(Playing {
                prompt,
                key: PROMPT_KEYS | self.started,
                next: 0,
                elapsed: 0,
                start: at.max(after),
            });
        }
    }
}
