//! `confer operator`: leader election on a Lease; the leader runs the MediaNode and
//! Conference controllers against the cluster's API, discovery
//! through Consul, operator metrics on `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use confer_discovery::ConsulRegistry;
use confer_proto::tls::GrpcTls;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::info;

use crate::conference::{self, rooms::RoomService};
use crate::context::{Context, GrpcNodeControl};
use crate::crd::{Conference, MediaNode};
use crate::leader::{self, LeaseConfig, stopped};
use crate::medianode::{
    self,
    resources::{PodDefaults, SfuTls},
};
use crate::metrics::Metrics;

pub struct OperatorConfig {
    pub consul_addr: String,
    pub consul_token: Option<String>,
    /// Image of SFU pods whose MediaNode names none.
    pub sfu_image: String,
    /// Where `/metrics` and `/healthz` listen.
    pub metrics_listen: SocketAddr,
    /// Watch one namespace; all when unset.
    pub namespace: Option<String>,
    /// `host:port` of the room service's gRPC API.
    pub room_service: String,
    /// `host:port` of the chat service's gRPC API, for conferences' chat retention.
    pub chat_service: Option<String>,
    /// Namespace of the leader-election Lease (the operator's own).
    pub lease_namespace: String,
    /// This replica's name in the Lease (the pod name).
    pub identity: String,
    /// Mutual TLS toward the room service and the SFUs' control APIs.
    pub tls: Option<GrpcTls>,
    /// What SFU pods serve their control API with, when over TLS.
    pub sfu_tls: Option<SfuTls>,
}

pub async fn run(config: OperatorConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    leader::install_tls_provider();
    let client = Client::try_default()
        .await
        .context("no Kubernetes API: in-cluster service account or kubeconfig needed")?;
    let registry = ConsulRegistry::new(&config.consul_addr, config.consul_token.clone())?;
    let metrics = Arc::new(Metrics::default());
    let room_service =
        confer_room::grpc::GrpcRoom::connect(&config.room_service, config.tls.as_ref())?;
    let ctx = Context::new(
        client.clone(),
        Arc::new(RoomService(Arc::new(room_service))),
        registry.watch(),
        Arc::new(GrpcNodeControl {
            tls: config.tls.clone(),
        }),
        PodDefaults {
            image: config.sfu_image.clone(),
            consul_addr: config.consul_addr.clone(),
            tls: config.sfu_tls.clone(),
        },
        metrics.clone(),
    );
    let ctx = Arc::new(match &config.chat_service {
        Some(address) => ctx.with_chat(Arc::new(confer_chat::grpc::GrpcChat::connect(
            address,
            config.tls.as_ref(),
        )?)),
        None => ctx,
    });
    tokio::spawn(serve_metrics(config.metrics_listen, metrics));
    let lease = LeaseConfig::new(&config.lease_namespace, &config.identity);
    let leading = leader::campaign(client.clone(), &lease).await?;
    let namespace = config.namespace.clone();
    leader::while_leading(&config.identity, leading, shutdown, |stop| {
        controllers(client.clone(), namespace.clone(), ctx.clone(), stop)
    })
    .await;
    Ok(())
}

/// Both controllers, until `stop` turns true (what the leader runs; tests run it
/// against the Kubernetes API double).
pub async fn controllers(
    client: Client,
    namespace: Option<String>,
    ctx: Arc<Context>,
    stop: watch::Receiver<bool>,
) {
    let (nodes, sets, conferences): (Api<MediaNode>, Api<StatefulSet>, Api<Conference>) =
        match namespace.as_deref() {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client, ns),
            ),
            None => (
                Api::all(client.clone()),
                Api::all(client.clone()),
                Api::all(client),
            ),
        };
    info!(
        namespace = namespace.as_deref().unwrap_or("*"),
        "controllers running"
    );
    let media_nodes = Controller::new(nodes, watcher::Config::default())
        .owns(sets, watcher::Config::default())
        .graceful_shutdown_on(stopped(stop.clone()))
        .run(medianode::reconcile, medianode::error_policy, ctx.clone())
        .for_each(|_| async {});
    let conferences = Controller::new(conferences, watcher::Config::default())
        .graceful_shutdown_on(stopped(stop))
        .run(conference::reconcile, conference::error_policy, ctx)
        .for_each(|_| async {});
    tokio::join!(media_nodes, conferences);
}

async fn serve_metrics(listen: SocketAddr, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move |headers: axum::http::HeaderMap| {
                let metrics = metrics.clone();
                async move {
                    let accept = headers
                        .get(axum::http::header::ACCEPT)
                        .and_then(|v| v.to_str().ok());
                    let format = confer_metrics::Format::negotiate(accept);
                    (
                        [(axum::http::header::CONTENT_TYPE, format.content_type())],
                        metrics.render_as(format),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("failed to bind {listen}"))?;
    axum::serve(listener, app).await?;
    Ok(())
}
