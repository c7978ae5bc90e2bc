//! The MediaNode controller: owned resources applied with server-side apply, drains
//! before shrinking, status from the StatefulSet and from discovery.

pub mod drain;
pub mod resources;
mod status;

use std::sync::Arc;
use std::time::Duration;

use confer_discovery::{Health, NodeId};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use crate::context::{Context, instrumented, record, retry_later};
use crate::crd::MediaNode;
use crate::error::{Error, Result};

/// The field manager of everything the operator applies.
pub const MANAGER: &str = "confer-operator";
/// On a pod, `confer.dev/drain: "true"` cordons it: it drains and stays.
pub const CORDON_ANNOTATION: &str = "confer.dev/drain";
/// `confer.dev/paused: "true"` stops reconciling (shown as the Paused condition).
pub const PAUSE_ANNOTATION: &str = "confer.dev/paused";
const CONTROLLER: &str = "medianode";

/// Reconcile with metrics and per-object backoff bookkeeping.
pub async fn reconcile(node: Arc<MediaNode>, ctx: Arc<Context>) -> Result<Action> {
    instrumented(&ctx, CONTROLLER, &key(&node), reconcile_inner(&node, &ctx)).await
}

/// After a failure: retry with this object's own exponential backoff.
pub fn error_policy(node: Arc<MediaNode>, error: &Error, ctx: Arc<Context>) -> Action {
    retry_later(&ctx, &key(&node), error)
}

fn key(node: &MediaNode) -> String {
    format!(
        "{}/{}",
        node.namespace().unwrap_or_default(),
        node.name_any()
    )
}

fn is_paused(node: &MediaNode) -> bool {
    node.annotations()
        .get(PAUSE_ANNOTATION)
        .is_some_and(|v| v == "true")
}

async fn apply<K>(api: &Api<K>, object: &K) -> Result<K>
where
    K: Resource + Serialize + DeserializeOwned + Clone + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let params = PatchParams::apply(MANAGER).force();
    Ok(api.patch(&name, &params, &Patch::Apply(object)).await?)
}

async fn reconcile_inner(node: &MediaNode, ctx: &Context) -> Result<Action> {
    let namespace = node.namespace().ok_or(Error::NoNamespace)?;
    let now = (ctx.clock)();
    let nodes: Api<MediaNode> = Api::namespaced(ctx.client.clone(), &namespace);
    if is_paused(node) {
        let status = status::paused(node, now);
        status::write(&nodes, node, status).await?;
        return Ok(Action::requeue(Duration::from_secs(300)));
    }
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let name = resources::owned_name(node);
    let current = sets.get_opt(&name).await?.and_then(|set| set.spec.replicas);
    let cordoned = cordoned_pods(node, ctx, &namespace).await?;
    let snapshot = ctx.snapshots.borrow().clone();
    let recorded = node.status.as_ref().and_then(|s| s.drain.as_ref());
    let plan = drain::plan(
        &node.name_any(),
        node.spec.replicas,
        current,
        &cordoned,
        recorded,
        &snapshot,
        node.spec.drain_deadline_seconds,
        now,
    );
    tell_nodes(node, ctx, &plan, &snapshot).await;
    ctx.metrics.drain(
        format!("{namespace}/{}", node.name_any()),
        plan.drain.as_ref(),
        std::time::Instant::now(),
    );

    for pod in &plan.evacuate {
        let moved = ctx.rooms.evacuate(pod).await?;
        info!(
            pod,
            moved, "drain deadline passed; rooms moved to other pods"
        );
    }

    let defaults = &ctx.defaults;
    let client = ctx.client.clone();
    apply(
        &Api::<ConfigMap>::namespaced(client.clone(), &namespace),
        &resources::config_map(node, defaults),
    )
    .await?;
    apply(
        &Api::<Service>::namespaced(client.clone(), &namespace),
        &resources::service(node),
    )
    .await?;
    apply(
        &Api::<PodDisruptionBudget>::namespaced(client, &namespace),
        &resources::disruption_budget(node),
    )
    .await?;
    let set = apply(
        &sets,
        &resources::stateful_set(node, defaults, plan.replicas),
    )
    .await?;
    if recorded.is_some() && plan.drain.is_none() {
        info!(node = %node.name_any(), replicas = plan.replicas, "drain finished; scaled down");
    }

    let draining = plan.drain.is_some();
    let events = transitions(recorded, &plan, now);
    let status = status::observed(node, &set, &snapshot, plan, now);
    status::write(&nodes, node, status).await?;
    for (warning, reason, action, note) in events {
        record(ctx, node, warning, reason, action, note).await;
    }
    Ok(Action::requeue(if draining {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(60)
    }))
}

