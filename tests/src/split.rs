//! Gateway, room service, chat service and SFU as separate services talking gRPC, as
//! in a split deployment, all on loopback ports of this process.

use std::net::SocketAddr;
use std::sync::Arc;

use confer_chat::grpc::GrpcChat;
use confer_gateway::{ChatLink, GatewayConfig, SfuDirectory};
use confer_proto::tls::GrpcTls;
use confer_room::grpc::GrpcRoom;
use confer_room::registry::{SfuNode, SfuRegistry};
use confer_room::{Backends, RoomConfig};
use confer_sfu::{SfuConfig, SfuHandle, grpc};
use tokio::sync::watch;

pub struct SplitServices {
    /// The gateway's signalling WebSocket.
    pub signal_url: String,
    pub sfu: SfuHandle,
    /// The SFU's gRPC control API.
    pub sfu_control: SocketAddr,
    /// The room service's gRPC API.
    pub room_addr: SocketAddr,
    _shutdown: watch::Sender<bool>,
}

impl SplitServices {
    /// SFU (control over gRPC) ← room service (over gRPC, anonymous joins into `dev`)
    /// ← gateway → chat service (over gRPC, on SQLite in memory, its bus in-process);
    /// stopped when dropped.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(None).await
    }

    /// The same, every gRPC API over mutual TLS with `tls` when given.
    pub async fn start_with(tls: Option<GrpcTls>) -> anyhow::Result<Self> {
        let (shutdown, signal) = watch::channel(false);
        let sfu = confer_sfu::start(SfuConfig::default(), signal.clone()).await?;
        let control = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let sfu_control = control.local_addr()?;
        tokio::spawn(grpc::serve(
            sfu.clone(),
            control,
            tls.clone(),
            signal.clone(),
        ));

        let room_config = RoomConfig {
            anonymous_tenant: Some("dev".into()),
            ..RoomConfig::default()
        };
        let registry = SfuRegistry::new(vec![SfuNode {
            id: "sfu-a".into(),
            region: room_config.default_region.clone(),
            control: sfu_control.to_string(),
        }]);
        let room = confer_room::start(
            room_config,
            Backends::in_memory(),
            registry,
            Default::default(),
            signal.clone(),
        )
        .await?;
        let room_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let room_addr = room_listener.local_addr()?;
        tokio::spawn(confer_room::grpc::serve(
            room,
            room_listener,
            tls.clone(),
            signal.clone(),
        ));

        let chat = confer_chat::connect("sqlite::memory:", None).await?;
        let chat_bus = chat.bus().clone();
        let chat_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let chat_addr = chat_listener.local_addr()?;
        tokio::spawn(confer_chat::grpc::serve(
            chat,
            chat_listener,
            tls.clone(),
            signal.clone(),
        ));

        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let signal_url = format!("ws://{}/v1/signal", http.local_addr()?);
        tokio::spawn(confer_gateway::run(
            GatewayConfig::default(),
            http,
            Arc::new(GrpcRoom::connect(&room_addr.to_string(), tls.as_ref())?),
            SfuDirectory::remote(tls.clone()),
            ChatLink {
                api: Arc::new(GrpcChat::connect(&chat_addr.to_string(), tls.as_ref())?),
                bus: chat_bus,
                stats: None,
            },
            signal,
        ));
        Ok(Self {
            signal_url,
            sfu,
            sfu_control,
            room_addr,
            _shutdown: shutdown,
        })
    }
}
