use std::time::Duration;

use super::*;

#[test]
fn counters_are_total_samples_under_a_family_named_per_format() {
    let mut prometheus = Exposition::new(Format::Prometheus);
    prometheus.counter(
        "confer_joins",
        "Joins.",
        &[(&[("reason", "bad \"token\"\n")], 3)],
    );
    assert_eq!(
        prometheus.finish(),
        "# HELP confer_joins_total Joins.\n# TYPE confer_joins_total counter\n\
         confer_joins_total{reason=\"bad \\\"token\\\"\\n\"} 3\n"
    );
    let mut open = Exposition::new(Format::OpenMetrics);
    open.counter1("confer_joins", "Joins.", 3);
    assert_eq!(
        open.finish(),
        "# HELP confer_joins Joins.\n# TYPE confer_joins counter\nconfer_joins_total 3\n# EOF\n"
    );
}

#[test]
fn histogram_buckets_are_cumulative_and_end_at_inf() {
    let histogram = Histogram::new(&[0.1, 1.0]);
    for ms in [50, 60, 500, 5_000] {
        histogram.observe(Duration::from_millis(ms));
    }
    let mut out = Exposition::new(Format::Prometheus);
    out.histogram(
        "confer_join_duration_seconds",
        "Join time.",
        &histogram.snapshot(),
    );
    let text = out.finish();
    assert!(
        text.contains("confer_join_duration_seconds_bucket{le=\"0.1\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("confer_join_duration_seconds_bucket{le=\"1\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains("confer_join_duration_seconds_bucket{le=\"+Inf\"} 4\n"),
        "{text}"
    );
    assert!(
        text.contains("confer_join_duration_seconds_sum 5.61\n"),
        "{text}"
    );
    assert!(
        text.contains("confer_join_duration_seconds_count 4\n"),
        "{text}"
    );
}

#[test]
fn openmetrics_is_chosen_only_when_offered() {
    assert_eq!(Format::negotiate(None), Format::Prometheus);
    assert_eq!(Format::negotiate(Some("text/plain")), Format::Prometheus);
    let prometheus_scraper =
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    assert_eq!(
        Format::negotiate(Some(prometheus_scraper)),
        Format::OpenMetrics
    );
}

#[test]
fn a_labeled_counter_counts_per_label() {
    let counter = LabeledCounter::default();
    counter.inc("invalid_token");
    counter.inc("room_full");
    counter.inc("invalid_token");
    assert_eq!(
        counter.snapshot(),
        vec![("invalid_token".into(), 2), ("room_full".into(), 1)]
    );
}

#[test]
fn a_pool_shows_busy_idle_and_its_ceiling() {
    let mut out = Exposition::new(Format::Prometheus);
    PoolUse {
        open: 7,
        idle: 2,
        max: 8,
    }
    .render(
        &mut out,
        "confer_room_database_connections",
        "confer_room_database_connections_max",
    );
    let text = out.finish();
    assert!(
        text.contains("confer_room_database_connections{state=\"busy\"} 5\n"),
        "{text}"
    );
    assert!(
        text.contains("confer_room_database_connections{state=\"idle\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("confer_room_database_connections_max 8\n"),
        "{text}"
    );
}
