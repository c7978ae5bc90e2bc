//! Simulcast layers of a published video track, and which one each subscriber gets.
//!
//! A publisher may send one track as several encodings (simulcast, one SSRC and rid
//! each). Every receive slot forwards at most one of them. [`allocate`] chooses, per
//! subscriber, from what each slot renders (the size the client reports, or nothing
//! when the tile is hidden) and, when the subscriber's link is congested, from its
//! bandwidth estimate: the biggest tiles step down first and, when even the lowest
//! layers do not fit, the smallest tiles pause. The choice is a target; the forwarding
//! path moves a slot to it at the next keyframe of that layer.
//!
//! Pure functions over plain data: no clock, no packets.

use std::time::{Duration, Instant};

use super::loss_watch::LossWatch;

/// A layer that sent nothing for this long is not offered to subscribers (publishers
/// stop their upper layers when their own uplink is short).
const LAYER_IDLE: Duration = Duration::from_millis(1500);
/// A layer whose last packet is this far behind its track's freshest layer has been
/// stopped by the publisher, though it is not idle yet: a publisher encodes every layer
/// from the same captured frames, so a sending layer keeps pace with the others.
/// Noticing this early is what keeps a subscriber on that layer from freezing until
/// [`LAYER_IDLE`].
const LAYER_BEHIND: Duration = Duration::from_millis(500);
/// The bitrate meter's averaging window.
const RATE_WINDOW: Duration = Duration::from_millis(500);

/// One encoding of a published track.
#[derive(Debug)]
pub(crate) struct Layer {
    pub(crate) ssrc: u32,
    /// Position among the publisher's encodings, as offered.
    pub(crate) rank: usize,
    /// Picture size, learned from keyframes.
    pub(crate) size: Option<(u16, u16)>,
    pub(crate) rate: RateMeter,
    pub(crate) last_keyframe_request: Option<Instant>,
    /// Packets lost on the way in and not yet resent.
    pub(crate) losses: LossWatch,
}

impl Layer {
    pub(crate) fn new(ssrc: u32, rank: usize) -> Self {
        Self {
            ssrc,
            rank,
            size: None,
            rate: RateMeter::default(),
            last_keyframe_request: None,
            losses: LossWatch::default(),
        }
    }

    /// What the allocator sees of this layer; `freshest` is when the track's most
    /// recent media came, on any layer (see [`freshest`]).
    pub(crate) fn view(&self, now: Instant, freshest: Option<Instant>) -> LayerView {
        LayerView {
            ssrc: self.ssrc,
            width: self.size.map(|(w, _)| w),
            height: self.size.map(|(_, h)| h),
            bps: self.rate.bps(),
            active: self.rate.active(now) && !self.behind(freshest),
        }
    }

    /// Whether this layer stopped while others of its track go on.
    pub(crate) fn behind(&self, freshest: Option<Instant>) -> bool {
        match (self.rate.last_packet, freshest) {
            (Some(last), Some(freshest)) => freshest.saturating_duration_since(last) > LAYER_BEHIND,
            _ => false,
        }
    }
}

/// When the most recent media of a track came, on any of its layers.
pub(crate) fn freshest(layers: &[Layer]) -> Option<Instant> {
    layers
        .iter()
        .filter_map(|layer| layer.rate.last_packet)
        .max()
}

/// Orders layers lowest first: by picture size once every layer's is known, by offer
/// order before that.
pub(crate) fn sort_layers(layers: &mut [Layer]) {
    if layers.iter().all(|layer| layer.size.is_some()) {
        layers.sort_by_key(|layer| {
            (
                layer.size.map(|(w, h)| u32::from(w) * u32::from(h)),
                layer.rank,
            )
        });
    } else {
        layers.sort_by_key(|layer| layer.rank);
    }
}

/// How long a subscriber counts as congested after its estimate fell below what it
/// was being sent.
const CONGESTION_HOLD: Duration = Duration::from_secs(10);
/// After a slot starts or changes layer, the receiver's estimate still describes the
/// old rate for a while; estimates that come this soon do not count as congestion.
const ESTIMATE_SETTLE: Duration = Duration::from_secs(3);

/// A subscriber's bandwidth estimate, used as a budget only while it says the link is
/// short: when it falls (overuse or loss was detected) below what the SFU is sending.
/// The estimate is the SFU's own, from the subscriber's transport-wide feedback (TWCC,
/// GCC in the peer's stack), or the receiver's REMB when that is what the client sends.
/// Either only creeps up with what is received, a few per cent a second, so as a
/// standing cap it would pin every subscriber to the layers it started on; a drop is
/// the signal.
#[derive(Debug, Default)]
pub(crate) struct Congestion {
    estimate: Option<u64>,
    until: Option<Instant>,
    settle_until: Option<Instant>,
}

impl Congestion {
    pub(crate) fn on_estimate(&mut self, now: Instant, estimate_bps: u64, sending_bps: u64) {
        let falling = self
            .estimate
            .is_some_and(|previous| estimate_bps.saturating_mul(100) < previous.saturating_mul(90));
        self.estimate = Some(estimate_bps);
        let settling = self.settle_until.is_some_and(|until| now < until);
        let short = estimate_bps.saturating_mul(100) < sending_bps.saturating_mul(85);
        if falling && short && !settling {
            self.until = Some(now + CONGESTION_HOLD);
        }
    }

