//! Where outbound requests may go: the egress policy.
//!
//! The URLs a pipeline polls and delivers to are user input, so a request
//! must not reach the machine's own services, the cloud metadata endpoint
//! (169.254.169.254) or the private network behind it. The policy parses a
//! URL the way a browser does (so `http://2130706433/`, `http://0x7f.1/`
//! and `http://0/` are the addresses they mean), classifies every address a
//! host stands for, and refuses the request, naming the rule, unless an
//! operator's allow-list covers the address.
//!
//! Names are resolved once and every address they resolve to is checked: a
//! name with one refused address is refused as a whole, so an answer that
//! lists a public address first and loopback second cannot lead to a
//! loopback connection, and the addresses returned are the ones to connect
//! to (no second resolution for DNS rebinding to exploit).

mod cidr;
mod classify;

use std::net::{IpAddr, SocketAddr};

pub use self::cidr::Cidr;
pub use self::classify::{classify, Refusal};

/// An outbound request the policy refused, before any socket opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// The URL could not be read.
    #[error("not a valid URL: {0}")]
    InvalidUrl(String),
    /// Only `http` and `https` leave the process.
    #[error("scheme {0:?} is not allowed: only http and https (rule scheme)")]
    Scheme(String),
    /// The URL names no host.
    #[error("the URL has no host")]
    NoHost,
    /// The name resolved to nothing.
    #[error("{host} did not resolve: {reason}")]
    Unresolved {
        /// The name.
        host: String,
        /// What the resolver said.
        reason: String,
    },
    /// An address the host stands for is refused by a rule.
    #[error("{address} is {refusal} (rule {})", refusal.rule())]
    Refused {
        /// The refused address.
        address: IpAddr,
        /// The rule that refused it.
        refusal: Refusal,
    },
}

impl EgressError {
    /// A short, bounded label for counting refusals by reason.
    pub fn reason(&self) -> &'static str {
        match self {
            EgressError::InvalidUrl(_) => "invalid_url",
            EgressError::Scheme(_) => "scheme",
            EgressError::NoHost => "no_host",
            EgressError::Unresolved { .. } => "unresolved",
            EgressError::Refused { refusal, .. } => refusal.rule(),
        }
    }
}

/// An egress setting that cannot be used, with why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EgressConfigError(pub(crate) String);

/// Rules for where requests may go: every address class of [`Refusal`] is
/// refused, and so are the engine's own listen addresses, unless the
/// allow-list covers the address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    allow: Vec<Cidr>,
    own: Vec<SocketAddr>,
}

/// A host and port the policy let through: connect to `addresses`, and to
/// nothing else; keep `host` for TLS's server name and the `Host` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedTarget {
    /// The host as the URL names it (a name, or an address).
    pub host: String,
    /// The port, the scheme's default when the URL gives none.
    pub port: u16,
    /// Every address `host` stands for; each passed the policy.
    pub addresses: Vec<SocketAddr>,
}

impl EgressPolicy {
    /// The default policy: every rule on, nothing allowed beyond public
    /// addresses.
    pub fn new() -> Self {
        EgressPolicy::default()
    }

    /// Allows the addresses of `cidr` whatever class they are in (a partner
    /// API on a private network, the loopback upstream of a demo or a test).
    /// A range that would allow every address is refused: that is turning
    /// the policy off, which an embedder does by not using it.
    pub fn allow(mut self, cidr: Cidr) -> Result<Self, EgressConfigError> {
        if cidr.prefix_len() == 0 {
            return Err(EgressConfigError(format!(
                "egress allow-list: {cidr} would allow every address; list the ranges that are needed"
            )));
        }
        self.allow.push(cidr);
        Ok(self)
    }

    /// Refuses the engine's own listen addresses (its metrics endpoint, say)
    /// even where the allow-list covers them.
    pub fn own_listener(mut self, address: SocketAddr) -> Self {
        self.own.push(address);
        self
    }

    /// Whether a request may connect to `address`.
    pub fn check_address(&self, address: SocketAddr) -> Result<(), EgressError> {
        let ip = canonical(address.ip());
        if self.own.iter().any(|own| {
            own.port() == address.port() && (canonical(own.ip()) == ip || own.ip().is_unspecified())
        }) {
            return Err(EgressError::Refused { address: ip, refusal: Refusal::OwnListener });
        }
        if self.allow.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        // Classified as written: an IPv4-mapped address is refused as one
        // of the IPv6 forms that carry IPv4, whatever it carries.
        match classify(address.ip()) {
            Some(refusal) => Err(EgressError::Refused { address: address.ip(), refusal }),
            None => Ok(()),
        }
    }

    /// Checks a URL without resolving names: its scheme, and its host when
    /// the host is an address. Returns the host, the port, and the address
    /// when there is one (a name still has to go through
    /// [`EgressPolicy::resolve`]).
    pub fn check_url(&self, url: &str) -> Result<(String, u16, Option<IpAddr>), EgressError> {
        let parsed = url::Url::parse(url).map_err(|e| EgressError::InvalidUrl(e.to_string()))?;
        let scheme = parsed.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(EgressError::Scheme(scheme.to_string()));
        }
        let port = parsed.port_or_known_default().ok_or(EgressError::NoHost)?;
        match parsed.host().ok_or(EgressError::NoHost)? {
            url::Host::Ipv4(ip) => {
                self.check_address(SocketAddr::new(IpAddr::V4(ip), port))?;
                Ok((ip.to_string(), port, Some(IpAddr::V4(ip))))
            }
            url::Host::Ipv6(ip) => {
                self.check_address(SocketAddr::new(IpAddr::V6(ip), port))?;
                Ok((ip.to_string(), port, Some(IpAddr::V6(ip))))
            }
            url::Host::Domain(name) => Ok((name.to_string(), port, None)),
        }
    }

    /// Resolves `host` once and checks every address it stands for: one
    /// refused address refuses the host. The addresses returned are the
    /// ones a connection may use.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        let unresolved = |reason: String| EgressError::Unresolved { host: host.to_string(), reason };
        let addresses: Vec<SocketAddr> =
            tokio::net::lookup_host((host, port)).await.map_err(|e| unresolved(e.to_string()))?.collect();
        self.check_resolved(host, addresses)
    }

    /// Checks every address a resolver gave for `host`, whatever their
    /// order: one refused address refuses them all.
    pub fn check_resolved(
        &self,
        host: &str,
        addresses: Vec<SocketAddr>,
    ) -> Result<Vec<SocketAddr>, EgressError> {
        if addresses.is_empty() {
            return Err(EgressError::Unresolved {
                host: host.to_string(),
                reason: "no addresses".to_string(),
            });
        }
        for address in &addresses {
            self.check_address(*address)?;
        }
        Ok(addresses)
    }

    /// [`EgressPolicy::check_url`], then [`EgressPolicy::resolve`] for a
    /// name: the whole check of one outbound URL.
    pub async fn check(&self, url: &str) -> Result<CheckedTarget, EgressError> {
        let (host, port, address) = self.check_url(url)?;
        let addresses = match address {
            Some(ip) => vec![SocketAddr::new(ip, port)],
            None => self.resolve(&host, port).await?,
        };
        Ok(CheckedTarget { host, port, addresses })
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is, so one rule
/// covers both spellings of an own listener or an allowed range.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
pub(crate) mod tests;
