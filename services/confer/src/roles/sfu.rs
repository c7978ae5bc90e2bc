//! `confer sfu`: the media port and its internal control API; with `--consul-addr`,
//! registered in Consul and reporting its load every two seconds.

use anyhow::Context as _;
use confer_discovery::{
    ConsulRegistry, NodeId, NodeReport, NodeState, Registration, Registry, announce, unix_ms,
};
use confer_sfu::{SfuHandle, grpc};
use tokio::sync::watch;
use tracing::info;

use crate::cli::SfuArgs;

pub async fn run(args: SfuArgs) -> anyhow::Result<()> {
    let shutdown = super::shutdown_signal();
    let tls = args.tls.load()?;
    let sfu = super::start_sfu(
        args.media_bind,
        args.announce_ip,
        args.media_workers,
        args.media_gso,
        args.recordings.recordings_dir.clone(),
        &shutdown,
    )
    .await?;
    let listener = super::bind(args.control_listen).await?;
    let control = listener.local_addr()?;
    let metrics = super::bind(args.metrics_listen).await?;
    let rendered = sfu.clone();
    tokio::spawn(super::metrics::serve(metrics, move |out| {
        render_metrics(out, &rendered);
    }));
    info!(control = %control, media = ?sfu.media_addrs(), grpc_tls = tls.is_some(), "sfu ready");
    if let Some(consul) = &args.consul_addr {
        let registry = Registry::Consul(ConsulRegistry::new(consul, args.consul_token.clone())?);
        let registration = registration(&args, control)?;
        tokio::spawn(announce(
            registry,
            registration.clone(),
            reporter(sfu.clone(), registration),
            stopped(shutdown.clone()),
        ));
    }
    grpc::serve(sfu, listener, tls, shutdown).await
}

/// `/metrics`: forwarding, loss repair and layer counters, peers, and whether this
/// node is draining.
fn render_metrics(out: &mut confer_metrics::Exposition, sfu: &SfuHandle) {
    sfu.stats().snapshot().render(out);
    sfu.stats().render_quality(out);
    out.gauge1(
        "confer_sfu_draining",
        "1 while this SFU takes no new rooms and waits for its rooms to empty.",
        f64::from(u8::from(sfu.is_draining())),
    );
}

fn registration(args: &SfuArgs, control: std::net::SocketAddr) -> anyhow::Result<Registration> {
    let id = match &args.node_id {
        Some(id) => id.clone(),
        None => std::env::var("HOSTNAME").context("--node-id (or HOSTNAME) names this node")?,
    };
    let control = match (&args.control_advertise, args.announce_ip) {
        (Some(advertised), _) => advertised.clone(),
        (None, Some(ip)) => std::net::SocketAddr::new(ip, control.port()).to_string(),
        (None, None) if !control.ip().is_unspecified() => control.to_string(),
        (None, None) => anyhow::bail!(
            "--control-advertise (or --announce-ip) must say where the control API is reached"
        ),
    };
    Ok(Registration {
        id: NodeId(id),
        region: args.region.clone(),
        zone: args.zone.clone(),
        control,
        capacity: args.capacity,
    })
}

/// Each report asks the media loop itself how many peers and rooms it holds.
fn reporter(
    sfu: SfuHandle,
    registration: Registration,
) -> impl FnMut() -> std::pin::Pin<Box<dyn Future<Output = NodeReport> + Send>> {
    move || {
        let sfu = sfu.clone();
        let registration = registration.clone();
        Box::pin(async move {
            let occupancy = sfu.occupancy().await.unwrap_or_default();
            NodeReport {
                id: registration.id,
                region: registration.region,
                zone: registration.zone,
                state: if sfu.is_draining() {
                    NodeState::Draining
                } else {
                    NodeState::Serving
                },
                capacity: registration.capacity,
                participants: u32::try_from(occupancy.peers).unwrap_or(u32::MAX),
                rooms: u32::try_from(occupancy.rooms).unwrap_or(u32::MAX),
                reported_at_ms: unix_ms(),
            }
        })
    }
}

async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
