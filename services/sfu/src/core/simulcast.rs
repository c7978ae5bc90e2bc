//! Layer choice per subscriber: from what each slot renders and, when the subscriber's
//! link is short, its bandwidth estimate (see [`super::layers::allocate`]).
//!
//! A subscriber is chosen for again when something it depends on changes (a slot's
//! source, the size it renders, a layer opening) and every housekeeping tick, since
//! publishers start and stop layers and bitrates move.

use std::time::{Duration, Instant};

use super::layers::{self, Demand, Wanted};
use super::peer::Source;
use super::{MediaKind, PeerKey, Sfu, TrackSource};
use crate::ParticipantId;
use crate::control::{SfuError, SfuEvent};

/// A shared screen that sends no media for this long has stopped. Chromium repeats a
/// still screen's last frame about once a second, so a paused slide is not "stopped".
const SCREEN_IDLE: Duration = Duration::from_secs(3);

impl Sfu {
    /// Records what `participant` renders its slot `mid` at (`Wanted::Paused` when the
    /// tile is hidden) and chooses its layers again.
    pub fn set_track_settings(
        &mut self,
        now: Instant,
        participant: &ParticipantId,
        mid: &str,
        wanted: Wanted,
    ) -> Result<(), SfuError> {
        let key = self.key_of(participant)?;
        let peer = self.peers.get_mut(&key).ok_or(SfuError::UnknownPeer)?;
        let slot = peer
            .slots
            .iter_mut()
            .find(|slot| slot.mid == mid)
            .ok_or_else(|| SfuError::UnknownSlot(mid.to_owned()))?;
        slot.wanted = wanted;
        self.dirty.push(key);
        let mut touched = Vec::new();
        self.settle(now, &mut touched);
        for key in touched {
            self.flush(key);
        }
        Ok(())
    }

    /// Takes shared screens that stopped sending out of their subscribers' slots (a
    /// stopped share sends nothing, and a frozen last picture is not a screen).
    pub(super) fn retire_idle_screens(&mut self, now: Instant) {
        let mut idle = Vec::new();
        for (key, peer) in &mut self.peers {
            for (track_id, published) in &mut peer.published {
                let sending = published
                    .layers
                    .iter()
                    .any(|l| l.rate.active_within(now, SCREEN_IDLE));
                if published.source == TrackSource::ScreenShare && !published.dormant && !sending {
                    published.dormant = true;
                    idle.push((*key, track_id.clone(), peer.room.clone()));
                    self.events.push_back(SfuEvent::TrackUnpublished {
                        participant: peer.participant.clone(),
                        source: TrackSource::ScreenShare,
                    });
                }
            }
        }
        for (key, track_id, room) in idle {
            if let Some(room_state) = self.rooms.get_mut(&room) {
                room_state
                    .publications
                    .retain(|(publisher, id, _)| !(*publisher == key && *id == track_id));
            }
            self.release_slots(&room, |source| {
                source.publisher == key && source.track_id == track_id
            });
            self.fill_slots(&room);
        }
    }

    /// A dormant screen sends again: back into the room's slots.
    pub(super) fn wake_publication(&mut self, publisher: PeerKey, track_id: &str) {
        let Some(peer) = self.peers.get(&publisher) else {
            return;
        };
        let room = peer.room.clone();
        self.events.push_back(SfuEvent::TrackPublished {
            participant: peer.participant.clone(),
            source: TrackSource::ScreenShare,
        });
        if let Some(room_state) = self.rooms.get_mut(&room) {
            room_state
                .publications
                .push((publisher, track_id.to_owned(), MediaKind::Video));
        }
        self.fill_slots(&room);
    }

    pub(super) fn mark_room_dirty(&mut self, room: &crate::RoomId) {
        if let Some(room) = self.rooms.get(room) {
            self.dirty.extend(room.members.iter().copied());
        }
    }

    /// A subscriber's bandwidth estimate (send-side from TWCC, or its REMB): compared
    /// with what its slots are being sent now.
    pub(super) fn on_estimate(&mut self, now: Instant, key: PeerKey, estimate_bps: f32) {
        let sending = self.sending_bps(key);
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let before = peer.congestion.budget(now);
        peer.congestion
            .on_estimate(now, estimate_bps as u64, sending);
        if peer.congestion.budget(now) != before {
            self.dirty.push(key);
        }
    }

    /// Video bits per second the subscriber's slots forward now.
    fn sending_bps(&self, key: PeerKey) -> u64 {
        let Some(peer) = self.peers.get(&key) else {
            return 0;
        };
        peer.slots
            .iter()
            .filter_map(|slot| {
                let source = slot.source.as_ref()?;
                let current = slot.current?;
                let published = super::publication(&self.peers, &self.remotes, source)?;
                let layer = published.layers.iter().find(|l| l.ssrc == current)?;
                Some(layer.rate.bps())
            })
            .sum()
    }

    /// Chooses layers for every subscriber marked dirty.
    pub(super) fn settle(&mut self, now: Instant, touched: &mut Vec<PeerKey>) {
        if self.dirty.is_empty() {
            return;
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for key in dirty {
            self.reallocate(now, key, touched);
        }
    }

    fn reallocate(&mut self, now: Instant, key: PeerKey, touched: &mut Vec<PeerKey>) {
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        let mut slot_indices = Vec::new();
        let mut demands = Vec::new();
        for (index, slot) in peer.slots.iter().enumerate() {
            if slot.kind != MediaKind::Video {
                continue;
            }
            let Some(source) = &slot.source else {
                continue;
            };
            let Some(published) = super::publication(&self.peers, &self.remotes, source) else {
                continue;
            };
            slot_indices.push(index);
            let freshest = layers::freshest(&published.layers);
            demands.push(Demand {
                layers: published
                    .layers
                    .iter()
                    .map(|l| l.view(now, freshest))
                    .collect(),
                wanted: slot.wanted,
            });
        }
        let choices = layers::allocate(peer.congestion.budget(now), &demands);
        let connected = peer.connected;
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let mut pending: Vec<(Source, u32)> = Vec::new();
        for ((index, choice), demand) in slot_indices.into_iter().zip(choices).zip(&demands) {
            let slot = &mut peer.slots[index];
            let target = choice.map(|layer| demand.layers[layer].ssrc);
            if target.is_none() && slot.current.is_some() {
                self.stats.slot_paused();
                slot.pause();
            }
            slot.target = target;
            if let (Some(target), Some(source)) = (target, &slot.source)
                && slot.current != Some(target)
            {
                pending.push((source.clone(), target));
            }
        }
        if !connected {
            return;
        }
        for (source, ssrc) in pending {
            self.request_keyframe(now, &source, ssrc, touched);
        }
    }
}

impl Wanted {
    /// From a client's report: a hidden tile, or its size (0 × 0: no size known).
    pub fn from_report(width: u32, height: u32, hidden: bool) -> Self {
        match (hidden, width, height) {
            (true, _, _) => Wanted::Paused,
            (false, 0, 0) => Wanted::Best,
            (false, width, height) => Wanted::Size { width, height },
        }
    }
}
