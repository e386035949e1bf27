//! Containers: an OCI runtime spec from an image config and `run` flags.
//!
//! [`runtime_spec`] is the one place Docker's defaults are decided: mounts,
//! masked and read-only paths, the capability set, the seccomp profile (resolved
//! for those capabilities), the device allow-list, limits, namespaces and the
//! process. The result runs in [`crate::sandbox`] or, written as a bundle, in crun
//! or runc.

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
pub mod state;
pub mod stats;
pub mod user;

pub use owner::reap_stale;
pub use prepare::{
    prepare, read_image_config_file, HeldView, PrepareRequest, Prepared, RootfsSource,
};
pub use resources::{check_devices, host_devices};
pub use run::{
    run_foreground, run_foreground_report, run_silent_report, write_bundle, Outcome, RunRequest,
};
pub use state::{NameLease, State, Status};

/// `imgctl run --init` re-executes a sealed copy of the binary as the container's
/// PID 1, and every container's setup runs in a re-executed sealed copy too;
/// `main` calls this first so those copies never return.
pub fn init_entry() {
    crate::sandbox::init::entry();
    crate::sandbox::child_entry();
    monitor::entry();
}

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxDeviceCgroup, LinuxDeviceType, LinuxIdMapping, LinuxIdMappingBuilder,
    LinuxNamespaceBuilder, LinuxNamespaceType, Mount, PosixRlimit, PosixRlimitBuilder,
    PosixRlimitType, Spec,
};

use crate::sandbox::{self, seccomp};

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

/// Default pids limit (podman's): a fork bomb stays contained (SECURITY-TESTS 45).
pub const DEFAULT_PIDS_LIMIT: i64 = 2048;

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's masked paths.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn mnt(dest: &str, typ: &str, source: &str, opts: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(PathBuf::from(source)));
    m.set_options(Some(opts.iter().map(|s| s.to_string()).collect()));
    m
}

fn default_mounts(privileged: bool, shm_size: Option<i64>) -> Vec<Mount> {
    let sys_rw = if privileged { "rw" } else { "ro" };
    let shm = format!("size={}k", (shm_size.unwrap_or(64 << 20) + 1023) / 1024);
    vec![
        mnt("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mnt(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mnt(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mnt(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_rw],
        ),
        mnt(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys_rw],
        ),
        mnt(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mnt(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm],
        ),
    ]
}

fn dev_rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut d = LinuxDeviceCgroup::default();
    d.set_allow(allow);
    d.set_typ(typ);
    d.set_major(major);
    d.set_minor(minor);
    d.set_access(Some(access.to_string()));
    d
}

/// Docker's device cgroup allow-list.
pub fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{B, C};
    vec![
        dev_rule(false, None, None, None, "rwm"),
        dev_rule(true, Some(C), None, None, "m"),
        dev_rule(true, Some(B), None, None, "m"),
        dev_rule(true, Some(C), Some(1), Some(3), "rwm"),
        dev_rule(true, Some(C), Some(1), Some(8), "rwm"),
        dev_rule(true, Some(C), Some(1), Some(7), "rwm"),
        dev_rule(true, Some(C), Some(5), Some(0), "rwm"),
        dev_rule(true, Some(C), Some(1), Some(5), "rwm"),
        dev_rule(true, Some(C), Some(1), Some(9), "rwm"),
        dev_rule(true, Some(C), Some(136), None, "rwm"),
        dev_rule(true, Some(C), Some(5), Some(2), "rwm"),
        dev_rule(true, Some(C), Some(10), Some(200), "rwm"),
        dev_rule(true, Some(C), Some(5), Some(1), "rwm"),
    ]
}

