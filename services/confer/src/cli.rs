//! Command-line interface. Every flag has a `CONFER_*` environment variable.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "confer",
    version,
    about = "Confer: multi-region video conferencing"
)]
pub struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "CONFER_LOG_JSON")]
    pub log_json: bool,
    /// Export traces over OTLP/gRPC, configured by the standard `OTEL_EXPORTER_OTLP_*`
    /// variables (endpoint default http://localhost:4317).
    #[arg(long, global = true, env = "CONFER_OTEL_TRACES")]
    pub otel_traces: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run gateway, room service and SFU in one process on embedded defaults, for trying Confer out.
    Dev(DevArgs),
    /// Run the gateway: WebSocket signalling, the tenant API and the web app.
    Gateway(GatewayArgs),
    /// Run the room service: rooms, participants, admission, placement, webhooks.
    Room(RoomArgs),
    /// Run a selective forwarding unit: the media port and its internal control API.
    Sfu(SfuArgs),
    /// Manage tenants (operators only).
    Tenant(TenantArgs),
    /// Mint an access token for joining a room.
    Token(TokenArgs),
    /// Run the chat service: durable room chat, fanned out to gateways over Redis.
    Chat(ChatArgs),
    /// Run the SIP bridge: callers dial `sip:<room>@host` and join the room (Opus audio).
    Sip(SipArgs),
    /// Run the Kubernetes operator: MediaNode pools (StatefulSets, drains, status).
    Operator(OperatorArgs),
    /// Print the CustomResourceDefinitions (MediaNode, Conference) as YAML.
    Crd(CrdArgs),
    /// Synthetic WebRTC publishers and subscribers against a deployment (or Janus):
    /// forwarded packets/s, loss, jitter, latency, server CPU.
    Loadtest(LoadtestArgs),
}

impl Command {
    /// The role's name, as on the command line.
    pub fn role(&self) -> &'static str {
        match self {
            Command::Dev(_) => "dev",
            Command::Gateway(_) => "gateway",
            Command::Room(_) => "room",
            Command::Sfu(_) => "sfu",
            Command::Tenant(_) => "tenant",
            Command::Token(_) => "token",
            Command::Chat(_) => "chat",
            Command::Sip(_) => "sip",
            Command::Operator(_) => "operator",
            Command::Crd(_) => "crd",
            Command::Loadtest(_) => "loadtest",
        }
    }
}

/// Mutual TLS on the internal gRPC APIs (room, chat, SFU control): every service
/// presents this certificate and accepts only peers the CA signed. All three files
/// together, or none for plaintext.
#[derive(Args, Clone)]
pub struct GrpcTlsArgs {
    /// This process's certificate chain (PEM), issued for `--grpc-tls-name`.
    #[arg(
        long,
        env = "CONFER_GRPC_TLS_CERT",
        requires_all = ["grpc_tls_key", "grpc_tls_ca"]
    )]
    pub grpc_tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(
        long,
        env = "CONFER_GRPC_TLS_KEY",
        requires_all = ["grpc_tls_cert", "grpc_tls_ca"]
    )]
    pub grpc_tls_key: Option<PathBuf>,
    /// The CA that signs every service's certificate (PEM).
    #[arg(
        long,
        env = "CONFER_GRPC_TLS_CA",
        requires_all = ["grpc_tls_cert", "grpc_tls_key"]
    )]
    pub grpc_tls_ca: Option<PathBuf>,
    /// The name services' certificates carry; clients check it instead of the
    /// address they dial.
    #[arg(long, env = "CONFER_GRPC_TLS_NAME", default_value = confer_proto::tls::DEFAULT_NAME)]
    pub grpc_tls_name: String,
}

impl GrpcTlsArgs {
    /// The checked files, when TLS is set up.
    pub fn load(&self) -> anyhow::Result<Option<confer_proto::tls::GrpcTls>> {
        let (Some(cert), Some(key), Some(ca)) =
            (&self.grpc_tls_cert, &self.grpc_tls_key, &self.grpc_tls_ca)
        else {
            return Ok(None);
        };
        let files = confer_proto::tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
            name: self.grpc_tls_name.clone(),
        };
        Ok(Some(confer_proto::tls::GrpcTls::load(&files)?))
    }
}

