//! The Conference controller against a mock Kubernetes API (tower-test) and a fake
//! room service: finalizer first, then the room created with the declared settings
//! and the Secret's password, updated when the spec changes, deleted before the
//! resource goes; room-service failures back off.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use confer_room::api::{CreateRoom, UpdateRoom};
use confer_room::model::{Placement, RoomView};
use confer_room::{ErrorKind, RoomError};
use futures_util::future::BoxFuture;
use http::{Method, Request, Response};
use k8s_openapi::api::core::v1::SecretKeySelector;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::rooms::Rooms;
use super::*;
use crate::crd::condition_in_patch as condition;
use crate::crd::{ConferenceSpec, HostControls};
use crate::medianode::resources::PodDefaults;
use crate::metrics::Metrics;

/// Rooms by (tenant, name), with the password each was given.
type RoomTable = BTreeMap<(String, String), (RoomView, Option<String>)>;

/// The room service, in memory, recording what it was asked.
#[derive(Default)]
pub(crate) struct FakeRooms {
    pub rooms: Mutex<RoomTable>,
    pub calls: Mutex<Vec<String>>,
    pub unavailable: Mutex<bool>,
}

impl FakeRooms {
    fn record(&self, call: String) -> Result<(), RoomError> {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(call);
        if *self.unavailable.lock().unwrap_or_else(|p| p.into_inner()) {
            return Err(RoomError::new(
                ErrorKind::Unavailable,
                "unavailable",
                "room service down",
            ));
        }
        Ok(())
    }

    fn room(&self, tenant: &str, room: &str) -> Option<(RoomView, Option<String>)> {
        self.rooms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(tenant.to_owned(), room.to_owned()))
            .cloned()
    }
}

impl Rooms for FakeRooms {
    fn get(&self, tenant: &str, room: &str) -> BoxFuture<'_, Result<Option<RoomView>, RoomError>> {
        let result = self
            .record(format!("get {tenant}/{room}"))
            .map(|()| self.room(tenant, room).map(|(v, _)| v));
        Box::pin(async move { result })
    }

    fn create(
        &self,
        tenant: &str,
        create: CreateRoom,
    ) -> BoxFuture<'_, Result<RoomView, RoomError>> {
        let result = self
            .record(format!("create {tenant}/{}", create.name))
            .map(|()| {
                let view = RoomView {
                    name: create.name.clone(),
                    settings: create.settings,
                    has_password: create.password.is_some(),
                    created_at: 0,
                    active: false,
                    num_participants: 0,
                    placement: None,
                    placements: Vec::new(),
                };
                self.rooms.lock().unwrap_or_else(|p| p.into_inner()).insert(
                    (tenant.to_owned(), create.name),
                    (view.clone(), create.password),
                );
                view
            });
        Box::pin(async move { result })
    }

    fn update(
        &self,
        tenant: &str,
        room: &str,
        update: UpdateRoom,
    ) -> BoxFuture<'_, Result<RoomView, RoomError>> {
        let result =
            self.record(format!("update {tenant}/{room}"))
                .and_then(|()| {
                    let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
                    let (view, password) = rooms
                        .get_mut(&(tenant.to_owned(), room.to_owned()))
                        .ok_or_else(|| RoomError::not_found("room_not_found", "no such room"))?;
                    if let Some(changes) = update.settings {
                        view.settings = view.settings.patched(&changes).map_err(|err| {
                            RoomError::invalid("invalid_settings", err.to_string())
                        })?;
                    }
                    if let Some(new) = update.password {
                        view.has_password = !new.is_empty();
                        *password = (!new.is_empty()).then_some(new);
                    }
                    Ok(view.clone())
                });
        Box::pin(async move { result })
    }

    fn evacuate(&self, node: &str) -> BoxFuture<'_, Result<u32, RoomError>> {
        let result = self.record(format!("evacuate {node}")).map(|()| 1);
        Box::pin(async move { result })
    }

    fn delete(&self, tenant: &str, room: &str) -> BoxFuture<'_, Result<(), RoomError>> {
        let result = self.record(format!("delete {tenant}/{room}")).map(|()| {
            self.rooms
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&(tenant.to_owned(), room.to_owned()));
        });
        Box::pin(async move { result })
    }
}

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn conference(finalized: bool) -> Conference {
    let mut conference = Conference::new(
        "all-hands",
        ConferenceSpec {
            tenant: "acme".into(),
            home_region: "eu-west".into(),
            allowed_regions: vec!["eu-west".into(), "us-east".into()],
            max_participants: 500,
            waiting_room: true,
            password_secret_ref: Some(SecretKeySelector {
                name: "all-hands".into(),
                key: "password".into(),
                optional: None,
            }),
            recording: false,
            sip_dial_in: true,
            chat_retention_seconds: None,
            empty_timeout_seconds: None,
            host_controls: Default::default(),
        },
    );
    conference.metadata.namespace = Some("confer".into());
    conference.metadata.uid = Some("uid-ah".into());
    conference.metadata.generation = Some(2);
    if finalized {
        conference.metadata.finalizers = Some(vec![FINALIZER.to_owned()]);
    }
    conference
}

