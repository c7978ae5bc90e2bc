//! Operator metrics in the Prometheus text format: reconciles, failures by reason,
//! reconcile duration. Labels are bounded: controller and reason, never object names.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

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

    pub fn render(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
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
