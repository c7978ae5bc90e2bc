//! The MediaNode controller against a mock Kubernetes API (the controller-rs
//! `Scenario` pattern on tower-test): every request the reconcile makes is checked in
//! order and answered; discovery is a fixed snapshot and SFU drain calls are recorded.

use std::sync::{Arc, Mutex};

use confer_discovery::{Health, Member, NodeId, NodeReport, NodeState, Registration, Snapshot};
use futures_util::future::BoxFuture;
use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::*;
use crate::conference::tests::FakeRooms;
use crate::context::NodeControl;
use crate::crd::condition_in_patch as condition;
use crate::crd::{Capacity, MediaNodeSpec, MediaPorts, Networking, PodPlacement};
use crate::medianode::resources::PodDefaults;
use crate::metrics::Metrics;

const NOW: i64 = 1_800_000_000_000;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

#[derive(Default)]
struct RecordedDrains(Mutex<Vec<(String, bool)>>);

impl NodeControl for RecordedDrains {
    fn set_draining(
        &self,
        control: &str,
        draining: bool,
    ) -> BoxFuture<'_, crate::error::Result<()>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((control.to_owned(), draining));
        Box::pin(async { Ok(()) })
    }
}

fn media_node(replicas: i32) -> MediaNode {
    let mut node = MediaNode::new(
        "eu",
        MediaNodeSpec {
            region: "eu-west".into(),
            zone: None,
            replicas,
            capacity: Capacity {
                participants_per_pod: 100,
            },
            ports: MediaPorts::default(),
            networking: Networking::HostNetwork,
            resources: None,
            placement: PodPlacement::default(),
            image: None,
            drain_deadline_seconds: 600,
            recordings_claim: None,
        },
    );
    node.metadata.namespace = Some("confer".into());
    node.metadata.uid = Some("uid-eu".into());
    node.metadata.generation = Some(4);
    node
}

fn member(pod: &str, rooms: u32, health: Health) -> Member {
    Member {
        registration: Registration {
            id: NodeId::from(pod),
            region: "eu-west".into(),
            zone: String::new(),
            control: format!("{pod}.ctl:7881"),
            capacity: 100,
        },
        health,
        report: Some(NodeReport {
            id: NodeId::from(pod),
            region: "eu-west".into(),
            zone: String::new(),
            state: NodeState::Serving,
            capacity: 100,
            participants: rooms * 5,
            rooms,
            reported_at_ms: NOW as u64,
        }),
    }
}

struct Harness {
    ctx: Arc<Context>,
    drains: Arc<RecordedDrains>,
    rooms: Arc<FakeRooms>,
    api: Handle,
}