/// Events for what this reconcile changes: a drain starting, rooms moved at the
/// deadline, a drain ending.
fn transitions(
    recorded: Option<&crate::crd::DrainStatus>,
    plan: &drain::DrainPlan,
    now: i64,
) -> Vec<(bool, &'static str, &'static str, String)> {
    let mut events = Vec::new();
    if let (None, Some(drain)) = (recorded, &plan.drain) {
        events.push((
            false,
            "DrainStarted",
            "Drain",
            format!(
                "{} take no new rooms; {} rooms left, moved at the latest in {}s",
                drain.pods.join(", "),
                drain.rooms_left,
                (drain.deadline_ms - now).max(0) / 1_000
            ),
        ));
    }
    if !plan.evacuate.is_empty() {
        events.push((
            true,
            "RoomsMoved",
            "Evacuate",
            format!(
                "drain deadline passed: rooms moved off {}",
                plan.evacuate.join(", ")
            ),
        ));
    }
    if recorded.is_some() && plan.drain.is_none() {
        events.push((
            false,
            "DrainFinished",
            "ScaleDown",
            format!("{} pods serve", plan.replicas),
        ));
    }
    events
}

/// Pods of this node annotated `confer.dev/drain: "true"`.
async fn cordoned_pods(node: &MediaNode, ctx: &Context, namespace: &str) -> Result<Vec<String>> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let selector = format!("{}={}", resources::NODE_LABEL, node.name_any());
    let listed = pods.list(&ListParams::default().labels(&selector)).await?;
    Ok(listed
        .items
        .iter()
        .filter(|pod| {
            pod.annotations()
                .get(CORDON_ANNOTATION)
                .is_some_and(|v| v == "true")
        })
        .map(|pod| pod.name_any())
        .collect())
}

/// Draining pods are told to take no new rooms; pods of this node that report
/// draining but are no longer to drain (scaled back up) are told to serve again.
/// Failures are logged and retried on the next reconcile.
async fn tell_nodes(
    node: &MediaNode,
    ctx: &Context,
    plan: &drain::DrainPlan,
    snapshot: &confer_discovery::Snapshot,
) {
    let to_drain: Vec<&String> = plan
        .drain
        .iter()
        .flat_map(|d| d.pods.iter())
        .chain(plan.no_new_rooms.iter())
        .collect();
    let prefix = format!("{}-", resources::owned_name(node));
    for member in &snapshot.members {
        let pod = &member.registration.id.0;
        if !pod.starts_with(&prefix) {
            continue;
        }
        // Pods the StatefulSet is about to remove stay draining.
        let leaving = drain::ordinal(pod).is_some_and(|i| i >= plan.replicas);
        let should_drain = to_drain.contains(&pod) || leaving;
        let is_draining = member.health == Health::Draining;
        if should_drain == is_draining {
            continue;
        }
        let control = &member.registration.control;
        if let Err(error) = ctx.nodes.set_draining(control, should_drain).await {
            warn!(pod, %error, "could not change the SFU's drain state");
        }
    }
    for pod in to_drain {
        if snapshot.member(&NodeId(pod.clone())).is_none() {
            warn!(
                pod,
                "draining pod is not in discovery; it has no rooms to wait for"
            );
        }
    }
}

#[cfg(test)]
mod tests;