fn harness() -> (Arc<Context>, Arc<FakeRooms>, Handle) {
    let rooms = Arc::new(FakeRooms::default());
    let (ctx, api) = harness_with(rooms.clone());
    (ctx, rooms, api)
}

fn harness_with(rooms: Arc<FakeRooms>) -> (Arc<Context>, Handle) {
    let (ctx, api) = context(rooms);
    (Arc::new(ctx), api)
}

fn context(rooms: Arc<FakeRooms>) -> (Context, Handle) {
    let (service, api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let mut ctx = Context::new(
        kube::Client::new(service, "default"),
        rooms.clone(),
        watch::channel(Default::default()).1,
        Arc::new(crate::context::GrpcNodeControl { tls: None }),
        PodDefaults {
            image: "confer:test".into(),
            consul_addr: "http://consul:8500".into(),
            tls: None,
        },
        Arc::new(Metrics::default()),
    );
    ctx.clock = || 1_800_000_000_000;
    (ctx, api)
}

/// The chat service, in memory, recording the retentions it was given.
#[derive(Default)]
struct FakeChat {
    calls: Mutex<Vec<String>>,
}

impl FakeChat {
    fn record(&self, call: String) -> confer_chat::ChatResult<()> {
        self.calls.lock().expect("calls").push(call);
        Ok(())
    }
}

/// Only retentions are the operator's to give.
fn not_the_operators<T>() -> BoxFuture<'static, confer_chat::ChatResult<T>> {
    Box::pin(async {
        Err(confer_chat::ChatError::invalid(
            "unexpected",
            "not the operator's",
        ))
    })
}

impl confer_chat::ChatApi for FakeChat {
    fn send(
        &self,
        _: confer_chat::SendRequest,
    ) -> BoxFuture<'_, confer_chat::ChatResult<confer_chat::Sent>> {
        not_the_operators()
    }
    fn history(
        &self,
        _: String,
        _: confer_chat::Page,
    ) -> BoxFuture<'_, confer_chat::ChatResult<confer_chat::HistoryPage>> {
        not_the_operators()
    }
    fn set_retention(&self, room: String, secs: u64) -> BoxFuture<'_, confer_chat::ChatResult<()>> {
        Box::pin(async move { self.record(format!("set {room} {secs}")) })
    }
    fn retention(
        &self,
        _: String,
    ) -> BoxFuture<'_, confer_chat::ChatResult<confer_chat::Retention>> {
        not_the_operators()
    }
    fn clear_retention(&self, room: String) -> BoxFuture<'_, confer_chat::ChatResult<()>> {
        Box::pin(async move { self.record(format!("clear {room}")) })
    }
    fn delete_room(&self, _: String) -> BoxFuture<'_, confer_chat::ChatResult<()>> {
        not_the_operators()
    }
    fn files_to_remove(&self, _: u32) -> BoxFuture<'_, confer_chat::ChatResult<Vec<String>>> {
        not_the_operators()
    }
    fn files_removed(&self, _: Vec<String>) -> BoxFuture<'_, confer_chat::ChatResult<()>> {
        not_the_operators()
    }
}

