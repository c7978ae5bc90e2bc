//! The operator's real kube-rs `Controller`s (watchers, the reconcile queue, `owns`,
//! the finalizer helper, server-side apply, the event recorder) against the loopback
//! Kubernetes API double, with the real room service in-process behind the Conference
//! controller. The chart's example MediaNode and Conference are applied as a platform
//! team would.
//!
//! No package here ships a Kubernetes API server: `confer-kube-double` keeps objects,
//! resource versions, generations, finalizers and watch streams; no kubelet or
//! StatefulSet controller runs, so the test plays the StatefulSet controller's part
//! (ready replicas in its status).

use std::sync::Arc;
use std::time::{Duration, Instant};

use confer_kube_double::KubeDouble;
use confer_operator::conference::rooms::RoomService;
use confer_operator::context::{Context, GrpcNodeControl};
use confer_operator::crd::{Conference, MediaNode};
use confer_operator::medianode::resources::PodDefaults;
use confer_operator::metrics::Metrics;
use confer_room::RoomApi as _;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::watch;

const NAMESPACE: &str = "confer";
const STATEFULSETS: &str = "apis/apps/v1/statefulsets";
const MEDIANODES: &str = "apis/confer.dev/v1alpha1/medianodes";
const CONFERENCES: &str = "apis/confer.dev/v1alpha1/conferences";
/// What the example MediaNode `sfu-eu-west` runs as.
const WORKLOAD: &str = "sfu-eu-west-sfu";

struct Cluster {
    double: KubeDouble,
    client: kube::Client,
    room: confer_room::RoomService,
    chat: confer_chat::ChatService,
    _stop: watch::Sender<bool>,
}

async fn cluster() -> anyhow::Result<Cluster> {
    confer_operator::leader::install_tls_provider();
    let double = KubeDouble::start().await?;
    let client = kube::Client::try_from(kube::Config::new(double.url().parse()?))?;
    let (stop, stopped) = watch::channel(false);
    let room = confer_room::start(
        confer_room::RoomConfig {
            anonymous_tenant: Some("acme".into()),
            ..confer_room::RoomConfig::default()
        },
        confer_room::Backends::in_memory(),
        confer_room::registry::SfuRegistry::discovered(
            confer_discovery::MemoryRegistry::new().watch(),
            Default::default(),
        ),
        Default::default(),
        stopped.clone(),
    )
    .await?;
    let chat = confer_chat::connect("sqlite::memory:", None).await?;
    let ctx = Context::new(
        client.clone(),
        Arc::new(RoomService(Arc::new(room.clone()))),
        watch::channel(Default::default()).1,
        Arc::new(GrpcNodeControl { tls: None }),
        PodDefaults {
            image: "confer:test".into(),
            consul_addr: "http://consul:8500".into(),
            tls: None,
        },
        Arc::new(Metrics::default()),
    )
    .with_chat(Arc::new(chat.clone()));
    tokio::spawn(confer_operator::run::controllers(
        client.clone(),
        Some(NAMESPACE.into()),
        Arc::new(ctx),
        stopped,
    ));
    Ok(Cluster {
        double,
        client,
        room,
        chat,
        _stop: stop,
    })
}

fn example<T: serde::de::DeserializeOwned>(file: &str) -> anyhow::Result<T> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../charts/confer/examples")
        .join(file);
    Ok(serde_yaml::from_str(&std::fs::read_to_string(path)?)?)
}