/// The capability set after `--privileged`, `--cap-drop`, `--cap-add`
/// (drop first, then add, as Docker; `ALL` allowed in both).
pub fn capability_set(f: &RunFlags) -> Result<Vec<String>, Error> {
    let all = sandbox::all_caps;
    if f.privileged {
        return Ok(all());
    }
    let norm = |list: &[String]| -> Result<Vec<String>, Error> {
        list.iter()
            .map(|c| {
                if c.eq_ignore_ascii_case(sandbox::ALL_CAPS) {
                    Ok("ALL".into())
                } else {
                    Ok(sandbox::parse_cap(c)?)
                }
            })
            .collect()
    };
    let drop = norm(&f.cap_drop)?;
    let add = norm(&f.cap_add)?;
    let mut set = if drop.iter().any(|c| c == "ALL") {
        Vec::new()
    } else {
        sandbox::docker_default_caps()
    };
    set.retain(|c| !drop.contains(c));
    if add.iter().any(|c| c == "ALL") {
        set = all();
    } else {
        for c in add {
            if !set.contains(&c) {
                set.push(c);
            }
        }
    }
    set.sort();
    // A capability this process lacks cannot be handed to the container.
    let have = all();
    if let Some(missing) = set.iter().find(|c| !have.contains(c)) {
        return Err(Error::BadFlag {
            flag: "--cap-add".into(),
            value: missing.clone(),
            hint: "a capability imgctl itself holds (it is not in this process's bounding set)"
                .into(),
        });
    }
    Ok(set)
}

fn oci_caps(names: &[String]) -> Result<oci_spec::runtime::Capabilities, Error> {
    names
        .iter()
        .map(|n| {
            serde_json::from_value::<Capability>(serde_json::Value::String(n.clone()))
                .map_err(|_| Error::Sandbox(sandbox::Error::Capability { name: n.clone() }))
        })
        .collect()
}

fn rlimit_type(name: &str) -> Option<PosixRlimitType> {
    use PosixRlimitType as T;
    Some(match name {
        "cpu" => T::RlimitCpu,
        "fsize" => T::RlimitFsize,
        "data" => T::RlimitData,
        "stack" => T::RlimitStack,
        "core" => T::RlimitCore,
        "rss" => T::RlimitRss,
        "nproc" => T::RlimitNproc,
        "nofile" => T::RlimitNofile,
        "memlock" => T::RlimitMemlock,
        "as" => T::RlimitAs,
        "locks" => T::RlimitLocks,
        "sigpending" => T::RlimitSigpending,
        "msgqueue" => T::RlimitMsgqueue,
        "nice" => T::RlimitNice,
        "rtprio" => T::RlimitRtprio,
        "rttime" => T::RlimitRttime,
        _ => return None,
    })
}

fn host_hard_limit(t: PosixRlimitType) -> u64 {
    let res = crate::sandbox::rlimit_resource(t);
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(res, &mut r) } == 0 {
        r.rlim_max
    } else {
        u64::MAX
    }
}

/// `--ulimit` values, each capped at the current hard limit: without
/// CAP_SYS_RESOURCE a limit can never be raised (DESIGN.md section 6).
pub fn rlimits(list: &[(String, u64, u64)]) -> Result<Vec<PosixRlimit>, Error> {
    let mut out = Vec::new();
    for (name, soft, hard) in list {
        let t = rlimit_type(name).ok_or_else(|| Error::BadFlag {
            flag: "--ulimit".into(),
            value: name.clone(),
            hint: "one of nofile, nproc, core, stack, memlock, cpu, fsize, data, as, locks, sigpending, msgqueue, nice, rtprio, rttime, rss".into(),
        })?;
        let max = host_hard_limit(t);
        let (s, h) = ((*soft).min(max), (*hard).min(max));
        if h < *hard {
            tracing::warn!(
                "--ulimit {name}: hard limit {hard} capped at the current hard limit {max}"
            );
        }
        out.push(
            PosixRlimitBuilder::default()
                .typ(t)
                .soft(s)
                .hard(h)
                .build()
                .map_err(|e| Error::Spec(e.to_string()))?,
        );
    }
    Ok(out)
}

