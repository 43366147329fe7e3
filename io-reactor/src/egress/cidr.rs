//! Address ranges of an allow-list (`10.20.0.0/16`, `fd00::/8`, or one
//! address).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::EgressConfigError;

/// A range of addresses: a network address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

impl Cidr {
    /// The range of `network` with `prefix_len` leading bits; the bits past
    /// the prefix must be zero, so a range reads as what it covers.
    pub fn new(network: IpAddr, prefix_len: u8) -> Result<Cidr, EgressConfigError> {
        let bits = if network.is_ipv4() { 32 } else { 128 };
        if prefix_len > bits {
            return Err(EgressConfigError(format!(
                "{network}/{prefix_len}: the prefix is longer than {bits} bits"
            )));
        }
        let cidr = Cidr { network, prefix_len };
        if cidr.masked(network) != network {
            return Err(EgressConfigError(format!(
                "{network}/{prefix_len}: bits past the prefix are set (did you mean {}/{prefix_len}?)",
                cidr.masked(network)
            )));
        }
        Ok(cidr)
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `ip` is in the range (an IPv4 range never holds an IPv6
    /// address, nor the reverse).
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.network.is_ipv4() && self.masked(ip) == self.network
    }

    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix_len)).unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix_len)).unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        }
    }
}

impl FromStr for Cidr {
    type Err = EgressConfigError;

    /// `address/prefix`, or an address alone (the range of that address).
    /// Addresses are read strictly: `127.1` or `0x7f.0.0.1` are not
    /// addresses here.
    fn from_str(s: &str) -> Result<Cidr, EgressConfigError> {
        let bad = || EgressConfigError(format!("{s:?} is not an address range (as 10.0.0.0/8 or fd00::/8)"));
        let (address, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = address.trim().parse().map_err(|_| bad())?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix {
            Some(p) => p.trim().parse().map_err(|_| bad())?,
            None => bits,
        };
        Cidr::new(network, prefix_len)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}
