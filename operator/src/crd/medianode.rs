//! `MediaNode`: a pool of SFU pods in one region.
// `printcolumn(...)` repeats `type_ = …` by design; clippy reads the derive's
// arguments as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An SFU pool in one region: how many pods, how many participants each takes, how
/// media reaches them.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "confer.dev",
    version = "v1alpha1",
    kind = "MediaNode",
    doc = "A pool of Confer SFU pods in one region, scaled and drained by the operator",
    plural = "medianodes",
    shortname = "mn",
    namespaced,
    status = "MediaNodeStatus",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Region", type_ = "string", json_path = ".spec.region"),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "Draining",
        type_ = "integer",
        json_path = ".status.drainingReplicas"
    ),
    printcolumn(name = "Rooms", type_ = "integer", json_path = ".status.rooms"),
    printcolumn(
        name = "Participants",
        type_ = "integer",
        json_path = ".status.participants"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MediaNodeSpec {
    /// Region the pods serve; rooms in this region are placed here first.
    #[x_kube(validation = Rule::new("self == oldSelf").message("region is immutable"))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && size(self) <= 63").message("region must be a DNS label"))]
    pub region: String,
    /// Zone within the region, for spreading and for clients near it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// SFU pods (the scale subresource drives this, so an HPA can).
    #[x_kube(validation = Rule::new("self >= 0").message("replicas must not be negative"))]
    pub replicas: i32,
    pub capacity: Capacity,
    #[serde(default)]
    pub ports: MediaPorts,
    #[serde(default)]
    pub networking: Networking,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default)]
    pub placement: PodPlacement,
    /// The Confer image; the operator's own image when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// How long a draining pod may keep its rooms before they are moved.
    #[serde(default = "default_drain_deadline")]
    #[x_kube(validation = Rule::new("self > 0 && self <= 86400").message("drainDeadlineSeconds must be between 1 and 86400"))]
    pub drain_deadline_seconds: i64,
    /// A PersistentVolumeClaim (ReadWriteMany, mounted by the gateways too) the pods
    /// write recordings to; unset, rooms on these pods cannot be recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recordings_claim: Option<String>,
}

fn default_drain_deadline() -> i64 {
    600
}

/// What one pod is sized for.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Capacity {
    /// Participants per pod; placement keeps rooms below it.
    #[x_kube(validation = Rule::new("self > 0").message("participantsPerPod must be positive"))]
    pub participants_per_pod: i32,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.mediaWorkers) || self.media + self.mediaWorkers <= 65536").message("the media workers' ports run past 65535"))]
#[x_kube(validation = Rule::new("!has(self.mediaWorkers) || !(self.control >= self.media && self.control < self.media + self.mediaWorkers)").message("control must not be one of the media workers' ports"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MediaPorts {
    /// The first media worker's UDP port; worker `i` uses `media + i`. Every peer of a
    /// room shares its worker's port.
    #[x_kube(validation = Rule::new("self > 0 && self < 65536").message("media must be a port number"))]
    pub media: i32,
    /// Media workers per pod: event loops each on a core of its own, with one UDP port
    /// each. Match it to the pod's CPU; 1 keeps a pod on a single media port.
    #[serde(default = "one_worker")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 64").message("mediaWorkers must be between 1 and 64"))]
    pub media_workers: i32,
    /// The internal control API (TCP).
    #[x_kube(validation = Rule::new("self > 0 && self < 65536").message("control must be a port number"))]
    pub control: i32,
}

fn one_worker() -> i32 {
    1
}

impl MediaPorts {
    /// The UDP ports of the media workers.
    pub fn media_range(&self) -> std::ops::Range<i32> {
        self.media..self.media + self.media_workers.max(1)
    }
}

impl Default for MediaPorts {
    fn default() -> Self {
        Self {
            media: 7882,
            media_workers: one_worker(),
            control: 7881,
        }
    }
}

/// How media reaches the pods.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Networking {
    /// Pods use the node's network: the media port is the node's, one pod per node.
    #[default]
    HostNetwork,
    /// Pods announce their own IP for media: for pod networks clients can route to
    /// (VPC-native clusters, or behind a media-aware load balancer).
    PodNetwork,
}

/// Where the pods may run.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodPlacement {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MediaNodeStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    #[serde(default)]
    pub draining_replicas: i32,
    /// Label selector of the pods (for the scale subresource).
    #[serde(default)]
    pub selector: String,
    #[serde(default)]
    pub rooms: i64,
    #[serde(default)]
    pub participants: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<PodSummary>,
    /// The drain in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Pods taking no new rooms until theirs empty or the deadline passes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DrainStatus {
    pub pods: Vec<String>,
    /// Milliseconds since the Unix epoch.
    pub started_at_ms: i64,
    pub deadline_ms: i64,
    /// Rooms still on the draining pods.
    pub rooms_left: i64,
}

/// One pod, as discovery last saw it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PodSummary {
    pub name: String,
    pub state: PodState,
    pub rooms: i64,
    pub participants: i64,
    /// Participants as a percentage of capacity.
    pub load_percent: i32,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodState {
    /// Not reporting to discovery (yet).
    Starting,
    Serving,
    Draining,
}
