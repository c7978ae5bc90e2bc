//! What a placer's view of discovery looks like in Prometheus text: whether it is
//! stale (the registry unreachable), how old it is, and the nodes by health.

use std::fmt::Write as _;

use crate::{Health, Snapshot};

/// The snapshot as Prometheus text at `now_ms`.
pub fn render(snapshot: &Snapshot, now_ms: u64) -> String {
    let mut out = String::new();
    out.push_str("# HELP confer_discovery_stale 1 while the registry cannot be reached and placement runs on its last answer.\n");
    out.push_str("# TYPE confer_discovery_stale gauge\n");
    let _ = writeln!(out, "confer_discovery_stale {}", u8::from(snapshot.stale));
    out.push_str(
        "# HELP confer_discovery_snapshot_age_seconds Time since the registry last answered.\n",
    );
    out.push_str("# TYPE confer_discovery_snapshot_age_seconds gauge\n");
    let age = now_ms.saturating_sub(snapshot.refreshed_at_ms) as f64 / 1_000.0;
    let _ = writeln!(out, "confer_discovery_snapshot_age_seconds {age}");
    out.push_str("# HELP confer_discovery_nodes SFUs in the registry, by health.\n");
    out.push_str("# TYPE confer_discovery_nodes gauge\n");
    for (health, label) in [
        (Health::Serving, "serving"),
        (Health::Draining, "draining"),
        (Health::Gone, "gone"),
    ] {
        let n = snapshot
            .members
            .iter()
            .filter(|m| m.health == health)
            .count();
        let _ = writeln!(out, "confer_discovery_nodes{{health=\"{label}\"}} {n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Member, NodeId, Registration};

    #[test]
    fn staleness_age_and_health_are_rendered() {
        let member = |id: &str, health| Member {
            registration: Registration {
                id: NodeId::from(id),
                region: "eu".into(),
                zone: String::new(),
                control: "x:1".into(),
                capacity: 1,
            },
            health,
            report: None,
        };
        let snapshot = Snapshot {
            members: vec![
                member("a", Health::Serving),
                member("b", Health::Serving),
                member("c", Health::Draining),
            ],
            stale: true,
            refreshed_at_ms: 10_000,
        };
        let text = render(&snapshot, 12_500);
        assert!(text.contains("confer_discovery_stale 1\n"), "{text}");
        assert!(
            text.contains("confer_discovery_snapshot_age_seconds 2.5\n"),
            "{text}"
        );
        assert!(
            text.contains("confer_discovery_nodes{health=\"serving\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("confer_discovery_nodes{health=\"draining\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("confer_discovery_nodes{health=\"gone\"} 0\n"),
            "{text}"
        );
    }
}