/// TURN servers handed to clients, with coturn `use-auth-secret` credentials.
#[derive(Args, Clone)]
pub struct TurnArgs {
    /// TURN/STUN URL given to clients (repeatable), e.g. turn:turn.example.com:3478.
    #[arg(long = "turn-url", env = "CONFER_TURN_URLS", value_delimiter = ',')]
    pub urls: Vec<String>,
    /// Secret shared with coturn (`static-auth-secret`).
    #[arg(
        long = "turn-secret",
        env = "CONFER_TURN_SECRET",
        hide_env_values = true
    )]
    pub secret: Option<String>,
    /// Lifetime of TURN credentials in seconds.
    #[arg(long = "turn-ttl", env = "CONFER_TURN_TTL", default_value_t = 3600)]
    pub ttl: u64,
}

impl TurnArgs {
    pub fn config(&self) -> Option<confer_room::turn::TurnConfig> {
        let secret = self.secret.clone()?;
        (!self.urls.is_empty()).then(|| confer_room::turn::TurnConfig {
            urls: self.urls.clone(),
            secret,
            ttl_secs: self.ttl,
        })
    }
}

/// Webhook delivery tuning.
#[derive(Args, Clone)]
pub struct WebhookArgs {
    /// Delay before the first retry, milliseconds; doubles per attempt.
    #[arg(
        long = "webhook-backoff-ms",
        env = "CONFER_WEBHOOK_BACKOFF_MS",
        default_value_t = 2000
    )]
    pub backoff_ms: u64,
    /// Attempts before an event is dead-lettered.
    #[arg(
        long = "webhook-max-attempts",
        env = "CONFER_WEBHOOK_MAX_ATTEMPTS",
        default_value_t = 12
    )]
    pub max_attempts: u32,
}

impl WebhookArgs {
    pub fn config(&self) -> confer_room::webhook::WebhookConfig {
        confer_room::webhook::WebhookConfig {
            backoff_base: std::time::Duration::from_millis(self.backoff_ms),
            max_attempts: self.max_attempts.max(1),
            poll_interval: std::time::Duration::from_millis(self.backoff_ms.clamp(20, 500)),
            ..confer_room::webhook::WebhookConfig::default()
        }
    }
}

#[derive(Args)]
pub struct DevArgs {
    /// HTTP address of the gateway (web app, signalling, tenant API).
    #[arg(long, env = "CONFER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Joins one client address may make in a burst (refilled over 2 s); raise it for
    /// a load generator on this machine.
    #[arg(long, env = "CONFER_JOIN_BURST_PER_ADDRESS", default_value_t = 30)]
    pub join_burst_per_address: u32,
    /// UDP address of the first media worker's port (port 0: free ports).
    #[arg(long, env = "CONFER_MEDIA_BIND", default_value = "127.0.0.1:0")]
    pub media_bind: SocketAddr,
    /// Media workers, one event loop and UDP port each [default: one per core].
    #[arg(long, env = "CONFER_MEDIA_WORKERS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub media_workers: Option<u16>,
    /// Send a burst of equal-size packets to one peer as one system call (UDP GSO)
    /// where the kernel allows it; `false` sends one datagram per call.
    #[arg(long, env = "CONFER_MEDIA_GSO", default_value_t = true, action = clap::ArgAction::Set)]
    pub media_gso: bool,
    /// Address put in ICE candidates, when clients reach the media port by another one.
    #[arg(long, env = "CONFER_ANNOUNCE_IP")]
    pub announce_ip: Option<IpAddr>,
    /// Refuse joins without an access token.
    #[arg(long, env = "CONFER_REQUIRE_TOKEN")]
    pub require_token: bool,
    /// Secret of the built-in tenant's API key `dev`; a random one is made when absent.
    #[arg(long, env = "CONFER_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
    /// Database for tenants, rooms and webhooks.
    #[arg(long, env = "CONFER_DATABASE_URL", default_value = "sqlite::memory:")]
    pub database_url: String,
    /// Key that seals stored secrets (32 bytes, base64); random when absent.
    #[arg(long, env = "CONFER_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    #[command(flatten)]
    pub chat_rate: ChatRateArgs,
    #[command(flatten)]
    pub liveness: LivenessArgs,
    #[command(flatten)]
    pub files: FileArgs,
    #[command(flatten)]
    pub recordings: RecordingArgs,
    #[command(flatten)]
    pub recordings_keep: RecordingKeepArgs,
    #[command(flatten)]
    pub turn: TurnArgs,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
    /// UDP address of the SIP bridge (dial `sip:<room>@<this address>`); `off` to run
    /// without it.
    #[arg(long, env = "CONFER_SIP_LISTEN", default_value = "127.0.0.1:5060")]
    pub sip_listen: String,
    #[command(flatten)]
    pub sip: SipMediaArgs,
}

