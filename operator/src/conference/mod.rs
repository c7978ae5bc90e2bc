//! The Conference controller: the room exists in the room service with the declared
//! settings while the resource does (a finalizer deletes it after), and the status
//! shows where it is placed and who is in it.

pub mod rooms;

use std::sync::Arc;
use std::time::Duration;

use confer_room::api::{CreateRoom, UpdateRoom};
use confer_room::model::{RoomSettings, RoomView};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Api, ResourceExt};
use tracing::info;

use crate::context::{Context, instrumented, record, retry_later};
use crate::crd::{
    ConditionStatus, Conference, ConferenceStatus, RegionPlacement, Relay, set_condition,
};
use crate::error::{Error, Result};

/// Deletes the room in the room service before the resource goes.
pub const FINALIZER: &str = "confer.dev/room";
const CONTROLLER: &str = "conference";

pub async fn reconcile(conference: Arc<Conference>, ctx: Arc<Context>) -> Result<Action> {
    let key = key(&conference);
    instrumented(&ctx, CONTROLLER, &key, reconcile_inner(conference, &ctx)).await
}

async fn reconcile_inner(conference: Arc<Conference>, ctx: &Context) -> Result<Action> {
    let namespace = conference.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<Conference> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, conference, |event| async {
        match event {
            Event::Apply(conference) => apply(&conference, ctx, &namespace).await,
            Event::Cleanup(conference) => cleanup(&conference, ctx).await,
        }
    })
    .await
    .map_err(|error| match error {
        kube::runtime::finalizer::Error::ApplyFailed(error)
        | kube::runtime::finalizer::Error::CleanupFailed(error) => error,
        other => Error::Finalizer(other.to_string()),
    })
}

pub fn error_policy(conference: Arc<Conference>, error: &Error, ctx: Arc<Context>) -> Action {
    retry_later(&ctx, &key(&conference), error)
}

fn key(conference: &Conference) -> String {
    format!(
        "conference:{}/{}",
        conference.namespace().unwrap_or_default(),
        conference.name_any()
    )
}

