//! Address and port leases, host-wide.
//!
//! A bridge is a host object shared by every store on the host (two stores
//! both using `imgctl0` must never hand out one address twice), so leases live
//! in the host's runtime directory ([`run_dir`], `/run/imgctl`: a tmpfs, empty
//! after a reboot, like the bridges themselves), not in a store:
//!
//! ```text
//! /run/imgctl/ipam/<bridge>/.lock       flock held while allocating
//! /run/imgctl/ipam/<bridge>/<ip>        one lease (JSON, schemas/network-lease)
//! /run/imgctl/ports/<proto>-<port>      one published host port (same record)
//! ```
//!
//! A lease file is created with `O_EXCL` while the directory's lock is held, so
//! concurrent runs never get the same address. Each lease names its owner's
//! lock file (`ROOT/locks/containers/<id>`, held by `imgctl run` or the
//! monitor for the container's whole life): a lease whose owner lock is gone or
//! can be locked belongs to a dead owner and is taken over, so a store deleted
//! without cleaning up never exhausts a subnet.

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::addr::{PortMap, Subnet};
use super::Error;

/// The host-wide runtime directory (`IMGCTL_RUN_DIR`, default `/run/imgctl`).
pub fn run_dir() -> PathBuf {
    std::env::var_os("IMGCTL_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/imgctl"))
}

/// What a lease file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The container's full id.
    pub container: String,
    /// Its `--name`, if any (other containers on the network reach it by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub hostname: String,
    pub ip: Ipv4Addr,
    /// The network's name in the owner's store.
    pub network: String,
    /// The owner's lock file; the lease is live while it is locked.
    pub owner: PathBuf,
    /// The container's generated `/etc/hosts`, rewritten when peers come and go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<PathBuf>,
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The held allocation lock of one directory.
struct DirLock {
    _file: std::fs::File,
}

fn lock_dir(dir: &Path) -> Result<DirLock, Error> {
    std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    let p = dir.join(".lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&p)
        .map_err(io_at(&p))?;
    f.lock().map_err(io_at(&p))?;
    Ok(DirLock { _file: f })
}

/// True when the owner named by a lease is alive: its lock file exists and
/// someone holds its lock.
pub fn owner_alive(owner: &Path) -> bool {
    let Ok(f) = std::fs::File::open(owner) else {
        return false;
    };
    match rustix::fs::flock(f.as_fd(), rustix::fs::FlockOperation::NonBlockingLockShared) {
        Ok(()) => false, // nobody holds it exclusively: dead (closing drops ours)
        Err(_) => true,
    }
}

fn read_lease(path: &Path) -> Option<Lease> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Create `path` with `lease` if free (or held by a dead owner). The caller
/// holds the directory lock.
fn try_claim(path: &Path, lease: &Lease) -> Result<bool, Error> {
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(mut f) => {
                let body = serde_json::to_vec(lease).map_err(|e| Error::Io {
                    path: path.to_path_buf(),
                    source: std::io::Error::other(e),
                })?;
                if let Err(e) = f.write_all(&body) {
                    let _ = std::fs::remove_file(path);
                    return Err(io_at(path)(e));
                }
                return Ok(true);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let stale = read_lease(path).is_none_or(|l| !owner_alive(&l.owner));
                if !stale {
                    return Ok(false);
                }
                let _ = std::fs::remove_file(path);
            }
            Err(e) => return Err(io_at(path)(e)),
        }
    }
    Ok(false)
}

fn ipam_dir(bridge: &str) -> PathBuf {
    run_dir().join("ipam").join(bridge)
}

fn ports_dir() -> PathBuf {
    run_dir().join("ports")
}

/// Allocate a free address of `subnet` (never the gateway) on `bridge` for
/// `lease` (whose `ip` is filled in). Returns the address.
pub fn allocate_ip(
    bridge: &str,
    subnet: &Subnet,
    gateway: Ipv4Addr,
    mut lease: Lease,
) -> Result<Ipv4Addr, Error> {
    let dir = ipam_dir(bridge);
    let _g = lock_dir(&dir)?;
    let next_file = dir.join(".next");
    let start = std::fs::read_to_string(&next_file)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    for ip in allocation_order(subnet, gateway, start) {
        lease.ip = ip;
        if try_claim(&dir.join(ip.to_string()), &lease)? {
            let next = Ipv4Addr::from(u32::from(ip).wrapping_add(1));
            let _ = std::fs::write(&next_file, next.to_string());
            return Ok(ip);
        }
    }
    Err(Error::Exhausted {
        network: lease.network.clone(),
        subnet: subnet.to_string(),
    })
}

/// The addresses of `subnet` (never the gateway) in the order they are
/// tried: round robin from `start` (the one after the last handed out, as
/// Docker's IPAM does), wrapping around. An address just released may still
/// be on a veth the kernel is unregistering, and in the host's neighbour cache
/// with that veth's MAC (a new holder's replies would go there for seconds).
fn allocation_order(
    subnet: &Subnet,
    gateway: Ipv4Addr,
    start: Option<Ipv4Addr>,
) -> impl Iterator<Item = Ipv4Addr> + '_ {
    let from = move |ip: &Ipv4Addr| start.is_none_or(|s| *ip >= s);
    let usable = move |ip: &Ipv4Addr| *ip != gateway;
    subnet
        .hosts()
        .filter(move |ip| usable(ip) && from(ip))
        .chain(subnet.hosts().filter(move |ip| usable(ip) && !from(ip)))
}

