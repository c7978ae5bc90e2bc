//! A room spanning two regions with every service its own `confer` process: an SFU in
//! `eu` and one in `us` registered with Consul (the test double serving Consul's HTTP
//! API), a room service whose rooms live in `eu`, and a gateway per region
//! (`--gateway-region`). The room is created through the tenant REST API with
//! `regions: ["us"]`. A participant joining through each gateway lands on its own
//! region's SFU; the second join links the two SFUs over their control APIs, and the
//! SFU processes then exchange sealed relay datagrams on their media ports, each
//! reporting its link up on `/metrics`.
//!
//! PostgreSQL comes from CONFER_TEST_DATABASE_URL (`scripts/test.sh` sets it).
//! Signalling clients stand in for browsers (media across a relay with Chromium is
//! `tests/tests/browser_regions.rs`).

mod support;

use std::time::{Duration, Instant};

use confer_consul_double::ConsulDouble;
use confer_e2e::backing::free_port;
use support::{
    host_token, join_for_port, metric, room_with_consul, sfu_with_consul, spawn, until_metric,
};

/// How long a metric is waited for.
const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joiners_in_two_regions_land_on_their_own_sfus_and_the_sfus_relay() -> anyhow::Result<()> {
    let consul = ConsulDouble::start().await?;
    let run = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let mut sfus = Vec::new();
    for region in ["eu", "us"] {
        let id = format!("sfu-{region}-{run}");
        sfus.push(sfu_with_consul(&consul.url(), &id, region, 100)?);
    }
    let room = room_with_consul(&consul.url(), "eu").await?;
    let (room_port, api_key, api_secret) =
        (room.port, room.api_key.clone(), room.api_secret.clone());
    let mut gateways = Vec::new();
    let mut gateway_processes = Vec::new();
    for region in ["eu", "us"] {
        let gateway = format!("127.0.0.1:{}", free_port()?);
        gateway_processes.push(spawn(
            &[
                "gateway",
                "--listen",
                &gateway,
                "--room-service",
                &format!("127.0.0.1:{room_port}"),
                "--gateway-region",
                region,
            ],
            &[],
        )?);
        gateways.push(gateway);
    }

    // The room, through the tenant API, once the services are up and both SFUs report.
    let http = confer_http::client()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let created = http
            .post(format!("http://{}/v1/rooms", gateways[0]))
            .basic_auth(&api_key, Some(&api_secret))
            .json(&serde_json::json!({
                "name": "span",
                "settings": {"waiting_room": false, "region": "eu", "regions": ["us"]}
            }))
            .send()
            .await;
        match created {
            Ok(response) if response.status().is_success() => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            Ok(response) => anyhow::bail!("room not created: {}", response.text().await?),
            Err(err) => return Err(err.into()),
        }
    }
    while consul.services().len() < 2 {
        anyhow::ensure!(Instant::now() < deadline, "both SFUs registered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(2_500)).await; // both have reported load

    let token = |identity| host_token(&api_key, &api_secret, "span", identity);
    let (_ada, ada_port) = join_for_port(&gateways[0], "span", &token("ada")).await?;
    let (_bob, bob_port) = join_for_port(&gateways[1], "span", &token("bob")).await?;
    assert_eq!(ada_port, sfus[0].media, "the eu joiner is on the eu SFU");
    assert_eq!(bob_port, sfus[1].media, "the us joiner is on the us SFU");

    // The us gateway linked the two SFUs; they hear each other over the relay.
    for sfu in &sfus {
        let metrics = format!("127.0.0.1:{}", sfu.metrics);
        until_metric(&metrics, "confer_sfu_relay_links ", WAIT, |v| v == 1.0).await?;
        until_metric(
            &metrics,
            "confer_sfu_relay_datagrams_total{direction=\"received\"} ",
            WAIT,
            |v| v >= 4.0,
        )
        .await?;
        until_metric(&metrics, "confer_sfu_relay_links_down ", WAIT, |v| v == 0.0).await?;
        // Heartbeats answered: the round trip to the other region is measured.
        until_metric(&metrics, "confer_sfu_relay_rtt_seconds_count ", WAIT, |v| {
            v >= 1.0
        })
        .await?;
        assert_eq!(
            metric(
                &metrics,
                "confer_sfu_relay_datagrams_total{direction=\"refused\"} "
            )
            .await?,
            Some(0.0)
        );
    }
    until_metric(
        &gateways[1],
        "confer_gateway_relay_links_total{outcome=\"linked\"} ",
        WAIT,
        |v| v >= 1.0,
    )
    .await?;

    // The room service lists a placement per region.
    let room: serde_json::Value = http
        .get(format!("http://{}/v1/rooms/span", gateways[0]))
        .basic_auth(&api_key, Some(&api_secret))
        .send()
        .await?
        .json()
        .await?;
    let mut regions: Vec<&str> = room["placements"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["region"].as_str())
        .collect();
    regions.sort_unstable();
    assert_eq!(regions, ["eu", "us"], "{room}");
    Ok(())
}
