//! Which addresses a name may resolve to: the public internet only, unless the policy
//! says `allow-private: true`; cloud metadata addresses never.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not public, or `None` for a public one.
pub(crate) fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => {
            // An IPv4 address in IPv6 clothing is judged as the IPv4 address.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_class(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) reaches the embedded IPv4 address.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return v4_class(Ipv4Addr::from(((s[6] as u32) << 16) | s[7] as u32));
            }
            if v6 == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254) {
                return Some("metadata");
            }
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("private")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if s[0] & 0xff00 == 0xff00 {
                Some("multicast")
            } else {
                None
            }
        }
    }
}

fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) {
        // AWS, GCP, Azure, OpenStack (169.254.169.254) and Alibaba (100.100.100.200).
        return Some("metadata");
    }
    if o[0] == 127 {
        Some("loopback")
    } else if o[0] == 0 {
        Some("unspecified")
    } else if o[0] == 10 || (o[0] == 172 && o[1] & 0xf0 == 16) || (o[0] == 192 && o[1] == 168) {
        Some("private")
    } else if o[0] == 100 && o[1] & 0xc0 == 64 {
        Some("shared") // carrier-grade NAT, 100.64.0.0/10
    } else if o[0] == 169 && o[1] == 254 {
        Some("link-local")
    } else if (o[0] == 192 && o[1] == 0 && o[2] == 0) || (o[0] == 198 && o[1] & 0xfe == 18) {
        Some("special") // IETF protocol assignments (192.0.0/24), benchmarking (198.18/15)
    } else if o[0] >= 240 {
        Some("reserved")
    } else if o[0] >= 224 {
        Some("multicast")
    } else {
        None
    }
}

/// The refusal reason for `ip` under the policy, or `None` when it may be reached.
/// Metadata addresses are refused even with `allow-private`: nothing a tool needs
/// lives there, and it holds the host's cloud credentials.
pub(crate) fn refusal(ip: IpAddr, allow_private: bool) -> Option<&'static str> {
    match non_public(ip) {
        Some("metadata") => Some("metadata-address"),
        Some(_) if !allow_private => Some("private-address"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let class = |s: &str| non_public(s.parse().unwrap());
        assert_eq!(class("8.8.8.8"), None);
        assert_eq!(class("2a00:1450::1"), None);
        assert_eq!(class("127.0.0.2"), Some("loopback"));
        assert_eq!(class("10.1.2.3"), Some("private"));
        assert_eq!(class("172.31.0.1"), Some("private"));
        assert_eq!(class("172.32.0.1"), None);
        assert_eq!(class("192.168.1.1"), Some("private"));
        assert_eq!(class("169.254.1.1"), Some("link-local"));
        assert_eq!(class("169.254.169.254"), Some("metadata"));
        assert_eq!(class("fd00:ec2::254"), Some("metadata"));
        assert_eq!(class("fd12::1"), Some("private"));
        assert_eq!(class("fe80::1"), Some("link-local"));
        assert_eq!(class("::1"), Some("loopback"));
        assert_eq!(class("::ffff:127.0.0.1"), Some("loopback"));
        assert_eq!(class("::ffff:169.254.169.254"), Some("metadata"));
        assert_eq!(class("64:ff9b::a00:1"), Some("private"));
        assert_eq!(class("0.0.0.0"), Some("unspecified"));
        assert_eq!(class("100.64.0.1"), Some("shared"));
    }

    #[test]
    fn allow_private_never_allows_metadata() {
        assert_eq!(refusal("127.0.0.1".parse().unwrap(), true), None);
        assert_eq!(refusal("127.0.0.1".parse().unwrap(), false), Some("private-address"));
        assert_eq!(refusal("169.254.169.254".parse().unwrap(), true), Some("metadata-address"));
    }
}
