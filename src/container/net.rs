//! A container's network: `--network`, `-p`, `--network-rate-in/out` and
//! `--time-offset` parsed; [`attach`] and [`detach`] joining the sandbox and
//! [`crate::network`].
//!
//! The owner of a container (the foreground `imgctl run`, or the monitor of a
//! detached one) calls, in this order:
//!
//! ```text
//! check(root, &flags)             before anything is made: unknown network, bad -p
//! Container::create(..)           the container's namespaces exist, its command waits
//! attach(root, &flags, .., pid)   veth, address, routes, NAT, shapers, hosts -> NetState
//!                                 (store it in State::network, then start)
//! Container::start()
//! ... the container ends ...
//! detach(root, id)                also from reap_stale after a kill -9: finds it all by id
//! ```

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::{state, Error, Network, RunFlags};
use crate::network::{self, PortMap};

/// What [`attach`] made, kept in `state.json` (`network`) for `inspect`.
pub type NetState = network::Endpoint;

fn bad(flag: &str, value: &str, hint: &str) -> Error {
    Error::BadFlag {
        flag: flag.into(),
        value: value.into(),
        hint: hint.into(),
    }
}

/// `--network none|host|bridge|NAME|container:NAME`.
pub fn parse_network(s: &str) -> Result<Network, Error> {
    match s {
        "none" => Ok(Network::None),
        "host" => Ok(Network::Host),
        "" | "default" => Ok(Network::Bridge(network::DEFAULT_NETWORK.into())),
        _ => {
            if let Some(t) = s.strip_prefix("container:") {
                if t.is_empty() {
                    return Err(bad("--network", s, "container:NAME or container:ID"));
                }
                return Ok(Network::Container(t.into()));
            }
            network::check_name(s).map_err(|_| {
                bad(
                    "--network",
                    s,
                    "none, host, bridge, a network name or container:NAME",
                )
            })?;
            Ok(Network::Bridge(s.into()))
        }
    }
}

/// Every `-p` value.
pub fn parse_publish(values: &[String]) -> Result<Vec<PortMap>, Error> {
    let mut out = Vec::new();
    for v in values {
        out.extend(network::parse_publish(v)?);
    }
    Ok(out)
}

/// `--network-rate-in` / `--network-rate-out`: bits per second.
pub fn parse_rate(flag: &str, s: &str) -> Result<u64, Error> {
    network::parse_rate(s).map_err(|_| {
        bad(
            flag,
            s,
            "a rate like 8mbit, 500kbit or 2mbps (bytes per second), at least 8kbit",
        )
    })
}

/// `--time-offset monotonic=S,boottime=S` (seconds, may be negative).
pub fn parse_time_offset(s: &str) -> Result<Vec<(String, i64)>, Error> {
    let hint = "monotonic=SECONDS,boottime=SECONDS (either or both)";
    let mut out: Vec<(String, i64)> = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| bad("--time-offset", s, hint))?;
        if k != "monotonic" && k != "boottime" {
            return Err(bad("--time-offset", s, hint));
        }
        let secs: i64 = v
            .trim()
            .parse()
            .map_err(|_| bad("--time-offset", s, hint))?;
        // The kernel refuses offsets that would put the clock before zero or
        // past KTIME_MAX / 2; a generous sanity bound here gives one clear line.
        if secs.unsigned_abs() > 100 * 365 * 86_400 {
            return Err(bad("--time-offset", s, "offsets within +-100 years"));
        }
        out.retain(|(c, _)| c != k);
        out.push((k.to_string(), secs));
    }
    if out.is_empty() {
        return Err(bad("--time-offset", s, hint));
    }
    Ok(out)
}

