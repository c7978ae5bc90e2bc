//! The Helm chart: `helm lint --strict` and `helm template … | kubernetes-validate
//! --strict` for the default values and the multi-region values file; the custom
//! resources it renders pass the CRDs' schemas and CEL rules; CRDs follow `crds.*`.
//!
//! Needs `helm` and `kubernetes-validate` (installed by `scripts/test.sh`; `CONFER_HELM`
//! may name the helm binary).

mod support;

use std::process::Command;

use serde_json::Value;
use support::{chart, problems};

fn helm() -> String {
    std::env::var("CONFER_HELM").unwrap_or_else(|_| "helm".to_owned())
}

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(chart())
        .output()
        .unwrap_or_else(|e| panic!("{program} could not run ({e}); scripts/test.sh installs it"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

const MONITORING: [&str; 4] = [
    "--api-versions",
    "monitoring.coreos.com/v1/ServiceMonitor",
    "--api-versions",
    "monitoring.coreos.com/v1/PrometheusRule",
];

fn template(extra: &[&str]) -> String {
    let mut args = vec!["template", "confer", ".", "--namespace", "confer"];
    args.extend_from_slice(extra);
    run(&helm(), &args)
}

fn documents(rendered: &str) -> Vec<Value> {
    rendered
        .split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<Value>(doc).ok())
        .filter(|doc| doc.is_object())
        .collect()
}

fn validate_with_kubernetes_validate(rendered: &str, name: &str) {
    let path =
        std::env::temp_dir().join(format!("confer-chart-{name}-{}.yaml", std::process::id()));
    std::fs::write(&path, rendered).expect("write rendered chart");
    let file = path.to_string_lossy().into_owned();
    let out = run("kubernetes-validate", &["--strict", "--quiet", &file]);
    let _ = std::fs::remove_file(&path);
    assert!(
        !out.contains("ERROR") && !out.contains("failed"),
        "{name}: {out}"
    );
}

#[test]
fn the_chart_lints_strictly() {
    run(&helm(), &["lint", "--strict", "."]);
    run(
        &helm(),
        &["lint", "--strict", ".", "-f", "values-multi-region.yaml"],
    );
}

#[test]
fn default_values_render_valid_kubernetes_objects() {
    let rendered = template(&[]);
    validate_with_kubernetes_validate(&rendered, "default");
    let kinds: Vec<String> = documents(&rendered)
        .iter()
        .map(|d| d["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    for kind in [
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Role",
        "RoleBinding",
        "CustomResourceDefinition",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
    assert!(
        !kinds
            .iter()
            .any(|k| k == "ServiceMonitor" || k == "PrometheusRule"),
        "monitoring objects only where their API exists: {kinds:?}"
    );
}

#[test]
fn multi_region_values_render_valid_objects_and_media_nodes() {
    let rendered = template(&[&["-f", "values-multi-region.yaml"][..], &MONITORING[..]].concat());
    validate_with_kubernetes_validate(&rendered, "multi-region");
    let docs = documents(&rendered);
    let nodes: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "MediaNode").collect();
    assert_eq!(nodes.len(), 2);
    for node in &nodes {
        assert_eq!(
            problems("medianodes", node, None),
            Vec::<String>::new(),
            "{node}"
        );
    }
    let regions: Vec<&str> = nodes
        .iter()
        .filter_map(|n| n["spec"]["region"].as_str())
        .collect();
    assert_eq!(regions, ["eu-west", "us-east"]);
    let rule = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("PrometheusRule");
    let alerts = rule["spec"]["groups"].as_array().map_or(0, Vec::len);
    assert!(alerts > 0, "{rule}");
    assert!(docs.iter().any(|d| d["kind"] == "ServiceMonitor"));
    let room = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "confer-room")
        .expect("room deployment");
    let env = room["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    assert!(env.contains("eu-west=us-east;us-east=eu-west"), "{env}");
}

/// The value of `var` in Deployment `name`'s first container, if it is set there.
fn env_of(docs: &[Value], name: &str, var: &str) -> Option<String> {
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{name} deployment"));
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == var)
        .and_then(|e| e["value"].as_str().map(str::to_owned))
}

/// `helm template` with `extra` fails, and says `why` on stderr.
fn refused(extra: &[&str], why: &str) {
    let output = Command::new(helm())
        .args(["template", "confer", "."])
        .args(extra)
        .current_dir(chart())
        .output()
        .expect("helm runs");
    assert!(!output.status.success(), "{extra:?} rendered");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(why), "{extra:?}: {stderr}");
}

/// Renders with `extra` (valid objects, checked as `name`) and finds each
/// `(deployment, variable, value)` set so.
fn renders_env(extra: &[&str], name: &str, expected: &[(&str, &str, &str)]) {
    let rendered = template(extra);
    validate_with_kubernetes_validate(&rendered, name);
    let docs = documents(&rendered);
    for (deployment, var, value) in expected {
        assert_eq!(
            env_of(&docs, deployment, var).as_deref(),
            Some(*value),
            "{deployment} {var} with {extra:?}"
        );
    }
}

