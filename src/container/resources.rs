//! `run` flags -> the resources and device nodes of the runtime spec: memory, CPU
//! (CFS and real-time), pids, block I/O (weights and throttles by device path),
//! hugetlb, the device allow-list (`--device`, `--device-cgroup-rule`,
//! `--privileged`) and the nodes created in the container's `/dev`.
//!
//! Device paths given by the user are resolved to `major:minor` here, on the host,
//! before anything is created; what is not a block device (for throttles) or not a
//! device at all (for `--device`) is refused with one line.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxHugepageLimit,
    LinuxMemory, LinuxPids, LinuxResources, LinuxThrottleDevice, LinuxThrottleDeviceBuilder,
    LinuxWeightDeviceBuilder,
};

use super::{default_device_rules, dev_rule, Error, RunFlags, DEFAULT_PIDS_LIMIT};

fn bad(flag: &str, value: impl std::fmt::Display, hint: impl Into<String>) -> Error {
    Error::BadFlag {
        flag: flag.to_string(),
        value: value.to_string(),
        hint: hint.into(),
    }
}

/// `(type, major, minor, mode, uid, gid)` of a device node.
type Node = (LinuxDeviceType, i64, i64, u32, u32, u32);

/// The [`Node`] at `p` on the host; `None` when `p` is not a character or block
/// device.
fn node_of(flag: &str, p: &Path) -> Result<Option<Node>, Error> {
    let m = std::fs::metadata(p).map_err(|e| {
        bad(
            flag,
            p.display(),
            format!("a device path on this host ({e})"),
        )
    })?;
    let ft = m.file_type();
    let typ = if ft.is_block_device() {
        LinuxDeviceType::B
    } else if ft.is_char_device() {
        LinuxDeviceType::C
    } else {
        return Ok(None);
    };
    let r = m.rdev();
    Ok(Some((
        typ,
        libc::major(r) as i64,
        libc::minor(r) as i64,
        m.permissions().mode() & 0o7777,
        m.uid(),
        m.gid(),
    )))
}

/// `major:minor` of a block device named by the user for `flag`.
fn block_device(flag: &str, p: &Path) -> Result<(i64, i64), Error> {
    match node_of(flag, p)? {
        Some((LinuxDeviceType::B, ma, mi, ..)) => Ok((ma, mi)),
        _ => Err(bad(flag, p.display(), "a block device (e.g. /dev/sda)")),
    }
}

fn throttles(
    flag: &str,
    list: &[(PathBuf, u64)],
) -> Result<Option<Vec<LinuxThrottleDevice>>, Error> {
    if list.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for (p, rate) in list {
        let (maj, min) = block_device(flag, p)?;
        out.push(
            LinuxThrottleDeviceBuilder::default()
                .major(maj)
                .minor(min)
                .rate(*rate)
                .build()
                .map_err(|e| Error::Spec(e.to_string()))?,
        );
    }
    Ok(Some(out))
}

/// Parse a kernel CPU/node list (`0-3,5`) into numbers.
fn list_members(s: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let mut it = part.splitn(2, '-');
        let a = it.next().and_then(|x| x.trim().parse::<u32>().ok());
        let b = it.next().and_then(|x| x.trim().parse::<u32>().ok());
        match (a, b) {
            (Some(a), Some(b)) if b >= a && b - a < 65_536 => out.extend(a..=b),
            (Some(a), None) => out.push(a),
            _ => {}
        }
    }
    out
}

/// `--cpuset-mems` must name memory nodes this host has online.
fn check_mems(mems: &str) -> Result<(), Error> {
    let online =
        std::fs::read_to_string("/sys/devices/system/node/online").unwrap_or_else(|_| "0".into());
    let have = list_members(&online);
    if let Some(n) = list_members(mems).into_iter().find(|n| !have.contains(n)) {
        return Err(bad(
            "--cpuset-mems",
            mems,
            format!(
                "memory nodes of this host (node {n} is not online; online: {})",
                online.trim()
            ),
        ));
    }
    Ok(())
}

/// The device cgroup rules: Docker's default list (or allow-all when privileged),
/// then one rule per `--device`, then the `--device-cgroup-rule`s.
fn device_rules(f: &RunFlags) -> Result<Vec<LinuxDeviceCgroup>, Error> {
    if f.privileged {
        return Ok(vec![dev_rule(true, None, None, None, "rwm")]);
    }
    let mut rules = default_device_rules();
    for d in &f.devices {
        let Some((typ, ma, mi, ..)) = node_of("--device", &d.host)? else {
            return Err(bad(
                "--device",
                d.host.display(),
                "a character or block device (e.g. /dev/fuse)",
            ));
        };
        rules.push(dev_rule(true, Some(typ), Some(ma), Some(mi), &d.access));
    }
    for (t, ma, mi, access) in &f.device_cgroup_rules {
        let typ = match t {
            'b' => Some(LinuxDeviceType::B),
            'c' => Some(LinuxDeviceType::C),
            _ => Some(LinuxDeviceType::A),
        };
        rules.push(dev_rule(true, typ, *ma, *mi, access));
    }
    Ok(rules)
}