#[derive(Args)]
pub struct SipArgs {
    /// UDP address for SIP.
    #[arg(long, env = "CONFER_SIP_LISTEN", default_value = "0.0.0.0:5060")]
    pub listen: SocketAddr,
    /// HTTP address serving `/metrics`.
    #[arg(long, env = "CONFER_METRICS_LISTEN", default_value = "0.0.0.0:9094")]
    pub metrics_listen: SocketAddr,
    /// A gateway's signalling WebSocket, where calls join rooms.
    #[arg(
        long,
        env = "CONFER_SIGNAL_URL",
        default_value = "ws://127.0.0.1:8080/v1/signal"
    )]
    pub signal_url: String,
    /// The tenant API key whose rooms callers join (the issuer of the tokens the bridge signs).
    #[arg(long, env = "CONFER_API_KEY")]
    pub api_key: String,
    /// That API key's secret.
    #[arg(long, env = "CONFER_API_SECRET", hide_env_values = true)]
    pub api_secret: String,
    #[command(flatten)]
    pub media: SipMediaArgs,
}

/// How the SIP bridge handles callers' media and who may call.
#[derive(Args, Clone)]
pub struct SipMediaArgs {
    /// Address callers send RTP to (SDP) and SIP messages name; default: the SIP
    /// listen address, or this host's loopback when that is unspecified.
    #[arg(long, env = "CONFER_SIP_ADVERTISE_IP")]
    pub sip_advertise_ip: Option<IpAddr>,
    /// Caller-side RTP ports, `low-high` (any free port when absent).
    #[arg(long, env = "CONFER_SIP_RTP_PORTS", value_parser = parse_port_range)]
    pub sip_rtp_ports: Option<(u16, u16)>,
    /// Networks allowed to call, comma-separated (`203.0.113.0/24,198.51.100.7`): the
    /// SIP trunk's addresses. Any when empty.
    #[arg(long, env = "CONFER_SIP_ALLOW", value_delimiter = ',')]
    pub sip_allow: Vec<confer_netaddr::Network>,
    /// Calls up at once; more are answered 503.
    #[arg(long, env = "CONFER_SIP_MAX_CALLS", default_value_t = 200)]
    pub sip_max_calls: usize,
    /// Hang up a call whose caller sent no RTP for this many seconds.
    #[arg(long, env = "CONFER_SIP_MEDIA_TIMEOUT_SECS", default_value_t = 30)]
    pub sip_media_timeout_secs: u64,
    /// Spoken prompts callers hear: `all` (that the call is recorded, and what their
    /// keys or a host changed), `recording` (only that the call is, or no longer is,
    /// recorded) or `off`.
    #[arg(long, env = "CONFER_SIP_PROMPTS", default_value = "all")]
    pub sip_prompts: confer_sip::prompt::PromptSet,
}

fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let (low, high) = text
        .split_once('-')
        .ok_or_else(|| format!("`{text}` is not a port range like 10000-20000"))?;
    let low: u16 = low
        .trim()
        .parse()
        .map_err(|_| format!("`{low}` is not a port"))?;
    let high: u16 = high
        .trim()
        .parse()
        .map_err(|_| format!("`{high}` is not a port"))?;
    if low == 0 || low > high {
        return Err(format!("`{text}`: the range must be low-high, above 0"));
    }
    Ok((low, high))
}

#[derive(Args)]
pub struct GatewayArgs {
    /// HTTP address to listen on.
    #[arg(long, env = "CONFER_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// The room service's gRPC address.
    #[arg(long, env = "CONFER_ROOM_SERVICE")]
    pub room_service: String,
    /// This gateway's id (unique per replica; the pod name in Kubernetes).
    #[arg(long, env = "CONFER_GATEWAY_ID")]
    pub gateway_id: Option<String>,
    /// The chat service's gRPC address (host:port); needs `--redis-url` for its
    /// fan-out. Without it, chat is kept by this gateway alone, in memory.
    #[arg(long, env = "CONFER_CHAT_SERVICE", requires = "redis_url")]
    pub chat_service: Option<String>,
    /// Redis URL the chat service publishes room chat on.
    #[arg(long, env = "CONFER_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// The region this gateway serves: its participants join a room's SFU in this
    /// region when the room spans it (the room's `regions`), else the room's home.
    #[arg(long = "gateway-region", env = "CONFER_GATEWAY_REGION")]
    pub region: Option<String>,
    /// Proxies in front of this gateway whose `X-Forwarded-For` names the client (an
    /// ingress, the SIP bridge), comma-separated networks: per-address join and
    /// password limits then count the client, not the proxy. None by default.
    #[arg(long, env = "CONFER_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<confer_netaddr::Network>,
    #[command(flatten)]
    pub chat_rate: ChatRateArgs,
    #[command(flatten)]
    pub liveness: LivenessArgs,
    #[command(flatten)]
    pub files: FileArgs,
    #[command(flatten)]
    pub recordings: RecordingArgs,
    #[command(flatten)]
    pub recordings_keep: RecordingKeepArgs,
    #[command(flatten)]
    pub tls: GrpcTlsArgs,
}

