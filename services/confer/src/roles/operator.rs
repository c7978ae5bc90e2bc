//! `confer operator`: the Kubernetes operator.

use confer_operator::medianode::resources::SfuTls;
use confer_operator::run::OperatorConfig;

use crate::cli::OperatorArgs;

pub async fn run(args: OperatorArgs) -> anyhow::Result<()> {
    let shutdown = super::shutdown_signal();
    let tls = args.tls.load()?;
    let sfu_tls = match (&tls, args.sfu_grpc_tls_secret) {
        (Some(tls), Some(secret)) => Some(SfuTls {
            secret,
            name: tls.name(),
        }),
        (None, None) => None,
        _ => anyhow::bail!(
            "--sfu-grpc-tls-secret and --grpc-tls-cert go together: the operator reaches \
             SFUs over mutual TLS exactly when they serve it"
        ),
    };
    let config = OperatorConfig {
        consul_addr: args.consul_addr,
        consul_token: args.consul_token,
        sfu_image: args.sfu_image,
        metrics_listen: args.metrics_listen,
        namespace: args.namespace,
        room_service: args.room_service,
        chat_service: args.chat_service,
        lease_namespace: args.lease_namespace,
        identity: args.identity,
        tls,
        sfu_tls,
    };
    confer_operator::run::run(config, shutdown).await
}