fn harness(members: Vec<Member>) -> Harness {
    let (service, api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let (_, snapshots) = watch::channel(Snapshot {
        members,
        stale: false,
        refreshed_at_ms: NOW as u64,
    });
    let drains = Arc::new(RecordedDrains::default());
    let rooms = Arc::new(FakeRooms::default());
    let mut ctx = Context::new(
        client,
        rooms.clone(),
        snapshots,
        drains.clone(),
        PodDefaults {
            image: "confer:test".into(),
            consul_addr: "http://consul:8500".into(),
            tls: None,
        },
        Arc::new(Metrics::default()),
    );
    ctx.clock = || NOW;
    Harness {
        ctx: Arc::new(ctx),
        drains,
        rooms,
        api,
    }
}

fn respond(send: tower_test::mock::SendResponse<Response<Body>>, status: u16, body: &Value) {
    let response = Response::builder()
        .status(status)
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("response");
    send.send_response(response);
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": "not found", "reason": "NotFound", "code": 404})
}

/// What the mock API server expects next, and how it answers.
enum Step {
    /// GET of the StatefulSet: answered with these replicas, or 404.
    GetStatefulSet(Option<i32>),
    GetFails(u16),
    /// A Kubernetes Event with this reason.
    Event(&'static str),
    /// The LIST of the node's pods; these are annotated to drain.
    ListPods(Vec<&'static str>),
    /// A server-side apply of `kind` (`configmaps`, …); answered with the body.
    Apply(&'static str),
    /// The status patch; its body is kept.
    PatchStatus,
}

/// Serves `steps` in order; returns the bodies of applies and status patches.
fn serve(mut api: Handle, steps: Vec<Step>) -> tokio::task::JoinHandle<Vec<Value>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        for step in steps {
            let (request, send) = api
                .next_request()
                .await
                .expect("the reconcile made its next request");
            let method = request.method().clone();
            let uri = request.uri().to_string();
            let body = request.into_body().collect_bytes().await.expect("body");
            let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            match step {
                Step::GetStatefulSet(replicas) => {
                    assert_eq!(method, Method::GET);
                    assert_eq!(uri, "/apis/apps/v1/namespaces/confer/statefulsets/eu-sfu");
                    match replicas {
                        Some(n) => respond(
                            send,
                            200,
                            &json!({
                                "apiVersion": "apps/v1", "kind": "StatefulSet",
                                "metadata": {"name": "eu-sfu", "namespace": "confer"},
                                "spec": {"replicas": n, "serviceName": "eu-sfu",
                                         "selector": {"matchLabels": {"confer.dev/medianode": "eu"}},
                                         "template": {}},
                            }),
                        ),
                        None => respond(send, 404, &not_found()),
                    }
                }
                Step::Event(reason) => {
                    assert_eq!(method, Method::POST);
                    assert_eq!(uri, "/apis/events.k8s.io/v1/namespaces/confer/events?");
                    assert_eq!(json["reason"], reason, "{json}");
                    assert_eq!(json["regarding"]["kind"], "MediaNode");
                    respond(send, 201, &json);
                    seen.push(json);
                }
                Step::ListPods(cordoned) => {
                    assert_eq!(method, Method::GET);
                    assert_eq!(
                        uri,
                        "/api/v1/namespaces/confer/pods?&labelSelector=confer.dev%2Fmedianode%3Deu"
                    );
                    let items: Vec<Value> = cordoned
                        .iter()
                        .map(|name| {
                            json!({"metadata": {"name": name, "namespace": "confer",
                                           "annotations": {"confer.dev/drain": "true"}}})
                        })
                        .collect();
                    respond(
                        send,
                        200,
                        &json!({"apiVersion": "v1", "kind": "PodList",
                                                "metadata": {"resourceVersion": "1"}, "items": items}),
                    );
                }
                Step::GetFails(code) => {
                    assert_eq!(method, Method::GET);
                    respond(
                        send,
                        code,
                        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Failure", "message": "etcdserver: request timed out",
                        "reason": "InternalError", "code": code}),
                    );
                }
                Step::Apply(kind) => {
                    assert_eq!(method, Method::PATCH);
                    assert!(
                        uri.contains(&format!("/namespaces/confer/{kind}/eu-sfu?")),
                        "{uri}"
                    );
                    assert!(uri.contains("fieldManager=confer-operator"), "{uri}");
                    assert!(uri.contains("force=true"), "{uri}");
                    let mut answer = json.clone();
                    if kind == "statefulsets" {
                        answer["status"] =
                            json!({"replicas": answer["spec"]["replicas"], "readyReplicas": 1});
                    }
                    respond(send, 200, &answer);
                    seen.push(json);
                }
                Step::PatchStatus => {
                    assert_eq!(method, Method::PATCH);
                    assert_eq!(
                        uri,
                        "/apis/confer.dev/v1alpha1/namespaces/confer/medianodes/eu/status?"
                    );
                    let mut node = serde_json::to_value(media_node(1)).expect("json");
                    node["status"] = json["status"].clone();
                    respond(send, 200, &node);
                    seen.push(json);
                }
            }
        }
        seen
    })
}

fn applies() -> Vec<Step> {
    vec![
        Step::Apply("configmaps"),
        Step::Apply("services"),
        Step::Apply("poddisruptionbudgets"),
        Step::Apply("statefulsets"),
    ]
}

