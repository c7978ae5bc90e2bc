//! Confer as separate processes on real PostgreSQL and Redis: two SFUs, two room
//! services sharing one database and one Redis, two gateways each talking to its own
//! room service. Clients racing through both gateways into the same room always end
//! on one SFU; rooms spread over both SFUs; webhooks survive a room-service restart.
//!
//! PostgreSQL and Redis come from CONFER_TEST_DATABASE_URL and CONFER_TEST_REDIS_URL,
//! which `scripts/test.sh` sets (starting its own servers when none run here).

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::Engine as _;
use confer_e2e::backing::{free_port, free_udp_port, fresh_postgres};
use confer_e2e::signal::SignalClient;
use serde_json::{Value, json};
use support::{Proc, create_tenant, host_token, http_get, join_for_port, spawn};

fn redis_url() -> String {
    std::env::var("CONFER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

struct Cluster {
    gateways: [String; 2],
    media_ports: [u16; 2],
    rooms: Vec<Proc>,
    room_args: Vec<Vec<String>>,
    env: Vec<(String, String)>,
    _others: Vec<Proc>,
    api_key: String,
    api_secret: String,
}

impl Cluster {
    async fn start() -> anyhow::Result<Self> {
        let database = fresh_postgres().await?;
        let master_key =
            base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
        let env = vec![
            ("CONFER_DATABASE_URL".to_owned(), database),
            ("CONFER_MASTER_KEY".to_owned(), master_key),
            ("CONFER_REDIS_URL".to_owned(), redis_url()),
        ];
        let env_refs: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut others = Vec::new();
        let run = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        let mut sfu_specs = Vec::new();
        let mut media_ports = [0u16; 2];
        for (i, media_port) in media_ports.iter_mut().enumerate() {
            let control = free_port()?;
            *media_port = free_udp_port()?;
            others.push(spawn(
                &[
                    "sfu",
                    "--metrics-listen",
                    "127.0.0.1:0",
                    "--media-bind",
                    &format!("127.0.0.1:{media_port}"),
                    // One media port per SFU: these tests tell SFUs apart by it.
                    "--media-workers",
                    "1",
                    "--control-listen",
                    &format!("127.0.0.1:{control}"),
                ],
                &[],
            )?);
            sfu_specs.push(format!("sfu-{run}-{i}@eu=127.0.0.1:{control}"));
        }
        // The tenant, through the operator command, before any service runs.
        let (api_key, api_secret) = create_tenant(&env_refs)?;

        let mut rooms = Vec::new();
        let mut room_args = Vec::new();
        let mut gateways = [String::new(), String::new()];
        for (i, gateway) in gateways.iter_mut().enumerate() {
            let room_port = free_port()?;
            let mut args: Vec<String> = [
                "room",
                "--metrics-listen",
                "127.0.0.1:0",
                "--listen",
                &format!("127.0.0.1:{room_port}"),
                "--region",
                "eu",
                "--webhook-backoff-ms",
                "50",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            for spec in &sfu_specs {
                args.push("--sfu".into());
                args.push(spec.clone());
            }
            let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
            rooms.push(spawn(&arg_refs, &env_refs)?);
            room_args.push(args);
            let http = free_port()?;
            others.push(spawn(
                &[
                    "gateway",
                    "--listen",
                    &format!("127.0.0.1:{http}"),
                    "--room-service",
                    &format!("127.0.0.1:{room_port}"),
                    "--gateway-id",
                    &format!("gw-{run}-{i}"),
                ],
                &[],
            )?);
            *gateway = format!("127.0.0.1:{http}");
        }
        let cluster = Self {
            gateways,
            media_ports,
            rooms,
            room_args,
            env,
            _others: others,
            api_key,
            api_secret,
        };
        for gateway in &cluster.gateways {
            cluster.wait_ready(gateway).await?;
        }
        Ok(cluster)
    }

    /// Room service `i` started again as it was first (after it was killed).
    fn spawn_room(&self, i: usize) -> anyhow::Result<Proc> {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let args: Vec<&str> = self.room_args[i].iter().map(String::as_str).collect();
        spawn(&args, &env)
    }

    /// Waits until the gateway answers the tenant API (and so its room service does).
    async fn wait_ready(&self, gateway: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let response = self
                .api(gateway, reqwest::Method::GET, "/v1/rooms", None)
                .await;
            if matches!(response, Ok((200, _))) {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{gateway} not ready: {response:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn api(
        &self,
        gateway: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = confer_http::client()?
            .request(method, format!("http://{gateway}{path}"))
            .basic_auth(&self.api_key, Some(&self.api_secret));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((
            status,
            if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text)?
            },
        ))
    }

    fn token(&self, room: &str, identity: &str) -> String {
        host_token(&self.api_key, &self.api_secret, room, identity)
    }

    /// Joins `room` through gateway `g`; returns the client and the SFU media port in
    /// the answer's candidate.
    async fn join(
        &self,
        g: usize,
        room: &str,
        identity: &str,
    ) -> anyhow::Result<(SignalClient, u16)> {
        join_for_port(&self.gateways[g], room, &self.token(room, identity)).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_gateways_place_a_room_on_one_sfu_and_webhooks_survive_a_restart()
-> anyhow::Result<()> {
    let mut cluster = Cluster::start().await?;

    // Webhooks go to a receiver in this test.
    let (hook_url, received) = receiver().await?;
    let (status, _) = cluster
        .api(
            &cluster.gateways[0],
            reqwest::Method::POST,
            "/v1/webhooks",
            Some(json!({"url": hook_url})),
        )
        .await?;
    assert_eq!(status, 201);

    let mut sfus_used = BTreeSet::new();
    let mut clients = Vec::new();
    for i in 0..8 {
        let room = format!("race-{i}");
        let (a, b) = tokio::join!(cluster.join(0, &room, "ada"), cluster.join(1, &room, "bob"));
        let ((client_a, port_a), (client_b, port_b)) = (a?, b?);
        assert_eq!(port_a, port_b, "{room}: both joins answered by one SFU");
        assert!(cluster.media_ports.contains(&port_a));
        sfus_used.insert(port_a);
        let (_, view_a) = cluster
            .api(
                &cluster.gateways[0],
                reqwest::Method::GET,
                &format!("/v1/rooms/{room}"),
                None,
            )
            .await?;
        let (_, view_b) = cluster
            .api(
                &cluster.gateways[1],
                reqwest::Method::GET,
                &format!("/v1/rooms/{room}"),
                None,
            )
            .await?;
        assert_eq!(view_a["placement"], view_b["placement"]);
        assert_eq!(view_a["num_participants"], 2, "{view_a}");
        clients.push((client_a, client_b));
    }
    assert_eq!(sfus_used.len(), 2, "rooms spread over both SFUs");

    // Kill one room service hard and bring it back; leave the rooms meanwhile.
    drop(cluster.rooms.remove(0));
    for (mut a, mut b) in clients {
        a.send(&json!({"leave": {}})).await?;
        b.send(&json!({"leave": {}})).await?;
    }
    cluster.rooms.insert(0, cluster.spawn_room(0)?);
    cluster.wait_ready(&cluster.gateways[0].clone()).await?;

    // Every room: started, two joins, two leaves, finished: 6 events each, by id once.
    let expected = 8 * 6;
    let deadline = Instant::now() + Duration::from_secs(30);
    let ids = loop {
        let ids: Vec<(String, String, String)> = received
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .clone();
        let distinct: BTreeSet<&String> = ids.iter().map(|(id, _, _)| id).collect();
        if distinct.len() >= expected {
            break ids;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {expected} events arrived",
            distinct.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for i in 0..8 {
        let room = format!("race-{i}");
        let mut seen = BTreeSet::new();
        let events: Vec<&str> = ids
            .iter()
            .filter(|(id, r, _)| r == &room && seen.insert(id.clone()))
            .map(|(_, _, event)| event.as_str())
            .collect();
        assert_eq!(events.first(), Some(&"room_started"), "{room}: {events:?}");
        assert_eq!(events.last(), Some(&"room_finished"), "{room}: {events:?}");
        assert_eq!(events.len(), 6, "{room}: {events:?}");
    }
    Ok(())
}

/// A gateway's room service restarts while a host on the other gateway keeps the chat
/// to hosts and removes a member of this one. The commands for that member are made
/// while nothing watches for its gateway; once the room service is back, the gateway
/// takes up its command stream where it broke, and the member hears of both, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_made_while_a_gateways_room_service_restarts_still_reach_it() -> anyhow::Result<()>
{
    const WAIT: Duration = Duration::from_secs(10);
    let mut cluster = Cluster::start().await?;
    let (mut ada, _) = cluster.join(1, "steady", "ada").await?;
    let (mut bob, _) = cluster.join(0, "steady", "bob").await?;
    let joined = ada.recv_kind("participant_joined", WAIT).await?;
    let bob_id = joined["participant_joined"]["participant"]["id"].clone();
    assert!(bob_id.is_string(), "{joined}");

    // Gateway 0's room service goes; Ada acts through gateway 1's.
    drop(cluster.rooms.remove(0));
    let denied = ada
        .request("h1", json!({"host": {"action": "deny_chat"}}), WAIT)
        .await?;
    assert!(denied.get("ack").is_some(), "{denied}");
    let removed = ada
        .request(
            "h2",
            json!({"host": {"action": "remove", "participant_id": bob_id}}),
            WAIT,
        )
        .await?;
    assert!(removed.get("ack").is_some(), "{removed}");
    let left = ada.recv_kind("participant_left", WAIT).await?;
    assert_eq!(left["participant_left"]["participant_id"], bob_id);

    cluster.rooms.insert(0, cluster.spawn_room(0)?);

    // Bob is told the chat is kept to hosts, then that he was removed.
    let state = bob.recv_kind("room_state", Duration::from_secs(30)).await?;
    assert_eq!(state["room_state"]["allow_chat"], false, "{state}");
    let error = bob.recv_kind("error", WAIT).await?;
    assert_eq!(error["error"]["code"], "removed", "{error}");
    // Gateway 0 watched twice: at start, and once more after the break.
    let metrics = http_get(&cluster.gateways[0], "/metrics")?;
    assert_eq!(
        confer_e2e::server::metric(&metrics, "confer_gateway_command_watches_total"),
        Some(2),
        "{metrics}"
    );
    Ok(())
}

type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>>;

/// Records (event id, room, event) of every delivery.
async fn receiver() -> anyhow::Result<(String, Seen)> {
    let seen: Seen = Default::default();
    let state = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let state = state.clone();
            async move {
                let value: Value = serde_json::from_str(&body).unwrap_or_default();
                let entry = (
                    value["id"].as_str().unwrap_or_default().to_owned(),
                    value["room"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    value["event"].as_str().unwrap_or_default().to_owned(),
                );
                if let Ok(mut seen) = state.lock() {
                    seen.push(entry);
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, seen))
}
