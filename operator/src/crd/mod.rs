//! The custom resources, defined once in Rust; `confer crd` prints their CRDs and the
//! chart carries exactly that text (a test compares them).

mod conditions;
mod conference;
mod medianode;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

#[cfg(test)]
pub(crate) use conditions::condition_in_patch;
pub use conditions::{ConditionStatus, set_condition};
pub use conference::{
    Conference, ConferenceSpec, ConferenceStatus, HostControls, RegionPlacement, Relay,
};
pub use medianode::{
    Capacity, DrainStatus, MediaNode, MediaNodeSpec, MediaNodeStatus, MediaPorts, Networking,
    PodPlacement, PodState, PodSummary,
};

/// Every CRD the operator serves.
pub fn definitions() -> Vec<CustomResourceDefinition> {
    vec![MediaNode::crd(), Conference::crd()]
}

/// The CRDs as one YAML stream.
pub fn yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for (_, text) in files()? {
        out.push_str("---\n");
        out.push_str(&text);
    }
    Ok(out)
}

/// Each CRD as YAML, with its file name (`medianodes.confer.dev.yaml`): what the chart
/// carries in `files/crds/`.
pub fn files() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    definitions()
        .into_iter()
        .map(|crd| {
            let name = format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"));
            Ok((name, serde_yaml::to_string(&crd)?))
        })
        .collect()
}
