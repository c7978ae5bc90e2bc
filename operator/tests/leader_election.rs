//! Leader election against a loopback emulation of the Kubernetes Lease API: two
//! operator replicas campaign for the `confer-operator` Lease through the real kube
//! client and kube-lease-manager; one leads, the other waits; when the leader gives
//! the Lease up, the other takes it within a Lease term.
//!
//! No package here ships a Kubernetes API server. The emulator serves the few Lease
//! endpoints the election uses (get, create, server-side apply and strategic merge
//! patches), with resource versions and the API server's rule that a server-side apply
//! taking `spec.holderIdentity` from another field manager is a 409 Conflict. Replicas
//! that start together race for an orphaned Lease; one ends up leading.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use confer_operator::leader::{self, LEASE, LeaseConfig};
use serde_json::{Value, json};
use tokio::sync::watch;

#[derive(Default)]
struct Lease {
    object: Value,
    /// The field manager that set `spec.holderIdentity`.
    holder_manager: Option<String>,
}

type Leases = Arc<Mutex<HashMap<(String, String), Lease>>>;

fn status(code: StatusCode, reason: &str, message: &str) -> (StatusCode, Json<Value>) {
    (
        code,
        Json(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "reason": reason, "message": message, "code": code.as_u16(),
        })),
    )
}

async fn get_lease(
    State(leases): State<Leases>,
    Path((namespace, name)): Path<(String, String)>,
) -> (StatusCode, Json<Value>) {
    match leases
        .lock()
        .expect("lease store")
        .get(&(namespace, name.clone()))
    {
        Some(lease) => (StatusCode::OK, Json(lease.object.clone())),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("leases {name:?} not found"),
        ),
    }
}

async fn create_lease(
    State(leases): State<Leases>,
    Path(namespace): Path<String>,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    let Ok(mut object) = serde_json::from_slice::<Value>(&body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON");
    };
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut leases = leases.lock().expect("lease store");
    let key = (namespace.clone(), name.clone());
    if leases.contains_key(&key) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            &format!("leases {name:?} already exists"),
        );
    }
    object["metadata"]["namespace"] = json!(namespace);
    object["metadata"]["resourceVersion"] = json!("1");
    leases.insert(
        key,
        Lease {
            object: object.clone(),
            holder_manager: None,
        },
    );
    (StatusCode::CREATED, Json(object))
}

async fn patch_lease(
    State(leases): State<Leases>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    // Patches come as JSON whatever their content type (apply, strategic merge).
    let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON");
    };
    let manager = query.get("fieldManager").cloned().unwrap_or_default();
    let apply = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/apply-patch"));
    let mut leases = leases.lock().expect("lease store");
    let Some(lease) = leases.get_mut(&(namespace, name.clone())) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("leases {name:?} not found"),
        );
    };
    let held_by = lease.object["spec"]["holderIdentity"].clone();
    let wanted = &patch["spec"]["holderIdentity"];
    if apply
        && !wanted.is_null()
        && !held_by.is_null()
        && *wanted != held_by
        && lease.holder_manager.as_deref() != Some(manager.as_str())
    {
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            &format!(
                "Apply failed with 1 conflict: conflict with {:?}: .spec.holderIdentity",
                lease.holder_manager
            ),
        );
    }
    if !lease.object["spec"].is_object() {
        lease.object["spec"] = json!({});
    }
    if let Some(fields) = patch["spec"].as_object() {
        for (field, value) in fields {
            if value.is_null() {
                lease.object["spec"]
                    .as_object_mut()
                    .expect("spec is an object")
                    .remove(field);
            } else {
                lease.object["spec"][field] = value.clone();
            }
        }
    }
    if patch["spec"].get("holderIdentity").is_some() {
        lease.holder_manager = (!wanted.is_null()).then_some(manager);
    }
    let version: u64 = lease.object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    lease.object["metadata"]["resourceVersion"] = json!((version + 1).to_string());
    (StatusCode::OK, Json(lease.object.clone()))
}

async fn emulator() -> anyhow::Result<(kube::Client, Leases)> {
    let leases = Leases::default();
    let app = axum::Router::new()
        .route(
            "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases",
            axum::routing::post(create_lease),
        )
        .route(
            "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}",
            get(get_lease).patch(patch_lease),
        )
        .with_state(leases.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    leader::install_tls_provider();
    let client = kube::Client::try_from(kube::Config::new(url.parse()?))?;
    Ok((client, leases))
}

fn short_terms(identity: &str) -> LeaseConfig {
    LeaseConfig {
        duration_secs: 2,
        grace_secs: 1,
        ..LeaseConfig::new("confer", identity)
    }
}

async fn until_leading(
    leading: &mut watch::Receiver<bool>,
    within: Duration,
) -> anyhow::Result<()> {
    tokio::time::timeout(within, leading.wait_for(|leader| *leader))
        .await
        .map_err(|_| anyhow::anyhow!("not leading within {within:?}"))??;
    Ok(())
}

fn holder(leases: &Leases) -> Option<String> {
    leases
        .lock()
        .expect("lease store")
        .get(&("confer".to_owned(), LEASE.to_owned()))
        .and_then(|lease| {
            lease.object["spec"]["holderIdentity"]
                .as_str()
                .map(str::to_owned)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_the_other_takes_over_when_it_stops() -> anyhow::Result<()> {
    let (client, leases) = emulator().await?;
    let mut a = leader::campaign(client.clone(), &short_terms("replica-a")).await?;
    until_leading(&mut a, Duration::from_secs(5)).await?;
    assert_eq!(holder(&leases).as_deref(), Some("replica-a"));

    // A second replica campaigns while the first holds and renews the Lease: it never
    // leads, over more than two Lease terms.
    let mut b = leader::campaign(client.clone(), &short_terms("replica-b")).await?;
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(5) {
        assert!(!*b.borrow(), "two leaders at once");
        assert!(*a.borrow(), "the holder lost a Lease it renews");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(holder(&leases).as_deref(), Some("replica-a"));

    // The leader stops (its campaign ends and gives the Lease up): the other leads.
    drop(a);
    until_leading(&mut b, Duration::from_secs(6)).await?;
    assert_eq!(holder(&leases).as_deref(), Some("replica-b"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_get_one_leader() -> anyhow::Result<()> {
    let (client, leases) = emulator().await?;
    let terms = [
        short_terms("replica-a"),
        short_terms("replica-b"),
        short_terms("replica-c"),
    ];
    let (a, b, c) = tokio::join!(
        leader::campaign(client.clone(), &terms[0]),
        leader::campaign(client.clone(), &terms[1]),
        leader::campaign(client.clone(), &terms[2]),
    );
    let replicas = [a?, b?, c?];
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut led_by = None;
    while Instant::now() < deadline {
        let leading: Vec<usize> = (0..3).filter(|&i| *replicas[i].borrow()).collect();
        assert!(leading.len() <= 1, "several leaders at once: {leading:?}");
        if let Some(&one) = leading.first() {
            assert!(
                led_by.is_none_or(|before| before == one),
                "leadership moved while its holder renewed it"
            );
            led_by = Some(one);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let one = led_by.ok_or_else(|| anyhow::anyhow!("nobody leads"))?;
    let names = ["replica-a", "replica-b", "replica-c"];
    assert_eq!(holder(&leases).as_deref(), Some(names[one]));
    Ok(())
}