enum Step {
    /// A JSON patch of the conference (the finalizer added or removed).
    JsonPatch,
    /// GET of the password Secret, answered at this resourceVersion.
    GetSecret(&'static str),
    PatchStatus,
    /// A Kubernetes Event with this reason.
    Event(&'static str),
}

fn serve(mut api: Handle, steps: Vec<Step>) -> tokio::task::JoinHandle<Vec<Value>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        for step in steps {
            let (request, send) = api
                .next_request()
                .await
                .expect("the reconcile made its next request");
            let (method, uri) = (request.method().clone(), request.uri().to_string());
            let content_type = request
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = request.into_body().collect_bytes().await.expect("body");
            let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let answer = match step {
                Step::JsonPatch => {
                    assert_eq!(method, Method::PATCH);
                    assert_eq!(content_type, "application/json-patch+json");
                    assert!(
                        uri.starts_with(
                            "/apis/confer.dev/v1alpha1/namespaces/confer/conferences/all-hands?"
                        ),
                        "{uri}"
                    );
                    serde_json::to_value(conference(true)).expect("json")
                }
                Step::GetSecret(version) => {
                    assert_eq!(method, Method::GET);
                    assert_eq!(uri, "/api/v1/namespaces/confer/secrets/all-hands");
                    json!({"apiVersion": "v1", "kind": "Secret",
                           "metadata": {"name": "all-hands", "namespace": "confer", "resourceVersion": version},
                           "data": {"password": "czNjcjN0"}})
                }
                Step::Event(reason) => {
                    assert_eq!(method, Method::POST);
                    assert_eq!(uri, "/apis/events.k8s.io/v1/namespaces/confer/events?");
                    assert_eq!(json["reason"], reason, "{json}");
                    assert_eq!(json["regarding"]["kind"], "Conference");
                    json.clone()
                }
                Step::PatchStatus => {
                    assert_eq!(method, Method::PATCH);
                    assert_eq!(
                        uri,
                        "/apis/confer.dev/v1alpha1/namespaces/confer/conferences/all-hands/status?"
                    );
                    let mut object = serde_json::to_value(conference(true)).expect("json");
                    object["status"] = json["status"].clone();
                    object
                }
            };
            let response = Response::builder()
                .status(200)
                .body(Body::from(serde_json::to_vec(&answer).expect("json")))
                .expect("response");
            send.send_response(response);
            seen.push(json);
        }
        seen
    })
}

#[tokio::test]
async fn a_new_conference_gets_the_finalizer_before_anything_else() {
    let (ctx, rooms, api) = harness();
    let server = serve(api, vec![Step::JsonPatch]);
    let action = reconcile(Arc::new(conference(false)), ctx)
        .await
        .expect("reconciles");
    assert_eq!(action, Action::await_change());
    let seen = server.await.expect("scenario");
    assert!(seen[0].to_string().contains(FINALIZER), "{}", seen[0]);
    assert!(
        rooms.calls.lock().expect("calls").is_empty(),
        "no room before the finalizer"
    );
}

