//! Placement and drains through Consul with real processes: two `confer sfu` register
//! with a Consul agent (the test double serving Consul's HTTP API; no Consul binary
//! runs here) and report their load; a `confer room` discovers them with blocking
//! queries. Rooms spread over both; an SFU that dies without deregistering stops
//! getting rooms once its last report is 5 s old; a draining SFU (told so over its
//! control API, as the operator does) gets no new rooms, and when its rooms are moved
//! (the operator's step at the drain deadline) their participants are told to join
//! again and land on the other SFU.
//!
//! PostgreSQL comes from CONFER_TEST_DATABASE_URL (`scripts/test.sh` sets it).
//! Signalling clients show where each join lands; in the last test two Chromium
//! browsers hold a call on the SFU processes through the drain, and their video keeps
//! decoding on the other SFU.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use confer_consul_double::{CheckStatus, ConsulDouble};
use confer_e2e::backing::free_port;
use confer_e2e::browser::{Browser, Driver};
use confer_e2e::room::{REMOTE_VIDEO_PLAYING, open_join_link};
use confer_e2e::signal::SignalClient;
use confer_e2e::video::sample_together;
use confer_proto::sfu::SetDrainingRequest;
use confer_proto::sfu::sfu_control_client::SfuControlClient;
use confer_room::RoomApi;
use confer_room::grpc::GrpcRoom;
use support::{Proc, host_token, join_for_port, room_with_consul, sfu_with_consul, spawn};

struct Sfu {
    id: String,
    media: u16,
    control: u16,
    metrics: u16,
    process: Option<Proc>,
}

struct Cluster {
    consul: ConsulDouble,
    sfus: Vec<Sfu>,
    room_port: u16,
    room_metrics: u16,
    gateway: String,
    api_key: String,
    api_secret: String,
    _processes: Vec<Proc>,
}

