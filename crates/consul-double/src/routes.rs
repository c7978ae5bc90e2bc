//! The HTTP endpoints, in Consul's shapes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use crate::state::{Check, CheckStatus, KvValue, Service, Shared, health_entry, parse_duration};

type App = State<Arc<Shared>>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/agent/service/register", put(register))
        .route("/v1/agent/service/deregister/{id}", put(deregister))
        .route("/v1/agent/service/{id}", get(agent_service))
        .route("/v1/agent/check/update/{id}", put(update_check))
        .route("/v1/health/service/{service}", get(health))
        .route("/v1/kv/{*key}", get(kv_get).put(kv_put).delete(kv_delete))
        .layer(middleware::from_fn_with_state(shared.clone(), leader))
        .with_state(shared)
}

/// A cluster without a leader answers every request with this.
async fn leader(State(shared): App, request: Request, next: Next) -> Response {
    if !shared.available() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "No cluster leader").into_response();
    }
    next.run(request).await
}

fn bad_request(message: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, message.into()).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Registration {
    #[serde(rename = "ID", default)]
    id: Option<String>,
    name: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    address: String,
    #[serde(default)]
    port: u16,
    #[serde(default)]
    meta: BTreeMap<String, String>,
    check: Option<CheckDefinition>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CheckDefinition {
    #[serde(rename = "CheckID", default)]
    check_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "TTL", default)]
    ttl: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    deregister_critical_service_after: Option<String>,
}

async fn register(State(shared): App, body: Bytes) -> Response {
    let registration: Registration = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(error) => return bad_request(format!("Request decode failed: {error}")),
    };
    if registration.name.is_empty() {
        return bad_request("Missing service name");
    }
    let id = registration.id.unwrap_or_else(|| registration.name.clone());
    let check = match registration.check.map(|c| check_of(&id, c)).transpose() {
        Ok(check) => check,
        Err(message) => return bad_request(message),
    };
    let service = Service {
        id: id.clone(),
        name: registration.name,
        tags: registration.tags,
        address: registration.address,
        port: registration.port,
        meta: registration.meta,
        check,
    };
    shared.write(|catalog| {
        catalog.services.insert(id, service);
        catalog.bump();
    });
    StatusCode::OK.into_response()
}

fn check_of(service_id: &str, definition: CheckDefinition) -> Result<Check, String> {
    let ttl = definition
        .ttl
        .map(|t| parse_duration(&t).ok_or(format!("Invalid TTL {t:?}")))
        .transpose()?;
    let status = match definition.status.as_deref() {
        None | Some("") => CheckStatus::Critical,
        Some(status) => {
            CheckStatus::parse(status).ok_or(format!("Invalid check status {status:?}"))?
        }
    };
    let deregister_after = definition
        .deregister_critical_service_after
        .map(|t| parse_duration(&t).ok_or(format!("Invalid DeregisterCriticalServiceAfter {t:?}")))
        .transpose()?;
    let now = Instant::now();
    Ok(Check {
        id: definition
            .check_id
            .unwrap_or_else(|| format!("service:{service_id}")),
        name: definition
            .name
            .unwrap_or_else(|| "Service check".to_owned()),
        status,
        output: String::new(),
        ttl,
        deadline: ttl.map(|ttl| now + ttl),
        deregister_after,
        critical_since: (status == CheckStatus::Critical).then_some(now),
    })
}

async fn deregister(State(shared): App, Path(id): Path<String>) -> Response {
    let removed = shared.write(|catalog| {
        let removed = catalog.services.remove(&id).is_some();
        if removed {
            catalog.bump();
        }
        removed
    });
    if removed {
        StatusCode::OK.into_response()
    } else {
        (StatusCode::NOT_FOUND, format!("Unknown service ID {id:?}")).into_response()
    }
}