#[tokio::test]
async fn the_room_is_created_with_the_declared_settings_and_password() {
    let (ctx, rooms, api) = harness();
    let server = serve(
        api,
        vec![
            Step::GetSecret("7"),
            Step::Event("RoomCreated"),
            Step::PatchStatus,
        ],
    );
    let action = reconcile(Arc::new(conference(true)), ctx)
        .await
        .expect("reconciles");
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));
    let seen = server.await.expect("scenario");
    let (view, password) = rooms.room("acme", "all-hands").expect("room created");
    assert_eq!(password.as_deref(), Some("s3cr3t"));
    assert!(view.settings.waiting_room);
    assert_eq!(view.settings.max_participants, 500);
    assert_eq!(view.settings.region, "eu-west");
    let status = &seen[2];
    assert_eq!(status["status"]["passwordSecretVersion"], "7");
    assert_eq!(status["status"]["observedGeneration"], 2);
    assert_eq!(condition(status, "Ready")["status"], "True");
    assert_eq!(
        condition(status, "Scheduled")["reason"],
        "WaitingForFirstJoin"
    );
    assert!(view.settings.sip_dial_in, "dial-in is declared");
    assert_eq!(
        condition(status, "FeaturesAvailable")["reason"],
        "AllAvailable",
        "SIP dial-in is there to have"
    );
}

#[test]
fn recording_is_given_as_a_host_control_and_available() {
    let mut recorded = conference(true);
    recorded.spec.recording = true;
    let mut changes = declared(&recorded);
    assert!(
        !changes.contains_key("recording"),
        "not named by every update"
    );
    changes.extend(host_control_changes(&recorded));
    assert_eq!(changes["recording"], true, "a new room starts recorded");
    let view = RoomView {
        name: "all-hands".into(),
        settings: settings(None, &changes),
        has_password: false,
        created_at: 0,
        active: true,
        num_participants: 0,
        placement: None,
        placements: Vec::new(),
    };
    let status = status(
        &recorded,
        &view,
        None,
        &confer_discovery::Snapshot::default(),
        0,
    );
    let features = status
        .conditions
        .iter()
        .find(|c| c.type_ == "FeaturesAvailable")
        .expect("condition");
    assert_eq!(
        (features.status.as_str(), features.reason.as_str()),
        ("True", "AllAvailable")
    );
    assert!(view.settings.recording);
    // Once given, a host's stop stands until the conference declares it again.
    recorded.status = Some(ConferenceStatus {
        host_controls: recorded.spec.given_controls(),
        ..ConferenceStatus::default()
    });
    assert!(host_control_changes(&recorded).is_empty());
}

/// The example conference reconciled into a new room: the fake room service, and the
/// conference with the status that reconcile wrote.
async fn created() -> (Arc<FakeRooms>, Conference) {
    let (ctx, rooms, api) = harness();
    let server = serve(
        api,
        vec![
            Step::GetSecret("7"),
            Step::Event("RoomCreated"),
            Step::PatchStatus,
        ],
    );
    reconcile(Arc::new(conference(true)), ctx)
        .await
        .expect("creates");
    let seen = server.await.expect("scenario");
    let mut conference = conference(true);
    conference.status = serde_json::from_value(seen[2]["status"].clone()).expect("status");
    (rooms, conference)
}

/// Changes the example room as the room service would (joins, host controls).
fn change_room(rooms: &FakeRooms, change: impl FnOnce(&mut RoomView)) {
    if let Some((view, _)) = rooms
        .rooms
        .lock()
        .expect("rooms")
        .get_mut(&("acme".to_owned(), "all-hands".to_owned()))
    {
        change(view);
    }
}