#[test]
fn gateways_get_the_chat_rate_they_are_given() {
    let (rate, burst) = ("CONFER_CHAT_RATE", "CONFER_CHAT_BURST");
    renders_env(
        &[],
        "chat-rate-default",
        &[
            ("confer-gateway", rate, "5"),
            ("confer-gateway", burst, "20"),
        ],
    );
    let set = [
        "--set",
        "gateway.chat.perSecond=0",
        "--set",
        "gateway.chat.burst=50",
    ];
    renders_env(
        &set,
        "chat-rate",
        &[
            ("confer-gateway", rate, "0"),
            ("confer-gateway", burst, "50"),
        ],
    );
    refused(&["--set", "gateway.chat.burst=0"], "minimum");
    refused(&["--set", "gateway.chat.perSecond=-1"], "minimum");
}

#[test]
fn each_service_gets_the_database_pool_it_is_given() {
    let pool = "CONFER_DATABASE_CONNECTIONS";
    renders_env(
        &[],
        "pools-default",
        &[("confer-room", pool, "8"), ("confer-chat", pool, "32")],
    );
    let set = [
        "--set",
        "room.databaseConnections=24",
        "--set",
        "chat.databaseConnections=48",
    ];
    renders_env(
        &set,
        "pools",
        &[("confer-room", pool, "24"), ("confer-chat", pool, "48")],
    );
    refused(&["--set", "chat.databaseConnections=0"], "minimum");
}

#[test]
fn the_chat_service_gets_the_default_retention_it_is_given() {
    let retention = "CONFER_CHAT_DEFAULT_RETENTION";
    renders_env(
        &[],
        "retention-default",
        &[
            ("confer-chat", retention, "0"),
            // Where the operator gives Conferences' chatRetentionSeconds.
            ("confer-operator", "CONFER_CHAT_SERVICE", "confer-chat:7891"),
        ],
    );
    let thirty_days = ["--set", "chat.defaultRetentionSeconds=2592000"];
    renders_env(
        &thirty_days,
        "retention",
        &[("confer-chat", retention, "2592000")],
    );
    refused(&["--set", "chat.defaultRetentionSeconds=-1"], "minimum");
}

#[test]
fn crds_are_kept_on_uninstall_unless_asked_and_can_be_left_out() {
    let crds = |extra: &[&str]| -> Vec<Value> {
        documents(&template(extra))
            .into_iter()
            .filter(|d| d["kind"] == "CustomResourceDefinition")
            .collect()
    };
    let kept = crds(&[]);
    assert_eq!(kept.len(), 2);
    for crd in &kept {
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );
    }
    for crd in crds(&["--set", "crds.keep=false"]) {
        assert!(
            crd["metadata"]["annotations"].is_null(),
            "{}",
            crd["metadata"]
        );
    }
    assert!(crds(&["--set", "crds.enabled=false"]).is_empty());
}

#[test]
fn values_outside_the_schema_are_refused() {
    let output = Command::new(helm())
        .args([
            "template",
            "confer",
            ".",
            "--set",
            "mediaNodes[0].name=Bad_Name",
        ])
        .current_dir(chart())
        .output()
        .expect("helm runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not match pattern"));
}