#[tokio::test]
async fn a_new_media_node_gets_its_resources_and_a_status() {
    let Harness { ctx, api, .. } = harness(vec![member("eu-sfu-0", 2, Health::Serving)]);
    let mut steps = vec![Step::GetStatefulSet(None), Step::ListPods(vec![])];
    steps.extend(applies());
    steps.push(Step::PatchStatus);
    let server = serve(api, steps);
    let action = reconcile(Arc::new(media_node(3)), ctx.clone())
        .await
        .expect("reconciles");
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    let seen = server.await.expect("scenario");
    let (config, set, status) = (&seen[0], &seen[3], &seen[4]);
    assert_eq!(config["data"]["CONFER_REGION"], "eu-west");
    assert_eq!(config["data"]["CONFER_CONSUL_ADDR"], "http://consul:8500");
    assert_eq!(set["spec"]["replicas"], 3);
    assert_eq!(set["metadata"]["ownerReferences"][0]["kind"], "MediaNode");
    assert_eq!(set["metadata"]["ownerReferences"][0]["controller"], true);
    let pod = &set["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["containers"][0]["image"], "confer:test");
    assert_eq!(pod["containers"][0]["ports"][0]["hostPort"], 7882);
    // Each pod serves /metrics where the SFU ServiceMonitor scrapes it.
    assert_eq!(config["data"]["CONFER_METRICS_LISTEN"], "0.0.0.0:9092");
    assert_eq!(pod["containers"][0]["ports"][2]["name"], "metrics");
    assert_eq!(pod["containers"][0]["ports"][2]["containerPort"], 9092);
    let service = &seen[1];
    assert_eq!(service["spec"]["ports"][1]["name"], "metrics", "{service}");
    assert_eq!(status["status"]["selector"], "confer.dev/medianode=eu");
    assert_eq!(status["status"]["observedGeneration"], 4);
    assert_eq!(status["status"]["pods"][0]["state"], "Serving");
    assert_eq!(status["status"]["pods"][0]["loadPercent"], 10);
    assert_eq!(status["status"]["pods"][1]["state"], "Starting");
    assert_eq!(status["status"]["rooms"], 2);
    assert_eq!(condition(status, "Ready")["status"], "False");
    assert_eq!(condition(status, "Ready")["reason"], "PodsNotReady");
    assert_eq!(condition(status, "Ready")["observedGeneration"], 4);
    assert_eq!(condition(status, "Draining")["status"], "False");
}

#[tokio::test]
async fn scaling_down_drains_the_highest_pods_before_the_stateful_set_shrinks() {
    let members = vec![
        member("eu-sfu-0", 4, Health::Serving),
        member("eu-sfu-1", 2, Health::Serving),
        member("eu-sfu-2", 0, Health::Serving),
    ];
    let Harness {
        ctx, api, drains, ..
    } = harness(members);
    let mut steps = vec![Step::GetStatefulSet(Some(3)), Step::ListPods(vec![])];
    steps.extend(applies());
    steps.extend([Step::PatchStatus, Step::Event("DrainStarted")]);
    let server = serve(api, steps);
    let action = reconcile(Arc::new(media_node(1)), ctx.clone())
        .await
        .expect("reconciles");
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(5)),
        "a drain is watched closely"
    );
    let seen = server.await.expect("scenario");
    assert_eq!(
        seen[3]["spec"]["replicas"], 3,
        "pods stay while they hold rooms"
    );
    let status = &seen[4]["status"];
    assert_eq!(status["drain"]["pods"], json!(["eu-sfu-1", "eu-sfu-2"]));
    assert_eq!(status["drain"]["roomsLeft"], 2);
    assert_eq!(status["drain"]["deadlineMs"], NOW + 600_000);
    assert_eq!(status["drainingReplicas"], 2);
    assert_eq!(condition(&seen[4], "Draining")["status"], "True");
    assert_eq!(condition(&seen[4], "Draining")["reason"], "WaitingForRooms");
    let told = drains.0.lock().expect("drains").clone();
    assert_eq!(
        told,
        vec![
            ("eu-sfu-1.ctl:7881".to_owned(), true),
            ("eu-sfu-2.ctl:7881".to_owned(), true)
        ]
    );

    // Next look: the rooms are gone (the pods report draining with none left).
    let mut drained = media_node(1);
    drained.status = serde_json::from_value(status.clone()).expect("status");
    let members = vec![
        member("eu-sfu-0", 4, Health::Serving),
        member("eu-sfu-1", 0, Health::Draining),
        member("eu-sfu-2", 0, Health::Draining),
    ];
    let Harness {
        ctx, api, drains, ..
    } = harness(members);
    let mut steps = vec![Step::GetStatefulSet(Some(3)), Step::ListPods(vec![])];
    steps.extend(applies());
    steps.extend([Step::PatchStatus, Step::Event("DrainFinished")]);
    let server = serve(api, steps);
    reconcile(Arc::new(drained), ctx).await.expect("reconciles");
    let seen = server.await.expect("scenario");
    assert_eq!(seen[3]["spec"]["replicas"], 1, "empty pods let go");
    assert!(seen[4]["status"].get("drain").is_none_or(Value::is_null));
    assert_eq!(condition(&seen[4], "Draining")["status"], "False");
    assert!(
        drains.0.lock().expect("drains").is_empty(),
        "nothing more to tell"
    );
}

#[tokio::test]
async fn a_paused_media_node_is_left_alone_and_says_so() {
    let Harness {
        ctx, api, drains, ..
    } = harness(vec![]);
    let mut node = media_node(3);
    node.metadata.annotations = Some([(PAUSE_ANNOTATION.to_owned(), "true".to_owned())].into());
    let server = serve(api, vec![Step::PatchStatus]);
    reconcile(Arc::new(node), ctx).await.expect("reconciles");
    let seen = server.await.expect("scenario");
    assert_eq!(condition(&seen[0], "Paused")["status"], "True");
    assert_eq!(
        condition(&seen[0], "Paused")["reason"],
        "PausedByAnnotation"
    );
    assert!(drains.0.lock().expect("drains").is_empty());
}