impl Cluster {
    async fn start() -> anyhow::Result<Self> {
        let consul = ConsulDouble::start().await?;
        let run = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        let mut sfus = Vec::new();
        for i in 0..2 {
            let sfu = sfu_with_consul(&consul.url(), &format!("sfu-{run}-{i}"), "eu", 400)?;
            sfus.push(Sfu {
                id: sfu.id,
                media: sfu.media,
                control: sfu.control,
                metrics: sfu.metrics,
                process: Some(sfu.process),
            });
        }
        until("both SFUs registered", || consul.services().len() == 2).await?;

        let room = room_with_consul(&consul.url(), "eu").await?;
        let room_port = room.port;
        let gateway = format!("127.0.0.1:{}", free_port()?);
        let gateway_process = spawn(
            &[
                "gateway",
                "--listen",
                &gateway,
                "--room-service",
                &format!("127.0.0.1:{room_port}"),
            ],
            &[],
        )?;
        let cluster = Self {
            consul,
            sfus,
            room_port,
            room_metrics: room.metrics,
            gateway,
            api_key: room.api_key,
            api_secret: room.api_secret,
            _processes: vec![room.process, gateway_process],
        };
        // The first join waits until every service is up.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match cluster.join("warm-up").await {
                Ok((client, _)) => {
                    // It leaves (a connection that only ended would keep its room
                    // waiting, placed, for a while, as one that may come back).
                    client.leave().await?;
                    return Ok(cluster);
                }
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Joins `room`; the client and the SFU media port in the answer's candidate.
    async fn join(&self, room: &str) -> anyhow::Result<(SignalClient, u16)> {
        let token = host_token(&self.api_key, &self.api_secret, room, "ada");
        join_for_port(&self.gateway, room, &token).await
    }

    /// The room service's `/metrics`.
    async fn metrics(&self) -> anyhow::Result<String> {
        let url = format!("http://127.0.0.1:{}/metrics", self.room_metrics);
        Ok(confer_http::client()?
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?)
    }

    fn media_ports(&self) -> Vec<u16> {
        self.sfus.iter().map(|s| s.media).collect()
    }
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
    let mut cluster = Cluster::start().await?;
    let media = cluster.media_ports();
    let mut used = BTreeSet::new();
    let mut clients = Vec::new();
    for i in 0..10 {
        let room = format!("spread-{i}");
        let (client, port) = cluster.join(&room).await?;
        assert!(
            media.contains(&port),
            "{room} placed on an unknown SFU: {port}"
        );
        used.insert(port);
        clients.push(client);
    }
    assert_eq!(used.len(), 2, "rooms spread over both registered SFUs");
    let metrics = cluster.metrics().await?;
    assert!(metrics.contains("confer_discovery_stale 0\n"), "{metrics}");
    assert!(
        metrics.contains("confer_discovery_nodes{health=\"serving\"} 2\n"),
        "{metrics}"
    );
    assert!(
        // The ten rooms and the cluster's warm-up room.
        metrics.contains("confer_room_placements_total{outcome=\"placed\"} 11\n"),
        "every room placed once: {metrics}"
    );
    // Its PostgreSQL pool, at the default ceiling.
    assert!(
        metrics.contains("confer_room_database_connections_max 8\n")
            && metrics.contains("confer_room_database_connections{state=\"busy\"}"),
        "{metrics}"
    );
    // Prometheus's scraper asks for OpenMetrics, and gets it.
    let open_metrics = confer_http::client()?
        .get(format!("http://127.0.0.1:{}/metrics", cluster.room_metrics))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await?
        .error_for_status()?;
    let content_type = open_metrics.headers()["content-type"].to_str()?.to_owned();
    let body = open_metrics.text().await?;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(
        body.contains("confer_room_placements_total{outcome=\"placed\"} 11\n"),
        "{body}"
    );

    // SFU 1 dies without deregistering: Consul still lists it (its TTL has not run
    // out), but its load report ages past 5 s and it is no longer a candidate.
    drop(cluster.sfus[1].process.take());
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    assert_eq!(
        cluster.consul.services().len(),
        2,
        "still registered: only freshness excludes it"
    );
    for i in 0..6 {
        let room = format!("after-{i}");
        let (client, port) = cluster.join(&room).await?;
        assert_eq!(
            port, media[0],
            "{room} placed on the SFU that stopped reporting"
        );
        clients.push(client);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_sfu_takes_no_new_rooms_and_its_rooms_move_when_evacuated() -> anyhow::Result<()>
{
    let cluster = Cluster::start().await?;
    let media = cluster.media_ports();
    // Rooms on both SFUs.
    let mut on_drained = Vec::new();
    let mut others = Vec::new();
    for i in 0..10 {
        let room = format!("before-{i}");
        let (client, port) = cluster.join(&room).await?;
        if port == media[0] {
            on_drained.push((room, client));
        } else {
            others.push(client);
        }
    }
    anyhow::ensure!(
        !on_drained.is_empty() && !others.is_empty(),
        "rooms on both SFUs"
    );

    // Drain SFU 0 as the operator does: over its control API.
    let drained = &cluster.sfus[0];
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", drained.control))?
            .connect()
            .await?;
    let mut control = SfuControlClient::new(channel);
    let held = control
        .set_draining(SetDrainingRequest { draining: true })
        .await?
        .into_inner();
    assert_eq!(
        held.rooms as usize,
        on_drained.len(),
        "the SFU reports the rooms it keeps"
    );
    let check = format!("confer-sfu:{}", drained.id);
    until("the drained SFU's check turns warning", || {
        cluster.consul.check_status(&check) == Some(CheckStatus::Warning)
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = cluster.metrics().await?;
    assert!(
        metrics.contains("confer_discovery_nodes{health=\"draining\"} 1\n"),
        "{metrics}"
    );
    // The SFU's own /metrics says it is draining, and what it holds.
    let sfu_metrics = confer_http::client()?
        .get(format!("http://127.0.0.1:{}/metrics", drained.metrics))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        sfu_metrics.contains("confer_sfu_draining 1\n"),
        "{sfu_metrics}"
    );
    assert!(
        sfu_metrics.contains(&format!("confer_sfu_peers {}\n", on_drained.len())),
        "{sfu_metrics}"
    );
    for i in 0..6 {
        let room = format!("during-{i}");
        let (client, port) = cluster.join(&room).await?;
        assert_eq!(port, media[1], "{room} placed on the draining SFU");
        others.push(client);
    }

    // The deadline: the rooms still on SFU 0 move. Everyone there is told to join
    // again, and does, landing on SFU 1.
    let rooms = GrpcRoom::connect(&format!("127.0.0.1:{}", cluster.room_port), None)?;
    let moved = rooms.evacuate(drained.id.clone()).await?;
    assert_eq!(moved as usize, on_drained.len());
    for (room, mut client) in on_drained {
        let told = client.recv_kind("error", Duration::from_secs(10)).await?;
        assert_eq!(told["error"]["code"], "node_draining", "{told}");
        let (_rejoined, port) = cluster.join(&room).await?;
        assert_eq!(port, media[1], "{room} came back to the drained SFU");
    }
    Ok(())
}

/// `confer_sfu_peers` on the SFU's own `/metrics`.
async fn sfu_peers(sfu: &Sfu) -> anyhow::Result<u64> {
    let page = confer_http::client()?
        .get(format!("http://127.0.0.1:{}/metrics", sfu.metrics))
        .send()
        .await?
        .text()
        .await?;
    page.lines()
        .find_map(|line| line.strip_prefix("confer_sfu_peers "))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no confer_sfu_peers on the SFU's /metrics"))
}

async fn until_peers(cluster: &Cluster, wanted: [u64; 2]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = [
            sfu_peers(&cluster.sfus[0]).await?,
            sfu_peers(&cluster.sfus[1]).await?,
        ];
        if now == wanted {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "peers per SFU process: {now:?}, wanted {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Both browsers play the other's video and decode at least 30 frames of it in 3 s.
async fn both_decode(browsers: [&Browser; 2], what: &str) -> anyhow::Result<()> {
    for browser in browsers {
        browser
            .wait_for(what, REMOTE_VIDEO_PLAYING, Duration::from_secs(20))
            .await?;
    }
    for window in sample_together(&browsers, Duration::from_secs(3)).await? {
        anyhow::ensure!(window.frames_decoded >= 30, "{what}: {window:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_on_an_evacuated_sfu_process_goes_on_on_the_other() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    // The cluster's warm-up join has left.
    until_peers(&cluster, [0, 0]).await?;
    let driver = Driver::start().await?;
    let ada = driver.browser().await?;
    let bob = driver.browser().await?;
    for (browser, name) in [(&ada, "Ada"), (&bob, "Bob")] {
        let token = host_token(&cluster.api_key, &cluster.api_secret, "standup", name);
        let link = format!(
            "http://{}/r/standup?name={name}&token={token}",
            cluster.gateway
        );
        open_join_link(browser, &link, name).await?;
    }
    both_decode([&ada, &bob], "the other's video").await?;
    let (from, to) = match [
        sfu_peers(&cluster.sfus[0]).await?,
        sfu_peers(&cluster.sfus[1]).await?,
    ] {
        [2, 0] => (0, 1),
        [0, 2] => (1, 0),
        other => anyhow::bail!("the call should be on one SFU process: {other:?}"),
    };

    // The drain, as the operator runs it: the SFU is told to drain over its control
    // API, and at the deadline its rooms are evacuated through the room service.
    let drained = &cluster.sfus[from];
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", drained.control))?
            .connect()
            .await?;
    SfuControlClient::new(channel)
        .set_draining(SetDrainingRequest { draining: true })
        .await?;
    let check = format!("confer-sfu:{}", drained.id);
    until("the drained SFU's check turns warning", || {
        cluster.consul.check_status(&check) == Some(CheckStatus::Warning)
    })
    .await?;
    let rooms = GrpcRoom::connect(&format!("127.0.0.1:{}", cluster.room_port), None)?;
    assert_eq!(rooms.evacuate(drained.id.clone()).await?, 1);

    // Both browsers join again by themselves, on the other SFU process, and decode
    // each other there; the drained SFU ends empty.
    let mut wanted = [0, 0];
    wanted[to] = 2;
    until_peers(&cluster, wanted).await?;
    both_decode([&ada, &bob], "the other's video after the drain").await?;
    assert_eq!(sfu_peers(drained).await?, 0, "the drained SFU is empty");
    Ok(())
}