async fn agent_service(State(shared): App, Path(id): Path<String>) -> Response {
    let catalog = shared.catalog();
    match catalog.services.get(&id) {
        Some(service) => axum::Json(health_entry(service)["Service"].clone()).into_response(),
        None => (StatusCode::NOT_FOUND, format!("unknown service ID: {id}")).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CheckUpdate {
    status: String,
    #[serde(default)]
    output: String,
}

async fn update_check(State(shared): App, Path(id): Path<String>, body: Bytes) -> Response {
    let update: CheckUpdate = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(error) => return bad_request(format!("Request decode failed: {error}")),
    };
    let Some(status) = CheckStatus::parse(&update.status) else {
        return bad_request("Invalid check status");
    };
    let found = shared.write(|catalog| {
        let check = catalog
            .services
            .values_mut()
            .filter_map(|s| s.check.as_mut())
            .find(|c| c.id == id);
        let Some(check) = check else { return false };
        let now = Instant::now();
        let changed = check.status != status;
        check.status = status;
        check.output = update.output;
        check.deadline = check.ttl.map(|ttl| now + ttl);
        check.critical_since = (status == CheckStatus::Critical).then_some(now);
        // Like an agent: output alone syncs lazily; a status change at once.
        if changed {
            catalog.bump();
        }
        true
    });
    if found {
        StatusCode::OK.into_response()
    } else {
        (StatusCode::NOT_FOUND, format!("Unknown check ID {id:?}")).into_response()
    }
}

#[derive(Deserialize, Default)]
struct Blocking {
    index: Option<u64>,
    wait: Option<String>,
}

/// Why a blocking read is refused.
enum Refusal {
    BadRequest(&'static str),
    NoLeader,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::BadRequest(message) => bad_request(message),
            Self::NoLeader => {
                (StatusCode::INTERNAL_SERVER_ERROR, "No cluster leader").into_response()
            }
        }
    }
}

fn blocking(params: &HashMap<String, String>) -> Result<Blocking, Refusal> {
    let index = params
        .get("index")
        .map(|i| i.parse().map_err(|_| Refusal::BadRequest("Invalid index")))
        .transpose()?;
    Ok(Blocking {
        index,
        wait: params.get("wait").cloned(),
    })
}

async fn wait_for_change(shared: &Shared, blocking: &Blocking) -> Result<(), Refusal> {
    let wait = match &blocking.wait {
        Some(wait) => parse_duration(wait).ok_or(Refusal::BadRequest("Invalid wait time"))?,
        None => Duration::from_secs(300),
    };
    shared.block(blocking.index.unwrap_or(0), wait).await;
    if !shared.available() {
        return Err(Refusal::NoLeader);
    }
    Ok(())
}

fn with_index(index: u64, response: impl IntoResponse) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert("X-Consul-Index", HeaderValue::from(index));
    headers.insert("X-Consul-KnownLeader", HeaderValue::from_static("true"));
    (headers, response).into_response()
}

async fn health(
    State(shared): App,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let blocking = match blocking(&params) {
        Ok(b) => b,
        Err(refusal) => return refusal.into_response(),
    };
    if let Err(refusal) = wait_for_change(&shared, &blocking).await {
        return refusal.into_response();
    }
    let passing_only = params.contains_key("passing");
    let catalog = shared.catalog();
    let entries: Vec<Value> = catalog
        .services
        .values()
        .filter(|s| s.name == name)
        .filter(|s| {
            !passing_only
                || s.check
                    .as_ref()
                    .is_none_or(|c| c.status == CheckStatus::Passing)
        })
        .map(health_entry)
        .collect();
    with_index(catalog.index, axum::Json(entries))
}

async fn kv_get(
    State(shared): App,
    Path(key): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let blocking = match blocking(&params) {
        Ok(b) => b,
        Err(refusal) => return refusal.into_response(),
    };
    if let Err(refusal) = wait_for_change(&shared, &blocking).await {
        return refusal.into_response();
    }
    let recurse = params.contains_key("recurse");
    let catalog = shared.catalog();
    let entries: Vec<Value> = catalog
        .kv
        .iter()
        .filter(|(k, _)| {
            if recurse {
                k.starts_with(&key)
            } else {
                **k == key
            }
        })
        .map(|(k, v)| kv_entry(k, v))
        .collect();
    if entries.is_empty() {
        return with_index(catalog.index, StatusCode::NOT_FOUND);
    }
    with_index(catalog.index, axum::Json(entries))
}

fn kv_entry(key: &str, value: &KvValue) -> Value {
    serde_json::json!({
        "Key": key,
        "Value": base64::engine::general_purpose::STANDARD.encode(&value.value),
        "Flags": 0, "LockIndex": 0,
        "CreateIndex": value.create_index, "ModifyIndex": value.modify_index,
    })
}

async fn kv_put(State(shared): App, Path(key): Path<String>, body: Bytes) -> Response {
    shared.write(|catalog| {
        let index = catalog.bump();
        let create_index = catalog.kv.get(&key).map_or(index, |v| v.create_index);
        catalog.kv.insert(
            key,
            KvValue {
                value: body.to_vec(),
                create_index,
                modify_index: index,
            },
        );
    });
    axum::Json(true).into_response()
}

async fn kv_delete(
    State(shared): App,
    Path(key): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let recurse = params.contains_key("recurse");
    shared.write(|catalog| {
        let before = catalog.kv.len();
        catalog.kv.retain(|k, _| {
            if recurse {
                !k.starts_with(&key)
            } else {
                *k != key
            }
        });
        if catalog.kv.len() != before {
            catalog.bump();
        }
    });
    axum::Json(true).into_response()
}