/// When a client that has gone silent is let go.
#[derive(Args, Clone)]
pub struct LivenessArgs {
    /// Seconds a signalling client may send nothing, not even the answer to a ping
    /// (sent every third of this), before its connection is dropped and its
    /// participant leaves the room: a connection that died without a close.
    #[arg(long, env = "CONFER_CLIENT_SILENT_SECS",
        default_value_t = confer_gateway::Liveness::DEFAULT.silent_for.as_secs(),
        value_parser = clap::value_parser!(u64).range(3..))]
    pub client_silent_secs: u64,
}

impl LivenessArgs {
    pub fn liveness(&self) -> confer_gateway::Liveness {
        confer_gateway::Liveness {
            silent_for: std::time::Duration::from_secs(self.client_silent_secs),
        }
    }
}

/// How fast each member may post in a room's chat.
#[derive(Args, Clone)]
pub struct ChatRateArgs {
    /// Chat posts (sends, edits, file shares; not deletes) each member may make per
    /// second, steady; 0: no limit. A post over it is refused with
    /// `chat_rate_limited` and when to retry.
    #[arg(long, env = "CONFER_CHAT_RATE", default_value_t = confer_gateway::ChatRate::DEFAULT.per_second)]
    pub chat_rate: u32,
    /// Chat posts each member may make at once, after a quiet moment.
    #[arg(long, env = "CONFER_CHAT_BURST", default_value_t = confer_gateway::ChatRate::DEFAULT.burst,
        value_parser = clap::value_parser!(u32).range(1..))]
    pub chat_burst: u32,
}

impl ChatRateArgs {
    pub fn rate(&self) -> confer_gateway::ChatRate {
        confer_gateway::ChatRate {
            per_second: self.chat_rate,
            burst: self.chat_burst,
        }
    }
}

/// Recordings: where SFUs write them and gateways serve them from.
#[derive(Args, Clone)]
pub struct RecordingArgs {
    /// Where recordings are kept (a volume the SFUs write and the gateways read);
    /// unset, rooms cannot be recorded [`confer dev`: a directory under the system's
    /// temporary one].
    #[arg(long, env = "CONFER_RECORDINGS_DIR")]
    pub recordings_dir: Option<std::path::PathBuf>,
}

impl RecordingArgs {
    /// The directory, or `confer dev`'s default.
    pub fn dev_dir(&self) -> std::path::PathBuf {
        self.recordings_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("confer-recordings"))
    }
}

/// How long the gateways keep finished recordings.
#[derive(Args, Clone)]
pub struct RecordingKeepArgs {
    /// Days a finished recording is kept after its last write, then removed by the
    /// gateways' sweep; 0 keeps it until the tenant removes it.
    #[arg(long, env = "CONFER_RECORDINGS_KEEP_DAYS", default_value_t = 0)]
    pub recordings_keep_days: u32,
}

impl RecordingKeepArgs {
    pub fn keep(&self) -> Option<std::time::Duration> {
        (self.recordings_keep_days > 0)
            .then(|| std::time::Duration::from_secs(u64::from(self.recordings_keep_days) * 86_400))
    }
}

/// Files shared in chat.
#[derive(Args, Clone)]
pub struct FileArgs {
    /// Where shared files are stored (a volume every gateway mounts).
    #[arg(long, env = "CONFER_FILES_DIR")]
    pub files_dir: Option<std::path::PathBuf>,
    /// Largest file members may share, in bytes.
    #[arg(long, env = "CONFER_MAX_FILE_BYTES", default_value_t = 25 * 1024 * 1024)]
    pub max_file_bytes: u64,
    /// Key that signs upload and download links (32 bytes, base64), the same on every
    /// gateway; random when absent (links then work only on this gateway).
    #[arg(long, env = "CONFER_FILE_KEY", hide_env_values = true)]
    pub file_key: Option<String>,
}

