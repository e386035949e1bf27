//! Pure values of the network vocabulary: IPv4 subnets, published ports
//! (`-p [IP:]HOST:CONTAINER[/udp]`) and rates (`--network-rate-out 8mbit`).
//! Parsing only; nothing here touches the host.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Error;

/// An IPv4 subnet `a.b.c.d/len` with its host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    /// True when `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    /// True when the two share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let m = self.mask() & other.mask();
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }

    /// The `n`-th address (0 is the network address).
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        let size = 1u64 << (32 - u32::from(self.prefix));
        (u64::from(n) < size).then(|| Ipv4Addr::from(u32::from(self.addr) + n))
    }

    /// Usable host addresses: every one but the network and broadcast address.
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let size = 1u32 << (32 - u32::from(self.prefix).min(31));
        (1..size.saturating_sub(1)).filter_map(|n| self.nth(n))
    }

    /// The broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = Error;
    fn from_str(s: &str) -> Result<Subnet, Error> {
        let bad = |why: &str| Error::BadValue {
            what: "subnet".into(),
            value: s.into(),
            hint: format!("an IPv4 subnet like 10.89.1.0/24 ({why})"),
        };
        let (a, p) = s.split_once('/').ok_or_else(|| bad("no /prefix"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad("not an IPv4 address"))?;
        let prefix: u8 = p.parse().map_err(|_| bad("bad prefix length"))?;
        if !(8..=30).contains(&prefix) {
            return Err(bad("prefix length must be 8 to 30"));
        }
        let net = Subnet { addr, prefix };
        if u32::from(addr) & !net.mask() != 0 {
            return Err(bad("host bits are set"));
        }
        Ok(net)
    }
}

impl Serialize for Subnet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Subnet, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One published port: `host_ip:host_port` on the host forwards to
/// `container_port` of the container (`proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMap {
    /// `None`: every local address of the host (Docker's `0.0.0.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl fmt::Display for PortMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        write!(
            f,
            "{ip}:{}->{}/{}",
            self.host_port,
            self.container_port,
            self.proto.as_str()
        )
    }
}

fn port_range(s: &str, spec: &str) -> Result<(u16, u16), Error> {
    let bad = || Error::BadValue {
        what: "-p".into(),
        value: spec.into(),
        hint: "[IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp] with ports 1-65535 (e.g. 8080:80)".into(),
    };
    let one = |p: &str| -> Result<u16, Error> {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(bad()),
        }
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if a > b {
                return Err(bad());
            }
            Ok((a, b))
        }
        None => {
            let p = one(s)?;
            Ok((p, p))
        }
    }
}

/// Parse one `-p` value: `[IP:]HOST:CONTAINER[/udp]`, ranges `8000-8001:80-81`
/// allowed (same length). A missing host port (`-p 80`) is refused: imgctl
/// does not pick ports.
pub fn parse_publish(spec: &str) -> Result<Vec<PortMap>, Error> {
    let bad = |hint: &str| Error::BadValue {
        what: "-p".into(),
        value: spec.into(),
        hint: hint.into(),
    };
    let (body, proto) = match spec.rsplit_once('/') {
        Some((b, "tcp")) => (b, Proto::Tcp),
        Some((b, "udp")) => (b, Proto::Udp),
        Some(_) => return Err(bad("a protocol of tcp or udp (e.g. 53:53/udp)")),
        None => (spec, Proto::Tcp),
    };
    let parts: Vec<&str> = body.split(':').collect();
    let (ip, host, ctr) = match parts.as_slice() {
        [h, c] => (None, *h, *c),
        [ip, h, c] => (Some(*ip), *h, *c),
        _ => {
            return Err(bad(
                "[IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp] (e.g. 8080:80 or 127.0.0.1:8080:80)",
            ))
        }
    };
    let host_ip = match ip {
        None | Some("") | Some("0.0.0.0") => None,
        Some(ip) => Some(
            ip.parse::<Ipv4Addr>()
                .map_err(|_| bad("an IPv4 host address before the host port"))?,
        ),
    };
    let (h0, h1) = port_range(host, spec)?;
    let (c0, c1) = port_range(ctr, spec)?;
    if h1 - h0 != c1 - c0 {
        return Err(bad("host and container port ranges of the same length"));
    }
    Ok((0..=(h1 - h0))
        .map(|i| PortMap {
            host_ip,
            host_port: h0 + i,
            container_port: c0 + i,
            proto,
        })
        .collect())
}

