//! The client's IP address: from the connection (or the API Gateway request context, which the
//! Lambda entry point puts in the request's extensions), or from `X-Forwarded-For` counted from
//! the right by the number of proxies we trust, never from a header the client alone controls.

use std::net::IpAddr;

use axum::http::HeaderMap;

/// The peer address of the request, as the front (TCP server or Lambda adapter) saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerIp(pub IpAddr);

/// Resolves the client IP. With `trusted_hops` proxies in front, each appended the address it
/// saw to `X-Forwarded-For`, so the client is the entry `trusted_hops` from the right. An IPv4
/// client seen through an IPv6 socket (`::ffff:a.b.c.d`, on a dual-stack listener) is given as
/// IPv4, as the same client is through a proxy, and truncated as IPv4.
pub fn client_ip(headers: &HeaderMap, peer: Option<PeerIp>, trusted_hops: usize) -> Option<IpAddr> {
    seen_ip(headers, peer, trusted_hops).map(|ip| ip.to_canonical())
}

fn seen_ip(headers: &HeaderMap, peer: Option<PeerIp>, trusted_hops: usize) -> Option<IpAddr> {
    if trusted_hops > 0 {
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        if hops.len() >= trusted_hops {
            if let Ok(ip) = hops[hops.len() - trusted_hops].parse() {
                return Some(ip);
            }
        }
    }
    peer.map(|p| p.0)
}

/// Drops the host part: IPv4 to /24, IPv6 to /48.
pub fn truncate(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], 0, 0, 0, 0, 0])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", value.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_for_is_read_only_as_far_as_proxies_are_trusted() {
        let peer = Some(PeerIp("10.0.0.5".parse().unwrap()));
        // A client forging the header, behind one load balancer.
        let headers = xff("6.6.6.6, 203.0.113.9");
        assert_eq!(
            client_ip(&headers, peer, 1),
            Some("203.0.113.9".parse().unwrap())
        );
        assert_eq!(
            client_ip(&headers, peer, 0),
            Some("10.0.0.5".parse().unwrap())
        );
        // Fewer hops than trusted: the header cannot be believed.
        assert_eq!(
            client_ip(&xff("6.6.6.6"), peer, 2),
            Some("10.0.0.5".parse().unwrap())
        );
    }

    #[test]
    fn an_ipv4_client_on_a_dual_stack_socket_is_given_as_ipv4() {
        let mapped = Some(PeerIp("::ffff:203.0.113.9".parse().unwrap()));
        let ip = client_ip(&HeaderMap::new(), mapped, 0).unwrap();
        assert_eq!(ip.to_string(), "203.0.113.9");
        assert_eq!(truncate(ip).to_string(), "203.0.113.0");
        assert_eq!(
            client_ip(&xff("::ffff:198.51.100.7"), mapped, 1).map(|ip| ip.to_string()),
            Some("198.51.100.7".into())
        );
    }

    #[test]
    fn truncation_keeps_the_network_only() {
        assert_eq!(
            truncate("203.0.113.9".parse().unwrap()).to_string(),
            "203.0.113.0"
        );
        assert_eq!(
            truncate("2001:db8:1:2:3:4:5:6".parse().unwrap()).to_string(),
            "2001:db8:1::"
        );
    }
}
