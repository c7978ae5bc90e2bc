//! `confer sip`: the SIP bridge, with its `/metrics`. Callers dial
//! `sip:<room>@<this address>` and join rooms of the tenant whose API key it holds.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;

use crate::cli::{SipArgs, SipMediaArgs};

pub async fn run(args: SipArgs) -> anyhow::Result<()> {
    let shutdown = super::shutdown_signal();
    let key = confer_auth::TokenKey::new(args.api_key.clone(), args.api_secret.as_bytes());
    let socket = tokio::net::UdpSocket::bind(args.listen)
        .await
        .with_context(|| format!("failed to bind the SIP socket {}", args.listen))?;
    let config = config(&args.media, args.listen, args.signal_url.clone(), key);
    let stats = confer_sip::SipStats::default();
    let metrics = super::bind(args.metrics_listen).await?;
    let rendered = stats.clone();
    tokio::spawn(super::metrics::serve(metrics, move |out| {
        rendered.render(out)
    }));
    confer_sip::serve(socket, config, stats, shutdown).await
}

/// Starts the bridge inside another role (`confer dev`) on `listen`.
pub async fn start(
    listen: SocketAddr,
    media: &SipMediaArgs,
    signal_url: String,
    key: confer_auth::TokenKey,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, confer_sip::SipStats)> {
    let socket = tokio::net::UdpSocket::bind(listen)
        .await
        .with_context(|| format!("failed to bind the SIP socket {listen}"))?;
    let local = socket.local_addr()?;
    let config = config(media, local, signal_url, key);
    let stats = confer_sip::SipStats::default();
    tokio::spawn(confer_sip::serve(socket, config, stats.clone(), shutdown));
    Ok((local, stats))
}

fn config(
    media: &SipMediaArgs,
    listen: SocketAddr,
    signal_url: String,
    key: confer_auth::TokenKey,
) -> confer_sip::SipConfig {
    let advertise_ip = media
        .sip_advertise_ip
        .unwrap_or(if listen.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            listen.ip()
        });
    confer_sip::SipConfig {
        signal_url,
        token_key: Arc::new(key),
        media_ip: listen.ip(),
        advertise_ip,
        rtp_ports: media.sip_rtp_ports,
        allow: media.sip_allow.clone(),
        max_calls: media.sip_max_calls,
        media_timeout: Duration::from_secs(media.sip_media_timeout_secs),
        prompts: media.sip_prompts,
    }
}
