//! Chat across processes: Confer's binary as one SFU, one room service, chat services
//! and two gateways, on a fresh PostgreSQL database and a redis-server of its own.

use std::time::Duration;

use base64::Engine as _;
use confer_e2e::backing::{RedisServer, free_port, fresh_postgres};

use super::{Proc, create_tenant, spawn};

pub struct ChatCluster {
    pub redis: RedisServer,
    /// `host:port` of each gateway.
    pub gateways: [String; 2],
    /// `host:port` of each chat service's `/metrics`.
    pub chat_metrics: Vec<String>,
    /// `host:port` of the SFU's `/metrics`.
    pub sfu_metrics: String,
    pub api_key: String,
    pub api_secret: String,
    /// One client for the tenant API: making one loads TLS roots.
    http: reqwest::Client,
    /// Each gateway's process (`None` while stopped) and its arguments.
    gateway_procs: Vec<Option<Proc>>,
    gateway_args: Vec<Vec<String>>,
    _procs: Vec<Proc>,
}

impl ChatCluster {
    /// Starts the processes: `chat_services` of them (gateway `i` talks to chat service
    /// `i % chat_services`), with `room_args` added to the room service's.
    pub async fn start(chat_services: usize, room_args: &[&str]) -> anyhow::Result<Self> {
        let redis = RedisServer::start().await?;
        let master_key =
            base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
        let env = [
            ("CONFER_DATABASE_URL".to_owned(), fresh_postgres().await?),
            ("CONFER_MASTER_KEY".to_owned(), master_key),
            ("CONFER_REDIS_URL".to_owned(), redis.url()),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (api_key, api_secret) = create_tenant(&env)?;
        let mut procs = Vec::new();
        let (media, control) = (free_port()?, free_port()?);
        let sfu_metrics = format!("127.0.0.1:{}", free_port()?);
        procs.push(spawn(
            &[
                "sfu",
                "--metrics-listen",
                &sfu_metrics,
                "--media-bind",
                &format!("127.0.0.1:{media}"),
                "--media-workers",
                "1",
                "--control-listen",
                &format!("127.0.0.1:{control}"),
            ],
            &[],
        )?);
        let sfu = format!("sfu-chat@eu=127.0.0.1:{control}");
        let room = format!("127.0.0.1:{}", free_port()?);
        let mut args = vec![
            "room",
            "--metrics-listen",
            "127.0.0.1:0",
            "--listen",
            &room,
            "--region",
            "eu",
            "--sfu",
            &sfu,
        ];
        args.extend_from_slice(room_args);
        procs.push(spawn(&args, &env)?);
        let mut chats = Vec::new();
        let mut chat_metrics = Vec::new();
        for _ in 0..chat_services.max(1) {
            let chat = format!("127.0.0.1:{}", free_port()?);
            let metrics = format!("127.0.0.1:{}", free_port()?);
            procs.push(spawn(
                &["chat", "--listen", &chat, "--metrics-listen", &metrics],
                &env,
            )?);
            chats.push(chat);
            chat_metrics.push(metrics);
        }
        let mut gateways = [String::new(), String::new()];
        let mut gateway_procs = Vec::new();
        let mut gateway_args = Vec::new();
        for (i, gateway) in gateways.iter_mut().enumerate() {
            *gateway = format!("127.0.0.1:{}", free_port()?);
            let args: Vec<String> = [
                "gateway",
                "--listen",
                gateway,
                "--room-service",
                &room,
                "--gateway-id",
                &format!("gw-chat-{i}"),
                "--chat-service",
                &chats[i % chats.len()],
                "--redis-url",
                &redis.url(),
                // The fan-out under load, not the per-member limit: the senders
                // here post hundreds of messages a second each.
                "--chat-rate",
                "0",
            ]
            .iter()
            .map(|arg| arg.to_string())
            .collect();
            let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
            gateway_procs.push(Some(spawn(&arg_refs, &[])?));
            gateway_args.push(args);
        }
        let cluster = Self {
            redis,
            gateways,
            chat_metrics,
            sfu_metrics,
            api_key,
            api_secret,
            http: confer_http::client()?,
            gateway_procs,
            gateway_args,
            _procs: procs,
        };
        cluster.wait_ready(&chats).await?;
        Ok(cluster)
    }

    /// Stops gateway `i` (its process is killed, as a node going away).
    pub fn stop_gateway(&mut self, i: usize) {
        self.gateway_procs[i] = None;
    }

    /// Starts gateway `i` again as it was first, on the same address.
    pub fn start_gateway(&mut self, i: usize) -> anyhow::Result<()> {
        let args: Vec<&str> = self.gateway_args[i].iter().map(String::as_str).collect();
        self.gateway_procs[i] = Some(spawn(&args, &[])?);
        Ok(())
    }

    /// Creates `room` for up to `max` participants (more than the default 100),
    /// through the tenant API.
    pub async fn create_room(&self, room: &str, max: usize) -> anyhow::Result<()> {
        confer_e2e::tenant::create_room(
            &self.http,
            &format!("http://{}", self.gateways[0]),
            (&self.api_key, &self.api_secret),
            serde_json::json!({"name": room, "settings": {"max_participants": max}}),
        )
        .await
    }

    /// A host token for `room` (no waiting room).
    pub fn token(&self, room: &str, identity: &str) -> String {
        super::host_token(&self.api_key, &self.api_secret, room, identity)
    }

    /// Waits until both gateways answer the tenant API (so their room service does)
    /// and the chat services accept connections.
    async fn wait_ready(&self, chats: &[String]) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let http = &self.http;
        for gateway in &self.gateways {
            loop {
                let status = http
                    .get(format!("http://{gateway}/v1/rooms"))
                    .basic_auth(&self.api_key, Some(&self.api_secret))
                    .send()
                    .await
                    .map(|r| r.status().as_u16());
                if status.as_ref().is_ok_and(|s| *s == 200) {
                    break;
                }
                anyhow::ensure!(
                    tokio::time::Instant::now() < deadline,
                    "{gateway}: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        for chat in chats {
            while tokio::net::TcpStream::connect(chat).await.is_err() {
                anyhow::ensure!(
                    tokio::time::Instant::now() < deadline,
                    "{chat} not listening"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }
}
