//! A test double for the Kubernetes API, on a loopback port.
//!
//! - Leases, as leader election uses them: get, create, server-side apply and
//!   strategic merge patch, with the API server's rule that a server-side apply taking
//!   `spec.holderIdentity` from another field manager is a 409 Conflict.
//! - Every other resource through a generic object store ([`objects`]): get, list and
//!   watch, create, the patch flavours, the status subresource, delete with finalizers:
//!   enough for kube-rs's `Controller` to run the operator's reconcilers against it.
//!
//! A path that names no resource answers 404 with a `Status` body, as the API server
//! does. No package here ships a Kubernetes API server; the product uses the real kube
//! client against this.

mod objects;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde_json::{Value, json};

/// A running double; serves until the runtime ends.
#[derive(Clone)]
pub struct KubeDouble {
    pub addr: SocketAddr,
    leases: Leases,
    objects: objects::Store,
}

impl KubeDouble {
    pub async fn start() -> std::io::Result<Self> {
        let leases = Leases::default();
        let store = objects::Store::default();
        let generic = store.clone();
        let app = axum::Router::new()
            .route(
                "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases",
                axum::routing::post(create_lease),
            )
            .route(
                "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}",
                get(get_lease).patch(patch_lease),
            )
            .with_state(leases.clone())
            .fallback(
                move |method: axum::http::Method,
                      uri: axum::http::Uri,
                      headers: HeaderMap,
                      body: Bytes| {
                    let store = generic.clone();
                    async move { store.handle(method, uri, headers, body).await }
                },
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self {
            addr,
            leases,
            objects: store,
        })
    }

    /// The object at `resource` (`<api prefix>/<plural>`, e.g.
    /// `apis/apps/v1/statefulsets`) `namespace/name`, as the API would return it.
    pub fn object(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.objects.get(resource, namespace, name)
    }

    /// Every object of `resource` in `namespace`.
    pub fn objects(&self, resource: &str, namespace: &str) -> Vec<Value> {
        self.objects.list(resource, namespace)
    }

    /// The API server's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Who holds the Lease `namespace/name` now.
    pub fn holder(&self, namespace: &str, name: &str) -> Option<String> {
        self.leases
            .lock()
            .expect("lease store")
            .get(&(namespace.to_owned(), name.to_owned()))
            .and_then(|lease| {
                lease.object["spec"]["holderIdentity"]
                    .as_str()
                    .map(str::to_owned)
            })
    }

    /// A kubeconfig naming this server (no credentials), default namespace `namespace`.
    pub fn kubeconfig(&self, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster:\n    server: {}\nusers:\n- name: double\n  user: {{}}\ncontexts:\n- name: double\n  context:\n    cluster: double\n    user: double\n    namespace: {namespace}\ncurrent-context: double\n",
            self.url()
        )
    }
}

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
