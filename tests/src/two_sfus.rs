//! A deployment with two SFUs: each serves its control API over gRPC and reports its
//! load to a discovery registry (the in-memory one `confer dev` uses, with Consul's
//! contract); the room service places rooms from that registry; gateways reach the
//! SFUs the placements name over gRPC. All on loopback ports of this process.
//!
//! [`TwoSfus::start`]: both SFUs in one region, one gateway. [`TwoSfus::two_regions`]:
//! SFU A in `eu`, SFU B in `us`, and a gateway serving each region.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use confer_discovery::{MemoryRegistry, NodeId, NodeReport, NodeState, Registration};
use confer_gateway::{ChatLink, GatewayConfig, SfuDirectory};
use confer_room::registry::SfuRegistry;
use confer_room::{Backends, RoomConfig, RoomService};
use confer_sfu::{SfuConfig, SfuHandle, grpc};
use tokio::sync::watch;

/// How often each SFU reports its load (the product reports at least every 2 s).
const REPORT_EVERY: Duration = Duration::from_millis(300);

pub struct SfuNode {
    pub id: String,
    pub handle: SfuHandle,
}

impl SfuNode {
    /// Marks the node draining (no new rooms), as its own drain does; its next load
    /// report says so.
    pub fn drain(&self) {
        self.handle.set_draining(true);
    }
}

pub struct TwoSfus {
    /// The first gateway (the `eu` one with two regions).
    pub http: SocketAddr,
    /// Every gateway, in region order.
    pub gateways: Vec<SocketAddr>,
    pub room: RoomService,
    pub sfus: [SfuNode; 2],
    _shutdown: watch::Sender<bool>,
}

impl TwoSfus {
    pub async fn start() -> anyhow::Result<Self> {
        let region = RoomConfig::default().default_region;
        Self::deploy([region.as_str(), region.as_str()], &[None]).await
    }

    /// SFU A in `eu` (the rooms' default region), SFU B in `us`; gateway 0 serves
    /// `eu`, gateway 1 `us`.
    pub async fn two_regions() -> anyhow::Result<Self> {
        Self::deploy(["eu", "us"], &[Some("eu"), Some("us")]).await
    }

    async fn deploy(regions: [&str; 2], gateways: &[Option<&str>]) -> anyhow::Result<Self> {
        let (shutdown, signal) = watch::channel(false);
        let room_config = RoomConfig {
            anonymous_tenant: Some("dev".into()),
            default_region: regions[0].to_owned(),
            ..RoomConfig::default()
        };
        let registry = MemoryRegistry::new();
        let mut nodes = Vec::new();
        for (id, region) in ["sfu-a", "sfu-b"].into_iter().zip(regions) {
            let handle = confer_sfu::start(SfuConfig::default(), signal.clone()).await?;
            let control = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let registration = Registration {
                id: NodeId::from(id),
                region: region.to_owned(),
                zone: String::new(),
                control: control.local_addr()?.to_string(),
                capacity: 100,
            };
            tokio::spawn(grpc::serve(handle.clone(), control, None, signal.clone()));
            registry.register(&registration)?;
            tokio::spawn(report_load(registry.clone(), registration, handle.clone()));
            nodes.push(SfuNode {
                id: id.to_owned(),
                handle,
            });
        }
        let room = confer_room::start(
            room_config,
            Backends::in_memory(),
            SfuRegistry::discovered(registry.watch(), Default::default()),
            Default::default(),
            signal.clone(),
        )
        .await?;
        // Gateways share one chat service, as they would in a deployment.
        let chat = ChatLink::local(confer_chat::connect("sqlite::memory:", None).await?);
        let mut addrs = Vec::new();
        for region in gateways {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            addrs.push(listener.local_addr()?);
            let config = GatewayConfig {
                region: region.map(str::to_owned),
                ..GatewayConfig::default()
            };
            tokio::spawn(confer_gateway::run(
                config,
                listener,
                Arc::new(room.clone()),
                SfuDirectory::remote(None),
                chat.clone(),
                signal.clone(),
            ));
        }
        let [a, b]: [SfuNode; 2] = nodes
            .try_into()
            .map_err(|_| anyhow::anyhow!("two SFUs were started"))?;
        // Both nodes have reported before the first join.
        tokio::time::sleep(REPORT_EVERY * 2).await;
        Ok(Self {
            http: addrs[0],
            gateways: addrs,
            room,
            sfus: [a, b],
            _shutdown: shutdown,
        })
    }

    /// Peers on each SFU.
    pub async fn peers(&self) -> anyhow::Result<[usize; 2]> {
        Ok([
            self.sfus[0].handle.occupancy().await?.peers,
            self.sfus[1].handle.occupancy().await?.peers,
        ])
    }

    /// Waits up to 20 s for `wanted` peers on each SFU.
    pub async fn until_peers(&self, wanted: [usize; 2]) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let now = self.peers().await?;
            if now == wanted {
                return Ok(());
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "peers per SFU: {now:?}, wanted {wanted:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// `path` on gateway `index`.
    pub fn url_via(&self, index: usize, path: &str) -> String {
        format!("http://{}{path}", self.gateways[index])
    }
}

/// What an SFU's announcer does: its peers and rooms, and whether it drains.
async fn report_load(registry: MemoryRegistry, registration: Registration, sfu: SfuHandle) {
    loop {
        let Ok(held) = sfu.occupancy().await else {
            return;
        };
        let report = NodeReport {
            id: registration.id.clone(),
            region: registration.region.clone(),
            zone: String::new(),
            state: if sfu.is_draining() {
                NodeState::Draining
            } else {
                NodeState::Serving
            },
            capacity: registration.capacity,
            participants: u32::try_from(held.peers).unwrap_or(u32::MAX),
            rooms: u32::try_from(held.rooms).unwrap_or(u32::MAX),
            reported_at_ms: confer_discovery::unix_ms(),
        };
        if registry.report(&report).is_err() {
            return;
        }
        tokio::time::sleep(REPORT_EVERY).await;
    }
}
