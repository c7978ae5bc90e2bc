//! The Kubernetes operator.
//!
//! - [`crd`]: the `MediaNode` and `Conference` resources (`confer.dev/v1alpha1`), from
//!   which `confer crd` prints the CRDs.
//!
//! Only this crate talks to the Kubernetes API.

pub mod crd;
