//! Placement through Consul with real processes: two `confer sfu` register with a
//! Consul agent (the test double serving Consul's HTTP API; no Consul binary runs
//! here) and report their load; a `confer room` discovers them with blocking queries.
//! Rooms spread over both; an SFU that dies without deregistering stops getting rooms
//! once its last report is 5 s old.
//!
//! PostgreSQL comes from CONFER_TEST_DATABASE_URL (`scripts/test.sh` sets it).

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::Engine as _;
use confer_consul_double::ConsulDouble;
use confer_e2e::backing::{free_port, fresh_postgres};
use confer_e2e::signal::{SignalClient, client_offer};
use serde_json::json;
use support::{Proc, create_tenant, host_token, spawn};

fn media_port() -> anyhow::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_sfu(consul: &str, id: &str, media: u16) -> anyhow::Result<Proc> {
    let control = free_port()?;
    spawn(
        &[
            "sfu",
            "--media-bind",
            &format!("127.0.0.1:{media}"),
            "--control-listen",
            &format!("127.0.0.1:{control}"),
            "--consul-addr",
            consul,
            "--node-id",
            id,
            "--region",
            "eu",
            "--capacity",
            "400",
        ],
        &[],
    )
}

/// Joins `room`; the SFU media port in the answer's candidate.
async fn join(gateway: &str, token: &str, room: &str) -> anyhow::Result<(SignalClient, u16)> {
    let mut client = SignalClient::connect(&format!("ws://{gateway}/v1/signal")).await?;
    client
        .send(&json!({"request_id": "j", "join": {"room": room, "token": token, "offer": {"type": "offer", "sdp": client_offer(1)?}}}))
        .await?;
    let joined = client.recv_kind("joined", Duration::from_secs(10)).await?;
    let port = joined["joined"]["answer"]["sdp"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("a=candidate"))
        .and_then(|l| l.split_whitespace().nth(5))
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no candidate in {joined}"))?;
    Ok((client, port))
}

async fn until(what: &str, done: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_go_to_registered_sfus_and_never_to_one_that_stopped_reporting() -> anyhow::Result<()>
{
    let consul = ConsulDouble::start().await?;
    let run = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let media = [media_port()?, media_port()?];
    let mut sfus = vec![
        start_sfu(&consul.url(), &format!("sfu-{run}-0"), media[0])?,
        start_sfu(&consul.url(), &format!("sfu-{run}-1"), media[1])?,
    ];
    until("both SFUs registered", || consul.services().len() == 2).await?;

    let database = fresh_postgres().await?;
    let master_key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let env = [
        ("CONFER_DATABASE_URL", database.as_str()),
        ("CONFER_MASTER_KEY", master_key.as_str()),
    ];
    let (api_key, api_secret) = create_tenant(&env)?;
    let room_port = free_port()?;
    let _room = spawn(
        &[
            "room",
            "--listen",
            &format!("127.0.0.1:{room_port}"),
            "--region",
            "eu",
            "--consul-addr",
            &consul.url(),
        ],
        &env,
    )?;
    let http = free_port()?;
    let gateway = format!("127.0.0.1:{http}");
    let _gateway = spawn(
        &[
            "gateway",
            "--listen",
            &gateway,
            "--room-service",
            &format!("127.0.0.1:{room_port}"),
        ],
        &[],
    )?;

    let token = |room: &str| host_token(&api_key, &api_secret, room, "ada");
    // Retry the first join until the services are up.
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        match join(&gateway, &token("warm-up"), "warm-up").await {
            Ok(joined) => break joined,
            Err(error) if Instant::now() < deadline => {
                tracing::debug!(%error, "not up yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => return Err(error),
        }
    };
    let mut used = BTreeSet::from([first.1]);
    let mut clients = vec![first.0];
    for i in 0..9 {
        let room = format!("spread-{i}");
        let (client, port) = join(&gateway, &token(&room), &room).await?;
        assert!(
            media.contains(&port),
            "{room} placed on an unknown SFU: {port}"
        );
        used.insert(port);
        clients.push(client);
    }
    assert_eq!(used.len(), 2, "rooms spread over both registered SFUs");

    // SFU 1 dies without deregistering: Consul still lists it (its TTL has not run
    // out), but its load report ages past 5 s and it is no longer a candidate.
    drop(sfus.remove(1));
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    assert_eq!(
        consul.services().len(),
        2,
        "still registered: only freshness excludes it"
    );
    for i in 0..6 {
        let room = format!("after-{i}");
        let (client, port) = join(&gateway, &token(&room), &room).await?;
        assert_eq!(
            port, media[0],
            "{room} placed on the SFU that stopped reporting"
        );
        clients.push(client);
    }
    Ok(())
}