/// `-P`: add a mapping from a free host port (chosen by the kernel, as
/// Docker's ephemeral range) for every port in the image's `ExposedPorts`
/// (`80/tcp`, `53/udp`, `8080`) not published with `-p` already.
pub fn publish_exposed(
    flags: &mut RunFlags,
    config: Option<&crate::oci::RunConfig>,
) -> Result<(), Error> {
    let Some(exposed) = config.and_then(|c| c.exposed_ports.as_ref()) else {
        return Ok(());
    };
    for key in exposed.keys() {
        let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let proto = match proto {
            "tcp" => network::Proto::Tcp,
            "udp" => network::Proto::Udp,
            _ => continue, // sctp: not published
        };
        let Ok(container_port) = port.parse::<u16>() else {
            continue;
        };
        if flags
            .ports
            .iter()
            .any(|p| p.container_port == container_port && p.proto == proto)
        {
            continue;
        }
        let any = std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0);
        let picked = match proto {
            network::Proto::Tcp => std::net::TcpListener::bind(any).and_then(|l| l.local_addr()),
            network::Proto::Udp => std::net::UdpSocket::bind(any).and_then(|s| s.local_addr()),
        }
        .map_err(|source| Error::Io {
            path: PathBuf::from(format!("a free host port for {key}")),
            source,
        })?;
        flags.ports.push(PortMap {
            host_ip: None,
            host_port: picked.port(),
            container_port,
            proto,
        });
    }
    Ok(())
}

/// Check the network flags against the store before anything is made: the
/// network exists, and ports and rates are only asked for on a bridge.
pub fn check(root: &Path, flags: &RunFlags) -> Result<(), Error> {
    let on_bridge = matches!(flags.network, Network::Bridge(_));
    if !on_bridge && flags.publish_all {
        return Err(bad(
            "-P",
            "",
            "a bridge network (published ports need --network bridge or a network name)",
        ));
    }
    if !on_bridge && !flags.ports.is_empty() {
        return Err(bad(
            "-p",
            &flags
                .ports
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(","),
            "a bridge network (published ports need --network bridge or a network name)",
        ));
    }
    if !on_bridge && (flags.rate_in.is_some() || flags.rate_out.is_some()) {
        return Err(bad(
            "--network-rate-in/--network-rate-out",
            "",
            "a bridge network (the shaper sits on the container's veth)",
        ));
    }
    if let Network::Bridge(name) = &flags.network {
        network::get(root, name)?;
    }
    Ok(())
}

/// The owner lock file of container `id` (see super::owner).
fn owner_lock(root: &Path, id: &str) -> PathBuf {
    super::owner::lock_path(root, id)
}

/// Attach the created container (process `pid`) to its network: a no-op for
/// none, host and container:X. `state_dir` holds its generated `/etc/hosts`.
pub fn attach(
    root: &Path,
    flags: &RunFlags,
    name: Option<&str>,
    state_dir: &Path,
    pid: i32,
) -> Result<Option<NetState>, Error> {
    if !matches!(flags.network, Network::Bridge(_)) {
        return Ok(None);
    }
    let netns = open_netns(pid)?;
    attach_ns(root, flags, name, state_dir, &netns)
}

/// The network namespace of process `pid`, held open (an open descriptor keeps
/// the namespace, so it stays the one of that process even if the process is
/// gone and its pid reused before the attach is done).
fn open_netns(pid: i32) -> Result<OwnedFd, Error> {
    let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
    match std::fs::File::open(&path) {
        Ok(f) => Ok(f.into()),
        Err(source) => Err(Error::Io { path, source }),
    }
}

fn attach_ns(
    root: &Path,
    flags: &RunFlags,
    name: Option<&str>,
    state_dir: &Path,
    netns: &OwnedFd,
) -> Result<Option<NetState>, Error> {
    let Network::Bridge(net_name) = &flags.network else {
        return Ok(None);
    };
    let began = std::time::Instant::now();
    let net = network::get(root, net_name)?;
    let hostname = flags
        .hostname
        .clone()
        .unwrap_or_else(|| flags.id.chars().take(12).collect());
    let hosts = state_dir.join("hosts");
    let owner = owner_lock(root, &flags.id);
    let ep = network::connect(&network::Attach {
        network: &net,
        id: &flags.id,
        name,
        hostname: &hostname,
        owner: &owner,
        netns: netns.as_fd(),
        ports: &flags.ports,
        rate_in: flags.rate_in,
        rate_out: flags.rate_out,
        hosts: hosts.exists().then_some(hosts.as_path()),
    })?;
    tracing::debug!("network attach: {:?}", began.elapsed());
    Ok(Some(ep))
}

