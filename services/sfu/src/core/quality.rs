//! How well each participant's connection carries media, as one of four levels that
//! every member of the room is told: the tile of someone on a bad network says so,
//! and that someone is told it is their own connection, not the call.
//!
//! Each peer's stack counts into a [`LinkCounters`] (its NACK responder sees every
//! packet on the way in and every report that comes back): packets a publisher sent,
//! by their sequence numbers, against those that arrived before any resend (the loss
//! of its uplink), and the loss, round trip and jitter the subscriber reports for what
//! the SFU sends it (its downlink). Every [`WINDOW`] the core turns what a peer's
//! counters gained into a [`Sample`], scores it ([`Sample::score`], a mean opinion
//! score from loss and delay, as the simplified ITU-T G.107 E-model is commonly used
//! for calls) and files it with the peer's [`Rating`], which reports a level when it
//! changes: at once when worse, after two windows in a row when better, so a link at
//! the edge of two levels does not flap. A connected peer the SFU heard nothing from
//! for [`SILENT_FOR`] is [`Quality::Lost`] (its peer goes when the SFU's idle timeout,
//! 15 s, runs out).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// How often each peer's level is worked out.
pub(crate) const WINDOW: Duration = Duration::from_secs(2);
/// A connected peer heard from (media, reports or ICE consent checks, which Chromium
/// sends every 2.5 s on a quiet connection) less recently than this has lost its
/// connection: two checks in a row missing.
pub(crate) const SILENT_FOR: Duration = Duration::from_secs(6);
/// A level other than excellent is told again after this many windows without a
/// change, for gateways that had no member of the room when it was first told.
const RETELL_AFTER: u32 = 5;
/// Fewer packets expected than this in a window say nothing of a link's loss.
const MIN_EXPECTED: u64 = 20;
/// A sequence number this far ahead of the last one is a restarted stream, not loss.
const MAX_JUMP: u16 = 3_000;
/// Streams whose sequence numbers one tally follows at once.
const MAX_STREAMS: usize = 64;

/// Mean opinion scores at or above which a link is excellent, or good.
const EXCELLENT_FROM: f64 = 4.1;
const GOOD_FROM: f64 = 3.6;

/// A participant's connection, as the people in the room see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Quality {
    /// Nothing arrives from the participant.
    Lost,
    /// Loss or delay the others hear and see (frozen or blurred video, broken audio).
    Poor,
    Good,
    Excellent,
}

impl Quality {
    pub const ALL: [Quality; 4] = [
        Quality::Excellent,
        Quality::Good,
        Quality::Poor,
        Quality::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Excellent => "excellent",
            Quality::Good => "good",
            Quality::Poor => "poor",
            Quality::Lost => "lost",
        }
    }

    /// Its place in [`Quality::ALL`].
    pub fn index(self) -> usize {
        match self {
            Quality::Excellent => 0,
            Quality::Good => 1,
            Quality::Poor => 2,
            Quality::Lost => 3,
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|q| q.as_str() == name)
    }

    fn of_score(score: f64) -> Self {
        if score >= EXCELLENT_FROM {
            Quality::Excellent
        } else if score >= GOOD_FROM {
            Quality::Good
        } else {
            Quality::Poor
        }
    }
}

/// Totals one peer's stack counts into and the core reads each window. Cloning
/// shares them.
#[derive(Debug, Clone, Default)]
pub(crate) struct LinkCounters(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    /// The publisher's packets, by sequence number: those sent and those that came.
    up_expected: AtomicU64,
    up_received: AtomicU64,
    /// From the subscriber's reception reports about what the SFU sends it: packets
    /// that should have reached it, and those its link lost (a sum of differences,
    /// which may dip below zero for a while as late packets come).
    down_expected: AtomicU64,
    down_lost: AtomicI64,
    /// The latest round trip, and the worst jitter reported since the last window,
    /// in microseconds (0: none).
    rtt_us: AtomicU64,
    jitter_us: AtomicU64,
}

