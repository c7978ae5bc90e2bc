//! `confer operator`: the MediaNode controller against the cluster's API, discovery
//! through Consul, operator metrics on `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use confer_discovery::ConsulRegistry;
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::info;

use crate::context::{Context, GrpcNodeControl};
use crate::crd::MediaNode;
use crate::medianode::{self, resources::PodDefaults};
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
}

pub async fn run(
    config: OperatorConfig,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("no Kubernetes API: in-cluster service account or kubeconfig needed")?;
    let registry = ConsulRegistry::new(&config.consul_addr, config.consul_token.clone())?;
    let metrics = Arc::new(Metrics::default());
    let ctx = Arc::new(Context::new(
        client.clone(),
        registry.watch(),
        Arc::new(GrpcNodeControl),
        PodDefaults {
            image: config.sfu_image.clone(),
            consul_addr: config.consul_addr.clone(),
        },
        metrics.clone(),
    ));
    tokio::spawn(serve_metrics(config.metrics_listen, metrics));
    let (nodes, sets): (Api<MediaNode>, Api<StatefulSet>) = match &config.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, ns),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    info!(
        namespace = config.namespace.as_deref().unwrap_or("*"),
        "operator running"
    );
    Controller::new(nodes, watcher::Config::default())
        .owns(sets, watcher::Config::default())
        .graceful_shutdown_on(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .run(medianode::reconcile, medianode::error_policy, ctx)
        .for_each(|_| async {})
        .await;
    Ok(())
}

async fn serve_metrics(listen: SocketAddr, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { metrics.render() }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("failed to bind {listen}"))?;
    axum::serve(listener, app).await?;
    Ok(())
}
