//! Containers: an OCI runtime spec from an image config and `run` flags.
//!
//! [`runtime_spec`] is the one place Docker's defaults are decided: mounts,
//! masked and read-only paths, the capability set, the seccomp profile (resolved
//! for those capabilities), the device allow-list, limits, namespaces and the
//! process. The result runs in [`crate::sandbox`] or, written as a bundle, in crun
//! or runc.
//!
//! The defaults and the spec are in `spec`, `--userns=auto` id slices in `userns`.

pub mod control;
pub mod exec;
pub mod gc;
pub mod health;
pub mod inspect;
pub mod logs;
pub mod monitor;
mod monitor_config;
pub mod net;
pub mod owner;
pub mod parse;
mod prepare;
mod resources;
mod run;
pub mod runtime;
pub mod shifted;
mod spec;
pub mod state;
pub mod stats;
pub mod user;
mod userns;

pub use owner::reap_stale;
pub use prepare::{
    prepare, read_image_config_file, HeldView, PrepareRequest, Prepared, RootfsSource,
};
pub use resources::{check_devices, host_devices};
pub use run::{
    run_foreground, run_foreground_report, run_silent_report, write_bundle, Outcome, RunRequest,
};
pub use spec::{
    capability_set, default_device_rules, rlimits, runtime_spec, DEFAULT_PIDS_LIMIT, MASKED_PATHS,
    READONLY_PATHS,
};
pub use state::{NameLease, State, Status};
pub use userns::{allocate_userns, claim_userns, UsernsLease};

#[cfg(test)]
use spec::host_hard_limit;
use spec::{dev_rule, mnt};

/// `imgctl run --init` re-executes a sealed copy of the binary as the container's
/// PID 1, and every container's setup runs in a re-executed sealed copy too;
/// `main` calls this first so those copies never return.
pub fn init_entry() {
    crate::sandbox::init::entry();
    crate::sandbox::child_entry();
    monitor::entry();
}

use std::path::{Path, PathBuf};

use oci_spec::runtime::Mount;

use crate::sandbox;

/// Errors of spec generation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid value {value:?} for {flag}: expected {hint}")]
    BadFlag {
        flag: String,
        value: String,
        hint: String,
    },
    #[error("user {user:?}: {reason}")]
    User { user: String, reason: String },
    /// A file the host reads from the image (`/etc/passwd`, `/etc/group`) is unusable.
    #[error("the image's {path}: {reason}")]
    ImageFile { path: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no command: the image has no ENTRYPOINT or CMD and none was given")]
    NoCommand,
    #[error(transparent)]
    Sandbox(#[from] sandbox::Error),
    #[error("building the runtime spec: {0}")]
    Spec(String),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error("the name {name:?} is already used by container {id} (remove it to reuse the name)")]
    NameInUse { name: String, id: String },
    #[error(transparent)]
    Network(#[from] crate::network::Error),
    /// Docker's "conflict: …" refusals (`rmi` of an image in use, …).
    #[error("{0}")]
    Conflict(String),
    #[error("no such container: {reference} (see `imgctl ps -a`)")]
    NoSuchContainer { reference: String },
    #[error("container reference {reference:?} is ambiguous: {count} containers start with it (give more digits or the name)")]
    Ambiguous { reference: String, count: usize },
    #[error("container {id} is not running")]
    NotRunning { id: String },
    #[error("container {id} is running: stop it first or use rm -f")]
    Running { id: String },
}

impl Error {
    /// The exit code imgctl ends with (Docker's: 125 for its own failures, 126/127
    /// when the command cannot be run).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Sandbox(e) => e.exit_code(),
            _ => 125,
        }
    }
}

/// `--network`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Network {
    /// A new network namespace with only `lo` (Docker's `none`).
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// A new network namespace on a bridge network (`bridge`, the default
    /// one, or a user-defined network's name): see [`net`].
    Bridge(String),
    /// The network namespace of another, running container (name or id).
    Container(String),
}

impl Network {
    /// The container gets a network namespace of its own.
    pub fn own_netns(&self) -> bool {
        matches!(self, Network::None | Network::Bridge(_))
    }
}

/// `--userns` and `--uidmap/--gidmap`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Userns {
    /// No user namespace.
    #[default]
    Host,
    /// A free unprivileged range from /etc/subuid (or 100000:65536).
    Auto,
    /// Explicit maps `(container, host, size)`.
    Maps {
        uid: Vec<(u32, u32, u32)>,
        gid: Vec<(u32, u32, u32)>,
    },
}

