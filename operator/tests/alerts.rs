//! The chart's alert rules, checked and unit-tested with promtool (Debian
//! `prometheus`, installed by `scripts/test.sh`; `CONFER_PROMTOOL` overrides the path):
//! every alert fires on synthetic series built to cross its threshold and stays quiet
//! on series that do not (`charts/confer/tests/alerts_test.yaml`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/confer")
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let program = std::env::var("CONFER_PROMTOOL").unwrap_or_else(|_| "promtool".to_owned());
    let output = Command::new(&program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|err| panic!("{program} did not run (apt-get install prometheus): {err}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn alert_rules_are_valid() {
    let out = promtool(&["check", "rules", "files/alerts.yaml"], &chart());
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn every_alert_fires_and_stays_quiet_as_its_unit_tests_expect() {
    let out = promtool(
        &["test", "rules", "alerts_test.yaml"],
        &chart().join("tests"),
    );
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn every_alert_has_a_unit_test_that_fires_it() {
    let rules = std::fs::read_to_string(chart().join("files/alerts.yaml")).expect("rules");
    let tests = std::fs::read_to_string(chart().join("tests/alerts_test.yaml")).expect("tests");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 6, "alerts found: {alerts:?}");
    for alert in alerts {
        // A test that names the alert and expects it with labels (it fires).
        let fired = tests.split("alertname: ").skip(1).any(|block| {
            block.starts_with(alert)
                && block
                    .split("alertname: ")
                    .next()
                    .is_some_and(|b| b.contains("exp_labels"))
        });
        assert!(fired, "no unit test makes {alert} fire");
    }
}