/// `--userns=auto`: the first free 65536-id slice of the `/etc/subuid` range of
/// `root` (or 100000:65536). Freedom is claimed with an exclusive lock file under
/// `lock_dir`, removed by the returned guard.
pub fn allocate_userns(lock_dir: &Path) -> Result<(u32, UsernsLease), Error> {
    let io = |p: &Path, e| Error::Io {
        path: p.to_path_buf(),
        source: e,
    };
    let (start, count) = std::fs::read_to_string("/etc/subuid")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() == 3 && (f[0] == "imgctl" || f[0] == "root"))
                    .then(|| Some((f[1].parse::<u32>().ok()?, f[2].parse::<u32>().ok()?)))
                    .flatten()
            })
        })
        .unwrap_or((100_000, 65_536 * 16));
    std::fs::create_dir_all(lock_dir).map_err(|e| io(lock_dir, e))?;
    let slices = (count / 65_536).max(1);
    for i in 0..slices {
        let base = start + i * 65_536;
        let p = lock_dir.join(base.to_string());
        // A slice is taken while its file is flock'ed by its holder: the kernel
        // drops the lock when the holder dies, and a lock looks the same from every
        // PID namespace (a pid does not).
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&p)
            .map_err(|e| io(&p, e))?;
        if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            continue;
        }
        // Removed by its last holder between our open and our lock: try again.
        let same = matches!((f.metadata(), std::fs::metadata(&p)),
            (Ok(a), Ok(b)) if std::os::unix::fs::MetadataExt::ino(&a) == std::os::unix::fs::MetadataExt::ino(&b));
        if !same {
            continue;
        }
        return Ok((
            base,
            UsernsLease {
                path: p,
                file: Some(f),
            },
        ));
    }
    Err(Error::Spec(
        "--userns=auto: every id range from /etc/subuid is in use".into(),
    ))
}

/// A claimed id range (its lock file, flock'ed); released on drop.
#[derive(Debug)]
pub struct UsernsLease {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl UsernsLease {
    /// Record the owning process (informational: the lock is what holds the range).
    pub fn set_owner(&self, pid: u32) {
        if let Some(f) = &self.file {
            use std::io::Write;
            let _ = f.set_len(0);
            let _ = (&*f).write_all(pid.to_string().as_bytes());
        }
    }
}

impl Drop for UsernsLease {
    fn drop(&mut self) {
        // Unlink before unlocking (closing): whoever locks the old file next sees
        // it is no longer the one at the path.
        if let Some(f) = self.file.take() {
            let _ = std::fs::remove_file(&self.path);
            drop(f);
        }
    }
}

fn id_mapping(c: u32, h: u32, s: u32) -> LinuxIdMapping {
    LinuxIdMappingBuilder::default()
        .container_id(c)
        .host_id(h)
        .size(s)
        .build()
        .unwrap_or_default()
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

/// The runtime spec for running `image` with `flags` on `rootfs`.
/// `etc_mounts` are the generated `/etc` files ([`write_etc_files`]).
pub fn runtime_spec(
    image: Option<&crate::oci::RunConfig>,
    flags: &RunFlags,
    rootfs: &Path,
    etc_mounts: Vec<Mount>,
    userns_base: Option<u32>,
) -> Result<Spec, Error> {
    let empty = crate::oci::RunConfig::default();
    let image = image.unwrap_or(&empty);
    // Command: --entrypoint replaces the image's ENTRYPOINT and drops its CMD.
    let (entry, cmd) = match &flags.entrypoint {
        Some(e) => (
            if e.is_empty() {
                vec![]
            } else {
                vec![e.clone()]
            },
            flags.cmd.clone(),
        ),
        None => (
            image.entrypoint.clone().unwrap_or_default(),
            if flags.cmd.is_empty() {
                image.cmd.clone().unwrap_or_default()
            } else {
                flags.cmd.clone()
            },
        ),
    };
    let args: Vec<String> = entry.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(Error::NoCommand);
    }
    let user_spec = flags
        .user
        .clone()
        .or(image.user.clone())
        .unwrap_or_default();
    let id = user::resolve(&user_spec, rootfs)?;
    let hostname = flags
        .hostname
        .clone()
        .unwrap_or_else(|| flags.id.chars().take(12).collect());

    // Environment: PATH, HOSTNAME, TERM, HOME, then the image's, then -e (later wins).
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |kv: &str| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match env.iter_mut().find(|(ek, _)| ek == k) {
            Some(e) => e.1 = v.to_string(),
            None => env.push((k.to_string(), v.to_string())),
        }
    };
    set(DEFAULT_PATH);
    set(&format!("HOSTNAME={hostname}"));
    if flags.tty {
        set("TERM=xterm");
    }
    for e in image.env.iter().flatten() {
        set(e);
    }
    for e in &flags.env {
        set(e);
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".into(), id.home.clone()));
    }
    let env: Vec<String> = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();