impl LinkCounters {
    /// A subscriber's reception report: packets that should have reached it since the
    /// last report of the stream and how many of them its link lost (see
    /// [`SentTally::report`]), and the round trip and jitter it implies.
    pub(crate) fn reception_report(
        &self,
        since_last: Option<(u64, i64)>,
        rtt: Option<Duration>,
        jitter: Option<Duration>,
    ) {
        let s = &self.0;
        if let Some((expected, lost)) = since_last {
            s.down_expected.fetch_add(expected, Relaxed);
            s.down_lost.fetch_add(lost, Relaxed);
        }
        if let Some(rtt) = rtt {
            s.rtt_us.store(micros(rtt).max(1), Relaxed);
        }
        if let Some(jitter) = jitter {
            s.jitter_us.fetch_max(micros(jitter), Relaxed);
        }
    }

    fn uplink(&self, expected: u64, received: u64) {
        self.0.up_expected.fetch_add(expected, Relaxed);
        self.0.up_received.fetch_add(received, Relaxed);
    }

    fn totals(&self) -> Totals {
        let s = &self.0;
        Totals {
            up_expected: s.up_expected.load(Relaxed),
            up_received: s.up_received.load(Relaxed),
            down_expected: s.down_expected.load(Relaxed),
            down_lost: s.down_lost.load(Relaxed),
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    up_expected: u64,
    up_received: u64,
    down_expected: u64,
    down_lost: i64,
}

/// One stream's sequence numbers: how far the newest has advanced (the packets there
/// should have been) and how many came. Numbers come from the network: any order, wrap
/// or jump is taken; a late packet counts as come, its place having been counted when
/// a newer one arrived.
#[derive(Debug, Clone, Copy)]
struct Numbering {
    newest: u16,
    expected: u64,
    seen: u64,
}

impl Numbering {
    fn starting_at(sequence: u16) -> Self {
        Self {
            newest: sequence.wrapping_sub(1),
            expected: 0,
            seen: 0,
        }
    }

    /// Counts `sequence`; returns how far the expected count advanced, or `None` for
    /// the newest number again (a duplicate, not counted).
    fn count(&mut self, sequence: u16) -> Option<u64> {
        let ahead = sequence.wrapping_sub(self.newest);
        if ahead == 0 {
            return None;
        }
        let advance = if ahead < MAX_JUMP {
            self.newest = sequence;
            u64::from(ahead)
        } else if ahead > u16::MAX - MAX_JUMP {
            0
        } else {
            // A restarted stream.
            self.newest = sequence;
            1
        };
        self.expected += advance;
        self.seen += 1;
        Some(advance)
    }
}

/// Streams by SSRC, at most [`MAX_STREAMS`] (more: started over).
fn numbering(streams: &mut HashMap<u32, Numbering>, ssrc: u32, sequence: u16) -> &mut Numbering {
    if !streams.contains_key(&ssrc) && streams.len() >= MAX_STREAMS {
        streams.clear();
    }
    streams
        .entry(ssrc)
        .or_insert_with(|| Numbering::starting_at(sequence))
}

/// Counts what a peer publishes into its [`LinkCounters`]: packets expected by their
/// sequence numbers and packets that came. Resends are not counted: what arrives only
/// when asked for again was lost on the link.
#[derive(Debug, Default)]
pub(crate) struct UplinkTally {
    streams: HashMap<u32, Numbering>,
}

impl UplinkTally {
    pub(crate) fn arrived(&mut self, counters: &LinkCounters, ssrc: u32, sequence: u16) {
        if let Some(advance) = numbering(&mut self.streams, ssrc, sequence).count(sequence) {
            counters.uplink(advance, 1);
        }
    }
}

/// Follows the numbers of what the SFU sends a subscriber. A publisher's loss on its
/// way in shows as gaps in what is forwarded, and the subscriber reports those as
/// lost too; they are not its link's. So each report's cumulative loss is taken less
/// the numbers the SFU never sent, both as differences from the stream's report
/// before: a report covers what came since the last one (a few packets, when the
/// subscriber sends them with every NACK), and only the sums over a window are steady.
#[derive(Debug, Default)]
pub(crate) struct SentTally {
    streams: HashMap<u32, Numbering>,
    at_report: HashMap<u32, Reported>,
}

/// A stream's standing at its last reception report.
#[derive(Debug, Clone, Copy)]
struct Reported {
    /// The subscriber's extended highest sequence number and cumulative loss.
    highest: u32,
    lost: i64,
    /// Numbers the SFU had skipped by then.
    unsent: u64,
}

impl SentTally {
    pub(crate) fn sent(&mut self, ssrc: u32, sequence: u16) {
        numbering(&mut self.streams, ssrc, sequence).count(sequence);
    }

    /// A reception report for `ssrc` (the subscriber's extended highest sequence
    /// number and cumulative loss): the packets that should have reached it since
    /// the stream's last report, and how many of them its link lost. `None` for a
    /// stream's first report, or one that went back (a restarted stream).
    pub(crate) fn report(
        &mut self,
        ssrc: u32,
        highest: u32,
        total_lost: u32,
    ) -> Option<(u64, i64)> {
        let unsent = self
            .streams
            .get(&ssrc)
            .map_or(0, |stream| stream.expected.saturating_sub(stream.seen));
        let now = Reported {
            highest,
            lost: i64::from(total_lost & 0x00ff_ffff),
            unsent,
        };
        if !self.at_report.contains_key(&ssrc) && self.at_report.len() >= MAX_STREAMS {
            self.at_report.clear();
        }
        let before = self.at_report.insert(ssrc, now)?;
        let expected = highest.wrapping_sub(before.highest);
        if expected > u32::from(u16::MAX) {
            return None;
        }
        let skipped = now.unsent.saturating_sub(before.unsent);
        let lost = now.lost - before.lost - i64::try_from(skipped).unwrap_or(i64::MAX);
        Some((u64::from(expected), lost))
    }

    pub(crate) fn forget(&mut self, ssrc: u32) {
        self.streams.remove(&ssrc);
        self.at_report.remove(&ssrc);
    }
}

/// What one window measured of a peer's link.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Sample {
    /// Share of packets lost on the way in, or on the way out as the subscriber
    /// reported, whichever is worse; `None` when neither direction carried enough.
    pub(crate) loss: Option<f64>,
    pub(crate) rtt: Option<Duration>,
    pub(crate) jitter: Option<Duration>,
}

impl Sample {
    /// Mean opinion score, 1 (unusable) to about 4.4 (nothing lost, little delay): the
    /// E-model's transmission rating less delay and loss impairments, mapped to MOS.
    pub(crate) fn score(&self) -> f64 {
        let rtt_ms = self.rtt.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        let jitter_ms = self.jitter.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        let latency = rtt_ms + 2.0 * jitter_ms + 10.0;
        let delay = if latency < 160.0 {
            latency / 40.0
        } else {
            (latency - 120.0) / 10.0
        };
        let loss_percent = self.loss.unwrap_or(0.0).clamp(0.0, 1.0) * 100.0;
        let r = (93.2 - delay - 2.5 * loss_percent).clamp(0.0, 100.0);
        // The mapping dips just under 1 for the lowest ratings: 1 is the floor.
        (1.0 + 0.035 * r + 0.000_007 * r * (r - 60.0) * (100.0 - r)).max(1.0)
    }

