//! The chart's Grafana dashboards (`charts/confer/files/dashboards/`, one per concern):
//! each is a dashboard Grafana can load, every query is PromQL that Prometheus accepts
//! (checked by `promtool check rules` on the queries written as recording rules), and
//! every metric a dashboard or alert names is one the product exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn dashboards() -> Vec<(String, serde_json::Value)> {
    let dir = root().join("charts/confer/files/dashboards");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .expect("dashboards directory")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("dashboard");
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|err| panic!("{} is not JSON: {err}", path.display()));
            (
                path.file_name()
                    .expect("file name")
                    .to_string_lossy()
                    .into_owned(),
                json,
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn queries(dashboard: &serde_json::Value) -> Vec<String> {
    dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
        .filter_map(|target| target["expr"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn there_is_a_dashboard_per_concern_and_each_is_well_formed() {
    let boards = dashboards();
    let names: Vec<&str> = boards.iter().map(|(name, _)| name.as_str()).collect();
    for concern in ["joins", "media", "placement", "chat-webhooks", "sip"] {
        assert!(
            names.contains(&format!("confer-{concern}.json").as_str()),
            "no dashboard for {concern}: {names:?}"
        );
    }
    let mut uids = BTreeSet::new();
    for (name, board) in &boards {
        let uid = board["uid"].as_str().unwrap_or_default();
        assert!(
            !uid.is_empty() && uids.insert(uid.to_owned()),
            "{name}: uid {uid:?} missing or repeated"
        );
        assert!(
            board["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{name}: no title"
        );
        let panels = board["panels"].as_array().expect("panels");
        assert!(!panels.is_empty(), "{name}: no panels");
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or_default();
            let exprs = queries(&serde_json::json!({ "panels": [panel] }));
            assert!(!exprs.is_empty(), "{name}: panel {title:?} queries nothing");
            assert!(
                panel["gridPos"]["w"].as_u64().is_some(),
                "{name}: panel {title:?} has no place"
            );
        }
    }
}

#[test]
fn every_dashboard_query_is_valid_promql() {
    let mut rules = String::from("groups:\n  - name: dashboards\n    rules:\n");
    for (name, board) in dashboards() {
        let stem = name.trim_end_matches(".json").replace('-', "_");
        for (i, expr) in queries(&board).into_iter().enumerate() {
            let quoted = serde_json::to_string(&expr).expect("quote");
            rules.push_str(&format!(
                "      - record: {stem}:query_{i}\n        expr: {quoted}\n"
            ));
        }
    }
    let dir = std::env::temp_dir().join(format!("confer-dashboards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("queries.yaml");
    std::fs::write(&file, &rules).expect("write rules");
    let program = std::env::var("CONFER_PROMTOOL").unwrap_or_else(|_| "promtool".to_owned());
    let output = Command::new(&program)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap_or_else(|err| panic!("{program} did not run (apt-get install prometheus): {err}"));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success(),
        "a dashboard query is not valid PromQL:\n{}{}\n{rules}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every `.rs` file under `dir`, concatenated; test directories left out, so a name
/// only a test mentions does not count as exported.
fn sources(dir: &Path, into: &mut String) {
    for entry in std::fs::read_dir(dir).expect("source dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() && path.file_name().is_some_and(|name| name == "tests") {
            continue;
        }
        if path.is_dir() {
            sources(&path, into);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            into.push_str(&std::fs::read_to_string(&path).expect("source"));
        }
    }
}

/// The `confer_*` metric names in `text`, without the suffixes exposition adds.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("confer_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let mut name = &tail[..end];
        for suffix in ["_total", "_bucket", "_sum", "_count"] {
            name = name.strip_suffix(suffix).unwrap_or(name);
        }
        names.insert(name.to_owned());
        rest = &tail[end..];
    }
    names
}

#[test]
fn every_metric_a_dashboard_or_alert_names_is_exported() {
    let mut code = String::new();
    for dir in ["services", "crates", "operator/src"] {
        sources(&root().join(dir), &mut code);
    }
    let mut used = String::new();
    for (_, board) in dashboards() {
        used.push_str(&queries(&board).join("\n"));
    }
    let alerts =
        std::fs::read_to_string(root().join("charts/confer/files/alerts.yaml")).expect("alerts");
    for line in alerts
        .lines()
        .filter(|l| l.trim_start().starts_with("expr:") || l.starts_with("          "))
    {
        used.push_str(line);
        used.push('\n');
    }
    let names = metric_names(&used);
    assert!(names.len() >= 20, "metrics found: {names:?}");
    let missing: Vec<&String> = names
        .iter()
        .filter(|name| !code.contains(&format!("\"{name}")))
        .collect();
    assert!(missing.is_empty(), "named but never exported: {missing:?}");
}
