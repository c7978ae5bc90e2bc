//! The Kubernetes operator.
//!
//! - [`crd`]: the `MediaNode` and `Conference` resources (`confer.dev/v1alpha1`), from
//!   which `confer crd` prints the CRDs.
//! - [`medianode`]: the MediaNode controller: StatefulSet, Service, PDB and ConfigMap
//!   applied server-side under one field manager; drains before a shrink (pods told to
//!   take no new rooms, the StatefulSet kept until their rooms empty or the deadline);
//!   status from the StatefulSet and from discovery.
//! - [`conference`]: the Conference controller: the room kept in the room service with
//!   the declared settings (a finalizer deletes it), placement and participants in
//!   status.
//! - [`leader`]: leader election on the `confer-operator` Lease; the controllers run
//!   only while this replica holds it.
//! - [`run`]: the controller loops, their metrics endpoint.
//!
//! Only this crate talks to the Kubernetes API.

pub mod conference;
pub mod context;
pub mod crd;
pub mod error;
pub mod leader;
pub mod medianode;
pub mod metrics;
pub mod run;