/// Parse a rate: a number with an optional unit, bits per second as `tc`
/// writes them (`kbit`, `mbit`, `gbit`, decimal) or bytes per second (`kbps`,
/// `mbps`, `gbps`, `bps`); a bare number is bits per second. Returns bits per
/// second.
pub fn parse_rate(s: &str) -> Result<u64, Error> {
    let bad = || Error::BadValue {
        what: "rate".into(),
        value: s.into(),
        hint: "a rate like 8mbit, 500kbit, 1gbit or 2mbps (bytes per second)".into(),
    };
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match unit {
        "" | "bit" => 1.0,
        "k" | "kbit" => 1e3,
        "m" | "mbit" => 1e6,
        "g" | "gbit" => 1e9,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        "gbps" => 8e9,
        _ => return Err(bad()),
    };
    let bits = n * mult;
    if !bits.is_finite() || !(8000.0..=1e12).contains(&bits) {
        return Err(Error::BadValue {
            what: "rate".into(),
            value: s.into(),
            hint: "between 8kbit and 1000gbit".into(),
        });
    }
    Ok(bits.round() as u64)
}

/// A rate for people and `tc`: whole kbit.
pub fn rate_text(bits: u64) -> String {
    if bits.is_multiple_of(1_000_000) {
        format!("{}mbit", bits / 1_000_000)
    } else {
        format!("{}kbit", bits.div_ceil(1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_reject_host_bits() {
        let n: Subnet = "10.89.0.0/24".parse().unwrap();
        assert_eq!(n.nth(1), Some(Ipv4Addr::new(10, 89, 0, 1)));
        assert_eq!(n.broadcast(), Ipv4Addr::new(10, 89, 0, 255));
        assert_eq!(n.hosts().count(), 254);
        assert!(n.contains(Ipv4Addr::new(10, 89, 0, 77)));
        assert!(!n.contains(Ipv4Addr::new(10, 89, 1, 1)));
        assert!(n.overlaps(&"10.0.0.0/8".parse().unwrap()));
        assert!(!n.overlaps(&"10.89.1.0/24".parse().unwrap()));
        for bad in [
            "10.89.0.1/24",
            "10.89.0.0",
            "10.89.0.0/33",
            "x/24",
            "10.0.0.0/4",
        ] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn publish_forms() {
        let p = parse_publish("18080:80").unwrap();
        assert_eq!(
            p,
            vec![PortMap {
                host_ip: None,
                host_port: 18080,
                container_port: 80,
                proto: Proto::Tcp
            }]
        );
        let p = parse_publish("127.0.0.1:53:5353/udp").unwrap();
        assert_eq!(p[0].host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(p[0].proto, Proto::Udp);
        assert_eq!(p[0].to_string(), "127.0.0.1:53->5353/udp");
        assert_eq!(parse_publish("8000-8002:80-82").unwrap().len(), 3);
        for bad in [
            "80",
            "0:80",
            "70000:80",
            "a:80",
            "1:2:3:4",
            "80:80/sctp",
            "8000-8001:80",
            "example:80:80",
            "",
        ] {
            let e = parse_publish(bad).unwrap_err().to_string();
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("8mbit").unwrap(), 8_000_000);
        assert_eq!(parse_rate("500kbit").unwrap(), 500_000);
        assert_eq!(parse_rate("1mbps").unwrap(), 8_000_000);
        assert_eq!(parse_rate("2.5mbit").unwrap(), 2_500_000);
        assert_eq!(parse_rate("64000").unwrap(), 64_000);
        for bad in ["", "fast", "1", "-3mbit", "8 parsecs", "1e99gbit"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(rate_text(8_000_000), "8mbit");
        assert_eq!(rate_text(2_500_000), "2500kbit");
    }
}