#[tokio::test]
async fn a_changed_spec_updates_the_room_and_status_shows_its_placement() {
    let (rooms, mut changed) = created().await;
    // Someone joined: the room service placed the room.
    change_room(&rooms, |view| {
        view.num_participants = 12;
        view.placement = Some(Placement {
            region: "eu-west".into(),
            sfu: "eu-sfu-1".into(),
            control: "x:1".into(),
        });
    });
    changed.spec.max_participants = 50;

    let (ctx, api) = harness_with(rooms.clone());
    // Same Secret version: the password is not sent again.
    let server = serve(api, vec![Step::GetSecret("7"), Step::PatchStatus]);
    reconcile(Arc::new(changed), ctx).await.expect("updates");
    let seen = server.await.expect("scenario");
    let (view, password) = rooms.room("acme", "all-hands").expect("room");
    assert_eq!(view.settings.max_participants, 50);
    assert_eq!(password.as_deref(), Some("s3cr3t"));
    let calls = rooms.calls.lock().expect("calls").clone();
    assert_eq!(
        calls,
        [
            "get acme/all-hands",
            "create acme/all-hands",
            "get acme/all-hands",
            "update acme/all-hands"
        ]
    );
    let status = &seen[1]["status"];
    assert_eq!(status["participants"], 12);
    assert_eq!(
        status["placements"],
        json!([{"region": "eu-west", "node": "eu-sfu-1"}])
    );
    assert_eq!(condition(&seen[1], "Scheduled")["reason"], "Placed");
}

#[tokio::test]
async fn deleting_a_conference_deletes_its_room_then_releases_the_finalizer() {
    let (ctx, rooms, api) = harness();
    rooms
        .create(
            "acme",
            CreateRoom {
                name: "all-hands".into(),
                settings: Default::default(),
                password: None,
            },
        )
        .await
        .expect("room exists");
    let mut deleting = conference(true);
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).expect("time"),
        ));
    let server = serve(api, vec![Step::Event("RoomDeleted"), Step::JsonPatch]);
    let action = reconcile(Arc::new(deleting), ctx).await.expect("cleans up");
    assert_eq!(action, Action::await_change());
    let seen = server.await.expect("scenario");
    assert!(rooms.room("acme", "all-hands").is_none(), "room deleted");
    assert!(
        seen[1].to_string().contains("remove"),
        "finalizer removed: {}",
        seen[1]
    );
}

#[tokio::test]
async fn a_room_service_outage_fails_the_reconcile_and_backs_off() {
    let (ctx, rooms, api) = harness();
    *rooms.unavailable.lock().expect("flag") = true;
    let server = serve(api, vec![Step::GetSecret("7")]);
    let conference = Arc::new(conference(true));
    let error = reconcile(conference.clone(), ctx.clone())
        .await
        .expect_err("room service down");
    server.await.expect("scenario");
    assert_eq!(error.reason(), "RoomServiceUnavailable");
    assert_ne!(
        error_policy(conference, &error, ctx.clone()),
        Action::await_change()
    );
    assert_eq!(ctx.failures("conference:confer/all-hands"), 1);
    assert!(
        ctx.metrics
            .render()
            .contains("reason=\"RoomServiceUnavailable\"} 1")
    );
}

/// A span's name and its parent's.
type SpanAndParent = (String, Option<String>);

/// Records each new span's name and its parent's name.
#[derive(Clone, Default)]
struct SpanParents(Arc<Mutex<Vec<SpanAndParent>>>);

impl<S> tracing_subscriber::Layer<S> for SpanParents
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let parent = if attrs.is_root() {
            None
        } else if let Some(parent) = attrs.parent() {
            ctx.span(parent).map(|span| span.name().to_owned())
        } else {
            ctx.lookup_current().map(|span| span.name().to_owned())
        };
        if let Ok(mut seen) = self.0.lock() {
            seen.push((attrs.metadata().name().to_owned(), parent));
        }
    }
}

/// A reconcile starts its own trace even when whatever ran it was inside a span (the
/// watch event that caused it is not a request), and what it does is inside it.
#[tokio::test]
async fn a_reconcile_is_the_root_of_its_own_trace() {
    use tracing::Instrument as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    let parents = SpanParents::default();
    let _default =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(parents.clone()));
    let (ctx, _rooms, _api) = harness();
    let work = async {
        let step = tracing::info_span!("step");
        async { Ok(Action::await_change()) }.instrument(step).await
    };
    crate::context::instrumented(&ctx, "conference", "confer/all-hands", work)
        .instrument(tracing::info_span!("watcher"))
        .await
        .expect("reconciled");
    let seen = parents.0.lock().expect("spans").clone();
    assert_eq!(
        seen,
        vec![
            ("watcher".to_owned(), None),
            ("reconcile".to_owned(), None),
            ("step".to_owned(), Some("reconcile".to_owned())),
        ]
    );
}

