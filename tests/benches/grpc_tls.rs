//! What mutual TLS costs on the internal gRPC APIs: one SFU's control API served twice
//! in this process, plaintext and over mutual TLS, and the same calls against each in
//! turn. Per call: 32 callers on one channel, each call `SetBlocked` for a peer that
//! is not there (a round trip with no work behind it); calls per second and p50/p99.
//! Per connection: a new channel, connected and called once, one after another;
//! connections per second. Three rounds, plaintext and TLS alternating.
//!
//! `cargo bench -p confer-e2e --bench grpc_tls`

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use confer_e2e::pki::TestCa;
use confer_proto::tls::{DEFAULT_NAME, GrpcTls};
use confer_sfu::core::TrackSource;
use confer_sfu::grpc::GrpcSfu;
use confer_sfu::{ParticipantId, SfuApi as _, SfuConfig, SfuError};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::sync::watch;

const CALLERS: usize = 32;
const CALLS: usize = 20_000;
const CONNECTIONS: usize = 300;

async fn call(sfu: &GrpcSfu) -> anyhow::Result<()> {
    match sfu
        .set_blocked(ParticipantId::new("nobody"), TrackSource::ScreenShare, true)
        .await
    {
        Err(SfuError::UnknownPeer) => Ok(()),
        other => anyhow::bail!("unexpected answer {other:?}"),
    }
}

/// Calls per second over one channel, and p50/p99 of a call in ms.
async fn calls(addr: SocketAddr, tls: Option<&GrpcTls>) -> anyhow::Result<(f64, f64, f64)> {
    let sfu = Arc::new(GrpcSfu::connect(addr, tls)?);
    call(&sfu).await?;
    let started = Instant::now();
    let mut callers = FuturesUnordered::new();
    for _ in 0..CALLERS {
        let sfu = sfu.clone();
        callers.push(tokio::spawn(async move {
            let mut took = Vec::with_capacity(CALLS / CALLERS);
            for _ in 0..CALLS / CALLERS {
                let at = Instant::now();
                call(&sfu).await?;
                took.push(at.elapsed());
            }
            anyhow::Ok(took)
        }));
    }
    let mut took = Vec::with_capacity(CALLS);
    while let Some(caller) = callers.next().await {
        took.extend(caller??);
    }
    let rate = took.len() as f64 / started.elapsed().as_secs_f64();
    took.sort();
    let ms = |q: f64| took[((took.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    Ok((rate, ms(0.5), ms(0.99)))
}

/// New connections per second, each connected and called once.
async fn connections(addr: SocketAddr, tls: Option<&GrpcTls>) -> anyhow::Result<f64> {
    let started = Instant::now();
    for _ in 0..CONNECTIONS {
        call(&GrpcSfu::connect(addr, tls)?).await?;
    }
    Ok(CONNECTIONS as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let ca = TestCa::new()?;
    let tls = GrpcTls::load(&ca.issue("sfu", DEFAULT_NAME)?)?;
    let (_shutdown, signal) = watch::channel(false);
    let sfu = confer_sfu::start(SfuConfig::default(), signal.clone()).await?;
    let mut addrs = Vec::new();
    for served_tls in [None, Some(tls.clone())] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        addrs.push(listener.local_addr()?);
        tokio::spawn(confer_sfu::grpc::serve(
            sfu.clone(),
            listener,
            served_tls,
            signal.clone(),
        ));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    println!(
        "| round | transport | calls/s (32 callers, one channel) | p50 ms | p99 ms | new connections/s |"
    );
    println!("|---|---|---|---|---|---|");
    for round in 1..=3 {
        for (name, addr, tls) in [
            ("plaintext", addrs[0], None),
            ("mutual TLS", addrs[1], Some(&tls)),
        ] {
            let (rate, p50, p99) = calls(addr, tls).await?;
            let connected = connections(addr, tls).await?;
            println!("| {round} | {name} | {rate:.0} | {p50:.3} | {p99:.3} | {connected:.0} |");
        }
    }
    Ok(())
}
