//! Which addresses no outbound request may reach by default, and why.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The rule that refuses an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 127.0.0.0/8, ::1: this machine.
    Loopback,
    /// 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 (RFC 1918).
    Private,
    /// fc00::/7 (RFC 4193), and the deprecated site-local fec0::/10.
    UniqueLocal,
    /// 169.254.0.0/16 (with the cloud metadata endpoint 169.254.169.254),
    /// fe80::/10.
    LinkLocal,
    /// 100.64.0.0/10, carrier-grade NAT (RFC 6598).
    SharedAddressSpace,
    /// 0.0.0.0/8 and ::, which reach this machine on most systems.
    Unspecified,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// 240.0.0.0/4, reserved for future use.
    Reserved,
    /// An IPv6 form that carries an IPv4 address: IPv4-mapped
    /// (::ffff:0:0/96), IPv4-compatible (::/96), NAT64 (64:ff9b::/96,
    /// 64:ff9b:1::/48), 6to4 (2002::/16) or Teredo (2001::/32). Refused
    /// whatever they carry, since a gateway may turn them into that IPv4
    /// address.
    EmbedsIpv4,
    /// One of the engine's own listen addresses.
    OwnListener,
}

impl Refusal {
    /// The rule's name: in error messages and as a metric label.
    pub fn rule(&self) -> &'static str {
        match self {
            Refusal::Loopback => "loopback",
            Refusal::Private => "private",
            Refusal::UniqueLocal => "unique_local",
            Refusal::LinkLocal => "link_local",
            Refusal::SharedAddressSpace => "shared_address_space",
            Refusal::Unspecified => "unspecified",
            Refusal::Multicast => "multicast",
            Refusal::Broadcast => "broadcast",
            Refusal::Reserved => "reserved",
            Refusal::EmbedsIpv4 => "embeds_ipv4",
            Refusal::OwnListener => "own_listener",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Loopback => "a loopback address (this machine)",
            Refusal::Private => "a private address (RFC 1918)",
            Refusal::UniqueLocal => "a unique local IPv6 address",
            Refusal::LinkLocal => "a link-local address (cloud metadata lives here)",
            Refusal::SharedAddressSpace => "a carrier-grade NAT address (RFC 6598)",
            Refusal::Unspecified => "an unspecified address (it reaches this machine)",
            Refusal::Multicast => "a multicast address",
            Refusal::Broadcast => "the broadcast address",
            Refusal::Reserved => "a reserved address",
            Refusal::EmbedsIpv4 => "an IPv6 address that carries an IPv4 address",
            Refusal::OwnListener => "one of this engine's own listen addresses",
        })
    }
}

/// The rule that refuses `ip` by default, or `None` for a public address.
pub fn classify(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Refusal> {
    let [a, b, ..] = ip.octets();
    Some(match () {
        () if a == 0 => Refusal::Unspecified,
        () if a == 127 => Refusal::Loopback,
        () if a == 10 || (a == 172 && (16..=31).contains(&b)) || (a == 192 && b == 168) => Refusal::Private,
        () if a == 169 && b == 254 => Refusal::LinkLocal,
        () if a == 100 && (64..=127).contains(&b) => Refusal::SharedAddressSpace,
        () if ip.is_broadcast() => Refusal::Broadcast,
        () if (224..=239).contains(&a) => Refusal::Multicast,
        () if a >= 240 => Refusal::Reserved,
        () => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<Refusal> {
    let s = ip.segments();
    let bits = u128::from(ip);
    Some(match () {
        () if ip.is_unspecified() => Refusal::Unspecified,
        () if ip.is_loopback() => Refusal::Loopback,
        // ::ffff:a.b.c.d and the deprecated ::a.b.c.d.
        () if bits >> 32 == 0xffff || bits >> 32 == 0 => Refusal::EmbedsIpv4,
        () if s[0] == 0x64 && s[1] == 0xff9b && (s[2..6] == [0, 0, 0, 0] || s[2] == 1) => Refusal::EmbedsIpv4,
        () if s[0] == 0x2002 => Refusal::EmbedsIpv4,
        () if s[0] == 0x2001 && s[1] == 0 => Refusal::EmbedsIpv4,
        () if s[0] & 0xfe00 == 0xfc00 || s[0] & 0xffc0 == 0xfec0 => Refusal::UniqueLocal,
        () if s[0] & 0xffc0 == 0xfe80 => Refusal::LinkLocal,
        () if s[0] & 0xff00 == 0xff00 => Refusal::Multicast,
        () => return None,
    })
}