fn member(node: &str, region: &str, reported_at_ms: u64) -> confer_discovery::Member {
    confer_discovery::Member {
        registration: confer_discovery::Registration {
            id: confer_discovery::NodeId::from(node),
            region: region.into(),
            zone: String::new(),
            control: format!("{node}:7881"),
            capacity: 100,
        },
        health: confer_discovery::Health::Serving,
        report: Some(confer_placement::NodeReport {
            id: confer_placement::NodeId::from(node),
            region: region.into(),
            zone: String::new(),
            state: confer_placement::NodeState::Serving,
            capacity: 100,
            participants: 3,
            rooms: 1,
            reported_at_ms,
        }),
    }
}

#[test]
fn an_update_names_only_what_a_conference_declares() {
    let changes = declared(&conference(true));
    let mut names: Vec<&str> = changes.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "max_participants",
            "region",
            "regions",
            "sip_dial_in",
            "waiting_room"
        ]
    );
    let mut waits = conference(true);
    waits.spec.empty_timeout_seconds = Some(300);
    let changes = declared(&waits);
    assert_eq!(changes["empty_timeout_secs"], 300, "{changes:?}");
    assert_eq!(settings(None, &changes).empty_timeout_secs, 300);
}

#[tokio::test]
async fn what_hosts_change_during_the_call_survives_the_reconciles() {
    let (rooms, same) = created().await;
    // A host locks the room, stops screen sharing and keeps the chat to hosts.
    change_room(&rooms, |view| {
        view.settings.locked = true;
        view.settings.allow_screen_share = false;
        view.settings.allow_chat = false;
    });

    // Unchanged: nothing is sent to the room service.
    let (ctx, api) = harness_with(rooms.clone());
    let server = serve(api, vec![Step::GetSecret("7")]);
    reconcile(Arc::new(same.clone()), ctx)
        .await
        .expect("nothing to do");
    server.await.expect("scenario");
    // The spec changes: what it declares is updated, what the hosts set is kept.
    let mut changed = same;
    changed.spec.max_participants = 50;
    let (ctx, api) = harness_with(rooms.clone());
    let server = serve(api, vec![Step::GetSecret("7")]);
    reconcile(Arc::new(changed), ctx).await.expect("updates");
    server.await.expect("scenario");
    let (view, _) = rooms.room("acme", "all-hands").expect("room");
    assert_eq!(view.settings.max_participants, 50);
    assert!(view.settings.locked);
    assert!(!view.settings.allow_screen_share);
    assert!(!view.settings.allow_chat);
    let calls = rooms.calls.lock().expect("calls").clone();
    assert_eq!(
        calls,
        [
            "get acme/all-hands",
            "create acme/all-hands",
            "get acme/all-hands",
            "get acme/all-hands",
            "update acme/all-hands"
        ]
    );
}

