//! One container on one bridge network: [`connect`] and [`disconnect`].
//!
//! connect: bridge made if missing (address, up, `route_localnet`, the
//! network's masquerade chain) → address lease → host-port leases → veth pair
//! (`vi<id12>` on the bridge, `eth0` born in the container's namespace) →
//! address, link and default route inside → shapers → DNAT chains → hosts
//! files. Any failure undoes it all with [`disconnect`].
//!
//! disconnect needs only the container id: the host veth's name, the nft
//! chains and the leases are all found from it, so a reaper cleans up after a
//! `kill -9` as exactly as the owner would have.

use std::net::Ipv4Addr;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::addr::{rate_text, PortMap};
use super::lease::{self, Lease};
use super::netlink::{self, Netlink};
use super::{nft, Error, Network};

/// The container side's name.
const PEER: &str = "eth0";
const MTU: u32 = 1500;

/// The host side veth of container `id`.
pub fn host_veth(id: &str) -> String {
    let short: String = id.chars().take(12).collect();
    format!("vi{short}")
}

/// What a container's owner asks for.
pub struct Attach<'a> {
    pub network: &'a Network,
    pub id: &'a str,
    pub name: Option<&'a str>,
    pub hostname: &'a str,
    /// The owner's lock file (`ROOT/locks/containers/<id>`), held for the
    /// container's life: leases are live while it is locked.
    pub owner: &'a Path,
    /// The container's network namespace (an open `/proc/PID/ns/net`; held
    /// open, it keeps the namespace alive while it is configured).
    pub netns: BorrowedFd<'a>,
    pub ports: &'a [PortMap],
    /// Bits per second into the container (shaped on the host's veth).
    pub rate_in: Option<u64>,
    /// Bits per second out of the container (shaped on its `eth0`).
    pub rate_out: Option<u64>,
    /// The container's generated `/etc/hosts` (bound into it), rewritten in
    /// place with its address and, on a user-defined network, its peers.
    pub hosts: Option<&'a Path>,
}

/// A container's endpoint: what [`connect`] made (kept in the container's
/// state; schemas/container-state.schema.json `network`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub network: String,
    pub bridge: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    pub host_veth: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMap>,
    /// Bits per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_out: Option<u64>,
}

fn link(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let step = step.into();
    move |source| Error::Link { step, source }
}

fn ok_if_exists(r: std::io::Result<()>) -> std::io::Result<()> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        r => r,
    }
}

fn sysctl(path: &str, value: &str) -> Result<(), Error> {
    if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    std::fs::write(path, value).map_err(|source| Error::Io {
        path: PathBuf::from(path),
        source,
    })
}

