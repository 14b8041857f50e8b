//! SSRF guard: targets may not reach loopback, private, link-local, CGN,
//! multicast, reserved or unspecified addresses unless listed in `ALLOWED_TARGET_NETWORKS`.
//!
//! Checked twice: when a target is saved ([`NetworkPolicy::check_url`]) and when the
//! delivery client connects, after DNS ([`GuardedResolver`]) — a name that resolved to a
//! public address at save time may point at 127.0.0.1 later.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// Why a URL or address was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SsrfError {
    /// The URL is not an absolute http(s) URL with a host.
    #[error("not an absolute http(s) URL: {0}")]
    BadUrl(String),
    /// The address is in a refused range.
    #[error(
        "address {0} is not allowed (private, loopback, link-local or reserved); add its network to ALLOWED_TARGET_NETWORKS to allow it"
    )]
    Blocked(IpAddr),
    /// The name did not resolve to any address.
    #[error("host {0} did not resolve")]
    Unresolved(String),
}

/// Which addresses targets may reach.
#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    allowed: Arc<Vec<IpNet>>,
}

impl NetworkPolicy {
    /// A policy that refuses the special ranges except these networks.
    pub fn new(allowed: Vec<IpNet>) -> NetworkPolicy {
        NetworkPolicy {
            allowed: Arc::new(allowed),
        }
    }

    /// Whether a target may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allowed.iter().any(|n| n.contains(&ip)) || is_public(ip)
    }

    /// Checks an address, as an error.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), SsrfError> {
        if self.permits(ip) {
            Ok(())
        } else {
            Err(SsrfError::Blocked(ip.to_canonical()))
        }
    }

    /// Connect-time check for URLs whose host is a literal IP: those never reach the
    /// resolver, so [`GuardedResolver`] cannot see them.
    pub fn check_literal_host(&self, url: &reqwest::Url) -> Result<(), SsrfError> {
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => Ok(()),
            None => Err(SsrfError::BadUrl(url.to_string())),
        }
    }

    /// Save-time check: the URL parses as absolute http(s) with a usable port; a literal IP
    /// is checked; a host name is resolved and every address checked. A name that does not
    /// resolve yet is accepted (the connect-time check still applies). Returns the URL as it
    /// will be requested: normalised, with tabs and line breaks removed.
    pub async fn check_url(&self, url: &str) -> Result<reqwest::Url, SsrfError> {
        let bad = || SsrfError::BadUrl(url.to_string());
        let parsed = reqwest::Url::parse(url).map_err(|_| bad())?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.port() == Some(0) {
            return Err(bad());
        }
        let port = parsed.port_or_known_default().unwrap_or(80);
        match parsed.host() {
            None => return Err(bad()),
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip))?,
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip))?,
            Some(url::Host::Domain(name)) => {
                if let Ok(addrs) = tokio::net::lookup_host((name, port)).await {
                    for a in addrs {
                        self.check_ip(a.ip())?;
                    }
                }
            }
        }
        Ok(parsed)
    }
}

/// A reqwest resolver that drops refused addresses, so a connection can only be made to
/// what the policy permits, whatever the name resolves to at that moment.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    /// The policy applied to every resolved address.
    pub policy: NetworkPolicy,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if resolved.is_empty() {
                return Err(Box::new(SsrfError::Unresolved(host)) as _);
            }
            let permitted: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|a| policy.permits(a.ip()))
                .collect();
            if permitted.is_empty() {
                return Err(Box::new(SsrfError::Blocked(resolved[0].ip().to_canonical())) as _);
            }
            Ok(Box::new(permitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || o[0] == 0 // "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGN 100.64.0.0/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18.0.0/15
        || o[0] >= 240) // reserved 240.0.0.0/4
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64 may map to private v4
        || (s[0] == 0x2002) // 6to4 may map to private v4
        || s[0] == 0x0100 // discard-only 100::/64
        // ::/64 holds no public unicast: what is left of it after `to_canonical` are the
        // IPv4-compatible (::a.b.c.d) and IPv4-translated (::ffff:0:a.b.c.d) forms, which
        // embed an IPv4 address that may be private.
        || s[..4] == [0, 0, 0, 0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_addresses() {
        let p = NetworkPolicy::default();
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::7f00:1",
            "::ffff:0:7f00:1",
            "::a9fe:a9fe",
        ] {
            assert!(
                !p.permits(refused.parse().unwrap()),
                "{refused} should be refused"
            );
        }
        for allowed in ["1.1.1.1", "93.184.216.34", "2606:4700::1111"] {
            assert!(
                p.permits(allowed.parse().unwrap()),
                "{allowed} should be allowed"
            );
        }
    }

    #[test]
    fn allow_list_opens_ranges() {
        let p = NetworkPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(p.permits("127.0.0.1".parse().unwrap()));
        assert!(p.permits("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!p.permits("10.0.0.1".parse().unwrap()));
    }

    #[tokio::test]
    async fn urls_are_checked_at_save() {
        let p = NetworkPolicy::default();
        assert!(matches!(
            p.check_url("http://169.254.169.254/latest").await,
            Err(SsrfError::Blocked(_))
        ));
        assert!(matches!(
            p.check_url("http://localhost:9/").await,
            Err(SsrfError::Blocked(_))
        ));
        assert!(matches!(
            p.check_url("ftp://x/").await,
            Err(SsrfError::BadUrl(_))
        ));
        assert!(matches!(
            p.check_url("not a url").await,
            Err(SsrfError::BadUrl(_))
        ));
        assert!(matches!(
            p.check_url("https://93.184.216.34:0/").await,
            Err(SsrfError::BadUrl(_))
        ));
        let url = p.check_url("https://93.184.216.34/ho\r\nok").await.unwrap();
        assert_eq!(url.as_str(), "https://93.184.216.34/hook");
    }
}
