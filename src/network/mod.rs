//! Container networks: bridge networks with IPAM, a veth pair per container,
//! outbound NAT and published ports (nftables), bandwidth shaping (tc), and the
//! `/etc/hosts` / `/etc/resolv.conf` a container on a network gets.
//!
//! Definitions live in the store (`ROOT/networks/<name>.json`, schema
//! `schemas/network.schema.json`); the default network `bridge` (device
//! `imgctl0`, subnet [`DEFAULT_SUBNET`] or `IMGCTL_BRIDGE_SUBNET`) is written
//! on first use. Bridges, address and port leases are host objects and live in
//! the host's runtime directory (see [`lease`]).
//!
//! The API a container's owner uses is two calls: [`connect`] once the
//! container's process exists (its network namespace is `/proc/PID/ns/net`)
//! and before its command starts, and [`disconnect`] when it is gone, also
//! from a reaper after a `kill -9` (everything is found from the container id).
//! Links are made with rtnetlink ([`netlink`]); rules with `nft`; shapers with
//! `tc`.

pub mod addr;
mod endpoint;
mod ioctl;
pub mod lease;
pub mod netlink;
pub mod nft;

pub use addr::{parse_publish, parse_rate, rate_text, PortMap, Proto, Subnet};
pub use endpoint::{
    connect, disconnect, disconnect_with, host_veth, hosts_text, resolv_conf, Attach, Endpoint,
    HostsEntry, VethRemoval,
};

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors of the network module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid {what} {value:?}: expected {hint}")]
    BadValue {
        what: String,
        value: String,
        hint: String,
    },
    #[error("network {name:?} not found (see `imgctl network ls`)")]
    NotFound { name: String },
    #[error("network {name:?} already exists")]
    Exists { name: String },
    #[error("network {name:?} is predefined and cannot be {action}")]
    Predefined { name: String, action: String },
    #[error("network {name:?} is in use by container(s) {containers} (stop or remove them first)")]
    InUse { name: String, containers: String },
    #[error("subnet {subnet} overlaps {with}; choose another with --subnet")]
    Overlap { subnet: String, with: String },
    #[error("no free address left in network {network:?} ({subnet})")]
    Exhausted { network: String, subnet: String },
    #[error("host port {port} is already allocated")]
    PortInUse { port: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{step}: {source}")]
    Link {
        step: String,
        source: std::io::Error,
    },
    #[error("firewall: {reason}")]
    Firewall { reason: String },
    #[error("traffic control: {reason}")]
    Shaper { reason: String },
}

/// The default network's name (Docker's) and bridge device.
pub const DEFAULT_NETWORK: &str = "bridge";
pub const DEFAULT_BRIDGE: &str = "imgctl0";
/// Chosen to stay clear of Docker (172.17/16), Podman (10.88/16) and common LANs.
pub const DEFAULT_SUBNET: &str = "10.89.0.0/24";

/// A network definition (`ROOT/networks/<name>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    pub id: String,
    /// Always `bridge` today.
    pub driver: String,
    /// The host's bridge device.
    pub bridge: String,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    /// Seconds since the Unix epoch.
    pub created: u64,
}