/// The resources of the runtime spec for `f`.
pub(super) fn resources(f: &RunFlags) -> Result<LinuxResources, Error> {
    let mut r = LinuxResources::default();
    r.set_devices(Some(device_rules(f)?));
    let mut m = LinuxMemory::default();
    m.set_limit(f.memory);
    m.set_reservation(f.memory_reservation);
    m.set_swappiness(f.memory_swappiness);
    if f.oom_kill_disable {
        m.set_disable_oom_killer(Some(true));
    }
    if let Some(s) = f.memory_swap {
        if let Some(l) = f.memory {
            if s >= 0 && s < l {
                return Err(bad(
                    "--memory-swap",
                    s,
                    "a value not below --memory (it counts memory plus swap), or -1",
                ));
            }
        } else {
            return Err(bad("--memory-swap", s, "--memory to be set too"));
        }
        m.set_swap(Some(s));
    }
    if m != LinuxMemory::default() {
        r.set_memory(Some(m));
    }
    let mut c = LinuxCpu::default();
    c.set_quota(f.cpu_quota);
    c.set_period(f.cpu_period.or(f.cpu_quota.map(|_| 100_000)));
    c.set_shares(f.cpu_shares);
    c.set_cpus(f.cpuset_cpus.clone());
    if let Some(mems) = &f.cpuset_mems {
        check_mems(mems)?;
    }
    c.set_mems(f.cpuset_mems.clone());
    if let (Some(rt), Some(p)) = (f.cpu_rt_runtime, f.cpu_rt_period) {
        if rt > p as i64 {
            return Err(bad(
                "--cpu-rt-runtime",
                rt,
                format!("at most --cpu-rt-period ({p} µs)"),
            ));
        }
    }
    if f.cpu_rt_period.is_some() && f.cpu_rt_runtime.is_none() {
        return Err(bad(
            "--cpu-rt-period",
            f.cpu_rt_period.unwrap_or_default(),
            "--cpu-rt-runtime to be set too",
        ));
    }
    c.set_realtime_runtime(f.cpu_rt_runtime);
    c.set_realtime_period(f.cpu_rt_period);
    if c != LinuxCpu::default() {
        r.set_cpu(Some(c));
    }
    // 0 or -1: unlimited (Docker), i.e. no pids limit at all.
    let pids = f.pids_limit.unwrap_or(DEFAULT_PIDS_LIMIT);
    if pids > 0 {
        let mut p = LinuxPids::default();
        p.set_limit(pids);
        r.set_pids(Some(p));
    }
    let mut b = LinuxBlockIo::default();
    b.set_weight(f.blkio_weight);
    b.set_throttle_read_bps_device(throttles("--device-read-bps", &f.device_read_bps)?);
    b.set_throttle_write_bps_device(throttles("--device-write-bps", &f.device_write_bps)?);
    b.set_throttle_read_iops_device(throttles("--device-read-iops", &f.device_read_iops)?);
    b.set_throttle_write_iops_device(throttles("--device-write-iops", &f.device_write_iops)?);
    if !f.blkio_weight_device.is_empty() {
        let mut list = Vec::new();
        for (p, w) in &f.blkio_weight_device {
            let (maj, min) = block_device("--blkio-weight-device", p)?;
            list.push(
                LinuxWeightDeviceBuilder::default()
                    .major(maj)
                    .minor(min)
                    .weight(*w)
                    .build()
                    .map_err(|e| Error::Spec(e.to_string()))?,
            );
        }
        b.set_weight_device(Some(list));
    }
    if b != LinuxBlockIo::default() {
        r.set_block_io(Some(b));
    }
    if !f.hugetlb.is_empty() {
        let mut list = Vec::new();
        for (size, limit) in &f.hugetlb {
            let kb = hugepage_kb(size);
            let dir = format!("/sys/kernel/mm/hugepages/hugepages-{kb}kB");
            if !Path::new(&dir).is_dir() {
                return Err(bad(
                    "--hugetlb",
                    format!("{size}:{limit}"),
                    format!("a huge page size this kernel has ({})", host_page_sizes()),
                ));
            }
            let mut l = LinuxHugepageLimit::default();
            l.set_page_size(size.clone());
            l.set_limit(*limit);
            list.push(l);
        }
        r.set_hugepage_limits(Some(list));
    }
    Ok(r)
}

/// `2MB` -> 2048 (KiB), as `/sys/kernel/mm/hugepages/hugepages-2048kB` names it.
fn hugepage_kb(size: &str) -> u64 {
    let split = size
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(size.len());
    let n: u64 = size[..split].parse().unwrap_or(0);
    match &size[split..] {
        "GB" => n << 20,
        "MB" => n << 10,
        _ => n,
    }
}