impl FileArgs {
    pub fn config(&self) -> anyhow::Result<confer_gateway::FileConfig> {
        use base64::Engine as _;
        let mut config = confer_gateway::FileConfig {
            max_bytes: self.max_file_bytes,
            ..confer_gateway::FileConfig::default()
        };
        if let Some(dir) = &self.files_dir {
            config.dir.clone_from(dir);
        }
        if let Some(key) = &self.file_key {
            let key = base64::engine::general_purpose::STANDARD
                .decode(key)
                .map_err(|err| anyhow::anyhow!("CONFER_FILE_KEY is not base64: {err}"))?;
            anyhow::ensure!(key.len() >= 32, "CONFER_FILE_KEY must be at least 32 bytes");
            config.key = key;
        }
        Ok(config)
    }
}

#[derive(Args)]
pub struct ChatArgs {
    /// gRPC address to listen on.
    #[arg(long, env = "CONFER_LISTEN", default_value = "0.0.0.0:7891")]
    pub listen: SocketAddr,
    /// PostgreSQL URL (or sqlite: for a single replica) for the chat history.
    #[arg(long, env = "CONFER_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Most PostgreSQL connections this replica opens; each carries one send at a
    /// time, so this bounds the sends in progress (mind the server's max_connections
    /// across replicas and roles).
    #[arg(long, env = "CONFER_DATABASE_CONNECTIONS", default_value_t = confer_chat::store::DEFAULT_CONNECTIONS)]
    pub database_connections: u32,
    /// Seconds the chat of a room is kept when its tenant set no retention for it
    /// (`PUT /v1/rooms/{room}/chat/retention`, where 0 keeps a room's chat for good);
    /// 0 here keeps such rooms' chat for good too.
    #[arg(long, env = "CONFER_CHAT_DEFAULT_RETENTION", default_value_t = 0)]
    pub default_retention: u64,
    /// Redis URL for the fan-out to gateways (sharded pub/sub, one channel per room).
    #[arg(long, env = "CONFER_REDIS_URL", hide_env_values = true)]
    pub redis_url: String,
    /// Address of `/metrics` (entries stored, refusals by reason, publish failures,
    /// send time).
    #[arg(long, env = "CONFER_METRICS_LISTEN", default_value = "0.0.0.0:9093")]
    pub metrics_listen: SocketAddr,
    #[command(flatten)]
    pub tls: GrpcTlsArgs,
}

impl ChatArgs {
    /// The retention of rooms whose tenant set none; `None` keeps their chat for good.
    pub fn default_retention(&self) -> Option<std::time::Duration> {
        (self.default_retention > 0).then(|| std::time::Duration::from_secs(self.default_retention))
    }
}

#[derive(Args)]
pub struct RoomArgs {
    /// gRPC address to listen on.
    #[arg(long, env = "CONFER_LISTEN", default_value = "0.0.0.0:7890")]
    pub listen: SocketAddr,
    /// PostgreSQL URL (or sqlite: for a single replica).
    #[arg(long, env = "CONFER_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Most PostgreSQL connections this replica opens; each join or leave holds one
    /// for its transaction (mind the server's max_connections across replicas and
    /// roles).
    #[arg(long, env = "CONFER_DATABASE_CONNECTIONS", default_value_t = confer_room::store::DEFAULT_CONNECTIONS)]
    pub database_connections: u32,
    /// Redis URL for state shared between replicas; without it, state stays in this process.
    #[arg(long, env = "CONFER_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Key that seals stored secrets (32 bytes, base64).
    #[arg(long, env = "CONFER_MASTER_KEY", hide_env_values = true)]
    pub master_key: String,
    /// An SFU rooms may be placed on: id@region=host:port (repeatable). Without
    /// `--consul-addr`, these are the SFUs.
    #[arg(
        long,
        env = "CONFER_SFUS",
        value_delimiter = ',',
        conflicts_with = "consul_addr"
    )]
    pub sfu: Vec<String>,
    /// Consul agent HTTP address: discover SFUs and their load there.
    #[arg(long, env = "CONFER_CONSUL_ADDR")]
    pub consul_addr: Option<String>,
    /// Consul ACL token.
    #[arg(long, env = "CONSUL_HTTP_TOKEN", hide_env_values = true)]
    pub consul_token: Option<String>,
    /// Address of `/metrics` (webhook delivery; with Consul, discovery: stale, snapshot
    /// age, nodes by health).
    #[arg(long, env = "CONFER_METRICS_LISTEN", default_value = "0.0.0.0:9091")]
    pub metrics_listen: SocketAddr,
    /// Regions that take a region's rooms when it has no capacity, nearest first:
    /// `eu-west=eu-central,us-east;us-east=us-west,eu-west`. Unlisted: any region.
    #[arg(long, env = "CONFER_NEAREST_REGIONS", default_value = "")]
    pub nearest_regions: String,
    /// Region of rooms whose settings name none.
    #[arg(long, env = "CONFER_REGION", default_value = "local")]
    pub region: String,
    /// Let joins without a token into this tenant (never in production).
    #[arg(long, env = "CONFER_ANONYMOUS_TENANT")]
    pub anonymous_tenant: Option<String>,
    /// Joins one client address may make in a burst (refilled over 2 s); raise it when
    /// many users share one address (a corporate NAT, a load generator).
    #[arg(long, env = "CONFER_JOIN_BURST_PER_ADDRESS", default_value_t = 30)]
    pub join_burst_per_address: u32,
    /// Seconds a gateway counts as alive after a room service last served its command
    /// watch; one gone for longer (and half as long again) loses its participants.
    /// The same on every replica.
    #[arg(long, env = "CONFER_GATEWAY_LEASE_SECS",
        default_value_t = confer_room::GATEWAY_LEASE.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..))]
    pub gateway_lease_secs: u64,
    /// Seconds a participant whose connection was lost may come back as it was (its
    /// name, role and host mutes, past the lock and the waiting room) with the rejoin
    /// ticket its client holds; 0 turns coming back off.
    #[arg(long, env = "CONFER_REJOIN_GRACE_SECS",
        default_value_t = confer_room::REJOIN_GRACE.as_secs())]
    pub rejoin_grace_secs: u64,
    #[command(flatten)]
    pub turn: TurnArgs,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
    #[command(flatten)]
    pub tls: GrpcTlsArgs,
}