    /// Whether it measured anything at all.
    fn says_anything(&self) -> bool {
        self.loss.is_some() || self.rtt.is_some() || self.jitter.is_some()
    }
}

/// One peer's level over time, from its windows.
#[derive(Debug)]
pub(crate) struct Rating {
    counters: LinkCounters,
    last: Totals,
    /// The level the room was last told; `None` until the first window that measured
    /// anything, whose level is told whatever it is (the participant may have been
    /// rated on another connection or SFU before).
    reported: Option<Quality>,
    /// A better level seen in the last window, waiting for a second to confirm it.
    better: Option<Quality>,
    /// Windows since the level was last told.
    untold: u32,
}

impl Rating {
    pub(crate) fn new(counters: LinkCounters) -> Self {
        Self {
            counters,
            last: Totals::default(),
            reported: None,
            better: None,
            untold: 0,
        }
    }

    pub(crate) fn reported(&self) -> Option<Quality> {
        self.reported
    }

    /// What the counters gained since the last window.
    pub(crate) fn take_sample(&mut self) -> Sample {
        let now = self.counters.totals();
        let up_expected = now.up_expected.saturating_sub(self.last.up_expected);
        let up_received = now.up_received.saturating_sub(self.last.up_received);
        let down_expected = now.down_expected.saturating_sub(self.last.down_expected);
        let down_lost = now.down_lost.saturating_sub(self.last.down_lost).max(0);
        self.last = now;
        let up = (up_expected >= MIN_EXPECTED)
            .then(|| 1.0 - (up_received as f64 / up_expected as f64).min(1.0));
        let down = (down_expected >= MIN_EXPECTED)
            .then(|| (down_lost as f64 / down_expected as f64).min(1.0));
        let shared = &self.counters.0;
        let rtt_us = shared.rtt_us.load(Relaxed);
        let jitter_us = shared.jitter_us.swap(0, Relaxed);
        Sample {
            loss: match (up, down) {
                (Some(up), Some(down)) => Some(up.max(down)),
                (one, other) => one.or(other),
            },
            rtt: (rtt_us > 0).then(|| Duration::from_micros(rtt_us)),
            jitter: (jitter_us > 0).then(|| Duration::from_micros(jitter_us)),
        }
    }