/// The huge page sizes of this kernel, in the kernel's cgroup naming (`2MB, 1GB`).
fn host_page_sizes() -> String {
    let mut out: Vec<(u64, String)> = std::fs::read_dir("/sys/kernel/mm/hugepages")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let kb: u64 = n
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            let name = if kb >= 1 << 20 {
                format!("{}GB", kb >> 20)
            } else if kb >= 1 << 10 {
                format!("{}MB", kb >> 10)
            } else {
                format!("{kb}KB")
            };
            Some((kb, name))
        })
        .collect();
    out.sort();
    let names: Vec<String> = out.into_iter().map(|(_, n)| n).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn linux_device(path: PathBuf, (typ, ma, mi, mode, uid, gid): Node) -> LinuxDevice {
    let mut d = LinuxDevice::default();
    d.set_path(path);
    d.set_typ(typ);
    d.set_major(ma);
    d.set_minor(mi);
    d.set_file_mode(Some(mode));
    d.set_uid(Some(uid));
    d.set_gid(Some(gid));
    d
}

/// The device nodes made in the container's `/dev`: the host's devices with
/// `--privileged` (as Docker), then each `--device`.
pub(super) fn devices(f: &RunFlags) -> Result<Vec<LinuxDevice>, Error> {
    let mut out = if f.privileged {
        host_devices()
    } else {
        Vec::new()
    };
    for d in &f.devices {
        let Some(node) = node_of("--device", &d.host)? else {
            return Err(bad(
                "--device",
                d.host.display(),
                "a character or block device (e.g. /dev/fuse)",
            ));
        };
        if !d.container.starts_with("/dev/")
            || d.container.components().any(|c| {
                matches!(
                    c,
                    std::path::Component::ParentDir | std::path::Component::CurDir
                )
            })
        {
            return Err(bad(
                "--device",
                d.container.display(),
                "a container path under /dev without . or .. (e.g. /dev/xvdc)",
            ));
        }
        out.retain(|x: &LinuxDevice| x.path() != &d.container);
        out.push(linux_device(d.container.clone(), node));
    }
    Ok(out)
}

/// Check `--device` values before anything runs (a build checks them once, not at
/// its first RUN step).
pub fn check_devices(list: &[super::parse::DeviceFlag]) -> Result<(), Error> {
    devices(&RunFlags {
        devices: list.to_vec(),
        ..Default::default()
    })
    .map(drop)
}

/// Every device node under the host's `/dev`, except those a container gets its
/// own of (pts, shm, mqueue, console and the like), as Docker's `--privileged`.
pub fn host_devices() -> Vec<LinuxDevice> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<LinuxDevice>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                let skip = matches!(
                    name.as_ref(),
                    "pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev"
                );
                if !skip && depth < 4 {
                    walk(&p, depth + 1, out);
                }
                continue;
            }
            if !(ft.is_char_device() || ft.is_block_device()) || p == Path::new("/dev/console") {
                continue;
            }
            if let Ok(Some(node)) = node_of("--privileged", &p) {
                out.push(linux_device(p, node));
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/dev"), 0, &mut out);
    out.sort_by(|a, b| a.path().cmp(b.path()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_lists() {
        assert_eq!(list_members("0-2,5"), vec![0, 1, 2, 5]);
        assert_eq!(list_members("0\n"), vec![0]);
        assert!(check_mems("0").is_ok());
        let e = check_mems("63").unwrap_err().to_string();
        assert!(e.contains("--cpuset-mems") && e.contains("63"), "{e}");
    }

    #[test]
    fn devices_resolve_and_refuse() {
        let mut f = RunFlags {
            devices: vec![crate::container::parse::device("/dev/null:/dev/mynull:rw").unwrap()],
            ..Default::default()
        };
        let nodes = devices(&f).unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!((nodes[0].major(), nodes[0].minor()), (1, 3));
        assert_eq!(nodes[0].path(), Path::new("/dev/mynull"));
        let rules = resources(&f).unwrap().devices().clone().unwrap();
        let last = rules.last().unwrap();
        assert_eq!((last.major(), last.minor()), (Some(1), Some(3)));
        assert_eq!(last.access().as_deref(), Some("rw"));
        f.devices = vec![crate::container::parse::device("/etc/passwd").unwrap()];
        let e = devices(&f).unwrap_err().to_string();
        assert!(e.contains("--device") && e.contains("/etc/passwd"), "{e}");
        f.devices.clear();
        f.device_write_iops = vec![("/dev/null".into(), 20)];
        let e = resources(&f).unwrap_err().to_string();
        assert!(e.contains("block device"), "{e}");
    }

    #[test]
    fn hugepage_names() {
        assert_eq!(hugepage_kb("2MB"), 2048);
        assert_eq!(hugepage_kb("1GB"), 1 << 20);
        assert_eq!(hugepage_kb("64KB"), 64);
    }
}
