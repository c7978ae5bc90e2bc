//! Where a client really is, for the room service's per-address limits (joins,
//! password attempts): the TCP peer, unless that peer is a trusted proxy (an ingress,
//! the SIP bridge), whose `X-Forwarded-For` then names the client.

use std::net::IpAddr;

use axum::http::HeaderMap;
use confer_netaddr::Network;

/// The client's address: walking `X-Forwarded-For` from the right (the entry the
/// nearest proxy appended) past trusted proxies, the first address that is not one.
/// Headers from untrusted peers are ignored: anyone can write them.
pub(crate) fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[Network]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map_while(|entry| entry.trim().parse().ok())
        .collect();
    forwarded
        .into_iter()
        .rev()
        .find(|ip| !is_trusted(*ip))
        .unwrap_or(peer)
}

/// The last address `X-Forwarded-For` names (what the nearest proxy appended).
pub(crate) fn forwarded(headers: &HeaderMap) -> Option<IpAddr> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|entry| entry.trim().parse().ok())
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn forwarded_headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                "x-forwarded-for",
                value.parse().unwrap_or_else(|e| panic!("{e}")),
            );
        }
        headers
    }

    #[test]
    fn the_last_forwarded_address_is_the_nearest_hop() {
        assert_eq!(forwarded(&HeaderMap::new()), None);
        assert_eq!(
            forwarded(&forwarded_headers(&["203.0.113.9, 198.51.100.7"])),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(forwarded(&forwarded_headers(&["not an address"])), None);
    }

    #[test]
    fn only_trusted_proxies_are_believed() {
        let trusted: Vec<Network> = vec!["10.0.0.0/8".parse().unwrap_or_else(|e| panic!("{e}"))];
        let headers = forwarded_headers(&["198.51.100.7"]);
        // From a trusted proxy: the caller it names.
        assert_eq!(
            client_addr(ip("10.1.2.3"), &headers, &trusted),
            ip("198.51.100.7")
        );
        // From anyone else: the header is ignored.
        assert_eq!(
            client_addr(ip("203.0.113.5"), &headers, &trusted),
            ip("203.0.113.5")
        );
        assert_eq!(client_addr(ip("10.1.2.3"), &headers, &[]), ip("10.1.2.3"));
    }

    #[test]
    fn the_rightmost_untrusted_entry_is_the_client() {
        let trusted: Vec<Network> = vec!["10.0.0.0/8".parse().unwrap_or_else(|e| panic!("{e}"))];
        // The client claims to be 192.0.2.1; the ingress saw 198.51.100.7; an inner
        // proxy (10.9.9.9) forwarded it on.
        let headers = forwarded_headers(&["192.0.2.1, 198.51.100.7", "10.9.9.9"]);
        assert_eq!(
            client_addr(ip("10.1.2.3"), &headers, &trusted),
            ip("198.51.100.7")
        );
        // Nothing usable: the peer.
        assert_eq!(
            client_addr(ip("10.1.2.3"), &forwarded_headers(&["garbage"]), &trusted),
            ip("10.1.2.3")
        );
        assert_eq!(
            client_addr(ip("10.1.2.3"), &HeaderMap::new(), &trusted),
            ip("10.1.2.3")
        );
    }
}
