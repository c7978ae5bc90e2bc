//! Which of the room's audio streams the caller hears. A phone line carries one
//! stream, and the bridge does not decode audio, so it forwards one participant at a
//! time: the room's active speaker (from the SFU's audio levels) while that one is
//! sending, else whoever it was forwarding while they still send, else the stream
//! heard most recently.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A stream that sent nothing for this long is silent (muted, gone or in DTX).
const QUIET: Duration = Duration::from_millis(600);

#[derive(Debug, Default)]
pub struct Speaker {
    /// Receive slot → participant, audio slots only.
    slots: HashMap<String, String>,
    heard: HashMap<String, Instant>,
    active: Option<String>,
    current: Option<String>,
}

impl Speaker {
    pub fn assigned(&mut self, mid: &str, participant: &str) {
        self.slots.insert(mid.to_owned(), participant.to_owned());
    }

    pub fn unassigned(&mut self, mid: &str) {
        self.slots.remove(mid);
        self.heard.remove(mid);
        if self.current.as_deref() == Some(mid) {
            self.current = None;
        }
    }

    /// The room's active speaker changed (empty: nobody speaks).
    pub fn active_speaker(&mut self, participant: &str) {
        self.active = (!participant.is_empty()).then(|| participant.to_owned());
    }

    /// A packet arrived on slot `mid`: whether it is the one the caller hears. Per
    /// packet, so nothing is allocated once the slots have been heard.
    pub fn forward(&mut self, mid: &str, now: Instant) -> bool {
        if !self.slots.contains_key(mid) {
            return false;
        }
        match self.heard.get_mut(mid) {
            Some(at) => *at = now,
            None => {
                self.heard.insert(mid.to_owned(), now);
            }
        }
        let sending = |slot: &str| {
            self.heard
                .get(slot)
                .is_some_and(|at| now.saturating_duration_since(*at) < QUIET)
        };
        let active_slot = self.active.as_deref().and_then(|participant| {
            self.slots
                .iter()
                .find(|(_, p)| p.as_str() == participant)
                .map(|(slot, _)| slot.as_str())
        });
        let chosen = match (active_slot, self.current.as_deref()) {
            (Some(slot), _) if sending(slot) => slot,
            (_, Some(current)) if sending(current) => current,
            _ => mid,
        };
        let forward = chosen == mid;
        if self.current.as_deref() != Some(chosen) {
            self.current = Some(chosen.to_owned());
        }
        forward
    }

    /// The participant the caller hears now.
    pub fn current_participant(&self) -> Option<&str> {
        self.current
            .as_ref()
            .and_then(|slot| self.slots.get(slot))
            .map(String::as_str)
    }
}
