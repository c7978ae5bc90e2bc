//! `confer operator`: the Kubernetes operator.

use confer_operator::run::OperatorConfig;

use crate::cli::OperatorArgs;

pub async fn run(args: OperatorArgs) -> anyhow::Result<()> {
    let shutdown = super::shutdown_signal();
    let config = OperatorConfig {
        consul_addr: args.consul_addr,
        consul_token: args.consul_token,
        sfu_image: args.sfu_image,
        metrics_listen: args.metrics_listen,
        namespace: args.namespace,
        room_service: args.room_service,
        lease_namespace: args.lease_namespace,
        identity: args.identity,
    };
    confer_operator::run::run(config, shutdown).await
}