impl Network {
    /// The default network: containers on it are not given each other's names
    /// (Docker's default bridge neither).
    pub fn is_default(&self) -> bool {
        self.name == DEFAULT_NETWORK
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn defs_dir(root: &Path) -> PathBuf {
    root.join("networks")
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn random_id() -> String {
    use std::io::Read;
    let mut b = [0u8; 32];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        let t = now().to_le_bytes();
        b[..8].copy_from_slice(&t);
        b[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    }
    hex::encode(b)
}

/// Check a network name: Docker's container-name alphabet.
pub fn check_name(name: &str) -> Result<(), Error> {
    if crate::oci::is_restricted_name(name, 64) {
        Ok(())
    } else {
        Err(Error::BadValue {
            what: "network name".into(),
            value: name.into(),
            hint: "letters, digits, '_', '.' and '-', starting with a letter or digit".into(),
        })
    }
}

/// Held while networks of a store are created or removed.
fn lock_defs(root: &Path) -> Result<std::fs::File, Error> {
    let dir = root.join("locks");
    std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
    let p = dir.join("networks");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(io_at(&p))?;
    f.lock().map_err(io_at(&p))?;
    Ok(f)
}

fn save(root: &Path, net: &Network) -> Result<(), Error> {
    let dir = defs_dir(root);
    crate::store::fsutil::mkdir_private(&dir).map_err(io_at(&dir))?;
    let p = dir.join(format!("{}.json", net.name));
    let body = serde_json::to_vec_pretty(net).map_err(|e| Error::Io {
        path: p.clone(),
        source: std::io::Error::other(e),
    })?;
    crate::store::write_atomic(&p, &body, 0o600).map_err(io_at(&p))
}

fn load(root: &Path, name: &str) -> Result<Option<Network>, Error> {
    let p = defs_dir(root).join(format!("{name}.json"));
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| Error::Io {
            path: p,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_at(&p)(e)),
    }
}

fn default_network() -> Result<Network, Error> {
    let subnet: Subnet = std::env::var("IMGCTL_BRIDGE_SUBNET")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_SUBNET.to_string())
        .parse()?;
    Ok(Network {
        name: DEFAULT_NETWORK.into(),
        id: random_id(),
        driver: "bridge".into(),
        bridge: DEFAULT_BRIDGE.into(),
        gateway: subnet.nth(1).unwrap_or(subnet.addr),
        subnet,
        created: now(),
    })
}

/// The network `name` of the store at `root`; the default one is defined (and
/// saved) on first use.
pub fn get(root: &Path, name: &str) -> Result<Network, Error> {
    if let Some(n) = load(root, name)? {
        return Ok(n);
    }
    if name == DEFAULT_NETWORK {
        let _g = lock_defs(root)?;
        if let Some(n) = load(root, name)? {
            return Ok(n);
        }
        let n = default_network()?;
        save(root, &n)?;
        return Ok(n);
    }
    if name == "host" || name == "none" {
        return Err(Error::Predefined {
            name: name.into(),
            action: "used as a bridge network (use --network host or none)".into(),
        });
    }
    Err(Error::NotFound { name: name.into() })
}

/// Every defined network of the store, the default one first.
pub fn list(root: &Path) -> Result<Vec<Network>, Error> {
    let mut out = vec![get(root, DEFAULT_NETWORK)?];
    let dir = defs_dir(root);
    let mut names: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .map(String::from)
            })
            .filter(|n| n != DEFAULT_NETWORK)
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    for n in names {
        if let Some(net) = load(root, &n)? {
            out.push(net);
        }
    }
    Ok(out)
}

/// IPv4 routes of the host (destination subnets, the default route left out).
fn host_routes() -> Vec<(Subnet, String)> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let (Ok(dst), Ok(mask)) = (u32::from_str_radix(f[1], 16), u32::from_str_radix(f[7], 16))
        else {
            continue;
        };
        // The kernel prints the in-memory (network-order) bytes as a native integer.
        let prefix = mask.count_ones() as u8;
        if prefix == 0 {
            continue;
        }
        out.push((
            Subnet {
                addr: Ipv4Addr::from(dst.to_ne_bytes()),
                prefix,
            },
            f[0].to_string(),
        ));
    }
    out
}

/// Why `subnet` cannot be used: it overlaps a network of the store or a route
/// of the host.
fn clash(root: &Path, subnet: &Subnet) -> Result<Option<String>, Error> {
    for n in list(root)? {
        if n.subnet.overlaps(subnet) {
            return Ok(Some(format!("network {:?} ({})", n.name, n.subnet)));
        }
    }
    for (r, dev) in host_routes() {
        if r.overlaps(subnet) {
            return Ok(Some(format!("the host route {r} on {dev}")));
        }
    }
    Ok(None)
}