/// An [`attach`] running on a thread of its own while the container's process
/// builds its root filesystem ([`attach_beside`]); [`PendingAttach::finish`]
/// waits for it.
pub struct PendingAttach {
    thread: Option<std::thread::JoinHandle<Result<Option<NetState>, Error>>>,
    /// The result when it ran in the caller's thread (no thread to be had).
    done: Option<Result<Option<NetState>, Error>>,
}

impl PendingAttach {
    /// Wait for the attach and return what it made. Call it (or drop the
    /// value, which waits too) before [`detach`], so nothing is made after
    /// the clean-up.
    pub fn finish(mut self) -> Result<Option<NetState>, Error> {
        self.wait()
    }

    fn wait(&mut self) -> Result<Option<NetState>, Error> {
        if let Some(t) = self.thread.take() {
            return t
                .join()
                .unwrap_or_else(|_| Err(Error::Spec("the network attach thread panicked".into())));
        }
        self.done.take().unwrap_or(Ok(None))
    }
}

impl Drop for PendingAttach {
    fn drop(&mut self) {
        let _ = self.wait();
    }
}

/// Start [`attach`] for the container process `pid` just cloned, beside its
/// set-up: the network namespace exists from the clone on, so the veth, the
/// address and the routes are made while the process mounts its root instead
/// of after it. The namespace is opened here, before returning, while `pid`
/// is an unreaped child of the caller and cannot name another process. `None`
/// when the container gets no network of its own to configure.
pub fn attach_beside(
    root: &Path,
    flags: &RunFlags,
    name: Option<&str>,
    state_dir: &Path,
    pid: i32,
) -> Option<PendingAttach> {
    if !matches!(flags.network, Network::Bridge(_)) {
        return None;
    }
    let netns = match open_netns(pid) {
        Ok(f) => f,
        Err(e) => {
            return Some(PendingAttach {
                thread: None,
                done: Some(Err(e)),
            })
        }
    };
    let owned = (
        root.to_path_buf(),
        flags.clone(),
        name.map(String::from),
        state_dir.to_path_buf(),
    );
    let spawned = std::thread::Builder::new()
        .name("net-attach".into())
        .spawn(move || {
            let (root, flags, name, state_dir) = owned;
            attach_ns(&root, &flags, name.as_deref(), &state_dir, &netns)
        });
    Some(match spawned {
        Ok(t) => PendingAttach {
            thread: Some(t),
            done: None,
        },
        // No thread to be had: attach here and now, as [`attach`] does.
        Err(_) => PendingAttach {
            thread: None,
            done: Some(attach(root, flags, name, state_dir, pid)),
        },
    })
}

/// Remove what [`attach`] made for container `id` (idempotent; all found from
/// the id, so it also cleans after a killed owner).
pub fn detach(_root: &Path, id: &str) -> Result<(), Error> {
    let began = std::time::Instant::now();
    let r = network::disconnect(id).map_err(Error::from);
    tracing::debug!("network detach: {:?}", began.elapsed());
    r
}

/// [`detach`] from a foreground `run` about to end: a veth the kernel is not
/// already removing is deleted by a child it does not wait for
/// (`network::VethRemoval::Background`).
pub fn detach_soon(id: &str) -> Result<(), Error> {
    let began = std::time::Instant::now();
    let r = network::disconnect_with(id, network::VethRemoval::Background).map_err(Error::from);
    tracing::debug!("network detach: {:?}", began.elapsed());
    r
}

/// The state directory of the container `target` (a name or an id prefix).
fn find_container(root: &Path, target: &str) -> Result<PathBuf, Error> {
    let dir = state::containers_dir(root);
    let by_name = root.join("container-names").join(target);
    if let Ok(id) = std::fs::read_to_string(&by_name) {
        let p = dir.join(id.trim());
        if p.is_dir() {
            return Ok(p);
        }
    }
    let mut hits: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(target))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    match hits.len() {
        1 => Ok(hits.remove(0)),
        0 => Err(bad(
            "--network",
            &format!("container:{target}"),
            "the name or id of a running container",
        )),
        _ => Err(bad(
            "--network",
            &format!("container:{target}"),
            "an unambiguous id prefix",
        )),
    }
}

