//! The Kubernetes operator.
//!
//! - [`crd`]: the `MediaNode` and `Conference` resources (`confer.dev/v1alpha1`), from
//!   which `confer crd` prints the CRDs.
//! - [`medianode`]: the MediaNode controller: StatefulSet, Service, PDB and ConfigMap
//!   applied server-side under one field manager; drains before a shrink (pods told to
//!   take no new rooms, the StatefulSet kept until their rooms empty or the deadline);
//!   status from the StatefulSet and from discovery.
//! - [`run`]: the controller loop, its metrics endpoint.
//!
//! Only this crate talks to the Kubernetes API.

pub mod context;
pub mod crd;
pub mod error;
pub mod medianode;
pub mod metrics;
pub mod run;
