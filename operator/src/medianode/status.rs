//! A MediaNode's status: replicas from its StatefulSet, per-pod state and load from
//! discovery, the drain in progress, and the Ready, Draining and Paused conditions.

use confer_discovery::{Health, Snapshot};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};

use super::drain::{DrainPlan, pod_name};
use super::resources::NODE_LABEL;
use crate::crd::{
    ConditionStatus, MediaNode, MediaNodeStatus, PodState, PodSummary, set_condition,
};
use crate::error::Result;

fn time(ms: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_millisecond(ms).unwrap_or_default())
}

fn base(node: &MediaNode) -> MediaNodeStatus {
    let mut status = node.status.clone().unwrap_or_default();
    status.observed_generation = node.metadata.generation;
    status.selector = format!("{NODE_LABEL}={}", node.name_any());
    status
}

pub(super) fn paused(node: &MediaNode, now: i64) -> MediaNodeStatus {
    let mut status = base(node);
    let generation = node.metadata.generation;
    set_condition(
        &mut status.conditions,
        "Paused",
        ConditionStatus::True,
        "PausedByAnnotation",
        "confer.dev/paused is \"true\": the operator leaves this MediaNode alone",
        generation,
        time(now),
    );
    status
}

pub(super) fn observed(
    node: &MediaNode,
    set: &StatefulSet,
    snapshot: &Snapshot,
    plan: DrainPlan,
    now: i64,
) -> MediaNodeStatus {
    let mut status = base(node);
    let generation = node.metadata.generation;
    let set_status = set.status.clone().unwrap_or_default();
    status.replicas = set_status.replicas;
    status.ready_replicas = set_status.ready_replicas.unwrap_or(0);
    status.pods = (0..plan.replicas)
        .map(|ordinal| pod_summary(&pod_name(&node.name_any(), ordinal), snapshot))
        .collect();
    status.rooms = status.pods.iter().map(|p| p.rooms).sum();
    status.participants = status.pods.iter().map(|p| p.participants).sum();
    status.draining_replicas = plan.no_new_rooms.len() as i32;
    let t = time(now);
    set_condition(
        &mut status.conditions,
        "Paused",
        ConditionStatus::False,
        "Reconciling",
        "",
        generation,
        t.clone(),
    );
    match &plan.drain {
        Some(drain) => set_condition(
            &mut status.conditions,
            "Draining",
            ConditionStatus::True,
            "WaitingForRooms",
            format!(
                "{} rooms left on {}; moved at the latest {}s from now",
                drain.rooms_left,
                drain.pods.join(", "),
                (drain.deadline_ms - now).max(0) / 1_000
            ),
            generation,
            t.clone(),
        ),
        None => set_condition(
            &mut status.conditions,
            "Draining",
            ConditionStatus::False,
            "NoDrain",
            "",
            generation,
            t.clone(),
        ),
    }
    status.drain = plan.drain;
    let desired = node.spec.replicas;
    let (ready, reason, message) = if status.ready_replicas >= desired && status.drain.is_none() {
        (
            ConditionStatus::True,
            "AllPodsReady",
            format!("{desired} of {desired} pods ready"),
        )
    } else if status.drain.is_some() {
        (
            ConditionStatus::False,
            "Draining",
            "pods are draining before the pool shrinks".to_owned(),
        )
    } else {
        (
            ConditionStatus::False,
            "PodsNotReady",
            format!("{} of {desired} pods ready", status.ready_replicas),
        )
    };
    set_condition(
        &mut status.conditions,
        "Ready",
        ready,
        reason,
        message,
        generation,
        t,
    );
    status
}

fn pod_summary(name: &str, snapshot: &Snapshot) -> PodSummary {
    let member = snapshot.member(&confer_discovery::NodeId(name.to_owned()));
    let report = member.and_then(|m| m.report.as_ref());
    let state = match member.map(|m| m.health) {
        Some(Health::Serving) if report.is_some() => PodState::Serving,
        Some(Health::Draining) => PodState::Draining,
        _ => PodState::Starting,
    };
    let (rooms, participants, capacity) =
        report.map_or((0, 0, 0), |r| (r.rooms, r.participants, r.capacity));
    PodSummary {
        name: name.to_owned(),
        state,
        rooms: i64::from(rooms),
        participants: i64::from(participants),
        load_percent: if capacity == 0 {
            0
        } else {
            (u64::from(participants) * 100 / u64::from(capacity)).min(i32::MAX as u64) as i32
        },
    }
}

/// Writes the status subresource (a merge patch: the operator owns all of status).
pub(super) async fn write(
    api: &Api<MediaNode>,
    node: &MediaNode,
    status: MediaNodeStatus,
) -> Result<()> {
    if node.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let patch = serde_json::json!({ "status": status });
    api.patch_status(
        &node.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}