/// Claim the host ports of `ports` for `lease`; on failure none stays claimed.
/// A port some host process listens on is refused as well.
pub fn claim_ports(ports: &[PortMap], lease: &Lease) -> Result<(), Error> {
    if ports.is_empty() {
        return Ok(());
    }
    let dir = ports_dir();
    let _g = lock_dir(&dir)?;
    let mut got: Vec<PathBuf> = Vec::new();
    let undo = |got: &[PathBuf]| {
        for p in got {
            let _ = std::fs::remove_file(p);
        }
    };
    for p in ports {
        let path = dir.join(format!("{}-{}", p.proto.as_str(), p.host_port));
        if got.contains(&path) {
            continue;
        }
        if !try_claim(&path, lease)? {
            undo(&got);
            return Err(Error::PortInUse {
                port: p.to_string(),
            });
        }
        got.push(path);
        if host_port_busy(p) {
            undo(&got);
            return Err(Error::PortInUse {
                port: p.to_string(),
            });
        }
    }
    Ok(())
}

/// True when a host process has the port bound (a listener imgctl's DNAT would
/// silently shadow).
fn host_port_busy(p: &PortMap) -> bool {
    let ip = p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let addr = std::net::SocketAddrV4::new(ip, p.host_port);
    let r = match p.proto {
        super::addr::Proto::Tcp => std::net::TcpListener::bind(addr).map(drop),
        super::addr::Proto::Udp => std::net::UdpSocket::bind(addr).map(drop),
    };
    matches!(r, Err(e) if e.kind() == std::io::ErrorKind::AddrInUse)
}

/// Every live lease on `bridge`.
pub fn leases(bridge: &str) -> Vec<Lease> {
    let dir = ipam_dir(bridge);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| read_lease(&e.path()))
        .filter(|l| owner_alive(&l.owner))
        .collect()
}

/// Remove every lease (addresses on any bridge, ports) of container `id`.
/// Returns the address leases removed (their bridges' peers need new hosts
/// files). Idempotent. Each directory's allocation lock is held while it is
/// scanned: without it a lease read as `id`'s could meanwhile be found stale
/// (its owner killed), taken over by another container, and then removed here
/// under the new holder, whose address the next container got again.
pub fn release_container(id: &str) -> Vec<(String, Lease)> {
    let mut removed = Vec::new();
    let mut scan = |dir: &Path, bridge: Option<String>| {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let Ok(_g) = lock_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let p = e.path();
            if let Some(l) = read_lease(&p).filter(|l| l.container == id) {
                if std::fs::remove_file(&p).is_ok() {
                    if let Some(b) = &bridge {
                        removed.push((b.clone(), l));
                    }
                }
            }
        }
    };
    scan(&ports_dir(), None);
    if let Ok(bridges) = std::fs::read_dir(run_dir().join("ipam")) {
        for b in bridges.flatten() {
            let name = b.file_name().to_string_lossy().into_owned();
            scan(&b.path(), Some(name));
        }
    }
    removed
}

/// True when container `id` holds a host-port lease.
pub fn has_ports(id: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(ports_dir()) else {
        return false;
    };
    entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .any(|e| read_lease(&e.path()).is_some_and(|l| l.container == id))
}

/// The lease files of container `id` still present (for leak checks and
/// `inspect`).
pub fn files_of(id: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![ports_dir()];
    if let Ok(bridges) = std::fs::read_dir(run_dir().join("ipam")) {
        dirs.extend(bridges.flatten().map(|b| b.path()));
    }
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if read_lease(&p).is_some_and(|l| l.container == id) {
                out.push(p);
            }
        }
    }
    out
}

/// Remove a bridge's lease directory (the network is being removed).
pub fn forget_bridge(bridge: &str) {
    let _ = std::fs::remove_dir_all(ipam_dir(bridge));
}

/// Held while a bridge is set up or its members' hosts files are rewritten.
pub struct BridgeLock {
    _lock: DirLock,
}

/// Lock `bridge`'s lease directory (the same lock address allocation takes).
pub fn lock_bridge(bridge: &str) -> Result<BridgeLock, Error> {
    Ok(BridgeLock {
        _lock: lock_dir(&ipam_dir(bridge))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_handed_out_round_robin() {
        let subnet: Subnet = "10.9.0.0/29".parse().unwrap();
        let gw: Ipv4Addr = "10.9.0.1".parse().unwrap();
        let order = |start: Option<&str>| -> Vec<String> {
            allocation_order(&subnet, gw, start.map(|s| s.parse().unwrap()))
                .map(|ip| ip.to_string())
                .collect()
        };
        let all = ["10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"];
        assert_eq!(order(None), all);
        assert_eq!(
            order(Some("10.9.0.4")),
            ["10.9.0.4", "10.9.0.5", "10.9.0.6", "10.9.0.2", "10.9.0.3"]
        );
        // Past the end (the last address was handed out last): from the start.
        assert_eq!(order(Some("10.9.0.7")), all);
        // Each address once, the gateway never.
        assert_eq!(order(Some("10.9.0.1")), all);
    }
}
