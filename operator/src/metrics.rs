//! Operator metrics in the Prometheus text format: reconciles, failures by reason,
//! reconcile duration, and drains in progress. Labels are bounded: controller and
//! reason, and for drains the MediaNode (a handful per cluster, declared by the
//! platform team), never rooms, pods or participants.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::crd::DrainStatus;

/// A drain not reported again for this long belongs to a MediaNode that is gone (every
/// MediaNode is reconciled at least every few minutes).
const DRAIN_FORGOTTEN: Duration = Duration::from_secs(15 * 60);

const BUCKETS: [f64; 8] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    reconciles: BTreeMap<&'static str, u64>,
    failures: BTreeMap<(&'static str, &'static str), u64>,
    durations: BTreeMap<&'static str, Histogram>,
    /// Drains in progress by MediaNode (`namespace/name`), and when each was reported.
    drains: BTreeMap<String, (DrainStatus, Instant)>,
}

impl Metrics {
    pub fn reconciled(
        &self,
        controller: &'static str,
        took: Duration,
        failure: Option<&'static str>,
    ) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *inner.reconciles.entry(controller).or_default() += 1;
        if let Some(reason) = failure {
            *inner.failures.entry((controller, reason)).or_default() += 1;
        }
        let histogram = inner.durations.entry(controller).or_default();
        let seconds = took.as_secs_f64();
        for (bucket, count) in BUCKETS.iter().zip(histogram.counts.iter_mut()) {
            if seconds <= *bucket {
                *count += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// The drain of MediaNode `node` (`namespace/name`) as just planned; `None` when it
    /// drains nothing.
    pub fn drain(&self, node: String, drain: Option<&DrainStatus>, now: Instant) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match drain {
            Some(drain) => {
                inner.drains.insert(node, (drain.clone(), now));
            }
            None => {
                inner.drains.remove(&node);
            }
        }
    }

    pub fn render(&self) -> String {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        inner
            .drains
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < DRAIN_FORGOTTEN);
        let mut out = String::new();
        render_drains(&mut out, &inner.drains);
        out.push_str("# HELP confer_operator_reconciles_total Reconciles run.\n");
        out.push_str("# TYPE confer_operator_reconciles_total counter\n");
        for (controller, n) in &inner.reconciles {
            let _ = writeln!(
                out,
                "confer_operator_reconciles_total{{controller=\"{controller}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP confer_operator_reconcile_failures_total Reconciles that failed, by reason.\n",
        );
        out.push_str("# TYPE confer_operator_reconcile_failures_total counter\n");
        for ((controller, reason), n) in &inner.failures {
            let _ = writeln!(
                out,
                "confer_operator_reconcile_failures_total{{controller=\"{controller}\",reason=\"{reason}\"}} {n}"
            );
        }
        out.push_str("# HELP confer_operator_reconcile_duration_seconds Time a reconcile took.\n");
        out.push_str("# TYPE confer_operator_reconcile_duration_seconds histogram\n");
        for (controller, h) in &inner.durations {
            for (bucket, count) in BUCKETS.iter().zip(h.counts.iter()) {
                let _ = writeln!(
                    out,
                    "confer_operator_reconcile_duration_seconds_bucket{{controller=\"{controller}\",le=\"{bucket}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "confer_operator_reconcile_duration_seconds_bucket{{controller=\"{controller}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "confer_operator_reconcile_duration_seconds_sum{{controller=\"{controller}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "confer_operator_reconcile_duration_seconds_count{{controller=\"{controller}\"}} {}",
                h.count
            );
        }
        out
    }
}

/// A gauge family of drains: name, type, help, and its value for one drain.
type DrainFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&DrainStatus) -> f64,
);

fn render_drains(out: &mut String, drains: &BTreeMap<String, (DrainStatus, Instant)>) {
    let families: [DrainFamily; 3] = [
        (
            "confer_operator_drain_pods",
            "gauge",
            "SFU pods draining, by MediaNode.",
            |d| d.pods.len() as f64,
        ),
        (
            "confer_operator_drain_rooms_left",
            "gauge",
            "Rooms still on a MediaNode's draining pods.",
            |d| d.rooms_left as f64,
        ),
        (
            "confer_operator_drain_deadline_timestamp_seconds",
            "gauge",
            "When a MediaNode's drain must be over (rooms left then are moved).",
            |d| d.deadline_ms as f64 / 1000.0,
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (node, (drain, _)) in drains {
            let _ = writeln!(out, "{name}{{medianode=\"{node}\"}} {}", value(drain));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_shows_until_it_ends() {
        let metrics = Metrics::default();
        let drain = DrainStatus {
            pods: vec!["eu-sfu-2".into(), "eu-sfu-3".into()],
            started_at_ms: 1_000,
            deadline_ms: 601_000,
            rooms_left: 4,
        };
        metrics.drain("media/eu".into(), Some(&drain), Instant::now());
        let page = metrics.render();
        assert!(
            page.contains("confer_operator_drain_pods{medianode=\"media/eu\"} 2\n"),
            "{page}"
        );
        assert!(page.contains("confer_operator_drain_rooms_left{medianode=\"media/eu\"} 4\n"));
        assert!(page.contains(
            "confer_operator_drain_deadline_timestamp_seconds{medianode=\"media/eu\"} 601\n"
        ));
        metrics.drain("media/eu".into(), None, Instant::now());
        assert!(!metrics.render().contains("medianode=\"media/eu\""));
    }
}