/// Create a bridge network `name` (its bridge is made at once, so its route
/// shows other stores the subnet is taken). Without `subnet`, the first free
/// 10.89.N.0/24.
pub fn create(root: &Path, name: &str, subnet: Option<Subnet>) -> Result<Network, Error> {
    check_name(name)?;
    if ["host", "none", DEFAULT_NETWORK].contains(&name) {
        return Err(Error::Predefined {
            name: name.into(),
            action: "created".into(),
        });
    }
    // Defined before the lock is taken: `clash` lists the networks, and a first
    // `get` of the default one takes the same lock.
    get(root, DEFAULT_NETWORK)?;
    let _g = lock_defs(root)?;
    if load(root, name)?.is_some() {
        return Err(Error::Exists { name: name.into() });
    }
    let subnet = match subnet {
        Some(s) => {
            if let Some(with) = clash(root, &s)? {
                return Err(Error::Overlap {
                    subnet: s.to_string(),
                    with,
                });
            }
            s
        }
        None => {
            let mut found = None;
            for n in 1..=255u8 {
                let s = Subnet {
                    addr: Ipv4Addr::new(10, 89, n, 0),
                    prefix: 24,
                };
                if clash(root, &s)?.is_none() {
                    found = Some(s);
                    break;
                }
            }
            found.ok_or_else(|| Error::Exhausted {
                network: name.into(),
                subnet: "10.89.0.0/16 (every /24 is taken; use --subnet)".into(),
            })?
        }
    };
    let id = random_id();
    let net = Network {
        name: name.into(),
        bridge: format!("imgbr-{}", &id[..8]),
        id,
        driver: "bridge".into(),
        gateway: subnet.nth(1).unwrap_or(subnet.addr),
        subnet,
        created: now(),
    };
    endpoint::ensure_bridge(&net)?;
    if let Err(e) = save(root, &net) {
        let _ = endpoint::remove_bridge(&net);
        return Err(e);
    }
    Ok(net)
}

/// The containers attached to `net` now (live leases).
pub fn attached(net: &Network) -> Vec<lease::Lease> {
    lease::leases(&net.bridge)
        .into_iter()
        .filter(|l| l.network == net.name)
        .collect()
}

/// Remove network `name`: refused while a container uses it; its bridge and
/// masquerade chain go with it.
pub fn remove(root: &Path, name: &str) -> Result<(), Error> {
    if ["host", "none", DEFAULT_NETWORK].contains(&name) {
        return Err(Error::Predefined {
            name: name.into(),
            action: "removed".into(),
        });
    }
    let _g = lock_defs(root)?;
    let net = load(root, name)?.ok_or_else(|| Error::NotFound { name: name.into() })?;
    let users = lease::leases(&net.bridge);
    if !users.is_empty() {
        return Err(Error::InUse {
            name: name.into(),
            containers: users
                .iter()
                .map(|l| {
                    l.name
                        .clone()
                        .unwrap_or_else(|| l.container.chars().take(12).collect())
                })
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    endpoint::remove_bridge(&net)?;
    let p = defs_dir(root).join(format!("{name}.json"));
    std::fs::remove_file(&p).map_err(io_at(&p))?;
    Ok(())
}

/// What `network inspect` prints (schemas/network-inspect.schema.json).
#[derive(Debug, Clone, Serialize)]
pub struct Inspect {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "Bridge")]
    pub bridge: String,
    #[serde(rename = "Subnet")]
    pub subnet: String,
    #[serde(rename = "Gateway")]
    pub gateway: String,
    #[serde(rename = "Created")]
    pub created: u64,
    #[serde(rename = "Containers")]
    pub containers: Vec<InspectEndpoint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InspectEndpoint {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Name", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "IPv4Address")]
    pub ipv4: String,
}

/// `network inspect NAME`.
pub fn inspect(root: &Path, name: &str) -> Result<Inspect, Error> {
    let n = get(root, name)?;
    let containers = attached(&n)
        .into_iter()
        .map(|l| InspectEndpoint {
            id: l.container,
            name: l.name,
            ipv4: format!("{}/{}", l.ip, n.subnet.prefix),
        })
        .collect();
    Ok(Inspect {
        name: n.name,
        id: n.id,
        driver: n.driver,
        bridge: n.bridge,
        subnet: n.subnet.to_string(),
        gateway: n.gateway.to_string(),
        created: n.created,
        containers,
    })
}
