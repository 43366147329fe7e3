//! `switchyard upstream`: the PZ-1 upstream, standalone, for peers and
//! other machines.

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::failure::Failure;
use crate::signals::stop_on_signal;

#[derive(Args, Debug, Clone)]
pub(crate) struct UpstreamArgs {
    /// Address to serve on (port 0 picks a free port, which is logged).
    #[arg(long, env = "SWITCHYARD_UPSTREAM_LISTEN", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
}

pub(crate) fn upstream(args: UpstreamArgs) -> Result<(), Failure> {
    let upstream = switchyard_pz1::Pz1Upstream::start(args.listen)
        .with_context(|| format!("serving the upstream on {}", args.listen))
        .map_err(Failure::Runtime)?;
    tracing::info!(address = %upstream.addr(), "serving the PZ-1 upstream");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(e.into()))?;
    runtime.block_on(async {
        let stop = CancellationToken::new();
        tokio::spawn(stop_on_signal(stop.clone()));
        stop.cancelled().await;
    });
    let c = upstream.counters();
    tracing::info!(polls = c.polls(), actions = c.actions(), rejected = c.rejected(), "upstream stopped");
    Ok(())
}
