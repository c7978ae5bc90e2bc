//! What a MediaNode owns, built from its spec: the SFU StatefulSet, a headless Service
//! for the control API, a PodDisruptionBudget and a ConfigMap. Pure functions; the
//! reconciler applies them with server-side apply.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, EnvVar, EnvVarSource,
    ObjectFieldSelector, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Probe,
    SecretVolumeSource, Service, ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::crd::{MediaNode, MediaNodeSpec, Networking};

/// Settings every MediaNode's pods share, from the operator's flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodDefaults {
    /// Image when the MediaNode names none.
    pub image: String,
    /// Consul agent address the SFUs register with.
    pub consul_addr: String,
    /// Mutual TLS on the SFUs' control API, when the deployment uses it.
    pub tls: Option<SfuTls>,
}

/// The Secret SFU pods serve their control API with: `tls.crt`, `tls.key` and
/// `ca.crt` (as cert-manager writes them), in the MediaNode's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SfuTls {
    pub secret: String,
    /// The name its certificate carries, which clients check.
    pub name: String,
}

/// Where SFU pods mount [`SfuTls::secret`].
pub const TLS_MOUNT: &str = "/etc/confer/grpc-tls";

pub const NODE_LABEL: &str = "confer.dev/medianode";

pub fn selector_labels(node: &MediaNode) -> BTreeMap<String, String> {
    BTreeMap::from([(NODE_LABEL.to_owned(), node.name_any())])
}

fn labels(node: &MediaNode) -> BTreeMap<String, String> {
    let mut labels = selector_labels(node);
    labels.extend([
        ("app.kubernetes.io/name".to_owned(), "confer".to_owned()),
        ("app.kubernetes.io/component".to_owned(), "sfu".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), node.name_any()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "confer-operator".to_owned(),
        ),
        ("confer.dev/region".to_owned(), node.spec.region.clone()),
    ]);
    labels
}

/// The name shared by the StatefulSet, Service, PDB and ConfigMap.
pub fn owned_name(node: &MediaNode) -> String {
    format!("{}-sfu", node.name_any())
}

fn meta(node: &MediaNode) -> ObjectMeta {
    ObjectMeta {
        name: Some(owned_name(node)),
        namespace: node.namespace(),
        labels: Some(labels(node)),
        owner_references: node.controller_owner_ref(&()).map(|owner| vec![owner]),
        ..ObjectMeta::default()
    }
}

/// Where each SFU pod serves `/metrics` (`confer sfu --metrics-listen`).
pub const SFU_METRICS_PORT: i32 = 9092;

pub fn config_map(node: &MediaNode, defaults: &PodDefaults) -> ConfigMap {
    let spec = &node.spec;
    ConfigMap {
        metadata: meta(node),
        data: Some(BTreeMap::from([
            ("CONFER_REGION".to_owned(), spec.region.clone()),
            (
                "CONFER_ZONE".to_owned(),
                spec.zone.clone().unwrap_or_default(),
            ),
            (
                "CONFER_CAPACITY".to_owned(),
                spec.capacity.participants_per_pod.to_string(),
            ),
            (
                "CONFER_CONSUL_ADDR".to_owned(),
                defaults.consul_addr.clone(),
            ),
            (
                "CONFER_MEDIA_BIND".to_owned(),
                format!("0.0.0.0:{}", spec.ports.media),
            ),
            (
                "CONFER_MEDIA_WORKERS".to_owned(),
                spec.ports.media_workers.max(1).to_string(),
            ),
            (
                "CONFER_CONTROL_LISTEN".to_owned(),
                format!("0.0.0.0:{}", spec.ports.control),
            ),
            (
                "CONFER_METRICS_LISTEN".to_owned(),
                format!("0.0.0.0:{SFU_METRICS_PORT}"),
            ),
        ])),
        ..ConfigMap::default()
    }
}

