//! Docker's defaults and the runtime spec built from them: mounts, masked and read-only
//! paths, the device allow-list, the capability set, rlimits, and [`runtime_spec`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxDeviceCgroup, LinuxDeviceType, LinuxNamespaceBuilder, LinuxNamespaceType,
    Mount, PosixRlimit, PosixRlimitBuilder, PosixRlimitType, Spec,
};

use super::userns::id_mapping;
use super::{resources, user, Error, Network, RunFlags, Userns};
use crate::sandbox::{self, seccomp};

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

pub(super) fn mnt(dest: &str, typ: &str, source: &str, opts: &[&str]) -> Mount {
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

pub(super) fn dev_rule(
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

pub(super) fn host_hard_limit(t: PosixRlimitType) -> u64 {
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
