//! IP networks written as CIDR (`10.0.0.0/8`, `2001:db8::/32`, or one address), for
//! allow-lists (who may call the SIP bridge) and trusted proxies (whose
//! `X-Forwarded-For` the gateway believes).

use std::net::IpAddr;

/// An IP network (`10.0.0.0/8`, `2001:db8::/32`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = text.split_once('/').unwrap_or((text, ""));
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .parse()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}` has a bad prefix length"))?
        };
        Ok(Self { addr, prefix })
    }
}

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => mask_eq(&net.octets(), &ip.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => mask_eq(&net.octets(), &ip.octets(), self.prefix),
            (IpAddr::V6(_), IpAddr::V4(v4)) => self.contains(IpAddr::V6(v4.to_ipv6_mapped())),
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6
                .to_ipv4_mapped()
                .is_some_and(|v4| self.contains(IpAddr::V4(v4))),
        }
    }
}

fn mask_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    a[..full] == b[..full]
        && (rest == 0 || {
            let mask = 0xffu8 << (8 - rest);
            a[full] & mask == b[full] & mask
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_and_contain_their_addresses() {
        let net: Network = "203.0.113.0/24".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(net.contains("203.0.113.77".parse().unwrap_or_else(|e| panic!("{e}"))));
        assert!(!net.contains("203.0.114.1".parse().unwrap_or_else(|e| panic!("{e}"))));
        assert!(
            net.contains(
                "::ffff:203.0.113.9"
                    .parse()
                    .unwrap_or_else(|e| panic!("{e}"))
            )
        );
        let one: Network = "198.51.100.7".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(one.contains("198.51.100.7".parse().unwrap_or_else(|e| panic!("{e}"))));
        assert!(!one.contains("198.51.100.8".parse().unwrap_or_else(|e| panic!("{e}"))));
        let odd: Network = "10.0.0.0/9".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(odd.contains("10.127.255.255".parse().unwrap_or_else(|e| panic!("{e}"))));
        assert!(!odd.contains("10.128.0.0".parse().unwrap_or_else(|e| panic!("{e}"))));
        let v6: Network = "2001:db8::/32".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(v6.contains("2001:db8:1::5".parse().unwrap_or_else(|e| panic!("{e}"))));
        assert!(!v6.contains("2001:db9::".parse().unwrap_or_else(|e| panic!("{e}"))));
        let all: Network = "0.0.0.0/0".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(all.contains("192.0.2.1".parse().unwrap_or_else(|e| panic!("{e}"))));
        assert!("10.0.0.0/33".parse::<Network>().is_err());
        assert!("example.com".parse::<Network>().is_err());
    }
}