#[derive(Args)]
pub struct TenantArgs {
    /// PostgreSQL (or sqlite:) URL of the room service's database.
    #[arg(long, env = "CONFER_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Key that seals stored secrets (32 bytes, base64), as the room service uses.
    #[arg(long, env = "CONFER_MASTER_KEY", hide_env_values = true)]
    pub master_key: String,
    #[command(subcommand)]
    pub command: TenantCommand,
}

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and its first API key; the secret is printed once.
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Args)]
pub struct SfuArgs {
    #[command(flatten)]
    pub recordings: RecordingArgs,
    /// UDP address of the first media worker's port; worker `i` takes the port `i` above.
    #[arg(long, env = "CONFER_MEDIA_BIND", default_value = "0.0.0.0:7882")]
    pub media_bind: SocketAddr,
    /// Media workers, one event loop and UDP port each [default: one per core].
    #[arg(long, env = "CONFER_MEDIA_WORKERS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub media_workers: Option<u16>,
    /// Send a burst of equal-size packets to one peer as one system call (UDP GSO)
    /// where the kernel allows it; `false` sends one datagram per call.
    #[arg(long, env = "CONFER_MEDIA_GSO", default_value_t = true, action = clap::ArgAction::Set)]
    pub media_gso: bool,
    /// Address put in ICE candidates; required when the media port binds a wildcard.
    #[arg(long, env = "CONFER_ANNOUNCE_IP")]
    pub announce_ip: Option<IpAddr>,
    /// TCP address of the internal control API.
    #[arg(long, env = "CONFER_CONTROL_LISTEN", default_value = "0.0.0.0:7881")]
    pub control_listen: SocketAddr,
    /// Consul agent HTTP address: register there and report load every 2 s.
    #[arg(long, env = "CONFER_CONSUL_ADDR")]
    pub consul_addr: Option<String>,
    /// Consul ACL token.
    #[arg(long, env = "CONSUL_HTTP_TOKEN", hide_env_values = true)]
    pub consul_token: Option<String>,
    /// This node's id in discovery (the pod name in Kubernetes).
    #[arg(long, env = "CONFER_NODE_ID")]
    pub node_id: Option<String>,
    /// Region this node serves.
    #[arg(long, env = "CONFER_REGION", default_value = "local")]
    pub region: String,
    /// Zone within the region.
    #[arg(long, env = "CONFER_ZONE", default_value = "")]
    pub zone: String,
    /// Participants this node is sized for; placement keeps rooms below it.
    #[arg(long, env = "CONFER_CAPACITY", default_value_t = 500)]
    pub capacity: u32,
    /// Address of `/metrics` (forwarding, loss repair, peers, draining).
    #[arg(long, env = "CONFER_METRICS_LISTEN", default_value = "0.0.0.0:9092")]
    pub metrics_listen: SocketAddr,
    /// host:port others reach the control API at (default: the announce IP and the
    /// control port).
    #[arg(long, env = "CONFER_CONTROL_ADVERTISE")]
    pub control_advertise: Option<String>,
    #[command(flatten)]
    pub tls: GrpcTlsArgs,
}