/// Waits until `check` finds what it wants in the double, or fails with the last view.
async fn until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(found) = check() {
            return Ok(found);
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_node_gets_its_workload_and_its_status_follows_the_pods() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let nodes: Api<MediaNode> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    let node: MediaNode = example("medianode.yaml")?;
    nodes.create(&PostParams::default(), &node).await?;

    // The workload, applied by the controller and owned by the MediaNode.
    let set = until("the StatefulSet", || {
        cluster.double.object(STATEFULSETS, NAMESPACE, WORKLOAD)
    })
    .await?;
    assert_eq!(set["spec"]["replicas"], 3);
    assert_eq!(set["metadata"]["ownerReferences"][0]["kind"], "MediaNode");
    for (resource, what) in [
        ("api/v1/services", "Service"),
        ("apis/policy/v1/poddisruptionbudgets", "PodDisruptionBudget"),
        ("api/v1/configmaps", "ConfigMap"),
    ] {
        let owned = until(what, || {
            cluster
                .double
                .objects(resource, NAMESPACE)
                .into_iter()
                .find(|o| o["metadata"]["name"] == WORKLOAD)
        })
        .await?;
        let owner = &owned["metadata"]["ownerReferences"][0];
        assert_eq!(
            (
                owner["kind"].as_str(),
                owner["name"].as_str(),
                owner["controller"].as_bool()
            ),
            (Some("MediaNode"), Some("sfu-eu-west"), Some(true)),
            "{what}"
        );
    }
    let status = until("the MediaNode's first status", || {
        let node = cluster
            .double
            .object(MEDIANODES, NAMESPACE, "sfu-eu-west")?;
        (node["status"]["observedGeneration"] == 1).then_some(node)
    })
    .await?;
    // No pod runs yet: nothing observed, nothing ready.
    assert_eq!(status["status"]["replicas"], 0);
    assert_eq!(status["status"]["readyReplicas"], 0);
    assert!(condition(&status, "Ready").is_some_and(|c| c["status"] == "False"));

    // The StatefulSet controller reports its pods ready: the MediaNode, which owns the
    // StatefulSet, is reconciled again and says so.
    let sets: Api<k8s_openapi::api::apps::v1::StatefulSet> =
        Api::namespaced(cluster.client.clone(), NAMESPACE);
    sets.patch_status(
        WORKLOAD,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"replicas": 3, "readyReplicas": 3}})),
    )
    .await?;
    until("three ready replicas in the MediaNode's status", || {
        let node = cluster
            .double
            .object(MEDIANODES, NAMESPACE, "sfu-eu-west")?;
        (node["status"]["readyReplicas"] == 3 && node["status"]["replicas"] == 3).then_some(())
    })
    .await?;

    // Scaled up by a platform team (or an HPA): the StatefulSet follows, and the status
    // names the new generation.
    nodes
        .patch(
            "sfu-eu-west",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await?;
    until("five replicas", || {
        let set = cluster.double.object(STATEFULSETS, NAMESPACE, WORKLOAD)?;
        (set["spec"]["replicas"] == 5).then_some(())
    })
    .await?;
    until("the status of generation 2", || {
        let node = cluster
            .double
            .object(MEDIANODES, NAMESPACE, "sfu-eu-west")?;
        (node["status"]["observedGeneration"] == 2).then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conference_is_a_room_until_it_is_deleted() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(cluster.client.clone(), NAMESPACE);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "all-hands", "namespace": NAMESPACE},
                "data": {"password": "czNjcjN0"}
            }))?,
        )
        .await?;
    let conferences: Api<Conference> = Api::namespaced(cluster.client.clone(), NAMESPACE);
    let conference: Conference = example("conference.yaml")?;
    conferences
        .create(&PostParams::default(), &conference)
        .await?;

    // The finalizer first, then the room with the declared settings, then status.
    let ready = until("the Conference Ready", || {
        let object = cluster.double.object(CONFERENCES, NAMESPACE, "all-hands")?;
        condition(&object, "Ready")
            .is_some_and(|c| c["status"] == "True")
            .then_some(object)
    })
    .await?;
    assert_eq!(ready["metadata"]["finalizers"], json!(["confer.dev/room"]));
    assert_eq!(ready["status"]["observedGeneration"], 1);
    assert_eq!(
        condition(&ready, "Scheduled").map(|c| c["reason"].clone()),
        Some(json!("WaitingForFirstJoin"))
    );
    let room = cluster
        .room
        .get_room("acme".into(), "all-hands".into())
        .await?;
    assert_eq!(room.settings.region, "eu-west");
    assert_eq!(room.settings.regions, ["us-east"]);
    assert_eq!(room.settings.max_participants, 500);
    assert!(
        !room.settings.allow_screen_share,
        "the declared host control reached the room"
    );
    assert!(room.settings.sip_dial_in, "the example takes calls");
    assert_eq!(room.settings.empty_timeout_secs, 300, "its session's wait");
    assert_eq!(
        ready["status"]["hostControls"],
        json!({"allowScreenShare": false})
    );
    assert!(
        room.has_password,
        "the Secret's password reached the room service"
    );
    // The declared chat retention reached the chat service.
    assert_eq!(ready["status"]["chatRetentionSeconds"], 2_592_000);
    let key = confer_chat::api::room_key("acme", "all-hands");
    assert_eq!(
        confer_chat::ChatApi::retention(&cluster.chat, key).await?,
        confer_chat::Retention {
            seconds: 2_592_000,
            own: true
        }
    );
    let events = cluster
        .double
        .objects("apis/events.k8s.io/v1/events", NAMESPACE);
    assert!(
        events.iter().any(|e| e["reason"] == "RoomCreated"),
        "a RoomCreated event: {events:?}"
    );

    // Deleted: the room goes first, then the finalizer, then the object.
    conferences.delete("all-hands", &Default::default()).await?;
    until("the Conference gone", || {
        cluster
            .double
            .object(CONFERENCES, NAMESPACE, "all-hands")
            .is_none()
            .then_some(())
    })
    .await?;
    let gone = cluster
        .room
        .get_room("acme".into(), "all-hands".into())
        .await;
    assert!(gone.is_err(), "the room was deleted: {gone:?}");
    Ok(())
}
