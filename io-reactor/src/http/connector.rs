//! The TCP connector under TLS that applies the egress policy.
//!
//! hyper-util's `HttpConnector` resolves a name itself and connects to
//! whatever the resolver answers; a check before the request would resolve
//! the name a second time, and an attacker's DNS may answer loopback the
//! second time (DNS rebinding). This connector resolves once, checks every
//! address the name stands for (one refused address refuses the name),
//! and hands the inner connector the checked addresses as IP literals, so
//! nothing is resolved again. The TLS layer above still sees the original
//! URI: SNI and certificate checks use the name, and so does `Host`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use crate::egress::{EgressError, EgressPolicy};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Resolves a host name and port to addresses (the system resolver, or a
/// test's).
pub(crate) type Resolve = Arc<dyn Fn(String, u16) -> BoxFuture<io::Result<Vec<SocketAddr>>> + Send + Sync>;

/// The system resolver (getaddrinfo on tokio's blocking pool, as
/// hyper-util's own resolver does).
pub(crate) fn system_resolver() -> Resolve {
    Arc::new(|host, port| {
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), port)).await?.collect()) })
    })
}

/// `HttpConnector`, behind the egress policy when there is one.
#[derive(Clone)]
pub(crate) struct EgressConnector {
    tcp: HttpConnector,
    policy: Option<Arc<EgressPolicy>>,
    resolve: Resolve,
}

impl EgressConnector {
    pub(crate) fn new(tcp: HttpConnector, policy: Option<Arc<EgressPolicy>>, resolve: Resolve) -> Self {
        EgressConnector { tcp, policy, resolve }
    }
}

impl Service<Uri> for EgressConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let mut tcp = self.tcp.clone();
        let Some(policy) = self.policy.clone() else {
            return Box::pin(async move { tcp.call(uri).await.map_err(Into::into) });
        };
        let resolve = Arc::clone(&self.resolve);
        Box::pin(async move {
            let addresses = checked_addresses(&policy, &resolve, &uri).await?;
            let mut last_error = None;
            // In the resolver's order, as HttpConnector would (without its
            // happy-eyeballs race, which would need a second address family
            // to matter).
            for address in addresses {
                let literal = Uri::builder()
                    .scheme("http")
                    .authority(address.to_string())
                    .path_and_query("/")
                    .build()
                    .map_err(|e| Box::new(e) as BoxError)?;
                match tcp.call(literal).await {
                    Ok(stream) => return Ok(stream),
                    Err(e) => last_error = Some(e),
                }
            }
            Err(last_error.map_or_else(|| "no address to connect to".into(), Into::into))
        })
    }
}

/// Every address `uri`'s host stands for, each allowed by `policy`; an IP
/// literal is its own address, a name is resolved exactly once.
async fn checked_addresses(
    policy: &EgressPolicy,
    resolve: &Resolve,
    uri: &Uri,
) -> Result<Vec<SocketAddr>, EgressError> {
    let (host, port, address) = policy.check_url(&uri.to_string())?;
    if let Some(ip) = address {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let resolved = resolve(host.clone(), port)
        .await
        .map_err(|e| EgressError::Unresolved { host: host.clone(), reason: e.to_string() })?;
    policy.check_resolved(&host, resolved)
}