#[derive(Args)]
pub struct OperatorArgs {
    /// Consul agent HTTP address, where the SFUs report their rooms.
    #[arg(long, env = "CONFER_CONSUL_ADDR")]
    pub consul_addr: String,
    /// Consul ACL token.
    #[arg(long, env = "CONSUL_HTTP_TOKEN", hide_env_values = true)]
    pub consul_token: Option<String>,
    /// Image of SFU pods whose MediaNode names none (normally this operator's own).
    #[arg(long, env = "CONFER_SFU_IMAGE")]
    pub sfu_image: String,
    /// Address of `/metrics` and `/healthz`.
    #[arg(long, env = "CONFER_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,
    /// Watch MediaNodes and Conferences in this namespace only.
    #[arg(long, env = "CONFER_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// The room service's gRPC address (`host:port`), where Conferences become rooms.
    #[arg(long, env = "CONFER_ROOM_SERVICE")]
    pub room_service: String,
    /// The chat service's gRPC address (`host:port`), where a Conference's
    /// `chatRetentionSeconds` goes; without it, a Conference that sets one fails to
    /// reconcile.
    #[arg(long, env = "CONFER_CHAT_SERVICE")]
    pub chat_service: Option<String>,
    /// Namespace of the leader-election Lease (normally the operator's own).
    #[arg(long, env = "CONFER_LEASE_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// This replica's name in the Lease (default: the pod's hostname).
    #[arg(long, env = "HOSTNAME")]
    pub identity: String,
    /// Secret (`tls.crt`, `tls.key`, `ca.crt`, in each MediaNode's namespace) that SFU
    /// pods serve their control API with, over mutual TLS; with `--grpc-tls-cert`.
    #[arg(long, env = "CONFER_SFU_GRPC_TLS_SECRET")]
    pub sfu_grpc_tls_secret: Option<String>,
    #[command(flatten)]
    pub tls: GrpcTlsArgs,
}

#[derive(Args)]
pub struct CrdArgs {
    /// Write one file per CRD (`<name>.yaml`) into this directory instead.
    #[arg(long)]
    pub out_dir: Option<std::path::PathBuf>,
}

#[derive(Args)]
pub struct TokenArgs {
    /// Room the token is for.
    #[arg(long)]
    pub room: String,
    /// Participant identity.
    #[arg(long)]
    pub identity: String,
    /// Display name shown to others.
    #[arg(long, default_value = "")]
    pub name: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 6 * 3600)]
    pub ttl: u64,
    /// Issuer (API key name).
    #[arg(long, env = "CONFER_TOKEN_ISSUER", default_value = "dev")]
    pub issuer: String,
    /// Signing secret.
    #[arg(long, env = "CONFER_TOKEN_SECRET", hide_env_values = true)]
    pub secret: String,
    /// Grant room administration (join as host).
    #[arg(long)]
    pub admin: bool,
    /// Join as a viewer: no publishing.
    #[arg(long, conflicts_with = "admin")]
    pub viewer: bool,
    /// Receive no one's media (`canSubscribe: false`): a WHIP encoder, a bot that
    /// only publishes.
    #[arg(long)]
    pub no_subscribe: bool,
    /// Send no chat or data (`canPublishData: false`).
    #[arg(long)]
    pub no_data: bool,
    /// Not listed to the others nor announced (`hidden`): a recorder, a bot.
    #[arg(long)]
    pub hidden: bool,
    /// The only sources it may publish (`canPublishSources`), from `microphone`,
    /// `camera`, `screen_share`; all when not given.
    #[arg(long, value_delimiter = ',', value_parser = ["microphone", "camera", "screen_share"], conflicts_with = "viewer")]
    pub sources: Vec<String>,
    /// What joins: `standard` (a person in an app) or `sip` (a phone caller, as the
    /// SIP bridge signs; rooms without dial-in refuse it).
    #[arg(long, value_enum, default_value_t = TokenKind::Standard)]
    pub kind: TokenKind,
}