/// `--network container:X`: join X's network namespace (by path, joined by
/// the sandbox with setns) and use X's `/etc/hosts` and `/etc/resolv.conf`.
pub(super) fn join_container(
    root: &Path,
    target: &str,
    spec: &mut Spec,
    state_dir: &Path,
) -> Result<(), Error> {
    let dir = find_container(root, target)?;
    let st = state::State::load(&dir)?;
    let pid = match (st.status, st.pid) {
        (state::Status::Running, Some(pid)) => pid,
        _ => {
            return Err(bad(
                "--network",
                &format!("container:{target}"),
                "a running container (it is not running)",
            ))
        }
    };
    let ns = PathBuf::from(format!("/proc/{pid}/ns/net"));
    if !ns.exists() {
        return Err(bad(
            "--network",
            &format!("container:{target}"),
            "a running container (its process is gone)",
        ));
    }
    for f in ["hosts", "resolv.conf"] {
        if let Ok(text) = std::fs::read(dir.join(f)) {
            let p = state_dir.join(f);
            std::fs::write(&p, text).map_err(|source| Error::Io { path: p, source })?;
        }
    }
    if let Some(linux) = spec.linux_mut() {
        if let Some(nss) = linux.namespaces_mut() {
            for n in nss.iter_mut() {
                if n.typ() == LinuxNamespaceType::Network {
                    n.set_path(Some(ns.clone()));
                }
            }
        }
    }
    Ok(())
}

/// A network definition and what `network inspect` prints.
pub use crate::network::{Inspect as NetworkInspect, Network as NetworkDef};

/// `network create [--subnet CIDR] NAME`.
pub fn create_network(root: &Path, name: &str, subnet: Option<&str>) -> Result<NetworkDef, Error> {
    let subnet = subnet.map(str::parse).transpose()?;
    Ok(network::create(root, name, subnet)?)
}

/// `network ls`: the default network first.
pub fn list_networks(root: &Path) -> Result<Vec<NetworkDef>, Error> {
    Ok(network::list(root)?)
}

/// `network rm NAME`: refused while a container is attached.
pub fn remove_network(root: &Path, name: &str) -> Result<(), Error> {
    Ok(network::remove(root, name)?)
}

/// `network inspect NAME`.
pub fn inspect_network(root: &Path, name: &str) -> Result<NetworkInspect, Error> {
    Ok(network::inspect(root, name)?)
}

/// The lease files container `id` still holds (empty once it is detached).
pub fn leftover_leases(id: &str) -> Vec<PathBuf> {
    network::lease::files_of(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_modes_parse() {
        assert_eq!(parse_network("none").unwrap(), Network::None);
        assert_eq!(parse_network("host").unwrap(), Network::Host);
        assert_eq!(
            parse_network("bridge").unwrap(),
            Network::Bridge("bridge".into())
        );
        assert_eq!(
            parse_network("container:web").unwrap(),
            Network::Container("web".into())
        );
        assert_eq!(
            parse_network("mynet").unwrap(),
            Network::Bridge("mynet".into())
        );
        for b in ["container:", "-x", "a/b"] {
            assert!(parse_network(b).is_err(), "{b}");
        }
    }

    #[test]
    fn time_offsets_parse() {
        assert_eq!(
            parse_time_offset("monotonic=86400,boottime=-5").unwrap(),
            vec![("monotonic".into(), 86400), ("boottime".into(), -5)]
        );
        for b in [
            "",
            "realtime=5",
            "monotonic",
            "monotonic=x",
            "boottime=99999999999",
        ] {
            assert!(parse_time_offset(b).is_err(), "{b}");
        }
    }

    #[test]
    fn ports_and_rates_need_a_bridge() {
        let d = tempfile::tempdir().unwrap();
        let flags = RunFlags {
            network: Network::None,
            ports: parse_publish(&["8080:80".into()]).unwrap(),
            ..Default::default()
        };
        let e = check(d.path(), &flags).unwrap_err().to_string();
        assert!(e.contains("bridge network"), "{e}");
        let flags = RunFlags {
            network: Network::Host,
            rate_out: Some(8_000_000),
            ..Default::default()
        };
        assert!(check(d.path(), &flags).is_err());
        let flags = RunFlags {
            network: Network::Bridge("nope".into()),
            ..Default::default()
        };
        let e = check(d.path(), &flags).unwrap_err().to_string();
        assert!(e.contains("network \"nope\" not found"), "{e}");
    }
}
