//! What each subcommand does: one module per role.

mod chat;
mod crd;
mod dev;
mod gateway;
mod loadtest;
mod metrics;
mod operator;
mod room;
mod sfu;
mod sip;
mod tenant;
mod token;

use std::process::ExitCode;

use anyhow::Context as _;
use tokio::sync::watch;
use tracing::{error, info};

use crate::cli::Command;

/// Logs on stderr and, with `--otel-traces`, spans exported over OTLP.
pub fn init_telemetry(cli: &crate::cli::Cli) -> anyhow::Result<confer_telemetry::Guard> {
    confer_telemetry::init(confer_telemetry::Options {
        service: format!("confer-{}", cli.command.role()),
        json: cli.log_json,
        traces: cli.otel_traces,
        default_filter: "info,rtc=warn,rtc_dtls=error,webrtc=warn".into(),
        otlp_endpoint: None,
    })
}

pub fn run(command: Command, runtime: &tokio::runtime::Runtime) -> ExitCode {
    let result = match command {
        Command::Dev(args) => runtime.block_on(dev::run(args)),
        Command::Gateway(args) => runtime.block_on(gateway::run(args)),
        Command::Sfu(args) => runtime.block_on(sfu::run(args)),
        Command::Room(args) => runtime.block_on(room::run(args)),
        Command::Tenant(args) => runtime.block_on(tenant::run(args)),
        Command::Token(args) => token::run(args),
        Command::Chat(args) => runtime.block_on(chat::run(args)),
        Command::Sip(args) => runtime.block_on(sip::run(args)),
        Command::Operator(args) => runtime.block_on(operator::run(args)),
        Command::Crd(args) => crd::run(args),
        Command::Loadtest(args) => runtime.block_on(loadtest::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!("{err:#}");
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A shutdown signal that fires on Ctrl-C or SIGTERM.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    term.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            _ = term => {},
        }
        info!("shutting down");
        let _ = tx.send(true);
    });
    rx
}

async fn start_sfu(
    media_bind: std::net::SocketAddr,
    announce_ip: Option<std::net::IpAddr>,
    media_workers: Option<u16>,
    gso: bool,
    recordings: Option<std::path::PathBuf>,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<confer_sfu::SfuHandle> {
    let config = confer_sfu::SfuConfig {
        media_bind,
        announce_ip,
        workers: media_workers.map_or_else(confer_sfu::default_workers, usize::from),
        gso,
        recordings,
        ..confer_sfu::SfuConfig::default()
    };
    confer_sfu::start(config, shutdown.clone()).await
}

async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("failed to bind {addr}"))
}
