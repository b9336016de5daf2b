//! Which addresses a node's Ollama URL may point at. Link-local and cloud
//! metadata addresses are refused unless the operator allows them: a Node
//! object is written by anyone who may register a node, and the router and
//! controller would otherwise fetch whatever internal address it names (a
//! cloud's credentials endpoint at 169.254.169.254, for one).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP network, `192.168.0.0/16` or `fe80::/10` (a bare address is a /32
/// or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub const fn v4(a: [u8; 4], prefix: u8) -> Cidr {
        Cidr {
            addr: IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
            prefix,
        }
    }

    pub const fn v6(segments: [u16; 8], prefix: u8) -> Cidr {
        let [a, b, c, d, e, f, g, h] = segments;
        Cidr {
            addr: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
            prefix,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:169.254.169.254`) is its IPv4
/// address: it reaches the same host.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP network (like 10.0.0.0/8 or fe80::/10)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{s:?} has an invalid prefix length (0-{max})")),
            },
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Networks refused for node URLs unless allowed: IPv4 and IPv6 link-local
/// (where cloud metadata services answer) and AWS's IPv6 metadata address.
pub const REFUSED: [Cidr; 3] = [
    Cidr::v4([169, 254, 0, 0], 16),
    Cidr::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
    Cidr::v6([0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254], 128),
];

/// Whether a node's Ollama may be reached at `ip`: `Err` names the refused
/// network and the flag that allows it. `allowed` networks win over the
/// refused ones.
pub fn check(ip: IpAddr, allowed: &[Cidr]) -> Result<(), String> {
    if allowed.iter().any(|c| c.contains(ip)) {
        return Ok(());
    }
    match REFUSED.iter().find(|c| c.contains(ip)) {
        Some(net) => Err(format!(
            "address {ip} is in {net} (link-local or cloud metadata), which node URLs may not use unless the server allows it with --allow-node-addresses"
        )),
        None => Ok(()),
    }
}

/// The host of an `http://` or `https://` URL when it is an IP literal.
pub fn ip_literal_host(url: &str) -> Option<IpAddr> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split_once(']')?.0
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host.parse().ok()
}

/// Parses `--allow-node-addresses`: comma-separated networks.
pub fn parse_list(s: &str) -> Result<Vec<Cidr>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(Cidr::from_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_policy_table() {
        let allow_metadata = parse_list("169.254.169.254/32, fd00:ec2::254").expect("list");
        for (ip, allowed, ok) in [
            ("192.168.1.20", &[][..], true),
            ("127.0.0.1", &[], true),
            ("10.0.0.1", &[], true),
            ("169.254.169.254", &[], false),
            ("169.254.0.1", &[], false),
            ("169.253.255.255", &[], true),
            ("169.255.0.0", &[], true),
            ("::ffff:169.254.169.254", &[], false),
            ("fe80::1", &[], false),
            ("febf::1", &[], false),
            ("fec0::1", &[], true),
            ("fd00:ec2::254", &[], false),
            ("fd00:ec2::253", &[], true),
            ("::1", &[], true),
            ("169.254.169.254", &allow_metadata[..], true),
            ("169.254.169.253", &allow_metadata[..], false),
            ("fd00:ec2::254", &allow_metadata[..], true),
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            let got = check(ip, allowed);
            assert_eq!(got.is_ok(), ok, "{ip} with {allowed:?}: {got:?}");
            if let Err(e) = got {
                assert!(e.contains("--allow-node-addresses"), "{e}");
            }
        }
    }

    #[test]
    fn cidr_parsing_table() {
        for (s, ok) in [
            ("10.0.0.0/8", true),
            ("169.254.169.254", true),
            ("fe80::/10", true),
            ("::/0", true),
            ("10.0.0.0/33", false),
            ("fe80::/129", false),
            ("10.0.0/8", false),
            ("example.com/8", false),
            ("", false),
        ] {
            assert_eq!(s.parse::<Cidr>().is_ok(), ok, "{s:?}");
        }
        let all: Cidr = "0.0.0.0/0".parse().expect("all");
        assert!(all.contains("169.254.1.1".parse().expect("ip")));
        assert_eq!(parse_list("").expect("empty"), vec![]);
        assert!(parse_list("10.0.0.0/8,nope").is_err());
    }

    #[test]
    fn ip_literal_hosts() {
        for (url, want) in [
            ("http://169.254.169.254/latest", Some("169.254.169.254")),
            ("http://169.254.169.254:80", Some("169.254.169.254")),
            ("https://[fe80::1]:11434/", Some("fe80::1")),
            ("http://[fd00:ec2::254]", Some("fd00:ec2::254")),
            ("http://gpu-1.lab:11434", None),
            ("http://localhost", None),
            ("ftp://10.0.0.1", None),
        ] {
            let want = want.map(|w| w.parse::<IpAddr>().expect("ip"));
            assert_eq!(ip_literal_host(url), want, "{url}");
        }
    }
}