#[test]
fn a_room_placed_in_two_regions_shows_both_placements_and_the_relay_between_them() {
    let now = 1_800_000_000_000i64;
    let placement = |region: &str, sfu: &str| Placement {
        region: region.into(),
        sfu: sfu.into(),
        control: format!("{sfu}:7881"),
    };
    let view = RoomView {
        name: "all-hands".into(),
        settings: settings(None, &declared(&conference(true))),
        has_password: false,
        created_at: 0,
        active: true,
        num_participants: 4,
        placement: Some(placement("eu-west", "eu-sfu-1")),
        placements: vec![
            placement("eu-west", "eu-sfu-1"),
            placement("us-east", "us-sfu-2"),
        ],
    };
    // The declared allowed regions reach the room service (the home one not twice).
    assert_eq!(view.settings.regions, ["us-east"]);
    let fresh = now as u64 - 1_000;
    let snapshot = confer_discovery::Snapshot {
        members: vec![
            member("eu-sfu-1", "eu-west", fresh),
            member("us-sfu-2", "us-east", fresh),
        ],
        stale: false,
        refreshed_at_ms: fresh,
    };
    let placed = status(&conference(true), &view, None, &snapshot, now);
    let as_json = serde_json::to_value(&placed).expect("status");
    assert_eq!(
        as_json["placements"],
        json!([
            {"region": "eu-west", "node": "eu-sfu-1"},
            {"region": "us-east", "node": "us-sfu-2"}
        ])
    );
    assert_eq!(
        as_json["relays"],
        json!([{"from": "eu-sfu-1", "to": "us-sfu-2", "healthy": true}])
    );

    // One end's load report is 6 s old: the relay is not called healthy.
    let mut old = snapshot.clone();
    old.members[1] = member("us-sfu-2", "us-east", now as u64 - 6_000);
    assert!(!status_relays_healthy(&view, &old, now));
    // Discovery cannot be reached: nothing is known to be healthy.
    let stale = confer_discovery::Snapshot {
        stale: true,
        ..snapshot
    };
    assert!(!status_relays_healthy(&view, &stale, now));
}

fn status_relays_healthy(view: &RoomView, snapshot: &confer_discovery::Snapshot, now: i64) -> bool {
    status(&conference(true), view, None, snapshot, now)
        .relays
        .iter()
        .all(|relay| relay.healthy)
}

#[tokio::test]
async fn a_declared_chat_retention_is_given_once_and_dropped_when_no_longer_declared() {
    let (rooms, mut declared) = created().await;
    declared.spec.chat_retention_seconds = Some(86_400);
    let chat = Arc::new(FakeChat::default());
    let with_chat = |rooms: &Arc<FakeRooms>| {
        let (ctx, api) = context(rooms.clone());
        (Arc::new(ctx.with_chat(chat.clone())), api)
    };

    // Declared: given to the chat service, and recorded in the status.
    let (ctx, api) = with_chat(&rooms);
    let server = serve(api, vec![Step::GetSecret("7"), Step::PatchStatus]);
    reconcile(Arc::new(declared.clone()), ctx)
        .await
        .expect("gives the retention");
    let seen = server.await.expect("scenario");
    assert_eq!(seen[1]["status"]["chatRetentionSeconds"], 86_400);
    declared.status = serde_json::from_value(seen[1]["status"].clone()).expect("status");

    // Unchanged: not given again (a tenant's own change through the API stands).
    let (ctx, api) = with_chat(&rooms);
    let server = serve(api, vec![Step::GetSecret("7")]);
    reconcile(Arc::new(declared.clone()), ctx)
        .await
        .expect("nothing to do");
    server.await.expect("scenario");

    // No longer declared: the room goes by the deployment's default again.
    let mut undeclared = declared;
    undeclared.spec.chat_retention_seconds = None;
    let (ctx, api) = with_chat(&rooms);
    let server = serve(api, vec![Step::GetSecret("7"), Step::PatchStatus]);
    reconcile(Arc::new(undeclared), ctx)
        .await
        .expect("drops the retention");
    let seen = server.await.expect("scenario");
    assert!(
        seen[1]["status"].get("chatRetentionSeconds").is_none(),
        "{}",
        seen[1]
    );
    assert_eq!(
        *chat.calls.lock().expect("calls"),
        ["set acme/all-hands 86400", "clear acme/all-hands"]
    );
}

#[tokio::test]
async fn a_declared_chat_retention_without_a_chat_service_fails_clearly() {
    let (rooms, mut declared) = created().await;
    declared.spec.chat_retention_seconds = Some(0);
    let (ctx, api) = harness_with(rooms);
    let server = serve(api, vec![Step::GetSecret("7")]);
    let err = reconcile(Arc::new(declared), ctx)
        .await
        .expect_err("no chat service");
    server.await.expect("scenario");
    assert_eq!(err.reason(), "ChatServiceFailed");
    assert!(err.to_string().contains("--chat-service"), "{err}");
}

