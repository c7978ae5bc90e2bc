//! Every other resource: a generic object store behind the API server's REST paths,
//! enough for kube-rs's `Controller`, `watcher`, finalizer helper, server-side apply
//! and event recorder to run against it.
//!
//! Served: `GET` of an object or a collection (namespaced or across namespaces), with
//! `watch=true` a stream of `ADDED`/`MODIFIED`/`DELETED` events after the given
//! `resourceVersion`; `POST` (create, `generateName`); `PATCH` as server-side apply,
//! JSON merge patch, strategic merge (taken as a merge) or JSON patch, on the object or
//! its `status` subresource; `DELETE`, which with finalizers only sets
//! `deletionTimestamp` (the object goes when its last finalizer is removed).
//! Resource versions are one counter; `metadata.generation` moves when `spec` changes;
//! a write that changes nothing is not a change (no new version, no watch event).
//!
//! Not modelled: field ownership for anything but Leases (an apply merges into what is
//! there), garbage collection through owner references, admission, validation against
//! schemas, label and field selectors.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// Where an object lives: `<api prefix>/<plural>` (e.g. `apis/apps/v1/statefulsets`),
/// namespace, name.
type Key = (String, String, String);

/// One change, as a watch reports it.
#[derive(Clone, Debug)]
struct Change {
    resource: String,
    namespace: String,
    kind: &'static str,
    object: Value,
    version: u64,
}

#[derive(Clone)]
pub(crate) struct Store {
    inner: Arc<Mutex<Inner>>,
    changes: broadcast::Sender<Change>,
}

#[derive(Default)]
struct Inner {
    objects: BTreeMap<Key, Value>,
    version: u64,
    /// Every change, for watches that start from an older version.
    log: Vec<Change>,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            changes: broadcast::channel(4096).0,
        }
    }
}

/// A request path taken apart.
struct Target {
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

fn parse(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (prefix, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => (format!("api/{version}"), rest),
        ["apis", group, version, rest @ ..] => (format!("apis/{group}/{version}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", namespace, rest @ ..] if !rest.is_empty() => {
            (Some((*namespace).to_owned()), rest)
        }
        rest => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return None,
    };
    if sub.is_some_and(|sub| sub != "status") {
        return None;
    }
    Some(Target {
        resource: format!("{prefix}/{plural}"),
        namespace,
        name: name.map(str::to_owned),
        status: sub.is_some(),
    })
}

pub(crate) fn failure(code: StatusCode, reason: &str, message: &str) -> Response {
    (
        code,
        axum::Json(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "reason": reason, "message": message, "code": code.as_u16(),
        })),
    )
        .into_response()
}

fn not_found(name: &str) -> Response {
    failure(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{name:?} not found"),
    )
}

fn query_param(uri: &Uri, key: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.to_owned())
    })
}

