//! `confer room`: the room service over gRPC, on PostgreSQL and Redis.

use anyhow::Context as _;
use confer_discovery::ConsulRegistry;
use confer_placement::Regions;
use confer_room::registry::{SfuNode, SfuRegistry};
use confer_room::store::MasterKey;
use confer_room::{Backends, RoomConfig};
use tracing::info;

use crate::cli::RoomArgs;

pub async fn run(args: RoomArgs) -> anyhow::Result<()> {
    let shutdown = super::shutdown_signal();
    let tls = args.tls.load()?;
    let nodes = args
        .sfu
        .iter()
        .map(|spec| SfuNode::parse(spec).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut config = RoomConfig {
        default_region: args.region.clone(),
        turn: args.turn.config(),
        anonymous_tenant: args.anonymous_tenant.clone(),
        gateway_lease: std::time::Duration::from_secs(args.gateway_lease_secs),
        rejoin_grace: std::time::Duration::from_secs(args.rejoin_grace_secs),
        ..RoomConfig::default()
    };
    config.limits.joins_per_address.0 = args.join_burst_per_address.max(1);
    let backends = Backends {
        database_url: args.database_url.clone(),
        redis_url: args.redis_url.clone(),
        master_key: MasterKey::from_base64(&args.master_key).context("CONFER_MASTER_KEY")?,
        database_connections: args.database_connections,
    };
    let regions = Regions::parse(&args.nearest_regions)
        .map_err(anyhow::Error::msg)
        .context("--nearest-regions")?;
    let mut snapshots = None;
    let registry = match &args.consul_addr {
        Some(consul) => {
            let watch = ConsulRegistry::new(consul, args.consul_token.clone())?.watch();
            snapshots = Some(watch.clone());
            SfuRegistry::discovered(watch, regions)
        }
        None => SfuRegistry::new(nodes).with_regions(regions),
    };
    let service = confer_room::start(
        config,
        backends,
        registry,
        args.webhooks.config(),
        shutdown.clone(),
    )
    .await?;
    let metrics = super::bind(args.metrics_listen).await?;
    let rendered = service.clone();
    tokio::spawn(super::metrics::serve(metrics, move |out| {
        render_metrics(out, &rendered, snapshots.as_ref());
    }));
    let listener = super::bind(args.listen).await?;
    info!(listen = %listener.local_addr()?, sfus = args.sfu.len(), grpc_tls = tls.is_some(), "room service ready");
    confer_room::grpc::serve(service, listener, tls, shutdown).await
}

/// `/metrics`: webhook delivery, placement decisions, and with Consul how fresh this
/// replica's view of discovery is (placement keeps running on the last snapshot while
/// Consul is unreachable, and says so here).
fn render_metrics(
    out: &mut confer_metrics::Exposition,
    service: &confer_room::RoomService,
    snapshots: Option<&tokio::sync::watch::Receiver<confer_discovery::Snapshot>>,
) {
    service.webhook_stats().counts().render(out);
    service.presence_stats().render(out);
    service.store().pool_use().render(
        out,
        "confer_room_database_connections",
        "confer_room_database_connections_max",
    );
    out.counter_by(
        "confer_room_placements",
        "Placement decisions: existing (the room already had its SFU in the region), placed (a new choice), or the error code.",
        "outcome",
        &service.placements(),
    );
    out.counter_by(
        "confer_room_participants_released",
        "Participants let go because their gateway went away: gateway_restarted (it started again under the same id) or gateway_lost (its lease ran out).",
        "reason",
        &service.released(),
    );
    out.counter_by(
        "confer_room_rejoins",
        "Joins that showed a rejoin ticket: returned (the participant came back as it was after a lost connection) or plain (it joined as anyone would).",
        "outcome",
        &service.rejoins(),
    );
    out.counter(
        "confer_room_member_list_reads",
        "Room member lists read from live state to tell members of a change: one per change, or one for a batch (a host muting everyone, lowering every hand).",
        &[(&[], service.member_list_reads())],
    );
    out.counter(
        "confer_room_notifications",
        "Room events published to gateways: one per gateway holding members an event is for, per event (a host muting everyone, or lowering every hand, is one event).",
        &[(&[], service.notifications())],
    );
    out.counter(
        "confer_room_takeovers",
        "Joins that took the place their token's identity had in the room: another tab or device, or a page reloaded without leaving (the participant before is told `replaced`).",
        &[(&[], service.takeovers())],
    );
    out.counter(
        "confer_room_identity_waits",
        "Retries of joins that waited for another join of the same identity to the same room (two tabs opened at once): joins of one identity take turns.",
        &[(&[], service.identity_waits())],
    );
    out.counter(
        "confer_room_gateways_lost",
        "Gateways whose lease ran out while they held participants.",
        &[(&[], service.gateways_lost())],
    );
    if let Some(snapshots) = snapshots {
        out.raw(&confer_discovery::metrics::render(
            &snapshots.borrow(),
            confer_discovery::unix_ms(),
        ));
    }
}