pub fn service(node: &MediaNode) -> Service {
    Service {
        metadata: meta(node),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            selector: Some(selector_labels(node)),
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![
                ServicePort {
                    name: Some("control".to_owned()),
                    port: node.spec.ports.control,
                    protocol: Some("TCP".to_owned()),
                    ..ServicePort::default()
                },
                ServicePort {
                    name: Some("metrics".to_owned()),
                    port: SFU_METRICS_PORT,
                    protocol: Some("TCP".to_owned()),
                    ..ServicePort::default()
                },
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

pub fn disruption_budget(node: &MediaNode) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(node),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(node)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// The SFU's TLS flags, pointing into [`TLS_MOUNT`].
fn tls_env(tls: &SfuTls) -> Vec<EnvVar> {
    let value = |name: &str, value: String| EnvVar {
        name: name.to_owned(),
        value: Some(value),
        ..EnvVar::default()
    };
    vec![
        value("CONFER_GRPC_TLS_CERT", format!("{TLS_MOUNT}/tls.crt")),
        value("CONFER_GRPC_TLS_KEY", format!("{TLS_MOUNT}/tls.key")),
        value("CONFER_GRPC_TLS_CA", format!("{TLS_MOUNT}/ca.crt")),
        value("CONFER_GRPC_TLS_NAME", tls.name.clone()),
    ]
}

/// Where the pods mount `recordingsClaim`.
pub const RECORDINGS_MOUNT: &str = "/var/lib/confer/recordings";

/// The pod's volumes and the SFU container's mounts: the gRPC TLS Secret and the
/// recordings claim, each when there is one.
fn volumes(spec: &MediaNodeSpec, defaults: &PodDefaults) -> (Vec<Volume>, Vec<VolumeMount>) {
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    if let Some(tls) = &defaults.tls {
        volumes.push(Volume {
            name: "grpc-tls".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(tls.secret.clone()),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "grpc-tls".to_owned(),
            mount_path: TLS_MOUNT.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    if let Some(claim) = &spec.recordings_claim {
        volumes.push(Volume {
            name: "recordings".to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                ..PersistentVolumeClaimVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "recordings".to_owned(),
            mount_path: RECORDINGS_MOUNT.to_owned(),
            ..VolumeMount::default()
        });
    }
    (volumes, mounts)
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The SFU pods; `replicas` comes from the drain plan, not straight from the spec.
pub fn stateful_set(node: &MediaNode, defaults: &PodDefaults, replicas: i32) -> StatefulSet {
    let spec = &node.spec;
    let host_network = spec.networking == Networking::HostNetwork;
    // With host networking the media address is the node's.
    let address_field = if host_network {
        "status.hostIP"
    } else {
        "status.podIP"
    };
    let (volumes, mounts) = volumes(spec, defaults);
    let recordings_env = spec.recordings_claim.as_ref().map(|_| EnvVar {
        name: "CONFER_RECORDINGS_DIR".to_owned(),
        value: Some(RECORDINGS_MOUNT.to_owned()),
        ..EnvVar::default()
    });
    let container = Container {
        name: "sfu".to_owned(),
        image: Some(spec.image.clone().unwrap_or_else(|| defaults.image.clone())),
        args: Some(vec!["sfu".to_owned()]),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: owned_name(node),
                ..ConfigMapEnvSource::default()
            }),
            ..EnvFromSource::default()
        }]),
        env: Some(
            [
                field_env("CONFER_NODE_ID", "metadata.name"),
                field_env("CONFER_ANNOUNCE_IP", address_field),
            ]
            .into_iter()
            .chain(defaults.tls.as_ref().map(tls_env).into_iter().flatten())
            .chain(recordings_env)
            .collect(),
        ),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        ports: Some(container_ports(spec, host_network)),
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("control".to_owned()),
                ..TCPSocketAction::default()
            }),
            period_seconds: Some(5),
            ..Probe::default()
        }),
        resources: spec.resources.clone(),
        ..Container::default()
    };
    let placement = &spec.placement;
    let pod = PodSpec {
        containers: vec![container],
        host_network: host_network.then_some(true),
        dns_policy: host_network.then(|| "ClusterFirstWithHostNet".to_owned()),
        node_selector: (!placement.node_selector.is_empty())
            .then(|| placement.node_selector.clone()),
        tolerations: (!placement.tolerations.is_empty()).then(|| placement.tolerations.clone()),
        affinity: placement.affinity.clone(),
        volumes: (!volumes.is_empty()).then_some(volumes),
        // The operator drains before it scales down; this covers a node going away.
        termination_grace_period_seconds: Some(spec.drain_deadline_seconds.min(3_600) + 30),
        ..PodSpec::default()
    };
    StatefulSet {
        metadata: meta(node),
        spec: StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(owned_name(node)),
            pod_management_policy: Some("Parallel".to_owned()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(node)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(node)),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    }
}

/// The media workers' UDP ports (`media`, then `media-1`, … in the order of their
/// ports, after the control and metrics ports), then control and metrics.
fn container_ports(spec: &MediaNodeSpec, host_network: bool) -> Vec<ContainerPort> {
    let media = |index: i32, port: i32| ContainerPort {
        name: Some(match index {
            0 => "media".to_owned(),
            n => format!("media-{n}"),
        }),
        container_port: port,
        host_port: host_network.then_some(port),
        protocol: Some("UDP".to_owned()),
        ..ContainerPort::default()
    };
    let mut ports: Vec<ContainerPort> = Vec::new();
    let mut workers = spec.ports.media_range().zip(0..);
    if let Some((port, index)) = workers.next() {
        ports.push(media(index, port));
    }
    ports.push(ContainerPort {
        name: Some("control".to_owned()),
        container_port: spec.ports.control,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    });
    ports.push(ContainerPort {
        name: Some("metrics".to_owned()),
        container_port: SFU_METRICS_PORT,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    });
    ports.extend(workers.map(|(port, index)| media(index, port)));
    ports
}