    /// A slot started or changed layer: what is sent changed before the estimate could.
    pub(crate) fn rate_changed(&mut self, now: Instant) {
        self.settle_until = Some(now + ESTIMATE_SETTLE);
    }

    /// The bits per second the subscriber's video must fit in, while congested.
    pub(crate) fn budget(&self, now: Instant) -> Option<u64> {
        self.until.filter(|until| now < *until).and(self.estimate)
    }
}

/// Bits per second over a sliding window, and when the last packet came.
#[derive(Debug, Default)]
pub(crate) struct RateMeter {
    window_start: Option<Instant>,
    window_bytes: u64,
    bps: u64,
    last_packet: Option<Instant>,
}

impl RateMeter {
    pub(crate) fn add(&mut self, now: Instant, bytes: usize) {
        self.last_packet = Some(now);
        let start = *self.window_start.get_or_insert(now);
        self.window_bytes += bytes as u64;
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= RATE_WINDOW {
            let measured = self.window_bytes * 8 * 1000 / elapsed.as_millis().max(1) as u64;
            // Smooth over windows so one keyframe does not look like a rate change.
            self.bps = if self.bps == 0 {
                measured
            } else {
                (self.bps * 3 + measured) / 4
            };
            self.window_start = Some(now);
            self.window_bytes = 0;
        }
    }

    pub(crate) fn bps(&self) -> u64 {
        self.bps
    }

    pub(crate) fn active(&self, now: Instant) -> bool {
        self.active_within(now, LAYER_IDLE)
    }

    /// Whether media came within `window` of `now`.
    pub(crate) fn active_within(&self, now: Instant, window: Duration) -> bool {
        self.last_packet
            .is_some_and(|at| now.saturating_duration_since(at) < window)
    }
}

/// What the allocator knows of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LayerView {
    pub(crate) ssrc: u32,
    pub(crate) width: Option<u16>,
    pub(crate) height: Option<u16>,
    pub(crate) bps: u64,
    pub(crate) active: bool,
}

/// What a subscriber wants from one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Wanted {
    /// No size reported: the best layer there is.
    #[default]
    Best,
    /// The tile's size in device pixels.
    Size { width: u32, height: u32 },
    /// The tile is hidden: forward nothing.
    Paused,
}

/// One video slot of a subscriber, as the allocator sees it: the source's layers,
/// lowest first, and what the subscriber wants.
#[derive(Debug, Clone)]
pub(crate) struct Demand {
    pub(crate) layers: Vec<LayerView>,
    pub(crate) wanted: Wanted,
}

/// The layer index each slot should carry (`None`: pause), within `budget` bits per
/// second when there is one.
pub(crate) fn allocate(budget: Option<u64>, demands: &[Demand]) -> Vec<Option<usize>> {
    let mut choices: Vec<Option<usize>> = demands.iter().map(desired_layer).collect();
    let Some(budget) = budget else {
        return choices;
    };
    let cost = |choices: &[Option<usize>]| -> u64 {
        choices
            .iter()
            .zip(demands)
            .filter_map(|(choice, demand)| choice.map(|i| demand.layers[i].bps))
            .sum()
    };
    while cost(&choices) > budget {
        // Step down the most expensive slot that has a lower layer to go to; among
        // equals the later one, since slots are in the order the subscriber shows them.
        let step_down = choices
            .iter()
            .enumerate()
            .filter_map(|(slot, choice)| {
                let current = (*choice)?;
                let lower = lower_candidate(&demands[slot].layers, current)?;
                Some((demands[slot].layers[current].bps, slot, lower))
            })
            .max_by_key(|(bps, slot, _)| (*bps, *slot));
        if let Some((_, slot, lower)) = step_down {
            choices[slot] = Some(lower);
            continue;
        }
        // Everything is at its lowest: pause the last slot still forwarding.
        let Some(last) = choices.iter().rposition(Option::is_some) else {
            break;
        };
        choices[last] = None;
    }
    choices
}

/// The layer a slot would get with bandwidth to spare.
fn desired_layer(demand: &Demand) -> Option<usize> {
    let candidates = candidates(&demand.layers);
    let highest = *candidates.last()?;
    match demand.wanted {
        Wanted::Paused => None,
        Wanted::Best => Some(highest),
        Wanted::Size { width, height } => {
            let fits = candidates.iter().copied().find(|&i| {
                let layer = &demand.layers[i];
                match (layer.width, layer.height) {
                    (Some(w), Some(h)) => u32::from(w) >= width || u32::from(h) >= height,
                    _ => false,
                }
            });
            Some(fits.unwrap_or(highest))
        }
    }
}

/// Indices of the layers a slot may be moved to: the active ones, or all of them
/// before any has sent.
fn candidates(layers: &[LayerView]) -> Vec<usize> {
    let active: Vec<usize> = (0..layers.len()).filter(|&i| layers[i].active).collect();
    if active.is_empty() {
        (0..layers.len()).collect()
    } else {
        active
    }
}

fn lower_candidate(layers: &[LayerView], current: usize) -> Option<usize> {
    candidates(layers).into_iter().rev().find(|&i| i < current)
}

#[cfg(test)]
mod tests;