#[test]
fn the_sip_bridge_renders_with_its_tenant_key_and_media_settings() {
    let rendered = template(&[
        "--set",
        "sip.enabled=true",
        "--set",
        "sip.tenantSecret=acme-sip",
        "--set",
        "sip.allow={203.0.113.0/24,198.51.100.7}",
    ]);
    validate_with_kubernetes_validate(&rendered, "sip");
    let docs = documents(&rendered);
    let bridge = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "confer-sip")
        .expect("sip deployment");
    let pod = &bridge["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    let container = &pod["containers"][0];
    let args = container["args"].to_string();
    assert!(args.contains("ws://confer-gateway:80/v1/signal"), "{args}");
    let env = container["env"].to_string();
    for expected in [
        "\"acme-sip\"",
        "status.hostIP",
        "20000-20999",
        "203.0.113.0/24,198.51.100.7",
    ] {
        assert!(env.contains(expected), "{expected} not in {env}");
    }
    let policy = docs
        .iter()
        .find(|d| d["kind"] == "NetworkPolicy" && d["metadata"]["name"] == "confer-sip")
        .expect("sip network policy");
    let rules = policy["spec"]["ingress"].to_string();
    assert!(
        rules.contains("198.51.100.7/32") && rules.contains("\"endPort\":20999"),
        "{rules}"
    );
    // Off by default; on without a tenant key is refused.
    assert!(
        !documents(&template(&[]))
            .iter()
            .any(|d| d["metadata"]["name"] == "confer-sip")
    );
    let output = Command::new(helm())
        .args(["template", "confer", ".", "--set", "sip.enabled=true"])
        .current_dir(chart())
        .output()
        .expect("helm runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("sip.tenantSecret is required"));
}

#[test]
fn grpc_tls_mounts_one_secret_into_every_service_that_speaks_grpc() {
    let plain = template(&[]);
    assert!(
        !plain.contains("GRPC_TLS") && !plain.contains("grpc-tls"),
        "plaintext unless asked"
    );
    let rendered = template(&[
        "--set",
        "grpcTls.enabled=true",
        "--set",
        "grpcTls.secretName=internal-tls",
        "--set",
        "grpcTls.serverName=confer.example.internal",
    ]);
    validate_with_kubernetes_validate(&rendered, "grpc-tls");
    let docs = documents(&rendered);
    for name in [
        "confer-gateway",
        "confer-room",
        "confer-chat",
        "confer-operator",
    ] {
        let pod = &docs
            .iter()
            .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{name} deployment"))["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let env: Vec<(String, String)> = container["env"]
            .as_array()
            .expect("env")
            .iter()
            .filter(|e| e["name"].as_str().unwrap_or_default().contains("GRPC_TLS"))
            .map(|e| {
                (
                    e["name"].as_str().unwrap_or_default().to_owned(),
                    e["value"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let mut expected = vec![
            ("CONFER_GRPC_TLS_CERT", "/etc/confer/grpc-tls/tls.crt"),
            ("CONFER_GRPC_TLS_KEY", "/etc/confer/grpc-tls/tls.key"),
            ("CONFER_GRPC_TLS_CA", "/etc/confer/grpc-tls/ca.crt"),
            ("CONFER_GRPC_TLS_NAME", "confer.example.internal"),
        ];
        if name == "confer-operator" {
            expected.push(("CONFER_SFU_GRPC_TLS_SECRET", "internal-tls"));
        }
        let expected: Vec<(String, String)> = expected
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(env, expected, "{name}");
        let mounts = container["volumeMounts"].as_array().expect("mounts");
        assert!(
            mounts.iter().any(|m| m["name"] == "grpc-tls"
                && m["mountPath"] == "/etc/confer/grpc-tls"
                && m["readOnly"] == true),
            "{name}: {mounts:?}"
        );
        let volumes = pod["volumes"].as_array().expect("volumes");
        assert!(
            volumes
                .iter()
                .any(|v| v["name"] == "grpc-tls" && v["secret"]["secretName"] == "internal-tls"),
            "{name}: {volumes:?}"
        );
    }
    let output = Command::new(helm())
        .args(["template", "confer", ".", "--set", "grpcTls.serverName="])
        .current_dir(chart())
        .output()
        .expect("helm runs");
    assert!(!output.status.success(), "an empty name is refused");
}

#[test]
fn recordings_share_one_claim_between_the_gateways_and_the_media_nodes() {
    let rendered = template(&[
        "-f",
        "values-multi-region.yaml",
        "--set",
        "recordings.persistence.enabled=true",
        "--set",
        "recordings.keepDays=30",
    ]);
    validate_with_kubernetes_validate(&rendered, "recordings");
    let docs = documents(&rendered);
    let claim = docs
        .iter()
        .find(|d| {
            d["kind"] == "PersistentVolumeClaim" && d["metadata"]["name"] == "confer-recordings"
        })
        .expect("the recordings claim");
    assert_eq!(claim["spec"]["accessModes"][0], "ReadWriteMany");
    assert_eq!(
        env_of(&docs, "confer-gateway", "CONFER_RECORDINGS_DIR").as_deref(),
        Some("/var/lib/confer/recordings")
    );
    assert_eq!(
        env_of(&docs, "confer-gateway", "CONFER_RECORDINGS_KEEP_DAYS").as_deref(),
        Some("30"),
        "the gateways sweep what is older"
    );
    let gateway = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "confer-gateway")
        .expect("gateway");
    let volumes = gateway["spec"]["template"]["spec"]["volumes"].to_string();
    assert!(
        volumes.contains("\"claimName\":\"confer-recordings\""),
        "{volumes}"
    );
    let nodes: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "MediaNode").collect();
    assert_eq!(nodes.len(), 2);
    for node in nodes {
        assert_eq!(
            node["spec"]["recordingsClaim"], "confer-recordings",
            "{node}"
        );
        assert_eq!(
            problems("medianodes", node, None),
            Vec::<String>::new(),
            "{node}"
        );
    }
    // Off by default: no claim, and the gateways serve none.
    let docs = documents(&template(&[]));
    assert!(
        !docs.iter().any(|d| d["kind"] == "PersistentVolumeClaim"
            && d["metadata"]["name"] == "confer-recordings")
    );
    assert_eq!(
        env_of(&docs, "confer-gateway", "CONFER_RECORDINGS_DIR"),
        None
    );
}
