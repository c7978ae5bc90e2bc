//! The CRDs the chart carries are exactly what the Rust types generate, and the sample
//! manifests shipped with the chart pass the CRDs' schemas and CEL rules (evaluated
//! client-side, as the API server would); broken variants of them do not.

mod support;

use serde_json::{Value, json};
use support::{chart, problems, read_yaml};

#[test]
fn the_chart_carries_the_generated_crds() {
    for (name, generated) in confer_operator::crd::files().expect("CRDs render") {
        let path = chart().join("files/crds").join(&name);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} differs from the Rust types; regenerate with `confer crd --out-dir charts/confer/files/crds`",
            path.display()
        );
    }
}

fn sample(name: &str) -> Value {
    read_yaml(chart().join("examples").join(name))
}

fn with(mut object: Value, pointer: &str, value: Value) -> Value {
    *object
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer} in sample")) = value;
    object
}

fn expect_rejected(plural: &str, object: &Value, old: Option<&Value>, expected: &str) {
    let found = problems(plural, object, old);
    assert!(
        found.iter().any(|p| p.contains(expected)),
        "expected a problem mentioning {expected:?}, found {found:?}"
    );
}

#[test]
fn the_shipped_samples_are_valid() {
    for name in ["medianode.yaml", "medianode-us-east.yaml"] {
        assert_eq!(
            problems("medianodes", &sample(name), None),
            Vec::<String>::new(),
            "{name}"
        );
    }
    let conference = sample("conference.yaml");
    assert_eq!(
        problems("conferences", &conference, None),
        Vec::<String>::new()
    );
    // And they are what the operator's types read.
    let _: confer_operator::crd::MediaNode =
        serde_json::from_value(sample("medianode.yaml")).expect("MediaNode sample deserializes");
    let _: confer_operator::crd::Conference =
        serde_json::from_value(conference).expect("Conference sample deserializes");
}

#[test]
fn media_node_rules_reject_bad_specs() {
    let node = sample("medianode.yaml");
    expect_rejected(
        "medianodes",
        &with(node.clone(), "/spec/replicas", json!(-1)),
        None,
        "replicas must not be negative",
    );
    expect_rejected(
        "medianodes",
        &with(node.clone(), "/spec/capacity/participantsPerPod", json!(0)),
        None,
        "participantsPerPod must be positive",
    );
    expect_rejected(
        "medianodes",
        &with(node.clone(), "/spec/ports/media", json!(70000)),
        None,
        "media must be a port number",
    );
    expect_rejected(
        "medianodes",
        &with(node.clone(), "/spec/ports/mediaWorkers", json!(0)),
        None,
        "mediaWorkers must be between 1 and 64",
    );
    expect_rejected(
        "medianodes",
        &with(node.clone(), "/spec/ports/media", json!(65535)),
        None,
        "the media workers' ports run past 65535",
    );
    expect_rejected(
        "medianodes",
        &with(node.clone(), "/spec/ports/control", json!(7883)),
        None,
        "control must not be one of the media workers' ports",
    );
    expect_rejected(
        "medianodes",
        &with(node.clone(), "/spec/region", json!("EU West")),
        None,
        "region must be a DNS label",
    );
    expect_rejected(
        "medianodes",
        &with(node.clone(), "/spec/networking", json!("Tunnel")),
        None,
        "is not one of",
    );
    expect_rejected(
        "medianodes",
        &with(node.clone(), "/spec/replicas", json!("three")),
        None,
        "expected",
    );
    let mut unknown = node.clone();
    unknown["spec"]["replica"] = json!(3);
    expect_rejected("medianodes", &unknown, None, "spec.replica: unknown field");
    // Region is immutable; replicas are not.
    let moved = with(node.clone(), "/spec/region", json!("us-east"));
    expect_rejected("medianodes", &moved, Some(&node), "region is immutable");
    let scaled = with(node.clone(), "/spec/replicas", json!(5));
    assert_eq!(
        problems("medianodes", &scaled, Some(&node)),
        Vec::<String>::new()
    );
}

#[test]
fn conference_rules_reject_bad_specs() {
    let conference = sample("conference.yaml");
    expect_rejected(
        "conferences",
        &with(conference.clone(), "/spec/homeRegion", json!("ap-south")),
        None,
        "homeRegion must be one of allowedRegions",
    );
    expect_rejected(
        "conferences",
        &with(conference.clone(), "/spec/maxParticipants", json!(0)),
        None,
        "maxParticipants must be between 1 and 10000",
    );
    expect_rejected(
        "conferences",
        &with(conference.clone(), "/spec/tenant", json!("")),
        None,
        "tenant must not be empty",
    );
    expect_rejected(
        "conferences",
        &with(conference.clone(), "/spec/chatRetentionSeconds", json!(-1)),
        None,
        "chatRetentionSeconds must not be negative",
    );
    for wait in [-1, 86_401] {
        expect_rejected(
            "conferences",
            &with(conference.clone(), "/spec/emptyTimeoutSeconds", json!(wait)),
            None,
            "emptyTimeoutSeconds must be between 0 and 86400",
        );
    }
    let loose = with(
        conference.clone(),
        "/spec/hostControls/allowScreenShare",
        json!("no"),
    );
    expect_rejected("conferences", &loose, None, "hostControls.allowScreenShare");
    let retenanted = with(conference.clone(), "/spec/tenant", json!("globex"));
    expect_rejected(
        "conferences",
        &retenanted,
        Some(&conference),
        "tenant is immutable",
    );
    let anywhere = with(conference.clone(), "/spec/allowedRegions", json!([]));
    assert_eq!(
        problems(
            "conferences",
            &with(anywhere, "/spec/homeRegion", json!("ap-south")),
            None
        ),
        Vec::<String>::new()
    );
}