    let cwd = flags
        .workdir
        .clone()
        .or(image.working_dir.clone())
        .filter(|w| !w.is_empty())
        .unwrap_or("/".into());
    if !cwd.starts_with('/') {
        return Err(Error::BadFlag {
            flag: "-w".into(),
            value: cwd,
            hint: "an absolute path".into(),
        });
    }

    let cap_names = capability_set(flags)?;
    let caps = oci_caps(&cap_names)?;
    let mut lc = oci_spec::runtime::LinuxCapabilities::default();
    lc.set_bounding(Some(caps.clone()));
    lc.set_effective(Some(caps.clone()));
    lc.set_permitted(Some(caps));
    lc.set_inheritable(None);
    lc.set_ambient(None);

    let mut process = oci_spec::runtime::Process::default();
    process.set_terminal(Some(flags.tty));
    process.set_args(Some(args));
    process.set_env(Some(env));
    process.set_cwd(PathBuf::from(cwd));
    let mut u = oci_spec::runtime::User::default();
    u.set_uid(id.uid);
    u.set_gid(id.gid);
    u.set_additional_gids(if id.additional_gids.is_empty() {
        None
    } else {
        Some(id.additional_gids.clone())
    });
    process.set_user(u);
    process.set_capabilities(Some(lc));
    process.set_no_new_privileges(Some(flags.no_new_privileges));
    process.set_rlimits(if flags.ulimits.is_empty() {
        None
    } else {
        Some(rlimits(&flags.ulimits)?)
    });
    process.set_apparmor_profile(flags.apparmor.clone());
    process.set_selinux_label(flags.label.clone());
    process.set_oom_score_adj(flags.oom_score_adj);

    let mut mounts = default_mounts(flags.privileged, flags.shm_size);
    mounts.extend(etc_mounts);
    for (src, dst, ro) in &flags.binds {
        if !src.exists() {
            if flags.create_bind_sources.contains(src) {
                std::fs::create_dir_all(src).map_err(|source| Error::Io {
                    path: src.clone(),
                    source,
                })?;
            } else {
                return Err(Error::BadFlag {
                    flag: "--mount".into(),
                    value: format!("type=bind,source={}", src.display()),
                    hint: format!(
                        "an existing source path ({} does not exist; -v creates missing directories, --mount does not)",
                        src.display()
                    ),
                });
            }
        }
        let mut o = vec!["rbind", "rprivate"];
        if *ro {
            o.push("ro");
        }
        mounts.push(mnt(
            &dst.to_string_lossy(),
            "bind",
            &src.to_string_lossy(),
            &o,
        ));
    }
    for (dst, opts) in &flags.tmpfs {
        let mut o: Vec<&str> = vec!["nosuid", "nodev", "noexec"];
        o.extend(opts.iter().map(|s| s.as_str()));
        mounts.push(mnt(&dst.to_string_lossy(), "tmpfs", "tmpfs", &o));
    }