impl Store {
    /// The object `resource` (`<api prefix>/<plural>`) `namespace/name`, if present.
    pub(crate) fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = (resource.to_owned(), namespace.to_owned(), name.to_owned());
        self.lock().objects.get(&key).cloned()
    }

    /// Every object of `resource` in `namespace`.
    pub(crate) fn list(&self, resource: &str, namespace: &str) -> Vec<Value> {
        self.lock()
            .objects
            .iter()
            .filter(|((r, ns, _), _)| r == resource && ns == namespace)
            .map(|(_, object)| object.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) async fn handle(
        &self,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let Some(target) = parse(uri.path()) else {
            return failure(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            );
        };
        match (method, target.name.clone()) {
            (Method::GET, None)
                if query_param(&uri, "watch").is_some_and(|w| w == "true" || w == "1") =>
            {
                let since = query_param(&uri, "resourceVersion")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                self.watch(target, since)
            }
            (Method::GET, None) => self.list_response(&target),
            (Method::GET, Some(name)) => {
                let namespace = target.namespace.unwrap_or_default();
                match self.get(&target.resource, &namespace, &name) {
                    Some(object) => axum::Json(object).into_response(),
                    None => not_found(&name),
                }
            }
            (Method::POST, None) => self.create(&target, &body),
            (Method::PATCH, Some(name)) => self.patch(&target, &name, &headers, &body),
            (Method::PUT, Some(name)) => self.replace(&target, &name, &body),
            (Method::DELETE, Some(name)) => self.delete(&target, &name),
            _ => failure(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "not supported by the double",
            ),
        }
    }

    fn list_response(&self, target: &Target) -> Response {
        let inner = self.lock();
        let items: Vec<Value> = inner
            .objects
            .iter()
            .filter(|((r, ns, _), _)| {
                *r == target.resource && target.namespace.as_ref().is_none_or(|want| want == ns)
            })
            .map(|(_, object)| object.clone())
            .collect();
        axum::Json(json!({
            "kind": "List",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": inner.version.to_string()},
            "items": items,
        }))
        .into_response()
    }

    fn watch(&self, target: Target, since: u64) -> Response {
        // Subscribed before the log is read: nothing falls between the two.
        let live = self.changes.subscribe();
        let matches = {
            let resource = target.resource.clone();
            let namespace = target.namespace.clone();
            move |change: &Change| {
                change.resource == resource
                    && namespace.as_ref().is_none_or(|ns| *ns == change.namespace)
            }
        };
        let backlog: Vec<Change> = self
            .lock()
            .log
            .iter()
            .filter(|change| change.version > since && matches(change))
            .cloned()
            .collect();
        let last = backlog.last().map_or(since, |change| change.version);
        let stream = watch_stream(backlog, live, move |change| {
            change.version > last && matches(change)
        });
        Response::builder()
            .header("content-type", "application/json")
            .body(Body::from_stream(stream))
            .unwrap_or_else(|_| {
                failure(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "watch")
            })
    }

    fn next_version(inner: &mut Inner) -> u64 {
        inner.version += 1;
        inner.version
    }

    fn record(&self, inner: &mut Inner, key: &Key, kind: &'static str, object: Value) {
        let change = Change {
            resource: key.0.clone(),
            namespace: key.1.clone(),
            kind,
            object,
            version: inner.version,
        };
        inner.log.push(change.clone());
        let _ = self.changes.send(change);
    }

    fn create(&self, target: &Target, body: &[u8]) -> Response {
        let Ok(mut object) = serde_json::from_slice::<Value>(body) else {
            return failure(StatusCode::BAD_REQUEST, "BadRequest", "not JSON");
        };
        let namespace = target.namespace.clone().unwrap_or_default();
        let mut inner = self.lock();
        let mut name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() {
            let Some(prefix) = object["metadata"]["generateName"].as_str() else {
                return failure(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "metadata.name is required",
                );
            };
            name = format!("{prefix}{}", inner.version + 1);
        }
        let key = (target.resource.clone(), namespace.clone(), name.clone());
        if inner.objects.contains_key(&key) {
            return failure(
                StatusCode::CONFLICT,
                "AlreadyExists",
                &format!("{name:?} already exists"),
            );
        }
        let version = Self::next_version(&mut inner);
        let metadata = &mut object["metadata"];
        metadata["name"] = json!(name);
        if !namespace.is_empty() {
            metadata["namespace"] = json!(namespace);
        }
        metadata["uid"] = json!(format!("uid-{version}"));
        metadata["resourceVersion"] = json!(version.to_string());
        metadata["generation"] = json!(1);
        metadata["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        inner.objects.insert(key.clone(), object.clone());
        self.record(&mut inner, &key, "ADDED", object.clone());
        (StatusCode::CREATED, axum::Json(object)).into_response()
    }

    fn patch(&self, target: &Target, name: &str, headers: &HeaderMap, body: &[u8]) -> Response {
        let Ok(patch) = serde_json::from_slice::<Value>(body) else {
            return failure(StatusCode::BAD_REQUEST, "BadRequest", "not JSON");
        };
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let namespace = target.namespace.clone().unwrap_or_default();
        let key = (target.resource.clone(), namespace.clone(), name.to_owned());
        let existing = self.lock().objects.get(&key).cloned();
        let Some(before) = existing else {
            if content_type.starts_with("application/apply-patch") && !target.status {
                // Server-side apply creates what is not there.
                let mut object = patch;
                object["metadata"]["name"] = json!(name);
                let body = object.to_string();
                return self.create(target, body.as_bytes());
            }
            return not_found(name);
        };
        let mut after = before.clone();
        if content_type.starts_with("application/json-patch") {
            let Ok(operations) = serde_json::from_value::<json_patch::Patch>(patch) else {
                return failure(StatusCode::BAD_REQUEST, "BadRequest", "not a JSON patch");
            };
            // The API server's JSON patch takes a `test` of an absent field against
            // `null` as passed (the finalizer helper relies on it); RFC 6902 does not.
            let operations: Vec<json_patch::PatchOperation> = operations
                .0
                .into_iter()
                .filter(|op| match op {
                    json_patch::PatchOperation::Test(test) => {
                        !(test.value.is_null() && after.pointer(test.path.as_str()).is_none())
                    }
                    _ => true,
                })
                .collect();
            if let Err(err) = json_patch::patch(&mut after, &operations) {
                return failure(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    &err.to_string(),
                );
            }
        } else {
            json_patch::merge(&mut after, &patch);
        }
        self.store_update(key, &before, after, target.status)
    }

    fn replace(&self, target: &Target, name: &str, body: &[u8]) -> Response {
        let Ok(object) = serde_json::from_slice::<Value>(body) else {
            return failure(StatusCode::BAD_REQUEST, "BadRequest", "not JSON");
        };
        let namespace = target.namespace.clone().unwrap_or_default();
        let key = (target.resource.clone(), namespace, name.to_owned());
        let Some(before) = self.lock().objects.get(&key).cloned() else {
            return not_found(name);
        };
        self.store_update(key, &before, object, target.status)
    }

    /// Stores a changed object: the status subresource changes only `status`, the main
    /// resource everything but `status`; identity fields stay the server's.
    fn store_update(&self, key: Key, before: &Value, mut after: Value, status: bool) -> Response {
        if status {
            let new_status = after["status"].clone();
            after = before.clone();
            after["status"] = new_status;
        } else if before.get("status").is_some() || after.get("status").is_some() {
            after["status"] = before["status"].clone();
            if after["status"].is_null()
                && let Some(map) = after.as_object_mut()
            {
                map.remove("status");
            }
        }
        for field in [
            "uid",
            "creationTimestamp",
            "name",
            "namespace",
            "deletionTimestamp",
        ] {
            after["metadata"][field] = before["metadata"][field].clone();
            if after["metadata"][field].is_null()
                && let Some(map) = after["metadata"].as_object_mut()
            {
                map.remove(field);
            }
        }
        let mut inner = self.lock();
        after["metadata"]["resourceVersion"] = before["metadata"]["resourceVersion"].clone();
        after["metadata"]["generation"] = before["metadata"]["generation"].clone();
        if after == *before {
            // A no-op write changes nothing and tells no watcher, as on a real API
            // server (else a controller that owns what it applies would loop).
            return axum::Json(after).into_response();
        }
        let generation = before["metadata"]["generation"].as_i64().unwrap_or(1);
        after["metadata"]["generation"] = json!(if after["spec"] != before["spec"] {
            generation + 1
        } else {
            generation
        });
        let version = Self::next_version(&mut inner);
        after["metadata"]["resourceVersion"] = json!(version.to_string());
        let finalized = after["metadata"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty);
        if after["metadata"]["deletionTimestamp"].is_string() && finalized {
            inner.objects.remove(&key);
            self.record(&mut inner, &key, "DELETED", after.clone());
        } else {
            inner.objects.insert(key.clone(), after.clone());
            self.record(&mut inner, &key, "MODIFIED", after.clone());
        }
        axum::Json(after).into_response()
    }

    fn delete(&self, target: &Target, name: &str) -> Response {
        let namespace = target.namespace.clone().unwrap_or_default();
        let key = (target.resource.clone(), namespace, name.to_owned());
        let mut inner = self.lock();
        let Some(mut object) = inner.objects.get(&key).cloned() else {
            return not_found(name);
        };
        let version = Self::next_version(&mut inner);
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        let finalizers = object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if finalizers {
            object["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:01Z");
            inner.objects.insert(key.clone(), object.clone());
            self.record(&mut inner, &key, "MODIFIED", object.clone());
        } else {
            inner.objects.remove(&key);
            self.record(&mut inner, &key, "DELETED", object.clone());
        }
        axum::Json(object).into_response()
    }
}

fn watch_line(change: &Change) -> Result<Bytes, std::convert::Infallible> {
    let mut line = json!({"type": change.kind, "object": change.object}).to_string();
    line.push('\n');
    Ok(Bytes::from(line))
}

/// The backlog's lines, then live changes that pass `wanted`. A watcher that falls
/// behind is cut off and starts over, as with a real API server's "too old resource
/// version".
fn watch_stream(
    backlog: Vec<Change>,
    live: broadcast::Receiver<Change>,
    wanted: impl Fn(&Change) -> bool + Send + 'static,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
    use futures_util::StreamExt as _;
    let first: Vec<_> = backlog.iter().map(watch_line).collect();
    let live = futures_util::stream::unfold(live, |mut live| async move {
        let change = live.recv().await.ok()?;
        Some((change, live))
    });
    futures_util::stream::iter(first).chain(
        live.filter(move |change| std::future::ready(wanted(change)))
            .map(|change| watch_line(&change)),
    )
}
