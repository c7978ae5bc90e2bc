//! Operator metrics (Prometheus text or OpenMetrics, as the scraper asks): reconciles,
//! failures by reason, reconcile duration, and drains in progress. Labels are bounded:
//! controller and reason, and for drains the MediaNode (a handful per cluster, declared
//! by the platform team), never rooms, pods or participants.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use confer_metrics::{Exposition, Format, Histogram, Labels};

use crate::crd::DrainStatus;

/// A drain not reported again for this long belongs to a MediaNode that is gone (every
/// MediaNode is reconciled at least every few minutes).
const DRAIN_FORGOTTEN: Duration = Duration::from_secs(15 * 60);

const BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

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
        inner
            .durations
            .entry(controller)
            .or_insert_with(|| Histogram::new(BUCKETS))
            .observe(took);
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

    /// The page in the Prometheus text format.
    pub fn render(&self) -> String {
        self.render_as(Format::Prometheus)
    }

    pub fn render_as(&self, format: Format) -> String {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        inner
            .drains
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < DRAIN_FORGOTTEN);
        let mut out = Exposition::new(format);
        render_drains(&mut out, &inner.drains);
        let labels: Vec<[(&str, &str); 1]> = inner
            .reconciles
            .keys()
            .map(|controller| [("controller", *controller)])
            .collect();
        let samples: Vec<(Labels<'_>, u64)> = labels
            .iter()
            .zip(inner.reconciles.values())
            .map(|(labels, n)| (labels.as_slice(), *n))
            .collect();
        out.counter("confer_operator_reconciles", "Reconciles run.", &samples);
        let labels: Vec<[(&str, &str); 2]> = inner
            .failures
            .keys()
            .map(|(controller, reason)| [("controller", *controller), ("reason", *reason)])
            .collect();
        let samples: Vec<(Labels<'_>, u64)> = labels
            .iter()
            .zip(inner.failures.values())
            .map(|(labels, n)| (labels.as_slice(), *n))
            .collect();
        out.counter(
            "confer_operator_reconcile_failures",
            "Reconciles that failed, by reason.",
            &samples,
        );
        let snapshots: Vec<_> = inner
            .durations
            .iter()
            .map(|(controller, h)| ([("controller", *controller)], h.snapshot()))
            .collect();
        let histograms: Vec<(Labels<'_>, _)> = snapshots
            .iter()
            .map(|(labels, snapshot)| (labels.as_slice(), snapshot))
            .collect();
        out.histograms(
            "confer_operator_reconcile_duration_seconds",
            "Time a reconcile took.",
            &histograms,
        );
        out.finish()
    }
}

/// A gauge family of drains: name, help, and its value for one drain.
type DrainFamily = (&'static str, &'static str, fn(&DrainStatus) -> f64);

fn render_drains(out: &mut Exposition, drains: &BTreeMap<String, (DrainStatus, Instant)>) {
    let families: [DrainFamily; 3] = [
        (
            "confer_operator_drain_pods",
            "SFU pods draining, by MediaNode.",
            |d| d.pods.len() as f64,
        ),
        (
            "confer_operator_drain_rooms_left",
            "Rooms still on a MediaNode's draining pods.",
            |d| d.rooms_left as f64,
        ),
        (
            "confer_operator_drain_deadline_timestamp_seconds",
            "When a MediaNode's drain must be over (rooms left then are moved).",
            |d| d.deadline_ms as f64 / 1000.0,
        ),
    ];
    let labels: Vec<[(&str, &str); 1]> = drains
        .keys()
        .map(|node| [("medianode", node.as_str())])
        .collect();
    for (name, help, value) in families {
        let samples: Vec<(Labels<'_>, f64)> = labels
            .iter()
            .zip(drains.values())
            .map(|(labels, (drain, _))| (labels.as_slice(), value(drain)))
            .collect();
        out.gauge(name, help, &samples);
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

    #[test]
    fn reconciles_are_counted_per_controller_in_either_format() {
        let metrics = Metrics::default();
        metrics.reconciled("medianode", Duration::from_millis(30), None);
        metrics.reconciled("medianode", Duration::from_secs(3), Some("ApiServerError"));
        let page = metrics.render();
        for line in [
            "confer_operator_reconciles_total{controller=\"medianode\"} 2\n",
            "confer_operator_reconcile_failures_total{controller=\"medianode\",reason=\"ApiServerError\"} 1\n",
            "confer_operator_reconcile_duration_seconds_bucket{controller=\"medianode\",le=\"0.05\"} 1\n",
            "confer_operator_reconcile_duration_seconds_bucket{controller=\"medianode\",le=\"2.5\"} 1\n",
            "confer_operator_reconcile_duration_seconds_bucket{controller=\"medianode\",le=\"10\"} 2\n",
            "confer_operator_reconcile_duration_seconds_bucket{controller=\"medianode\",le=\"+Inf\"} 2\n",
            "confer_operator_reconcile_duration_seconds_count{controller=\"medianode\"} 2\n",
        ] {
            assert!(page.contains(line), "{line} in {page}");
        }
        let open = metrics.render_as(Format::OpenMetrics);
        assert!(
            open.contains("# TYPE confer_operator_reconciles counter\n"),
            "{open}"
        );
        assert!(open.ends_with("# EOF\n"), "{open}");
    }
}
