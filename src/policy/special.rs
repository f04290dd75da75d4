//! Special-purpose address ranges (IANA IPv4/IPv6 Special-Purpose Address Registries, RFC 6890)
//! that a proxy must not reach on a client's behalf unless the operator allows them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Names the special-purpose range `ip` falls in, or `None` for an ordinary global address.
///
/// IPv6 forms that embed an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64 `64:ff9b::/96`,
/// 6to4 `2002::/16`) are judged by the embedded address, so `[::ffff:127.0.0.1]` is loopback.
pub fn special_purpose(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let reason = match (a, b, c) {
        (0, _, _) => "this-network range 0.0.0.0/8",
        (10, _, _) => "private range 10.0.0.0/8",
        (100, 64..=127, _) => "shared CGNAT range 100.64.0.0/10",
        (127, _, _) => "loopback range 127.0.0.0/8",
        (169, 254, _) => "link-local range 169.254.0.0/16 (cloud metadata)",
        (172, 16..=31, _) => "private range 172.16.0.0/12",
        (192, 0, 0) => "IETF protocol assignments 192.0.0.0/24",
        (192, 0, 2) => "documentation range 192.0.2.0/24",
        (192, 88, 99) => "6to4 relay anycast 192.88.99.0/24",
        (192, 168, _) => "private range 192.168.0.0/16",
        (198, 18..=19, _) => "benchmarking range 198.18.0.0/15",
        (198, 51, 100) => "documentation range 198.51.100.0/24",
        (203, 0, 113) => "documentation range 203.0.113.0/24",
        (224..=239, _, _) => "multicast range 224.0.0.0/4",
        (240..=255, _, _) => "reserved range 240.0.0.0/4",
        _ => return None,
    };
    Some(reason)
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    let bits = u128::from(ip);
    if ip.is_unspecified() {
        return Some("unspecified address ::");
    }
    if ip.is_loopback() {
        return Some("loopback address ::1");
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return special_v4(v4).or(Some("IPv4-mapped address"));
    }
    // Deprecated IPv4-compatible ::a.b.c.d: never a real destination.
    if bits >> 32 == 0 {
        return Some("IPv4-compatible range ::/96");
    }
    // NAT64 well-known prefix: judge the embedded IPv4 address.
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
        let v4 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
        return Some(special_v4(v4).unwrap_or("NAT64 range 64:ff9b::/96"));
    }
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1 {
        return Some("local-use NAT64 range 64:ff9b:1::/48");
    }
    if seg[0] == 0x0100 && seg[1..4] == [0, 0, 0] {
        return Some("discard range 100::/64");
    }
    if seg[0] == 0x2001 && seg[1] < 0x0200 {
        return Some("IETF protocol assignments 2001::/23 (Teredo, ORCHID)");
    }
    if seg[0] == 0x2001 && seg[1] == 0x0db8 {
        return Some("documentation range 2001:db8::/32");
    }
    if seg[0] == 0x2002 {
        let v4 = Ipv4Addr::new((seg[1] >> 8) as u8, seg[1] as u8, (seg[2] >> 8) as u8, seg[2] as u8);
        return Some(special_v4(v4).unwrap_or("6to4 range 2002::/16"));
    }
    if seg[0] & 0xfe00 == 0xfc00 {
        return Some("unique-local range fc00::/7");
    }
    if seg[0] & 0xffc0 == 0xfe80 {
        return Some("link-local range fe80::/10");
    }
    if seg[0] & 0xffc0 == 0xfec0 {
        return Some("site-local range fec0::/10");
    }
    if seg[0] & 0xff00 == 0xff00 {
        return Some("multicast range ff00::/8");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(s: &str) -> bool {
        special_purpose(s.parse().unwrap()).is_some()
    }

    #[test]
    fn ranges() {
        for s in [
            "0.0.0.0",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "192.0.2.5",
            "198.51.100.1",
            "203.0.113.9",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "::",
            "::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b::7f00:1",
            "2001:db8::1",
            "2002:7f00:1::",
            "fd00::1",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "2001::1",
        ] {
            assert!(sp(s), "{s} should be special");
        }
        for s in ["8.8.8.8", "100.128.0.1", "172.32.0.1", "93.184.216.34", "2606:4700::1111", "2a00:1450::1"]
        {
            assert!(!sp(s), "{s} should be global");
        }
    }
}