/// Make the network's bridge if missing: address, up, `route_localnet` (for
/// published ports used from 127.0.0.1), IPv4 forwarding and the network's
/// masquerade chain. Idempotent; serialised per bridge.
pub(super) fn ensure_bridge(net: &Network) -> Result<(), Error> {
    let nat_done = lease::run_dir().join("ipam").join(&net.bridge).join(".nat");
    if netlink::exists(&net.bridge) && nat_done.exists() && mac_is_set(&net.bridge) {
        return Ok(());
    }
    let _g = lease::lock_bridge(&net.bridge)?;
    let mut nl = Netlink::open().map_err(link("open rtnetlink"))?;
    ok_if_exists(nl.add_bridge(&net.bridge))
        .map_err(link(format!("create bridge {}", net.bridge)))?;
    let idx = netlink::index_of(&net.bridge).map_err(link(format!("find {}", net.bridge)))?;
    // A fixed MAC (the gateway's, Docker's 02:42 habit): left to the kernel,
    // a bridge takes its lowest port's MAC and changes it when that container
    // goes, and every other container then sends to the gateway's old MAC
    // until its neighbour entry times out (seconds of stalled TCP).
    if !mac_is_set(&net.bridge) {
        nl.set_mac(idx, mac_of(net.gateway))
            .map_err(link(format!("set the MAC of {}", net.bridge)))?;
    }
    ok_if_exists(nl.add_addr(
        idx,
        net.gateway,
        net.subnet.prefix,
        Some(net.subnet.broadcast()),
    ))
    .map_err(link(format!("address {} on {}", net.gateway, net.bridge)))?;
    nl.set_up(idx)
        .map_err(link(format!("set {} up", net.bridge)))?;
    sysctl(
        &format!("/proc/sys/net/ipv4/conf/{}/route_localnet", net.bridge),
        "1",
    )?;
    sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
    if !nat_done.exists() {
        nft::apply(&nft::network_ruleset(&net.bridge, &net.subnet))?;
        std::fs::write(&nat_done, b"").map_err(|source| Error::Io {
            path: nat_done.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Remove a network's bridge, chain and lease directory.
pub(super) fn remove_bridge(net: &Network) -> Result<(), Error> {
    let mut nl = Netlink::open().map_err(link("open rtnetlink"))?;
    match nl.del_link(&net.bridge) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
        Err(e) => return Err(link(format!("delete bridge {}", net.bridge))(e)),
    }
    nft::apply(&nft::network_removal(&net.bridge))?;
    lease::forget_bridge(&net.bridge);
    Ok(())
}

/// Whether `dev`'s MAC was set explicitly (`NET_ADDR_SET`), not inherited.
fn mac_is_set(dev: &str) -> bool {
    std::fs::read_to_string(format!("/sys/class/net/{dev}/addr_assign_type"))
        .is_ok_and(|t| t.trim() == "3")
}

/// A locally administered MAC from the address (Docker's 02:42 + IPv4 habit).
fn mac_of(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// `tc` shaper: a token bucket on `dev`'s egress. Burst: 20 ms at the rate
/// (at least 16 KiB), so a 64 KiB GSO packet is segmented rather than let
/// through whole and the measured rate stays within a few percent.
fn shape(dev: &str, bits: u64) -> Result<(), Error> {
    let burst = (bits / 8 / 50).max(16 * 1024);
    let out = Command::new("tc")
        .args(["qdisc", "replace", "dev", dev, "root", "tbf", "rate"])
        .arg(rate_text(bits))
        .args(["burst", &burst.to_string(), "latency", "100ms"])
        .output()
        .map_err(|e| Error::Shaper {
            reason: format!("cannot run tc (install iproute2): {e}"),
        })?;
    if !out.status.success() {
        return Err(Error::Shaper {
            reason: format!(
                "tc on {dev}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// Attach a container to a bridge network. On failure nothing stays.
pub fn connect(a: &Attach<'_>) -> Result<Endpoint, Error> {
    ensure_bridge(a.network)?;
    let r = connect_inner(a);
    if r.is_err() {
        let _ = disconnect(a.id);
    }
    r
}

fn connect_inner(a: &Attach<'_>) -> Result<Endpoint, Error> {
    let net = a.network;
    let template = Lease {
        container: a.id.to_string(),
        name: a.name.map(String::from),
        hostname: a.hostname.to_string(),
        ip: Ipv4Addr::UNSPECIFIED,
        network: net.name.clone(),
        owner: a.owner.to_path_buf(),
        hosts: a.hosts.map(Path::to_path_buf),
    };
    let ip = lease::allocate_ip(&net.bridge, &net.subnet, net.gateway, template.clone())?;
    let me = Lease { ip, ..template };
    lease::claim_ports(a.ports, &me)?;

    let veth = host_veth(a.id);
    let mac = mac_of(ip);
    let mut nl = Netlink::open().map_err(link("open rtnetlink"))?;
    let br = netlink::index_of(&net.bridge).map_err(link(format!("find {}", net.bridge)))?;
    nl.add_veth(&veth, br, PEER, a.netns, MTU, mac)
        .map_err(link(format!("create veth {veth}")))?;

    let (gw, prefix, brd, rate_out) = (
        net.gateway,
        net.subnet.prefix,
        net.subnet.broadcast(),
        a.rate_out,
    );
    let inside = netlink::in_netns(a.netns, move || {
        // ioctls, not rtnetlink: a netlink socket would hold the namespace
        // for a grace period after its close (see super::ioctl).
        super::ioctl::configure(PEER, ip, prefix, brd, gw)?;
        // Shaped inside, on the container's own egress: the container has no
        // CAP_NET_ADMIN to undo it, and an egress shaper (unlike an ingress
        // policer on the host side) paces TCP without drops.
        if let Some(bits) = rate_out {
            shape(PEER, bits).map_err(std::io::Error::other)?;
        }
        Ok(())
    });
    inside.map_err(link(format!(
        "configure {PEER} in the container's network namespace"
    )))?;
    if let Some(bits) = a.rate_in {
        shape(&veth, bits)?;
    }
    if !a.ports.is_empty() {
        nft::apply(&nft::publish_ruleset(a.id, ip, a.ports))?;
    }
    if let Some(hosts) = a.hosts {
        if net.name == super::DEFAULT_NETWORK {
            // Docker's default bridge gives no names between containers: only
            // this container's own file changes, and no peer's.
            write_hosts(hosts, &entry_of(&me), &[]);
        } else {
            let _g = lease::lock_bridge(&net.bridge)?;
            refresh_hosts(net, None);
        }
    }
    Ok(Endpoint {
        network: net.name.clone(),
        bridge: net.bridge.clone(),
        ip,
        prefix,
        gateway: gw,
        mac: mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        host_veth: veth,
        ports: a.ports.to_vec(),
        rate_in: a.rate_in,
        rate_out: a.rate_out,
    })
}

/// Undo [`connect`] for container `id`, whatever was made (idempotent):
/// host veth (its peer and shapers go with it), DNAT chains, leases; the
/// remaining peers' hosts files lose its entry.
///
/// The veth is left to the kernel when the container's namespace is already
/// being dismantled (its last process gone, nothing holding it): the kernel
/// unregisters both ends itself, in the background, a few milliseconds later,
/// whereas deleting it here waits for the unregistration's RCU grace periods
/// (10-40 ms on this host). While anything still holds the namespace (a
/// `--network container:` peer, an `nsenter`), the veth is deleted here as
/// before, so nobody keeps an address whose lease is released.
pub fn disconnect(id: &str) -> Result<(), Error> {
    disconnect_with(id, VethRemoval::Wait)
}

/// How [`disconnect_with`] deletes a veth whose peer's namespace may still be
/// held (or whose dismantling the kernel has not begun yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VethRemoval {
    /// Delete it and wait (10-40 ms of RCU grace periods after the exit).
    Wait,
    /// From a single-threaded process that ends soon (a foreground `run`):
    /// delete it in a child it does not wait for
    /// ([`netlink::del_link_detached`]), as the kernel does in the background
    /// when the namespace is dismantled; waits when no such child can be made.
    Background,
}

/// [`disconnect`], the veth removed as `how` says.
pub fn disconnect_with(id: &str, how: VethRemoval) -> Result<(), Error> {
    let mut first: Result<(), Error> = Ok(());
    let veth = host_veth(id);
    if netlink::exists(&veth) {
        let r = Netlink::open()
            .and_then(|mut nl| {
                if peer_namespace_dying(&mut nl, &veth) {
                    tracing::debug!("{veth}: its peer's namespace is dying, left to the kernel");
                    return Ok(());
                }
                if how == VethRemoval::Background && netlink::del_link_detached(&veth) {
                    tracing::debug!("{veth}: deleted in the background");
                    return Ok(());
                }
                tracing::debug!("{veth}: deleted");
                nl.del_link(&veth)
            })
            .or_else(|e| {
                if e.raw_os_error() == Some(libc::ENODEV) {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(link(format!("delete {veth}")));
        if let Err(e) = r {
            first = Err(e);
        }
    }
    // Port leases are taken before the chains are made and dropped after
    // they are gone: without one, there is no chain to remove.
    let has_ports = lease::has_ports(id);
    if has_ports {
        if let Err(e) = nft::apply(&nft::unpublish_ruleset(id)) {
            if first.is_ok() {
                first = Err(e);
            }
            return first;
        }
    }
    let removed = lease::release_container(id);
    for (bridge, l) in removed {
        // On the default network no hosts file names a peer.
        if l.network == super::DEFAULT_NETWORK {
            continue;
        }
        if let Ok(_g) = lease::lock_bridge(&bridge) {
            let net_name = l.network.clone();
            refresh_hosts_on(&bridge, &net_name, Some(id));
        }
    }
    first
}

/// True when the namespace of `veth`'s other end is being dismantled, so the
/// kernel removes the pair by itself (see [`Netlink::link_netnsid`]). Any
/// doubt (no answer, an id): false, and the caller deletes the veth.
fn peer_namespace_dying(nl: &mut Netlink, veth: &str) -> bool {
    matches!(nl.link_netnsid(veth), Ok(Some(id)) if id < 0)
}

/// One `/etc/hosts` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsEntry {
    pub ip: Ipv4Addr,
    pub names: Vec<String>,
}

/// A container's `/etc/hosts`: localhost, itself, then its peers.
pub fn hosts_text(own: &HostsEntry, peers: &[HostsEntry]) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    s.push_str(&format!("{}\t{}\n", own.ip, own.names.join(" ")));
    for p in peers {
        s.push_str(&format!("{}\t{}\n", p.ip, p.names.join(" ")));
    }
    s
}

fn entry_of(l: &Lease) -> HostsEntry {
    let mut names = Vec::new();
    if let Some(n) = &l.name {
        names.push(n.clone());
    }
    if !names.contains(&l.hostname) && !l.hostname.is_empty() {
        names.push(l.hostname.clone());
    }
    let short: String = l.container.chars().take(12).collect();
    if !names.contains(&short) {
        names.push(short);
    }
    HostsEntry { ip: l.ip, names }
}

/// Rewrite the hosts files of every container on `net` (the bridge lock held).
fn refresh_hosts(net: &Network, gone: Option<&str>) {
    refresh_hosts_on(&net.bridge, &net.name, gone);
}

fn refresh_hosts_on(bridge: &str, network: &str, gone: Option<&str>) {
    let all: Vec<Lease> = lease::leases(bridge)
        .into_iter()
        .filter(|l| Some(l.container.as_str()) != gone)
        .collect();
    // Docker's default bridge gives no name resolution between containers.
    let by_name = network != super::DEFAULT_NETWORK;
    for l in &all {
        let Some(path) = &l.hosts else { continue };
        let peers: Vec<HostsEntry> = if by_name {
            all.iter()
                .filter(|p| p.container != l.container && p.network == l.network)
                .map(entry_of)
                .collect()
        } else {
            Vec::new()
        };
        write_hosts(path, &entry_of(l), &peers);
    }
}

/// Rewrite one hosts file in place: it is bind-mounted into its container, a
/// rename would not be seen. Best effort (the container may be gone).
fn write_hosts(path: &Path, own: &HostsEntry, peers: &[HostsEntry]) {
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, hosts_text(own, peers).as_bytes()));
}

/// A container's `/etc/resolv.conf` from the host's: nameservers on the host's
/// loopback (a local caching resolver) cannot be reached from the container's
/// namespace and are dropped; with none left, Docker's public fallback.
pub fn resolv_conf(host: &str) -> String {
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let t = line.trim();
        if let Some(ns) = t.strip_prefix("nameserver") {
            let ns = ns.trim();
            let local = ns.starts_with("127.") || ns == "::1";
            if local {
                continue;
            }
            servers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if servers == 0 {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_drops_loopback_servers() {
        let r = resolv_conf("search lan\nnameserver 127.0.0.53\nnameserver 192.0.2.53\n");
        assert_eq!(r, "search lan\nnameserver 192.0.2.53\n");
        let r = resolv_conf("nameserver 127.0.0.1\noptions edns0\n");
        assert!(r.contains("options edns0") && r.contains("nameserver 8.8.8.8"));
        assert!(!r.contains("127.0.0.1"));
    }

    #[test]
    fn hosts_lists_self_then_peers() {
        let own = HostsEntry {
            ip: "10.89.1.2".parse().unwrap(),
            names: vec!["a".into(), "abc".into()],
        };
        let peer = HostsEntry {
            ip: "10.89.1.3".parse().unwrap(),
            names: vec!["b".into()],
        };
        let t = hosts_text(&own, &[peer]);
        assert!(t.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(t.contains("10.89.1.2\ta abc\n"));
        assert!(t.ends_with("10.89.1.3\tb\n"));
        assert_eq!(host_veth(&"f".repeat(64)).len(), 14);
    }
}
