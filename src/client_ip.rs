//! Which address a request comes from: the TCP peer, or — only when the peer is one of the
//! `TRUSTED_PROXIES` — the right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
//! Entries further left were written by the client and are never believed.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The proxies whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`: comma-separated IPs or
/// CIDRs). Empty, the default, means the header is ignored and the client is the TCP peer.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl TrustedProxies {
    /// No trusted proxy: `X-Forwarded-For` is ignored.
    pub fn none() -> Self {
        Self::default()
    }

    /// Parses `10.0.0.0/8, 127.0.0.1, fd00::/8`; blank entries are skipped. The error names the
    /// first entry that is neither an IP address nor a CIDR.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let nets = raw
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .map(|net| net.trunc())
                    .or_else(|_| entry.parse::<IpAddr>().map(|ip| IpNet::from(canonical(ip))))
                    .map_err(|_| {
                        format!("{entry:?} is not an IP address or CIDR (e.g. 10.0.0.0/8)")
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(nets.into()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` (an IPv4-mapped IPv6 address counts as its IPv4 address) is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request that arrived from `peer` with `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        // Several X-Forwarded-For headers form one list, in order.
        let mut hops = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            let Ok(value) = value.to_str() else {
                return peer;
            };
            hops.extend(value.split(',').map(str::trim));
        }
        let mut nearest = peer;
        for hop in hops.into_iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                // Whatever lies left of an unreadable entry cannot be attributed to anyone.
                return nearest;
            };
            if !self.contains(ip) {
                return ip;
            }
            nearest = ip;
        }
        nearest
    }
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`1.2.3.4:80`, `[::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(canonical)
}

fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// As configured, single addresses without their `/32` or `/128`.
impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if net.prefix_len() == net.max_prefix_len() {
                write!(f, "{}", net.addr())?;
            } else {
                write!(f, "{net}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustedProxies({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn parses_addresses_and_cidrs() {
        let proxies = TrustedProxies::parse(" 10.0.0.0/8, 127.0.0.1 ,,fd00::/8, ::1").unwrap();
        assert_eq!(proxies.to_string(), "10.0.0.0/8,127.0.0.1,fd00::/8,::1");
        for trusted in ["10.0.0.1", "10.255.255.255", "127.0.0.1", "fd12::1", "::1"] {
            assert!(proxies.contains(ip(trusted)), "{trusted}");
        }
        for untrusted in ["11.0.0.1", "127.0.0.2", "fe80::1", "192.168.1.1"] {
            assert!(!proxies.contains(ip(untrusted)), "{untrusted}");
        }
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        assert!(TrustedProxies::parse(" , ").unwrap().is_empty());
    }

    #[test]
    fn host_bits_of_a_cidr_are_dropped() {
        let proxies = TrustedProxies::parse("10.1.2.3/8").unwrap();
        assert_eq!(proxies.to_string(), "10.0.0.0/8");
        assert!(proxies.contains(ip("10.200.0.1")));
    }

    #[test]
    fn ipv4_mapped_addresses_match_their_ipv4_network() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        assert!(proxies.contains(ip("::ffff:10.1.1.1")));
        let proxies = TrustedProxies::parse("::ffff:127.0.0.1").unwrap();
        assert!(proxies.contains(ip("127.0.0.1")));
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in [
            "10.0.0.0/33",
            "localhost",
            "10.0.0",
            "10.0.0.0/8,nope",
            "1.2.3.4:80",
        ] {
            let err = TrustedProxies::parse(bad).unwrap_err();
            assert!(err.contains("is not an IP address or CIDR"), "{bad}: {err}");
        }
        assert!(
            TrustedProxies::parse("10.0.0.0/8,nope")
                .unwrap_err()
                .starts_with("\"nope\"")
        );
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        let proxies = TrustedProxies::none();
        let headers = forwarded(&["203.0.113.9"]);
        assert_eq!(
            proxies.client_ip(ip("127.0.0.1"), &headers),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn an_untrusted_peer_cannot_claim_another_address() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let headers = forwarded(&["203.0.113.9"]);
        assert_eq!(
            proxies.client_ip(ip("198.51.100.1"), &headers),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn a_trusted_peer_forwards_the_right_most_untrusted_entry() {
        let proxies = TrustedProxies::parse("10.0.0.0/8,127.0.0.1").unwrap();
        let peer = ip("127.0.0.1");
        let cases: &[(&[&str], &str)] = &[
            // No header: the proxy itself is the client.
            (&[], "127.0.0.1"),
            (&["203.0.113.9"], "203.0.113.9"),
            // A client-supplied entry on the left does not win.
            (&["1.2.3.4, 203.0.113.9"], "203.0.113.9"),
            // Trusted hops on the right are skipped.
            (&["1.2.3.4, 203.0.113.9, 10.0.0.7, 10.0.0.8"], "203.0.113.9"),
            // Several headers are one list.
            (&["1.2.3.4", "203.0.113.9, 10.0.0.7"], "203.0.113.9"),
            // Only trusted hops: the left-most of them.
            (&["10.0.0.5, 10.0.0.6"], "10.0.0.5"),
            // Ports and IPv6.
            (&["203.0.113.9:5173"], "203.0.113.9"),
            (&["[2001:db8::1]:443"], "2001:db8::1"),
            (&["2001:db8::2"], "2001:db8::2"),
            (&["::ffff:203.0.113.9"], "203.0.113.9"),
            // Garbage stops the walk at the nearest known hop.
            (&["203.0.113.9, garbage"], "127.0.0.1"),
            (&["garbage, 10.0.0.7"], "10.0.0.7"),
            (&["203.0.113.9, , 10.0.0.7"], "10.0.0.7"),
        ];
        for (values, expected) in cases {
            assert_eq!(
                proxies.client_ip(peer, &forwarded(values)),
                ip(expected),
                "{values:?}"
            );
        }
    }

    #[test]
    fn an_ipv4_mapped_peer_is_reported_as_ipv4() {
        let proxies = TrustedProxies::none();
        assert_eq!(
            proxies.client_ip(ip("::ffff:192.0.2.1"), &HeaderMap::new()),
            ip("192.0.2.1")
        );
    }
}