/// `confer token --kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenKind {
    Standard,
    Sip,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_cli_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The chat rate `args` give `confer gateway` and `confer dev`, or the error.
    fn chat_rates(args: &[&str]) -> Result<[confer_gateway::ChatRate; 2], clap::Error> {
        let gateway = ["confer", "gateway", "--room-service", "127.0.0.1:1"];
        let Command::Gateway(gateway) = Cli::try_parse_from(gateway.iter().chain(args))?.command
        else {
            unreachable!("a gateway command")
        };
        let Command::Dev(dev) = Cli::try_parse_from(["confer", "dev"].iter().chain(args))?.command
        else {
            unreachable!("a dev command")
        };
        Ok([gateway.chat_rate.rate(), dev.chat_rate.rate()])
    }

    #[test]
    fn the_chat_rate_is_the_default_unless_set_and_a_burst_is_at_least_one() {
        use confer_gateway::ChatRate;
        assert_eq!(chat_rates(&[]).ok(), Some([ChatRate::DEFAULT; 2]));
        let set = ChatRate {
            per_second: 2,
            burst: 7,
        };
        assert_eq!(
            chat_rates(&["--chat-rate", "2", "--chat-burst", "7"]).ok(),
            Some([set; 2])
        );
        let off = chat_rates(&["--chat-rate", "0"]).expect("parses");
        assert!(off.iter().all(|rate| !rate.is_limited()));
        assert!(chat_rates(&["--chat-burst", "0"]).is_err());
        assert!(chat_rates(&["--chat-rate", "-1"]).is_err());
    }

    #[test]
    fn the_chat_services_default_retention_is_none_unless_set() {
        let parse = |extra: &[&str]| -> Result<Option<std::time::Duration>, clap::Error> {
            let chat = ["confer", "chat", "--database-url", "sqlite::memory:"];
            let chat = chat.iter().chain(&["--redis-url", "redis://127.0.0.1:1"]);
            let Command::Chat(chat) = Cli::try_parse_from(chat.chain(extra))?.command else {
                unreachable!("a chat command")
            };
            Ok(chat.default_retention())
        };
        assert_eq!(parse(&[]).ok(), Some(None));
        assert_eq!(parse(&["--default-retention", "0"]).ok(), Some(None));
        let month = std::time::Duration::from_secs(30 * 86_400);
        assert_eq!(
            parse(&["--default-retention", "2592000"]).ok(),
            Some(Some(month))
        );
        assert!(parse(&["--default-retention", "-1"]).is_err());
        assert!(parse(&["--default-retention", "30d"]).is_err());
    }

    #[test]
    fn every_subcommand_explains_itself() {
        for sub in Cli::command().get_subcommands() {
            assert!(
                sub.get_about().is_some(),
                "`confer {}` has no --help text",
                sub.get_name()
            );
        }
    }
}

#[derive(Args)]
pub struct LoadtestArgs {
    /// The gateway's signalling WebSocket.
    #[arg(
        long,
        env = "CONFER_SIGNAL_URL",
        default_value = "ws://127.0.0.1:8080/v1/signal"
    )]
    pub signal_url: String,
    /// Load a Janus VideoRoom instead, through its HTTP API (`http://host:8088/janus`).
    #[arg(long, conflicts_with_all = ["api_key", "api_secret"])]
    pub janus_url: Option<String>,
    /// API key whose secret signs the clients' access tokens (when joins need one).
    #[arg(long, env = "CONFER_API_KEY", requires = "api_secret")]
    pub api_key: Option<String>,
    #[arg(
        long,
        env = "CONFER_API_SECRET",
        hide_env_values = true,
        requires = "api_key"
    )]
    pub api_secret: Option<String>,
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Publishers per room, one video stream each.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Subscribers per room, receiving every publisher of the room.
    #[arg(long, default_value_t = 10)]
    pub subscribers: usize,
    /// Each publisher's video bitrate.
    #[arg(long, default_value_t = 1500)]
    pub bitrate_kbps: u32,
    /// RTP payload bytes per packet.
    #[arg(long, default_value_t = 1100, value_parser = clap::value_parser!(u16).range(64..=1400))]
    pub payload_bytes: u16,
    /// Percent of publishers' RTP dropped on the way to the server.
    #[arg(long, default_value_t = 0.0)]
    pub loss_percent: f64,
    /// Seconds between all clients connecting and the measurement.
    #[arg(long, default_value_t = 2)]
    pub warmup_secs: u64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// The server's process id: its CPU time over the measurement is reported.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The server's Prometheus `/metrics` (a Confer gateway's or SFU's): the SFU's own
    /// forwarding delay over the measurement is reported from it.
    #[arg(long)]
    pub server_metrics: Option<String>,
    /// Address the clients bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub client_ip: IpAddr,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}
