//! nftables rules, as text for `nft -f -` (one table, `inet imgctl`).
//!
//! Every owner has its own base chains, so removal is exact and needs no rule
//! handles: a network's masquerade chain `n-<bridge>` (postrouting), and a
//! container's port chains `c-<id12>-pre` (prerouting: traffic from other
//! hosts and containers) and `c-<id12>-out` (output: the host's own traffic,
//! 127.0.0.1 included). Deleting a chain deletes its rules; a removal is one
//! transaction that first adds the chain (a no-op when present) so it succeeds
//! whether or not the chain exists (nft 1.0.6 has no `destroy`).
//!
//! Published ports on 127.0.0.1 work as Docker's `--userland-proxy=false`: the
//! output chain DNATs, `route_localnet` on the bridge lets a 127.0.0.1 source
//! leave through it, and the network chain masquerades that source.

use std::io::Write;
use std::process::{Command, Stdio};

use super::addr::{PortMap, Subnet};
use super::Error;

pub const TABLE: &str = "inet imgctl";

/// The chains of container `id`.
pub fn container_chains(id: &str) -> [String; 2] {
    let short: String = id.chars().take(12).collect();
    [format!("c-{short}-pre"), format!("c-{short}-out")]
}

/// The masquerade chain of a bridge.
pub fn network_chain(bridge: &str) -> String {
    format!("n-{bridge}")
}

fn dnat_rules(ports: &[PortMap], ip: std::net::Ipv4Addr) -> String {
    let mut s = String::new();
    for p in ports {
        let dst = match p.host_ip {
            Some(h) => format!("ip daddr {h}"),
            None => "fib daddr type local".to_string(),
        };
        s.push_str(&format!(
            "    {dst} {} dport {} dnat ip to {ip}:{}\n",
            p.proto.as_str(),
            p.host_port,
            p.container_port
        ));
    }
    s
}

/// The ruleset publishing `ports` of a container at `ip`.
pub fn publish_ruleset(id: &str, ip: std::net::Ipv4Addr, ports: &[PortMap]) -> String {
    let [pre, out] = container_chains(id);
    let rules = dnat_rules(ports, ip);
    format!(
        "add table {TABLE}\n\
         add chain {TABLE} {pre} {{ type nat hook prerouting priority dstnat; policy accept; }}\n\
         add chain {TABLE} {out} {{ type nat hook output priority -100; policy accept; }}\n\
         flush chain {TABLE} {pre}\n\
         flush chain {TABLE} {out}\n\
         table {TABLE} {{\n  chain {pre} {{\n{rules}  }}\n  chain {out} {{\n{rules}  }}\n}}\n"
    )
}

/// The ruleset removing a container's chains (whether or not they exist).
pub fn unpublish_ruleset(id: &str) -> String {
    let [pre, out] = container_chains(id);
    format!(
        "add table {TABLE}\n\
         add chain {TABLE} {pre} {{ type nat hook prerouting priority dstnat; policy accept; }}\n\
         add chain {TABLE} {out} {{ type nat hook output priority -100; policy accept; }}\n\
         delete chain {TABLE} {pre}\n\
         delete chain {TABLE} {out}\n"
    )
}

/// The ruleset of a network: masquerade what leaves the subnet to the
/// outside, and 127.0.0.1 sources entering the bridge (published ports used
/// from the host).
pub fn network_ruleset(bridge: &str, subnet: &Subnet) -> String {
    let c = network_chain(bridge);
    format!(
        "add table {TABLE}\n\
         add chain {TABLE} {c} {{ type nat hook postrouting priority srcnat; policy accept; }}\n\
         flush chain {TABLE} {c}\n\
         add rule {TABLE} {c} ip saddr {subnet} oifname != \"{bridge}\" masquerade\n\
         add rule {TABLE} {c} ip saddr 127.0.0.0/8 oifname \"{bridge}\" masquerade\n"
    )
}

/// The ruleset removing a network's chain.
pub fn network_removal(bridge: &str) -> String {
    let c = network_chain(bridge);
    format!(
        "add table {TABLE}\n\
         add chain {TABLE} {c} {{ type nat hook postrouting priority srcnat; policy accept; }}\n\
         delete chain {TABLE} {c}\n"
    )
}

/// Apply `ruleset` in one transaction (`nft -f -`).
pub fn apply(ruleset: &str) -> Result<(), Error> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Firewall {
            reason: format!("cannot run nft (install the nftables package): {e}"),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(ruleset.as_bytes())
            .map_err(|e| Error::Firewall {
                reason: format!("write to nft: {e}"),
            })?;
    }
    let out = child.wait_with_output().map_err(|e| Error::Firewall {
        reason: format!("wait for nft: {e}"),
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err
            .lines()
            .find(|l| l.starts_with("Error") || l.contains("rror"))
            .or_else(|| err.lines().next())
            .unwrap_or("failed")
            .trim()
            .to_string();
        return Err(Error::Firewall {
            reason: format!("nft: {first}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::addr::parse_publish;

    #[test]
    fn per_container_chains_carry_the_dnat_rules() {
        let id = "0123456789abcdef0123";
        let mut ports = parse_publish("18080:80").unwrap();
        ports.extend(parse_publish("127.0.0.1:5353:53/udp").unwrap());
        let r = publish_ruleset(id, "10.89.0.5".parse().unwrap(), &ports);
        assert!(r.contains("chain c-0123456789ab-pre {"), "{r}");
        assert!(r.contains("fib daddr type local tcp dport 18080 dnat ip to 10.89.0.5:80"));
        assert!(r.contains("ip daddr 127.0.0.1 udp dport 5353 dnat ip to 10.89.0.5:53"));
        let u = unpublish_ruleset(id);
        assert!(u.contains("delete chain inet imgctl c-0123456789ab-pre"));
        assert!(u.contains("delete chain inet imgctl c-0123456789ab-out"));
        let n = network_ruleset("imgctl0", &"10.89.0.0/24".parse().unwrap());
        assert!(n.contains("ip saddr 10.89.0.0/24 oifname != \"imgctl0\" masquerade"));
    }
}
