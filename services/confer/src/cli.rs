//! Command-line interface. Every flag has a `CONFER_*` environment variable.

use std::net::{IpAddr, SocketAddr};

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
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run gateway and SFU in one process on embedded defaults, for trying Confer out.
    Dev(DevArgs),
    /// Run the gateway: WebSocket signalling, the join flow and the web app.
    Gateway(GatewayArgs),
    /// Run a selective forwarding unit: the media port and its internal control API.
    Sfu(SfuArgs),
    /// Mint an access token for joining a room.
    Token(TokenArgs),
    /// Run the room service (not built yet).
    Room,
    /// Run the chat service (not built yet).
    Chat,
    /// Run the SIP gateway (not built yet).
    Sip,
    /// Run the Kubernetes operator (not built yet).
    Operator,
    /// Print the CustomResourceDefinitions (not built yet).
    Crd,
    /// Generate synthetic load against an SFU (not built yet).
    Loadtest,
}

#[derive(Args)]
pub struct DevArgs {
    /// HTTP address of the gateway (web app and signalling).
    #[arg(long, env = "CONFER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// UDP address of the media port.
    #[arg(long, env = "CONFER_MEDIA_BIND", default_value = "127.0.0.1:0")]
    pub media_bind: SocketAddr,
    /// Address put in ICE candidates, when clients reach the media port by another one.
    #[arg(long, env = "CONFER_ANNOUNCE_IP")]
    pub announce_ip: Option<IpAddr>,
    /// Refuse joins without an access token.
    #[arg(long, env = "CONFER_REQUIRE_TOKEN")]
    pub require_token: bool,
    /// Secret for access tokens (issuer `dev`); a random one is made when absent.
    #[arg(long, env = "CONFER_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,
}

#[derive(Args)]
pub struct GatewayArgs {
    /// HTTP address to listen on.
    #[arg(long, env = "CONFER_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// The SFU's control API address.
    #[arg(long, env = "CONFER_SFU_CONTROL")]
    pub sfu_control: SocketAddr,
    /// Issuer (API key name) of accepted access tokens.
    #[arg(long, env = "CONFER_TOKEN_ISSUER", default_value = "dev")]
    pub token_issuer: String,
    /// Secret of accepted access tokens.
    #[arg(long, env = "CONFER_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: String,
    /// Let clients join without a token (never in production).
    #[arg(long, env = "CONFER_ALLOW_ANONYMOUS")]
    pub allow_anonymous: bool,
}

#[derive(Args)]
pub struct SfuArgs {
    /// UDP address of the media port.
    #[arg(long, env = "CONFER_MEDIA_BIND", default_value = "0.0.0.0:7882")]
    pub media_bind: SocketAddr,
    /// Address put in ICE candidates; required when the media port binds a wildcard.
    #[arg(long, env = "CONFER_ANNOUNCE_IP")]
    pub announce_ip: Option<IpAddr>,
    /// TCP address of the internal control API.
    #[arg(long, env = "CONFER_CONTROL_LISTEN", default_value = "0.0.0.0:7881")]
    pub control_listen: SocketAddr,
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
    /// Grant room administration.
    #[arg(long)]
    pub admin: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_cli_is_consistent() {
        Cli::command().debug_assert();
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