/// What the user asked for on the command line (already parsed into values).
/// Serialisable: a detached container's monitor receives it (and `start` reuses it).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RunFlags {
    pub id: String,
    /// Nothing of the container outlives it (`run --rm`): its rootfs view's
    /// metadata is written without fsync.
    pub volatile: bool,
    pub hostname: Option<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub entrypoint: Option<String>,
    pub cmd: Vec<String>,
    pub tty: bool,
    pub network: Network,
    pub userns: Userns,
    pub memory: Option<i64>,
    pub memory_reservation: Option<i64>,
    pub memory_swap: Option<i64>,
    pub memory_swappiness: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpu_shares: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids_limit: Option<i64>,
    pub blkio_weight: Option<u16>,
    pub device_read_bps: Vec<(PathBuf, u64)>,
    pub device_write_bps: Vec<(PathBuf, u64)>,
    pub device_read_iops: Vec<(PathBuf, u64)>,
    pub device_write_iops: Vec<(PathBuf, u64)>,
    pub blkio_weight_device: Vec<(PathBuf, u16)>,
    /// `--cpu-rt-runtime` / `--cpu-rt-period` (µs; cgroup v1 only).
    pub cpu_rt_runtime: Option<i64>,
    pub cpu_rt_period: Option<u64>,
    pub oom_kill_disable: bool,
    pub oom_score_adj: Option<i32>,
    /// `/dev/shm` size in bytes (default 64 MiB).
    pub shm_size: Option<i64>,
    /// `--device`: nodes created inside and allowed.
    pub devices: Vec<parse::DeviceFlag>,
    /// `--device-cgroup-rule`: (type, major, minor, access).
    pub device_cgroup_rules: Vec<(char, Option<i64>, Option<i64>, String)>,
    /// `--hugetlb`: (page size like `2MB`, limit in bytes).
    pub hugetlb: Vec<(String, i64)>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub no_new_privileges: bool,
    /// `None` = Docker's default profile; `Some(None)` = unconfined; `Some(Some(path))`.
    pub seccomp: Option<Option<PathBuf>>,
    pub apparmor: Option<String>,
    pub label: Option<String>,
    pub binds: Vec<(PathBuf, PathBuf, bool)>,
    /// Bind sources given with `-v`: created as directories when missing (Docker);
    /// a missing `--mount type=bind` source stays an error.
    #[serde(default)]
    pub create_bind_sources: Vec<PathBuf>,
    pub tmpfs: Vec<(PathBuf, Vec<String>)>,
    pub read_only: bool,
    /// Parent cgroup (Docker's `--cgroup-parent`); default `imgctl`.
    pub cgroup_parent: Option<String>,
    pub ulimits: Vec<(String, u64, u64)>,
    /// `-p`: published ports (bridge networks only).
    pub ports: Vec<crate::network::PortMap>,
    /// `-P`: publish every port the image EXPOSEs on a free host port.
    pub publish_all: bool,
    /// `--network-rate-in` / `--network-rate-out`, bits per second.
    pub rate_in: Option<u64>,
    pub rate_out: Option<u64>,
    /// `--time-offset monotonic=S,boottime=S`: a time namespace with these
    /// offsets (clock name, seconds).
    pub time_offsets: Vec<(String, i64)>,
}

/// The files `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` for a
/// container, written into `state_dir` and bound in read-write.
pub fn write_etc_files(
    state_dir: &Path,
    hostname: &str,
    network: &Network,
) -> Result<Vec<Mount>, Error> {
    let io = |p: &Path, e| Error::Io {
        path: p.to_path_buf(),
        source: e,
    };
    std::fs::create_dir_all(state_dir).map_err(|e| io(state_dir, e))?;
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let (hosts, resolv) = match network {
        Network::Host => (
            std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
            host_resolv,
        ),
        Network::None => (
            format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.0.1\t{hostname}\n"
            ),
            host_resolv,
        ),
        // The address is added by net::attach, which rewrites the file in place.
        Network::Bridge(_) => (
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_string(),
            crate::network::resolv_conf(&host_resolv),
        ),
        // Filled from the other container's files by prepare.
        Network::Container(_) => (String::new(), crate::network::resolv_conf(&host_resolv)),
    };
    let mut mounts = Vec::new();
    for (name, content) in [
        ("hostname", format!("{hostname}\n")),
        ("hosts", hosts),
        ("resolv.conf", resolv),
    ] {
        let p = state_dir.join(name);
        std::fs::write(&p, content).map_err(|e| io(&p, e))?;
        mounts.push(mnt(
            &format!("/etc/{name}"),
            "bind",
            &p.to_string_lossy(),
            &["rbind", "rprivate"],
        ));
    }
    Ok(mounts)
}

/// Where a store keeps compiled seccomp filters (a cache: `prune` empties it).
pub fn seccomp_cache_dir(root: &std::path::Path) -> std::path::PathBuf {
    root.join("cache").join("seccomp")
}

/// A new container id: 64 hex digits from the kernel's random source.
pub fn new_id() -> String {
    use std::io::Read;
    let mut b = [0u8; 32];
    let filled = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok();
    if !filled {
        // Fall back to time and pid: unique enough for a directory name.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        b[..16].copy_from_slice(&t.as_nanos().to_le_bytes());
        b[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    }
    hex::encode(b)
}

#[cfg(test)]
mod tests;