/// The settings a conference declares, as changes to its room's: an update names only
/// these, so what hosts change during the call (the lock, screen sharing, chat for
/// hosts only) is neither undone nor overwritten by an update racing theirs. Its
/// host controls are given apart from these, only when they change
/// ([`host_control_changes`]).
fn declared(conference: &Conference) -> serde_json::Map<String, serde_json::Value> {
    let spec = &conference.spec;
    let regions: Vec<&String> = spec
        .allowed_regions
        .iter()
        .filter(|region| **region != spec.home_region)
        .collect();
    let mut declared = serde_json::json!({
        "waiting_room": spec.waiting_room,
        "sip_dial_in": spec.sip_dial_in,
        "max_participants": u32::try_from(spec.max_participants).unwrap_or(1),
        "region": spec.home_region,
        "regions": regions,
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    if let Some(secs) = spec.empty_timeout_seconds {
        declared.insert(
            "empty_timeout_secs".into(),
            u32::try_from(secs).unwrap_or_default().into(),
        );
    }
    declared
}

/// The host controls the conference sets to other values than it gave the room last
/// (all it sets, for a room not yet given any): given when declared and when changed,
/// so that between changes a host's own stands.
fn host_control_changes(conference: &Conference) -> serde_json::Map<String, serde_json::Value> {
    let given = conference
        .status
        .as_ref()
        .map(|status| status.host_controls.clone())
        .unwrap_or_default();
    conference.spec.given_controls().changes_from(&given)
}

/// The room's settings with `changes` applied; the others stay as the room has them
/// (`current`), or at their defaults for a new room.
fn settings(
    current: Option<&RoomSettings>,
    changes: &serde_json::Map<String, serde_json::Value>,
) -> RoomSettings {
    let current = current.cloned().unwrap_or_default();
    // Every name is a setting, with a value of its type: this cannot fail.
    current.patched(changes).unwrap_or(current)
}

/// The password and the Secret's version, when the conference has one.
async fn password(
    conference: &Conference,
    ctx: &Context,
    namespace: &str,
) -> Result<Option<(String, String)>> {
    let Some(reference) = &conference.spec.password_secret_ref else {
        return Ok(None);
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret = secrets.get(&reference.name).await?;
    let value = secret
        .data
        .as_ref()
        .and_then(|data| data.get(&reference.key))
        .and_then(|bytes| String::from_utf8(bytes.0.clone()).ok())
        .ok_or_else(|| {
            Error::Secret(format!(
                "secret {} has no UTF-8 key {}",
                reference.name, reference.key
            ))
        })?;
    Ok(Some((value, secret.resource_version().unwrap_or_default())))
}

async fn apply(conference: &Conference, ctx: &Context, namespace: &str) -> Result<Action> {
    let (tenant, name) = (&conference.spec.tenant, conference.name_any());
    let password = password(conference, ctx, namespace).await?;
    let version = password.as_ref().map(|(_, v)| v.clone());
    let recorded = conference
        .status
        .as_ref()
        .and_then(|s| s.password_secret_version.clone());
    let mut changes = declared(conference);
    let view = match ctx.rooms.get(tenant, &name).await? {
        None => {
            // A new room gets every host control the conference sets.
            changes.extend(
                conference
                    .spec
                    .given_controls()
                    .changes_from(&Default::default()),
            );
            let wanted = settings(None, &changes);
            info!(conference = %name, %tenant, "creating the room");
            let create = CreateRoom {
                name: name.clone(),
                settings: wanted,
                password: password.map(|(p, _)| p),
            };
            let view = ctx.rooms.create(tenant, create).await?;
            let note = format!("room {name} of tenant {tenant} created in the room service");
            record(ctx, conference, false, "RoomCreated", "Create", note).await;
            view
        }
        Some(view) => {
            changes.extend(host_control_changes(conference));
            let wanted = settings(Some(&view.settings), &changes);
            let mut update = UpdateRoom::default();
            if view.settings != wanted {
                update.settings = Some(changes);
            }
            if version != recorded || (password.is_none() && view.has_password) {
                // A changed Secret sets the new password; a removed reference clears it.
                update.password = Some(password.map(|(p, _)| p).unwrap_or_default());
            }
            if update.settings.is_some() || update.password.is_some() {
                ctx.rooms.update(tenant, &name, update).await?
            } else {
                view
            }
        }
    };
    let chat_retention = chat_retention(conference, ctx).await?;
    let snapshot = ctx.snapshots.borrow().clone();
    let mut status = status(conference, &view, version, &snapshot, (ctx.clock)());
    status.chat_retention_seconds = chat_retention;
    status.host_controls = conference.spec.given_controls();
    if conference.status.as_ref() != Some(&status) {
        let api: Api<Conference> = Api::namespaced(ctx.client.clone(), namespace);
        let patch = serde_json::json!({ "status": status });
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(Action::requeue(Duration::from_secs(30)))
}

/// Gives the chat service the conference's declared chat retention when it differs
/// from the one given last (recorded in the status): set when declared, dropped for
/// the deployment's default when no longer declared. Between changes a tenant's own
/// setting through the API stands. Returns the retention now given.
async fn chat_retention(conference: &Conference, ctx: &Context) -> Result<Option<i64>> {
    let wanted = conference.spec.chat_retention_seconds;
    let given = conference
        .status
        .as_ref()
        .and_then(|s| s.chat_retention_seconds);
    if wanted == given {
        return Ok(given);
    }
    let Some(chat) = &ctx.chat else {
        return Err(Error::ChatService(
            "chatRetentionSeconds needs the operator's --chat-service".into(),
        ));
    };
    let key = confer_chat::api::room_key(&conference.spec.tenant, &conference.name_any());
    let done = match wanted {
        Some(seconds) => chat.set_retention(key, seconds.max(0) as u64).await,
        None => chat.clear_retention(key).await,
    };
    done.map_err(|err| Error::ChatService(err.to_string()))?;
    Ok(wanted)
}

async fn cleanup(conference: &Conference, ctx: &Context) -> Result<Action> {
    info!(conference = %conference.name_any(), "deleting the room");
    ctx.rooms
        .delete(&conference.spec.tenant, &conference.name_any())
        .await?;
    let note = format!("room {} deleted in the room service", conference.name_any());
    record(ctx, conference, false, "RoomDeleted", "Delete", note).await;
    Ok(Action::await_change())
}

/// A relay's ends are both serving and reporting fresh load: what the operator can see
/// of a link's health (each SFU measures its links itself, on `/metrics`).
fn relay_healthy(snapshot: &confer_discovery::Snapshot, ends: [&str; 2], now_ms: i64) -> bool {
    !snapshot.stale
        && ends.iter().all(|node| {
            snapshot.reports().any(|report| {
                report.id.0 == *node
                    && report.state == confer_placement::NodeState::Serving
                    && now_ms.saturating_sub(i64::try_from(report.reported_at_ms).unwrap_or(0))
                        < RELAY_REPORT_AGE_MS
            })
        })
}

/// Load reports older than this make a relay's end look unhealthy (as they make a node
/// ineligible for placement).
const RELAY_REPORT_AGE_MS: i64 = 5_000;

fn status(
    conference: &Conference,
    view: &RoomView,
    password_version: Option<String>,
    snapshot: &confer_discovery::Snapshot,
    now: i64,
) -> ConferenceStatus {
    let mut status = conference.status.clone().unwrap_or_default();
    let generation = conference.metadata.generation;
    let t = Time(k8s_openapi::jiff::Timestamp::from_millisecond(now).unwrap_or_default());
    status.observed_generation = generation;
    status.participants = i64::from(view.num_participants);
    status.password_secret_version = password_version;
    let placements: Vec<&confer_room::model::Placement> = if view.placements.is_empty() {
        view.placement.iter().collect()
    } else {
        view.placements.iter().collect()
    };
    status.placements = placements
        .iter()
        .map(|p| RegionPlacement {
            region: p.region.clone(),
            node: p.sfu.clone(),
        })
        .collect();
    // The room's SFUs form a full mesh of relays; listed from the home placement.
    status.relays = placements
        .iter()
        .enumerate()
        .flat_map(|(i, from)| placements[i + 1..].iter().map(move |to| (*from, *to)))
        .map(|(from, to)| Relay {
            healthy: relay_healthy(snapshot, [&from.sfu, &to.sfu], now),
            from: from.sfu.clone(),
            to: to.sfu.clone(),
        })
        .collect();
    let conditions = &mut status.conditions;
    set_condition(
        conditions,
        "Ready",
        ConditionStatus::True,
        "RoomReady",
        "the room exists with the declared settings",
        generation,
        t.clone(),
    );
    match &view.placement {
        Some(p) => set_condition(
            conditions,
            "Scheduled",
            ConditionStatus::True,
            "Placed",
            format!("on {} in {}", p.sfu, p.region),
            generation,
            t.clone(),
        ),
        None => set_condition(
            conditions,
            "Scheduled",
            ConditionStatus::False,
            "WaitingForFirstJoin",
            "rooms are placed on an SFU when the first participant joins",
            generation,
            t.clone(),
        ),
    }
    set_condition(
        conditions,
        "FeaturesAvailable",
        ConditionStatus::True,
        "AllAvailable",
        "",
        generation,
        t,
    );
    status
}

#[cfg(test)]
pub(crate) mod tests;