#[tokio::test]
async fn api_errors_back_off_exponentially_per_object_and_are_counted() {
    let Harness { ctx, api, .. } = harness(vec![]);
    let server = serve(
        api,
        vec![
            Step::GetFails(500),
            Step::GetFails(500),
            Step::GetFails(500),
        ],
    );
    let node = Arc::new(media_node(3));
    for _ in 0..3 {
        let error = reconcile(node.clone(), ctx.clone())
            .await
            .expect_err("the API failed");
        assert_eq!(error.reason(), "ApiServerError");
        assert_ne!(
            error_policy(node.clone(), &error, ctx.clone()),
            Action::await_change()
        );
    }
    server.await.expect("scenario");
    assert_eq!(ctx.failures("confer/eu"), 3);
    let metrics = ctx.metrics.render();
    assert!(
        metrics.contains("confer_operator_reconcile_failures_total{controller=\"medianode\",reason=\"ApiServerError\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("confer_operator_reconciles_total{controller=\"medianode\"} 3"));
}

#[tokio::test]
async fn backoff_doubles_from_one_second_with_jitter_up_to_five_minutes() {
    let Harness { ctx, .. } = harness(vec![]);
    for attempt in 0..12u32 {
        let base = Duration::from_secs(1u64 << attempt.min(8)).min(Duration::from_secs(300));
        let wait = ctx.backoff("confer/other");
        assert!(
            wait >= base.mul_f64(0.5) && wait <= base.mul_f64(1.5),
            "attempt {attempt}: {wait:?}"
        );
    }
    assert_eq!(ctx.failures("confer/eu"), 0, "per object");
    ctx.succeeded("confer/other");
    assert!(
        ctx.backoff("confer/other") <= Duration::from_millis(1_500),
        "a success resets it"
    );
}

#[tokio::test]
async fn at_the_deadline_remaining_rooms_move_before_the_pods_go() {
    let members = vec![
        member("eu-sfu-0", 1, Health::Serving),
        member("eu-sfu-1", 3, Health::Draining),
    ];
    let Harness {
        ctx, api, rooms, ..
    } = harness(members);
    let mut late = media_node(1);
    late.status = Some(crate::crd::MediaNodeStatus {
        drain: Some(crate::crd::DrainStatus {
            pods: vec!["eu-sfu-1".into()],
            started_at_ms: NOW - 600_000,
            deadline_ms: NOW,
            rooms_left: 3,
        }),
        ..Default::default()
    });
    let mut steps = vec![Step::GetStatefulSet(Some(2)), Step::ListPods(vec![])];
    steps.extend(applies());
    steps.extend([
        Step::PatchStatus,
        Step::Event("RoomsMoved"),
        Step::Event("DrainFinished"),
    ]);
    let server = serve(api, steps);
    reconcile(Arc::new(late), ctx).await.expect("reconciles");
    let seen = server.await.expect("scenario");
    assert_eq!(
        rooms.calls.lock().expect("calls").clone(),
        ["evacuate eu-sfu-1"]
    );
    assert_eq!(
        seen[3]["spec"]["replicas"], 1,
        "the pod goes once its rooms have moved"
    );
    assert_eq!(condition(&seen[4], "Draining")["status"], "False");
}

#[tokio::test]
async fn a_cordoned_pod_drains_without_shrinking_the_pool() {
    let members = vec![
        member("eu-sfu-0", 2, Health::Serving),
        member("eu-sfu-1", 1, Health::Serving),
    ];
    let Harness {
        ctx, api, drains, ..
    } = harness(members);
    let mut steps = vec![
        Step::GetStatefulSet(Some(2)),
        Step::ListPods(vec!["eu-sfu-0"]),
    ];
    steps.extend(applies());
    steps.extend([Step::PatchStatus, Step::Event("DrainStarted")]);
    let server = serve(api, steps);
    reconcile(Arc::new(media_node(2)), ctx)
        .await
        .expect("reconciles");
    let seen = server.await.expect("scenario");
    assert_eq!(seen[3]["spec"]["replicas"], 2, "a cordon removes no pod");
    assert_eq!(seen[4]["status"]["drain"]["pods"], json!(["eu-sfu-0"]));
    assert_eq!(seen[4]["status"]["drainingReplicas"], 1);
    assert_eq!(
        drains.0.lock().expect("drains").clone(),
        vec![("eu-sfu-0.ctl:7881".to_owned(), true)]
    );
}

#[test]
fn each_media_worker_gets_its_own_udp_port() {
    let mut node = media_node(2);
    node.spec.ports.media_workers = 3;
    let defaults = PodDefaults {
        image: "confer:test".into(),
        consul_addr: "http://consul:8500".into(),
        tls: None,
    };
    let config = resources::config_map(&node, &defaults);
    let data = config.data.expect("config map data");
    assert_eq!(data["CONFER_MEDIA_WORKERS"], "3");
    assert_eq!(data["CONFER_MEDIA_BIND"], "0.0.0.0:7882");
    let set = serde_json::to_value(resources::stateful_set(&node, &defaults, 2)).unwrap();
    let ports = &set["spec"]["template"]["spec"]["containers"][0]["ports"];
    let udp: Vec<(String, i64, i64)> = ports
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["protocol"] == "UDP")
        .map(|p| {
            let name = p["name"].as_str().unwrap().to_owned();
            (
                name,
                p["containerPort"].as_i64().unwrap(),
                p["hostPort"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        udp,
        vec![
            ("media".into(), 7882, 7882),
            ("media-1".into(), 7883, 7883),
            ("media-2".into(), 7884, 7884),
        ]
    );
    assert_eq!(ports[1]["name"], "control");
    assert_eq!(ports[2]["name"], "metrics");
}

#[test]
fn with_tls_sfu_pods_mount_the_secret_and_point_their_flags_into_it() {
    let node = media_node(1);
    let plain = PodDefaults {
        image: "confer:test".into(),
        consul_addr: "http://consul:8500".into(),
        tls: None,
    };
    let tls = PodDefaults {
        tls: Some(resources::SfuTls {
            secret: "confer-grpc-tls".into(),
            name: "confer.internal".into(),
        }),
        ..plain.clone()
    };
    let pod = |defaults: &PodDefaults| {
        let set = serde_json::to_value(resources::stateful_set(&node, defaults, 1)).unwrap();
        set["spec"]["template"]["spec"].clone()
    };

    let plain = pod(&plain);
    assert!(plain.get("volumes").is_none(), "{plain}");
    assert!(plain["containers"][0].get("volumeMounts").is_none());
    let env = plain["containers"][0]["env"].as_array().unwrap();
    assert!(
        env.iter()
            .all(|e| !e["name"].as_str().unwrap().starts_with("CONFER_GRPC_TLS")),
        "{plain}"
    );

    let secured = pod(&tls);
    assert_eq!(
        secured["volumes"],
        json!([{"name": "grpc-tls", "secret": {"secretName": "confer-grpc-tls"}}])
    );
    assert_eq!(
        secured["containers"][0]["volumeMounts"],
        json!([{"name": "grpc-tls", "mountPath": "/etc/confer/grpc-tls", "readOnly": true}])
    );
    let env: Vec<(String, String)> = secured["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_owned(),
                e["value"].as_str()?.to_owned(),
            ))
        })
        .collect();
    assert_eq!(
        env,
        [
            ("CONFER_GRPC_TLS_CERT", "/etc/confer/grpc-tls/tls.crt"),
            ("CONFER_GRPC_TLS_KEY", "/etc/confer/grpc-tls/tls.key"),
            ("CONFER_GRPC_TLS_CA", "/etc/confer/grpc-tls/ca.crt"),
            ("CONFER_GRPC_TLS_NAME", "confer.internal"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
}

#[test]
fn with_a_recordings_claim_sfu_pods_mount_it_and_record_there() {
    let mut node = media_node(1);
    node.spec.recordings_claim = Some("confer-recordings".into());
    let defaults = PodDefaults {
        image: "confer:test".into(),
        consul_addr: "http://consul:8500".into(),
        tls: None,
    };
    let set = serde_json::to_value(resources::stateful_set(&node, &defaults, 1)).unwrap();
    let pod = &set["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"],
        json!([{"name": "recordings", "persistentVolumeClaim": {"claimName": "confer-recordings"}}])
    );
    assert_eq!(
        pod["containers"][0]["volumeMounts"],
        json!([{"name": "recordings", "mountPath": "/var/lib/confer/recordings"}])
    );
    let env = pod["containers"][0]["env"].as_array().unwrap();
    assert!(
        env.contains(
            &json!({"name": "CONFER_RECORDINGS_DIR", "value": "/var/lib/confer/recordings"})
        ),
        "{env:?}"
    );
}
