//! Confer started in-process the way `confer dev` starts it, on port 0.

use std::net::SocketAddr;
use std::sync::Arc;

use confer_gateway::{ChatLink, GatewayConfig, LOCAL_SFU, SfuDirectory};
use confer_room::api::TenantCreated;
use confer_room::registry::{SfuNode, SfuRegistry};
use confer_room::webhook::WebhookConfig;
use confer_room::{Backends, RoomConfig, RoomService};
use confer_sfu::{SfuConfig, SfuHandle};
use tokio::sync::watch;

use crate::late_pushes::LatePushes;

/// Secret of the built-in tenant's API key `dev` (tenant `dev`).
pub const TOKEN_SECRET: &str = "end-to-end test secret";
pub const DEV_TENANT: &str = "dev";

/// How to start a [`TestServer`].
#[derive(Clone, Default)]
pub struct Options {
    /// Joins need a token (no anonymous tenant).
    pub require_token: bool,
    pub room: RoomConfig,
    pub webhooks: WebhookConfig,
    /// The SFU's configuration (media impairment, timeouts).
    pub sfu: SfuConfig,
    /// The gateway's configuration (its SFU counters are filled in).
    pub gateway: GatewayConfig,
    /// The chat bus the gateway listens on, when not the chat service's own: a test
    /// that plays the bus publishes there (reordering, losing), and the gateway hears
    /// nothing else.
    pub gateway_bus: Option<confer_chat::Bus>,
    /// How late the room service's pushes reach the gateway (its answers come at
    /// once): a test of what a member's session does before it has heard of a change.
    pub room_pushes_late_by: Option<std::time::Duration>,
}

impl Options {
    /// The defaults, with each member's chat posts held to `rate`.
    pub fn chat_rate(rate: confer_gateway::ChatRate) -> Self {
        Self {
            gateway: GatewayConfig {
                chat_rate: rate,
                ..GatewayConfig::default()
            },
            ..Self::default()
        }
    }

    /// The defaults, with the SFU recording into `dir` and the gateway reading the
    /// recordings there (a deployment that keeps recordings).
    pub fn recording_to(dir: &std::path::Path) -> Self {
        Self {
            sfu: SfuConfig {
                recordings: Some(dir.to_owned()),
                ..SfuConfig::default()
            },
            gateway: GatewayConfig {
                recordings: Some(dir.to_owned()),
                ..GatewayConfig::default()
            },
            ..Self::default()
        }
    }

    /// The defaults, with clients that send nothing for `silent_for` let go.
    pub fn liveness(silent_for: std::time::Duration) -> Self {
        Self {
            gateway: GatewayConfig {
                liveness: confer_gateway::Liveness { silent_for },
                ..GatewayConfig::default()
            },
            ..Self::default()
        }
    }
}

pub struct TestServer {
    pub http: SocketAddr,
    pub sfu: SfuHandle,
    pub room: RoomService,
    /// The in-process chat service (its expiry runs when a test calls it).
    pub chat: confer_chat::ChatService,
    shutdown: watch::Sender<bool>,
}

impl TestServer {
    /// Gateway, room service and SFU in this process; joins need a token when
    /// `require_token`.
    pub async fn start(require_token: bool) -> anyhow::Result<Self> {
        Self::start_with(Options {
            require_token,
            ..Options::default()
        })
        .await
    }

    pub async fn start_with(options: Options) -> anyhow::Result<Self> {
        let (shutdown, signal) = watch::channel(false);
        let sfu = confer_sfu::start(options.sfu, signal.clone()).await?;
        let mut room_config = options.room;
        room_config.anonymous_tenant = (!options.require_token).then(|| DEV_TENANT.to_owned());
        let registry = SfuRegistry::new(vec![SfuNode {
            id: "local".into(),
            region: room_config.default_region.clone(),
            control: LOCAL_SFU.into(),
        }]);
        let room = confer_room::start(
            room_config,
            Backends::in_memory(),
            registry,
            options.webhooks,
            signal.clone(),
        )
        .await?;
        room.store()
            .ensure_tenant(
                &TenantCreated {
                    tenant: DEV_TENANT.into(),
                    api_key: "dev".into(),
                    api_secret: TOKEN_SECRET.into(),
                },
                "Development",
            )
            .await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let http = listener.local_addr()?;
        let config = GatewayConfig {
            sfu_stats: Some(sfu.stats().clone()),
            ..options.gateway
        };
        let chat = confer_chat::connect("sqlite::memory:", None).await?;
        let room_api: Arc<dyn confer_room::RoomApi> = match options.room_pushes_late_by {
            Some(late_by) => Arc::new(LatePushes::new(Arc::new(room.clone()), late_by)),
            None => Arc::new(room.clone()),
        };
        tokio::spawn(confer_gateway::run(
            config,
            listener,
            room_api,
            SfuDirectory::with_local(Arc::new(sfu.clone())),
            match options.gateway_bus {
                Some(bus) => ChatLink {
                    bus,
                    ..ChatLink::local(chat.clone())
                },
                None => ChatLink::local(chat.clone()),
            },
            signal,
        ));
        Ok(Self {
            http,
            sfu,
            room,
            chat,
            shutdown,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn signal_url(&self) -> String {
        format!("ws://{}/v1/signal", self.http)
    }

    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(confer_http::client()?
            .get(self.url("/metrics"))
            .send()
            .await?
            .text()
            .await?)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Asserts each `(series, value)` in Prometheus text: a series as `metric` reads it.
#[track_caller]
pub fn assert_metrics(text: &str, expected: &[(&str, u64)]) {
    for (name, value) in expected {
        assert_eq!(metric(text, name), Some(*value), "{name} in:\n{text}");
    }
}

/// The value of an unlabelled metric in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}