    /// Files a window's level (`None`: the window measured nothing); returns the level
    /// to tell the room when it changed.
    pub(crate) fn file(&mut self, level: Option<Quality>) -> Option<Quality> {
        let level = level?;
        let Some(reported) = self.reported else {
            self.reported = Some(level);
            self.untold = 0;
            return Some(level);
        };
        let change = if level < reported || reported == Quality::Lost {
            // Worse, or heard from again: at once.
            self.better = None;
            Some(level)
        } else if level > reported {
            // Better twice in a row: as good as the lesser of the two.
            match self.better.take() {
                Some(previous) => Some(previous.min(level)),
                None => {
                    self.better = Some(level);
                    None
                }
            }
        } else {
            self.better = None;
            None
        };
        let change = change.filter(|level| *level != reported);
        if change.is_some() {
            self.reported = change;
            self.untold = 0;
        }
        change
    }

    /// The level, when it is not excellent and has not been told for a while.
    pub(crate) fn tell_again(&mut self) -> Option<Quality> {
        let level = self.reported.filter(|level| *level != Quality::Excellent)?;
        self.untold += 1;
        if self.untold < RETELL_AFTER {
            return None;
        }
        self.untold = 0;
        Some(level)
    }

    /// A window's level: lost when silent, else from the sample's score.
    pub(crate) fn level(sample: &Sample, silent: bool) -> Option<Quality> {
        if silent {
            return Some(Quality::Lost);
        }
        sample
            .says_anything()
            .then(|| Quality::of_score(sample.score()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(loss: f64, rtt_ms: u64, jitter_ms: u64) -> Sample {
        Sample {
            loss: Some(loss),
            rtt: Some(Duration::from_millis(rtt_ms)),
            jitter: Some(Duration::from_millis(jitter_ms)),
        }
    }

    fn level(loss: f64, rtt_ms: u64, jitter_ms: u64) -> Quality {
        Quality::of_score(sample(loss, rtt_ms, jitter_ms).score())
    }

    #[test]
    fn a_clean_nearby_link_is_excellent_and_loss_or_delay_take_it_down() {
        assert_eq!(level(0.0, 20, 5), Quality::Excellent);
        assert_eq!(level(0.02, 60, 10), Quality::Excellent);
        assert_eq!(level(0.05, 40, 5), Quality::Good);
        assert_eq!(level(0.10, 40, 5), Quality::Poor);
        assert_eq!(level(0.25, 20, 5), Quality::Poor);
        assert_eq!(level(0.0, 250, 10), Quality::Good);
        assert_eq!(level(0.0, 500, 30), Quality::Poor);
    }

    #[test]
    fn the_uplink_counts_gaps_as_lost_and_late_packets_as_come() {
        let counters = LinkCounters::default();
        let mut tally = UplinkTally::default();
        let mut rating = Rating::new(counters.clone());
        // 100 numbers through a wrap, every fifth missing; one of those arrives late.
        for sequence in (0u16..100).map(|i| 65_500u16.wrapping_add(i)) {
            if sequence % 5 != 0 {
                tally.arrived(&counters, 1, sequence);
            }
        }
        tally.arrived(&counters, 1, 65_505);
        tally.arrived(&counters, 1, 63);
        let loss = rating.take_sample().loss.expect("enough packets");
        // 99 expected from the first that came (65,501), 80 came.
        assert!((loss - 19.0 / 99.0).abs() < 1e-9, "loss {loss}");
        // A stream that wraps, then restarts far ahead, lost nothing.
        for sequence in (u16::MAX - 30..=u16::MAX).chain(0..30) {
            tally.arrived(&counters, 2, sequence);
        }
        for sequence in 40_000..40_050 {
            tally.arrived(&counters, 2, sequence);
        }
        assert_eq!(rating.take_sample().loss, Some(0.0));
    }

    #[test]
    fn the_worse_direction_and_the_latest_round_trip_count() {
        let counters = LinkCounters::default();
        let mut tally = UplinkTally::default();
        let mut rating = Rating::new(counters.clone());
        for sequence in 0..50 {
            tally.arrived(&counters, 7, sequence);
        }
        // Two reports: 10 of 100 and 30 of 100 lost on the way to the subscriber.
        counters.reception_report(Some((100, 10)), Some(Duration::from_millis(80)), None);
        counters.reception_report(
            Some((100, 30)),
            Some(Duration::from_millis(40)),
            Some(Duration::from_millis(3)),
        );
        let sample = rating.take_sample();
        assert!((sample.loss.unwrap() - 0.2).abs() < 0.01, "{sample:?}");
        assert_eq!(sample.rtt, Some(Duration::from_millis(40)));
        assert_eq!(sample.jitter, Some(Duration::from_millis(3)));
        // Nothing new: the round trip stays known, the loss and the jitter do not.
        let quiet = rating.take_sample();
        assert_eq!(quiet.loss, None);
        assert_eq!(quiet.jitter, None);
        assert_eq!(quiet.rtt, Some(Duration::from_millis(40)));
    }

    #[test]
    fn numbers_the_sfu_never_sent_are_not_the_subscribers_loss() {
        let mut tally = SentTally::default();
        // The first report is where counting starts.
        assert_eq!(tally.report(9, 70_000, 0), None);
        // 100 numbers forwarded with 10 missing (lost before the SFU); the subscriber
        // misses those 10 and 5 more.
        for sequence in 1_000u16..1_100 {
            if sequence % 10 != 3 {
                tally.sent(9, sequence);
            }
        }
        assert_eq!(tally.report(9, 70_100, 15), Some((100, 5)));
        // A report that came before the subscriber saw a late packet, then one after.
        for sequence in 1_100u16..1_150 {
            tally.sent(9, sequence);
        }
        assert_eq!(tally.report(9, 70_130, 16), Some((30, 1)));
        assert_eq!(tally.report(9, 70_150, 15), Some((20, -1)));
        // A stream that went back starts over.
        assert_eq!(tally.report(9, 10, 0), None);
        assert_eq!(tally.report(9, 60, 0), Some((50, 0)));
        tally.forget(9);
        assert_eq!(tally.report(9, 100, 0), None);
    }

    #[test]
    fn worse_is_told_at_once_better_after_two_windows() {
        let mut rating = Rating::new(LinkCounters::default());
        assert_eq!(rating.file(None), None);
        // The first level measured is told, whatever it is.
        assert_eq!(
            rating.file(Some(Quality::Excellent)),
            Some(Quality::Excellent)
        );
        assert_eq!(rating.file(Some(Quality::Excellent)), None);
        assert_eq!(rating.file(None), None);
        assert_eq!(rating.file(Some(Quality::Poor)), Some(Quality::Poor));
        assert_eq!(rating.file(Some(Quality::Excellent)), None);
        assert_eq!(rating.file(Some(Quality::Poor)), None);
        assert_eq!(rating.file(Some(Quality::Good)), None);
        // Good, then excellent: better than poor twice, but only good both times.
        assert_eq!(rating.file(Some(Quality::Excellent)), Some(Quality::Good));
        assert_eq!(rating.reported(), Some(Quality::Good));
        assert_eq!(rating.file(Some(Quality::Lost)), Some(Quality::Lost));
        // Heard from again: at once.
        assert_eq!(rating.file(Some(Quality::Good)), Some(Quality::Good));
    }

    #[test]
    fn a_level_below_excellent_is_told_again_now_and_then() {
        let mut rating = Rating::new(LinkCounters::default());
        assert_eq!(rating.tell_again(), None);
        assert_eq!(rating.file(Some(Quality::Poor)), Some(Quality::Poor));
        let told: Vec<Option<Quality>> = (0..10)
            .map(|_| {
                rating
                    .file(Some(Quality::Poor))
                    .or_else(|| rating.tell_again())
            })
            .collect();
        let again = told.iter().filter(|t| **t == Some(Quality::Poor)).count();
        assert_eq!(again, 2, "{told:?}");
        assert_eq!(told[..4], [None; 4]);
        // Excellent is never told again.
        rating.file(Some(Quality::Excellent));
        assert_eq!(
            rating.file(Some(Quality::Excellent)),
            Some(Quality::Excellent)
        );
        assert!((0..20).all(|_| rating.tell_again().is_none()));
    }

    #[test]
    fn a_silent_peer_is_lost_and_an_empty_window_says_nothing() {
        assert_eq!(Rating::level(&Sample::default(), true), Some(Quality::Lost));
        assert_eq!(Rating::level(&Sample::default(), false), None);
        assert_eq!(
            Rating::level(&sample(0.0, 10, 1), false),
            Some(Quality::Excellent)
        );
        for (index, quality) in Quality::ALL.into_iter().enumerate() {
            assert_eq!(Quality::parse(quality.as_str()), Some(quality));
            assert_eq!(quality.index(), index);
        }
        assert_eq!(Quality::parse("fine"), None);
    }

    proptest! {
        #[test]
        fn any_sequence_numbers_give_a_loss_between_none_and_all(
            arrivals in proptest::collection::vec((0u32..40, any::<u16>()), 0..400),
        ) {
            let counters = LinkCounters::default();
            let mut tally = UplinkTally::default();
            let mut rating = Rating::new(counters.clone());
            for (ssrc, sequence) in arrivals {
                tally.arrived(&counters, ssrc, sequence);
            }
            let sample = rating.take_sample();
            if let Some(loss) = sample.loss {
                prop_assert!((0.0..=1.0).contains(&loss));
            }
            let score = sample.score();
            prop_assert!((1.0..=4.5).contains(&score), "score {}", score);
        }

        #[test]
        fn more_loss_or_delay_never_scores_higher(
            loss in 0.0f64..1.0, more in 0.0f64..0.5, rtt in 0u64..2_000, later in 0u64..1_000,
        ) {
            let base = sample(loss, rtt, 5).score();
            prop_assert!(sample((loss + more).min(1.0), rtt, 5).score() <= base + 1e-9);
            prop_assert!(sample(loss, rtt + later, 5).score() <= base + 1e-9);
        }

        #[test]
        fn what_is_told_is_always_the_last_level_told(
            levels in proptest::collection::vec(proptest::option::of(0usize..4), 0..60),
        ) {
            let mut rating = Rating::new(LinkCounters::default());
            let mut told = None;
            for level in levels {
                let level = level.map(|i| Quality::ALL[i]);
                if let Some(change) = rating.file(level) {
                    prop_assert_ne!(Some(change), told);
                    told = Some(change);
                }
                if let Some(level) = level {
                    // Never better than what this window saw.
                    prop_assert!(rating.reported().is_some_and(|told| told <= level));
                }
                prop_assert_eq!(rating.reported(), told);
            }
        }
    }
}