/// Reconciles `conference` against `rooms`, the Kubernetes API answering `steps`;
/// returns the conference with the status it patched, if it patched one.
async fn reconciled(
    rooms: &Arc<FakeRooms>,
    mut conference: Conference,
    steps: Vec<Step>,
) -> Conference {
    let patches = steps
        .iter()
        .position(|step| matches!(step, Step::PatchStatus));
    let (ctx, api) = harness_with(rooms.clone());
    let server = serve(api, steps);
    reconcile(Arc::new(conference.clone()), ctx)
        .await
        .expect("reconciles");
    let seen = server.await.expect("scenario");
    if let Some(at) = patches {
        conference.status = serde_json::from_value(seen[at]["status"].clone()).expect("status");
    }
    conference
}

#[tokio::test]
async fn declared_host_controls_start_the_room_and_a_hosts_change_stands_until_they_change() {
    let rooms = Arc::new(FakeRooms::default());
    let mut declared = conference(true);
    declared.spec.host_controls = HostControls {
        locked: Some(true),
        allow_screen_share: None,
        allow_chat: Some(false),
        recording: None,
        chat_slow_mode_seconds: Some(30),
    };
    let created = vec![
        Step::GetSecret("7"),
        Step::Event("RoomCreated"),
        Step::PatchStatus,
    ];
    let declared = reconciled(&rooms, declared, created).await;
    let settings = |rooms: &FakeRooms| rooms.room("acme", "all-hands").expect("room").0.settings;
    let room = settings(&rooms);
    assert!(room.locked && !room.allow_chat, "{room:?}");
    assert_eq!(room.chat_slow_mode_secs, 30, "a webinar's slow mode");
    assert!(room.allow_screen_share, "unset: the default");
    let given = &declared.status.as_ref().expect("status").host_controls;
    assert_eq!(given, &declared.spec.host_controls);

    // During the call a host unlocks the room and opens the chat: the next reconcile,
    // with nothing changed in the spec, leaves that be.
    change_room(&rooms, |view| {
        view.settings.locked = false;
        view.settings.allow_chat = true;
        view.settings.chat_slow_mode_secs = 0;
    });
    let same = reconciled(&rooms, declared, vec![Step::GetSecret("7")]).await;
    let room = settings(&rooms);
    assert!(!room.locked && room.allow_chat, "{room:?}");
    assert_eq!(
        room.chat_slow_mode_secs, 0,
        "the host's slow mode off stands"
    );

    // The spec now also stops screen sharing: that one is given; the host's lock and
    // chat stand.
    let mut more = same;
    more.spec.host_controls.allow_screen_share = Some(false);
    let more = reconciled(&rooms, more, vec![Step::GetSecret("7"), Step::PatchStatus]).await;
    let room = settings(&rooms);
    assert!(!room.allow_screen_share, "{room:?}");
    assert!(!room.locked && room.allow_chat, "{room:?}");

    // A host closes the chat again, and then the spec opens it: a changed value is
    // given, over the host's.
    change_room(&rooms, |view| view.settings.allow_chat = false);
    let mut open = more;
    open.spec.host_controls.allow_chat = Some(true);
    let open = reconciled(&rooms, open, vec![Step::GetSecret("7"), Step::PatchStatus]).await;
    assert!(settings(&rooms).allow_chat);
    assert_eq!(
        open.status.expect("status").host_controls.allow_chat,
        Some(true)
    );
    let calls = rooms.calls.lock().expect("calls").clone();
    assert_eq!(
        calls,
        [
            "get acme/all-hands",
            "create acme/all-hands",
            "get acme/all-hands",
            "get acme/all-hands",
            "update acme/all-hands",
            "get acme/all-hands",
            "update acme/all-hands"
        ]
    );
}