    let mut linux = oci_spec::runtime::Linux::default();
    let mut namespaces = Vec::new();
    let mut ns_types = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Cgroup,
    ];
    if flags.network != Network::Host {
        // A container:X namespace is given its path by prepare.
        ns_types.push(LinuxNamespaceType::Network);
    }
    if !flags.time_offsets.is_empty() {
        ns_types.push(LinuxNamespaceType::Time);
        linux.set_time_offsets(Some(
            flags
                .time_offsets
                .iter()
                .map(|(clock, secs)| {
                    let mut o = oci_spec::runtime::LinuxTimeOffset::default();
                    o.set_secs(Some(*secs));
                    o.set_nanosecs(Some(0));
                    (clock.clone(), o)
                })
                .collect(),
        ));
    }
    let maps = match &flags.userns {
        Userns::Host => None,
        Userns::Auto => {
            let base = userns_base
                .ok_or_else(|| Error::Spec("--userns=auto without an allocated range".into()))?;
            Some((vec![(0, base, 65_536)], vec![(0, base, 65_536)]))
        }
        Userns::Maps { uid, gid } => Some((
            uid.clone(),
            if gid.is_empty() {
                uid.clone()
            } else {
                gid.clone()
            },
        )),
    };
    if let Some((uid, gid)) = &maps {
        ns_types.push(LinuxNamespaceType::User);
        linux.set_uid_mappings(Some(
            uid.iter().map(|&(c, h, s)| id_mapping(c, h, s)).collect(),
        ));
        linux.set_gid_mappings(Some(
            gid.iter().map(|&(c, h, s)| id_mapping(c, h, s)).collect(),
        ));
    }
    for t in ns_types {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(t)
                .build()
                .map_err(|e| Error::Spec(e.to_string()))?,
        );
    }
    linux.set_namespaces(Some(namespaces));
    linux.set_resources(Some(resources::resources(flags)?));
    let nodes = resources::devices(flags)?;
    linux.set_devices((!nodes.is_empty()).then_some(nodes));
    let parent = flags
        .cgroup_parent
        .as_deref()
        .unwrap_or("imgctl")
        .trim_matches('/');
    let parent_ok = !parent.is_empty()
        && parent
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'));
    if !parent_ok {
        return Err(Error::BadFlag {
            flag: "--cgroup-parent".into(),
            value: parent.to_string(),
            hint: "a cgroup path like imgctl or batch/jobs (no . or .. components)".into(),
        });
    }
    linux.set_cgroups_path(Some(PathBuf::from(format!("/{parent}/{}", flags.id))));
    if !flags.privileged {
        linux.set_masked_paths(Some(MASKED_PATHS.iter().map(|s| s.to_string()).collect()));
        linux.set_readonly_paths(Some(READONLY_PATHS.iter().map(|s| s.to_string()).collect()));
    }
    let profile = match &flags.seccomp {
        _ if flags.privileged => None,
        None => Some(seccomp::Profile::docker_default()),
        Some(None) => None,
        Some(Some(path)) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| sandbox::Error::SeccompProfile {
                    origin: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            Some(seccomp::Profile::parse(&text, &path.display().to_string())?)
        }
    };
    if let Some(p) = profile {
        linux.set_seccomp(Some(p.resolve(&seccomp::Target::host(cap_names.clone()))));
    }
    let mut sysctl = HashMap::new();
    // Unprivileged ICMP sockets, as Docker; the range must be mapped gids, so not
    // with a user namespace.
    if flags.network.own_netns() && maps.is_none() {
        sysctl.insert(
            "net.ipv4.ping_group_range".to_string(),
            "0 2147483647".to_string(),
        );
    }
    linux.set_sysctl(if sysctl.is_empty() {
        None
    } else {
        Some(sysctl)
    });

    let mut spec = Spec::default();
    spec.set_version("1.0.2".into());
    let mut root = oci_spec::runtime::Root::default();
    root.set_path(rootfs.to_path_buf());
    root.set_readonly(Some(flags.read_only));
    spec.set_root(Some(root));
    spec.set_hostname(Some(hostname));
    spec.set_mounts(Some(mounts));
    spec.set_process(Some(process));
    spec.set_linux(Some(linux));
    spec.set_annotations(None);
    Ok(spec)
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
