//! What each subcommand does.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use base64::Engine as _;
use confer_auth::{Claims, TokenKey, VideoGrant};
use confer_gateway::GatewayConfig;
use confer_sfu::{SfuConfig, grpc};
use tokio::sync::watch;
use tracing::{error, info};

use crate::cli::{Command, DevArgs, GatewayArgs, SfuArgs, TokenArgs};

/// Exit code of a role that is not built yet.
const NOT_BUILT: u8 = 2;

pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONFER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rtc=warn,webrtc=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub fn run(command: Command) -> ExitCode {
    let result = match command {
        Command::Dev(args) => block_on(dev(args)),
        Command::Gateway(args) => block_on(gateway(args)),
        Command::Sfu(args) => block_on(sfu(args)),
        Command::Token(args) => token(args),
        Command::Room => return not_built("room"),
        Command::Chat => return not_built("chat"),
        Command::Sip => return not_built("sip"),
        Command::Operator => return not_built("operator"),
        Command::Crd => return not_built("crd"),
        Command::Loadtest => return not_built("loadtest"),
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

fn not_built(role: &str) -> ExitCode {
    eprintln!("confer {role}: this role is not built yet");
    ExitCode::from(NOT_BUILT)
}

fn block_on(future: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?
        .block_on(future)
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
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<confer_sfu::SfuHandle> {
    let config = SfuConfig {
        media_bind,
        announce_ip,
        ..SfuConfig::default()
    };
    confer_sfu::start(config, shutdown.clone()).await
}

async fn dev(args: DevArgs) -> anyhow::Result<()> {
    let shutdown = shutdown_signal();
    let secret = args.token_secret.clone().unwrap_or_else(|| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    });
    let sfu = start_sfu(args.media_bind, args.announce_ip, &shutdown).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("failed to bind {}", args.listen))?;
    let http = listener.local_addr()?;
    let mut config = GatewayConfig::new(TokenKey::new("dev", secret.as_bytes()));
    config.require_token = args.require_token;
    config.sfu_stats = Some(sfu.stats().clone());
    // The one line a newcomer needs; stdout so scripts can read it.
    #[allow(clippy::print_stdout)]
    {
        println!("Confer is running. Open http://{http}/r/hello?name=You in two browser tabs.");
        if args.token_secret.is_none() && args.require_token {
            println!(
                "Mint tokens with: confer token --secret {secret} --room hello --identity you"
            );
        }
    }
    info!(http = %http, media = %sfu.media_addr(), "confer dev ready");
    confer_gateway::run(config, listener, Arc::new(sfu), shutdown).await
}

async fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    let shutdown = shutdown_signal();
    let sfu = grpc::GrpcSfu::connect(args.sfu_control)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("failed to bind {}", args.listen))?;
    let mut config = GatewayConfig::new(TokenKey::new(
        args.token_issuer,
        args.token_secret.as_bytes(),
    ));
    config.require_token = !args.allow_anonymous;
    info!(http = %listener.local_addr()?, sfu = %args.sfu_control, "gateway ready");
    confer_gateway::run(config, listener, Arc::new(sfu), shutdown).await
}

async fn sfu(args: SfuArgs) -> anyhow::Result<()> {
    let shutdown = shutdown_signal();
    let sfu = start_sfu(args.media_bind, args.announce_ip, &shutdown).await?;
    let listener = tokio::net::TcpListener::bind(args.control_listen)
        .await
        .with_context(|| format!("failed to bind control port {}", args.control_listen))?;
    info!(control = %listener.local_addr()?, media = %sfu.media_addr(), "sfu ready");
    grpc::serve(sfu, listener, shutdown).await
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let key = TokenKey::new(args.issuer.clone(), args.secret.as_bytes());
    let claims = Claims {
        iss: args.issuer,
        sub: args.identity,
        name: args.name,
        nbf: now,
        exp: now + args.ttl,
        video: VideoGrant {
            room_admin: args.admin,
            ..VideoGrant::join(args.room)
        },
    };
    #[allow(clippy::print_stdout)]
    {
        println!("{}", key.sign(&claims));
    }
    Ok(())
}
