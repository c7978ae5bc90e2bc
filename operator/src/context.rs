//! What every reconcile shares: the Kubernetes client, discovery's view of the SFUs,
//! the way to tell an SFU to drain, pod defaults, metrics and per-object backoff.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confer_discovery::Snapshot;
use confer_proto::sfu::{SetDrainingRequest, sfu_control_client::SfuControlClient};
use confer_proto::tls::GrpcTls;
use futures_util::future::BoxFuture;
use kube::Resource;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::conference::rooms::Rooms;
use crate::error::{Error, Result};
use crate::medianode::resources::PodDefaults;
use crate::metrics::Metrics;

/// Tells an SFU (by its control address) to take no new rooms, or to take them again.
pub trait NodeControl: Send + Sync {
    fn set_draining(&self, control: &str, draining: bool) -> BoxFuture<'_, Result<()>>;
}

/// The SFU's control API over gRPC.
pub struct GrpcNodeControl {
    /// Mutual TLS toward the SFUs, when they serve it.
    pub tls: Option<GrpcTls>,
}

impl NodeControl for GrpcNodeControl {
    fn set_draining(&self, control: &str, draining: bool) -> BoxFuture<'_, Result<()>> {
        let address = control.to_owned();
        let tls = self.tls.clone();
        Box::pin(async move {
            let failed = |message: String| Error::NodeControl {
                address: address.clone(),
                message,
            };
            let endpoint = confer_proto::tls::endpoint(&address)
                .map_err(|e| failed(e.to_string()))?
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(5));
            let channel = confer_proto::tls::channel(&endpoint, tls.as_ref())
                .await
                .map_err(|e| failed(e.to_string()))?;
            SfuControlClient::new(channel)
                .set_draining(SetDrainingRequest { draining })
                .await
                .map_err(|e| failed(e.message().to_owned()))?;
            Ok(())
        })
    }
}

pub struct Context {
    pub client: kube::Client,
    pub rooms: Arc<dyn Rooms>,
    /// Where a conference's declared chat retention goes; none without
    /// `--chat-service`.
    pub chat: Option<Arc<dyn confer_chat::ChatApi>>,
    pub snapshots: watch::Receiver<Snapshot>,
    pub nodes: Arc<dyn NodeControl>,
    pub defaults: PodDefaults,
    pub metrics: Arc<Metrics>,
    /// Kubernetes Events on transitions (drains, moved rooms, rooms created).
    pub recorder: Recorder,
    /// Milliseconds since the Unix epoch (a fixed clock in tests).
    pub clock: fn() -> i64,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: kube::Client,
        rooms: Arc<dyn Rooms>,
        snapshots: watch::Receiver<Snapshot>,
        nodes: Arc<dyn NodeControl>,
        defaults: PodDefaults,
        metrics: Arc<Metrics>,
    ) -> Self {
        let reporter = Reporter {
            controller: crate::medianode::MANAGER.to_owned(),
            instance: std::env::var("HOSTNAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            rooms,
            chat: None,
            snapshots,
            nodes,
            defaults,
            metrics,
            clock: || confer_discovery::unix_ms() as i64,
            failures: Mutex::default(),
        }
    }

    /// This context, giving conferences' chat retention to `chat`.
    pub fn with_chat(self, chat: Arc<dyn confer_chat::ChatApi>) -> Self {
        Self {
            chat: Some(chat),
            ..self
        }
    }

    /// The wait before retrying `key` after its latest failure: exponential from 1 s,
    /// capped at 5 minutes, with ±50 % jitter so failed objects do not retry in step.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let count = failures.entry(key.to_owned()).or_default();
        *count = count.saturating_add(1);
        let base = Duration::from_secs(1u64 << (*count - 1).min(8)).min(Duration::from_secs(300));
        base.mul_f64(0.5 + rand::random::<f64>())
    }

    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    pub fn failures(&self, key: &str) -> u32 {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

/// Runs one reconcile of `key` with metrics and the per-object backoff bookkeeping.
pub async fn instrumented(
    ctx: &Context,
    controller: &'static str,
    key: &str,
    reconcile: impl Future<Output = Result<Action>>,
) -> Result<Action> {
    // Each reconcile is the root of its own trace: nothing outside the operator
    // caused it (the watch event that did is not a request).
    let span = tracing::info_span!(
        parent: None,
        "reconcile",
        otel.name = %format!("reconcile {controller}"),
        otel.kind = "internal",
        k8s.object = %key,
        outcome = tracing::field::Empty,
    );
    let started = Instant::now();
    let result = reconcile.instrument(span.clone()).await;
    span.record(
        "outcome",
        match &result {
            Ok(_) => "ok",
            Err(err) => err.reason(),
        },
    );
    let failure = result.as_ref().err().map(Error::reason);
    ctx.metrics
        .reconciled(controller, started.elapsed(), failure);
    if result.is_ok() {
        ctx.succeeded(key);
    }
    result
}

/// After a failed reconcile of `key`: retry after its own exponential backoff.
pub fn retry_later(ctx: &Context, key: &str, error: &Error) -> Action {
    let wait = ctx.backoff(key);
    tracing::warn!(object = key, %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// Records a Kubernetes Event about `object`; a failure is logged, never fatal.
pub async fn record<K>(
    ctx: &Context,
    object: &K,
    warning: bool,
    reason: &str,
    action: &str,
    note: String,
) where
    K: Resource<DynamicType = ()>,
{
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
        tracing::warn!(reason, %error, "could not record an event");
    }
}
