//! Control groups: v1 and v2 behind one trait, chosen at run time.
//!
//! The limits of an OCI `LinuxResources` are first turned into plain file writes
//! ([`v1_writes`], [`v2_writes`]: pure functions, unit-tested), then performed by a
//! [`Cgroup`] implementation rooted at a directory given as a parameter, so the v2
//! code runs against a temp-dir "cgroupfs" in unit tests and against
//! `/sys/fs/cgroup` for real. No systemd: cgroupfs is managed directly.
//!
//! Hybrid hosts (v1 controllers under `/sys/fs/cgroup/<controller>`, a cgroup2
//! mount at `/sys/fs/cgroup/unified` holding only hugetlb) are driven as v1.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::LinuxResources;

pub use super::cglimits::{blkio_to_io_weight, shares_to_weight, v1_writes, v2_writes, Write};
use super::Error;

/// `statfs` magic of a cgroup2 filesystem.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// v1 controllers imgctl creates a group in, when the host has them.
pub const V1_CONTROLLERS: &[&str] = &[
    "memory", "cpu", "cpuacct", "cpuset", "pids", "blkio", "devices", "freezer", "hugetlb",
];

/// The cgroup a container runs in, whatever the hierarchy version.
pub trait Cgroup {
    /// Create the group's directories and write the limits.
    fn create(&self, resources: Option<&LinuxResources>) -> Result<(), Error>;
    /// Move a process into the group.
    fn add_pid(&self, pid: i32) -> Result<(), Error>;
    /// Files a new, single-threaded process writes `0` to, itself, to join the
    /// group (v1 `tasks`). Moving the writer's own thread skips the kernel's
    /// global threadgroup lock, whose write-locking waits for an RCU grace
    /// period (10-20 ms here) where a `cgroup.procs` write pays it each time.
    fn self_join_files(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    /// Move a process that has joined [`Cgroup::self_join_files`] into the rest
    /// of the group.
    fn add_pid_rest(&self, pid: i32) -> Result<(), Error> {
        self.add_pid(pid)
    }
    /// True when the kernel OOM-killed a process of the group.
    fn oom_killed(&self) -> bool;
    /// Remove the group's directories (the group must be empty).
    fn remove(&self) -> Result<(), Error>;
    /// Cgroup hierarchy version (1 or 2), for the mounts inside the container.
    fn version(&self) -> u8;
    /// The group's directories as `(name under /sys/fs/cgroup, host path)`, to be
    /// bound into the container.
    fn mount_sources(&self) -> Vec<(String, PathBuf)>;
    /// The group's usage counters now (see [`super::cgstats`]).
    fn stats(&self) -> super::cgstats::Stats;
}

/// The cgroup hierarchy found on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// Pure cgroup v2 (unified) at the root.
    V2 { root: PathBuf },
    /// v1 controllers mounted at `root/<controller>` (also hybrid hosts).
    V1 { root: PathBuf },
}

impl Hierarchy {
    /// Look at `root` (normally `/sys/fs/cgroup`) and decide.
    pub fn detect(root: &Path) -> Result<Hierarchy, Error> {
        let st = nix::sys::statfs::statfs(root).map_err(|e| Error::Cgroup {
            path: root.to_path_buf(),
            source: e.into(),
        })?;
        if fs_magic(&st) == CGROUP2_SUPER_MAGIC {
            Ok(Hierarchy::V2 {
                root: root.to_path_buf(),
            })
        } else {
            Ok(Hierarchy::V1 {
                root: root.to_path_buf(),
            })
        }
    }

    /// The manager for the group at `path` (an absolute cgroup path like `/imgctl/ID`).
    pub fn group(&self, path: &Path) -> Box<dyn Cgroup> {
        let rel = path.strip_prefix("/").unwrap_or(path).to_path_buf();
        match self {
            Hierarchy::V2 { root } => Box::new(V2 {
                root: root.clone(),
                rel,
            }),
            Hierarchy::V1 { root } => Box::new(V1 {
                root: root.clone(),
                rel,
            }),
        }
    }
}

/// The filesystem magic; its C type differs between architectures.
#[allow(clippy::unnecessary_cast)]
fn fs_magic(s: &nix::sys::statfs::Statfs) -> i64 {
    s.filesystem_type().0 as i64
}

fn is_cgroup2(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| fs_magic(&s) == CGROUP2_SUPER_MAGIC)
}

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Cgroup {
        path: path.to_path_buf(),
        source,
    }
}

fn write_file(path: &Path, value: &str) -> Result<(), Error> {
    fs::write(path, value).map_err(|e| io_err(path, e))
}

/// cgroup v1: one directory per controller.
#[derive(Debug)]
pub struct V1 {
    root: PathBuf,
    rel: PathBuf,
}

impl V1 {
    /// Directories of this group, one per controller the host mounts, deduplicated
    /// (`cpu` and `cpuacct` may be one hierarchy).
    fn dirs(&self) -> Vec<(&'static str, PathBuf)> {
        let mut seen: Vec<PathBuf> = Vec::new();
        let mut out = Vec::new();
        for c in V1_CONTROLLERS {
            let mnt = self.root.join(c);
            let Ok(real) = fs::canonicalize(&mnt) else {
                continue;
            };
            if seen.contains(&real) {
                continue;
            }
            seen.push(real);
            out.push((*c, mnt.join(&self.rel)));
        }
        out
    }

    fn dir_of(&self, controller: &str) -> PathBuf {
        self.root.join(controller).join(&self.rel)
    }

    /// The group's directory on a hybrid host's cgroup2 mount (`unified`).
    fn unified_dir(&self) -> PathBuf {
        self.root.join("unified").join(&self.rel)
    }

    /// Hybrid hosts: hugetlb lives on the cgroup2 mount at `unified` (with no v1
    /// hugetlb hierarchy). Create the group there, hugetlb enabled down the path.
    fn create_unified_hugetlb(&self) -> Result<(), Error> {
        let uroot = self.root.join("unified");
        let has = is_cgroup2(&uroot)
            && fs::read_to_string(uroot.join("cgroup.controllers"))
                .unwrap_or_default()
                .split_whitespace()
                .any(|c| c == "hugetlb");
        if !has {
            return Err(Error::Unsupported {
                what:
                    "--hugetlb: no hugetlb cgroup controller (neither v1 nor on the cgroup2 mount)"
                        .into(),
            });
        }
        let dir = self.unified_dir();
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let mut cur = uroot;
        for comp in self.rel.components() {
            write_file(&cur.join("cgroup.subtree_control"), "+hugetlb")?;
            cur.push(comp);
        }
        Ok(())
    }
}

/// Real-time budget (cgroup v1 `cpu.rt_runtime_us`): a group may only hand out
/// what it has, and a new group has none. Each ancestor of the container below
/// the root is raised, top-down, to what its children then hold: the container's
/// `runtime` plus the budgets of the other groups beside the path (so containers
/// running side by side each keep theirs). Budgets are never lowered.
fn rt_budget(cpu_root: &Path, rel: &Path, runtime: i64) -> Result<(), Error> {
    let read = |p: &Path| -> Option<i64> {
        fs::read_to_string(p.join("cpu.rt_runtime_us"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    };
    let Some(root_budget) = read(cpu_root) else {
        return Err(Error::Unsupported {
            what: "--cpu-rt-runtime: the kernel has no real-time group scheduling (CONFIG_RT_GROUP_SCHED)".into(),
        });
    };
    if runtime > root_budget {
        return Err(Error::Unsupported {
            what: format!(
                "--cpu-rt-runtime {runtime}: more than the host's real-time budget ({root_budget} µs per period)"
            ),
        });
    }
    // The ancestors below the root, top-down (not the container's own group).
    let comps: Vec<_> = rel.components().collect();
    let mut chain = Vec::new();
    let mut cur = cpu_root.to_path_buf();
    for comp in comps.iter().take(comps.len().saturating_sub(1)) {
        cur.push(comp);
        chain.push(cur.clone());
    }
    // Bottom-up: what each level must hold.
    let others = |dir: &Path, except: &Path| -> i64 {
        fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()) && e.path() != except)
            .filter_map(|e| read(&e.path()))
            .sum()
    };
    let leaf = cpu_root.join(rel);
    let mut need = vec![0i64; chain.len()];
    let mut below = (leaf, runtime);
    for (i, dir) in chain.iter().enumerate().rev() {
        need[i] = below.1 + others(dir, &below.0);
        below = (dir.clone(), need[i]);
    }
    for (dir, need) in chain.iter().zip(need) {
        if read(dir).unwrap_or(0) < need {
            fs::write(dir.join("cpu.rt_runtime_us"), need.to_string()).map_err(|e| {
                Error::Unsupported {
                    what: format!(
                        "--cpu-rt-runtime {runtime}: cannot give {} a real-time budget of {need} µs ({e}); the parent groups have less to hand out",
                        dir.display()
                    ),
                }
            })?;
        }
    }
    Ok(())
}

/// A new v1 cpuset group starts with empty `cpus`/`mems`, which makes adding a task
/// fail; fill each level from its parent.
fn init_cpuset(root: &Path, dir: &Path) -> Result<(), Error> {
    let Ok(rel) = dir.strip_prefix(root) else {
        return Ok(());
    };
    let mut cur = root.to_path_buf();
    for comp in rel.components() {
        let parent = cur.clone();
        cur.push(comp);
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let mine = fs::read_to_string(cur.join(f)).unwrap_or_default();
            if mine.trim().is_empty() {
                let p =
                    fs::read_to_string(parent.join(f)).map_err(|e| io_err(&parent.join(f), e))?;
                write_file(&cur.join(f), p.trim())?;
            }
        }
    }
    Ok(())
}

fn remove_dir_retry(dir: &Path) -> Result<(), Error> {
    for i in 0..50 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            // Processes of the group may still be exiting.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && i < 49 => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(io_err(dir, e)),
        }
    }
    Ok(())
}

impl Cgroup for V1 {
    fn create(&self, resources: Option<&LinuxResources>) -> Result<(), Error> {
        for (c, dir) in self.dirs() {
            fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
            if c == "cpuset" {
                init_cpuset(&self.root.join(c), &dir)?;
            }
        }
        let Some(r) = resources else { return Ok(()) };
        let hugetlb = r.hugepage_limits().as_ref().is_some_and(|l| !l.is_empty());
        let unified = hugetlb && !self.root.join("hugetlb").is_dir();
        if unified {
            self.create_unified_hugetlb()?;
        }
        if let Some(rt) = r.cpu().as_ref().and_then(|c| c.realtime_runtime()) {
            rt_budget(&self.root.join("cpu"), &self.rel, rt)?;
        }
        for wr in v1_writes(r) {
            let (file, value) = wr.target();
            if wr.controller == "hugetlb" && unified {
                let (file, value) = Write {
                    controller: "",
                    file: "hugetlb.max",
                    value: wr.value.clone(),
                }
                .target();
                write_file(&self.unified_dir().join(file), &value)?;
                continue;
            }
            if wr.file == "blkio.weight_device" {
                let mut path = self.dir_of("blkio").join(wr.file);
                if !path.exists() {
                    path = self.dir_of("blkio").join("blkio.bfq.weight_device");
                }
                if !path.exists() {
                    return Err(Error::Unsupported {
                        what: "--blkio-weight-device: the blkio controller has no weight file (no CFQ/BFQ scheduler)".into(),
                    });
                }
                write_file(&path, &value)?;
                continue;
            }
            let mut path = self.dir_of(wr.controller).join(&file);
            if wr.file == "blkio.weight" && !path.exists() {
                // With the BFQ scheduler the weight lives in blkio.bfq.weight (as runc does).
                path = self.dir_of("blkio").join("blkio.bfq.weight");
                if !path.exists() {
                    return Err(Error::Unsupported {
                        what: "--blkio-weight: the blkio controller has no weight file (no CFQ/BFQ scheduler)".into(),
                    });
                }
            }
            if wr.file == "memory.memsw.limit_in_bytes" && !path.exists() {
                return Err(Error::Unsupported {
                    what: "--memory-swap: the kernel has no swap accounting (memory.memsw.*)"
                        .into(),
                });
            }
            if wr.file == "cpu.rt_runtime_us" && !path.exists() {
                return Err(Error::Unsupported {
                    what: "--cpu-rt-runtime: the kernel has no real-time group scheduling (CONFIG_RT_GROUP_SCHED)".into(),
                });
            }
            write_file(&path, &value)?;
        }
        Ok(())
    }

    fn add_pid(&self, pid: i32) -> Result<(), Error> {
        for (_, dir) in self.dirs() {
            write_file(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        let u = self.unified_dir();
        if u.is_dir() {
            write_file(&u.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    fn self_join_files(&self) -> Vec<PathBuf> {
        self.dirs()
            .into_iter()
            .map(|(_, d)| d.join("tasks"))
            .collect()
    }

    fn add_pid_rest(&self, pid: i32) -> Result<(), Error> {
        let u = self.unified_dir();
        if u.is_dir() {
            write_file(&u.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    fn oom_killed(&self) -> bool {
        let s = fs::read_to_string(self.dir_of("memory").join("memory.oom_control"))
            .unwrap_or_default();
        oom_count(&s) > 0
    }

    fn remove(&self) -> Result<(), Error> {
        let mut first = Ok(());
        let mut dirs = self.dirs();
        if self.unified_dir().is_dir() {
            dirs.push(("unified", self.unified_dir()));
        }
        for (_, dir) in dirs {
            if let Err(e) = remove_dir_retry(&dir) {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }

    fn version(&self) -> u8 {
        1
    }

    fn mount_sources(&self) -> Vec<(String, PathBuf)> {
        V1_CONTROLLERS
            .iter()
            .chain(&["unified"])
            .map(|c| (c.to_string(), self.dir_of(c)))
            .filter(|(_, d)| d.is_dir())
            .collect()
    }

    fn stats(&self) -> super::cgstats::Stats {
        super::cgstats::v1(|c| self.dir_of(c))
    }
}

/// The `oom_kill N` count in `memory.oom_control` (v1) or `memory.events` (v2).
pub fn oom_count(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.strip_prefix("oom_kill "))
        .filter_map(|v| v.trim().parse().ok())
        .next()
        .unwrap_or(0)
}

/// cgroup v2: one directory; controllers enabled down the path through
/// `cgroup.subtree_control`.
#[derive(Debug)]
pub struct V2 {
    root: PathBuf,
    rel: PathBuf,
}

impl V2 {
    fn dir(&self) -> PathBuf {
        self.root.join(&self.rel)
    }
}

impl Cgroup for V2 {
    fn create(&self, resources: Option<&LinuxResources>) -> Result<(), Error> {
        if let Some(r) = resources {
            v2_refuse(r)?;
        }
        let dir = self.dir();
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        // Enable every available controller on each ancestor so the leaf has them.
        let avail = fs::read_to_string(self.root.join("cgroup.controllers")).unwrap_or_default();
        let enable: Vec<String> = avail.split_whitespace().map(|c| format!("+{c}")).collect();
        if !enable.is_empty() {
            let mut cur = self.root.clone();
            for comp in self.rel.components() {
                write_file(&cur.join("cgroup.subtree_control"), &enable.join(" "))?;
                cur.push(comp);
            }
        }
        let Some(r) = resources else { return Ok(()) };
        if let Some(devs) = r.devices() {
            // The v2 device controller is an eBPF program attached to the group (a
            // temp-dir stand-in for cgroupfs in unit tests cannot take one).
            if is_cgroup2(&dir) {
                super::devfilter::attach(&dir, devs)?;
            }
        }
        for wr in v2_writes(r) {
            let (file, value) = wr.target();
            if wr.file == "io.weight"
                && !dir.join("io.weight").exists()
                && dir.join("io.bfq.weight").exists()
            {
                // BFQ: its own file, with the blkio scale (1..1000), as runc.
                continue;
            }
            if file.starts_with("hugetlb.") && !dir.join(&file).exists() {
                return Err(Error::Unsupported {
                    what: format!("--hugetlb: no {file} in the cgroup (no hugetlb controller or no such page size)"),
                });
            }
            write_file(&dir.join(file), &value)?;
        }
        if let Some(b) = r.block_io() {
            if !dir.join("io.weight").exists() && dir.join("io.bfq.weight").exists() {
                if let Some(weight) = b.weight() {
                    write_file(&dir.join("io.bfq.weight"), &weight.to_string())?;
                }
                for d in b.weight_device().iter().flatten() {
                    if let Some(weight) = d.weight() {
                        let v = format!("{}:{} {weight}", d.major(), d.minor());
                        write_file(&dir.join("io.bfq.weight"), &v)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn add_pid(&self, pid: i32) -> Result<(), Error> {
        write_file(&self.dir().join("cgroup.procs"), &pid.to_string())
    }

    fn oom_killed(&self) -> bool {
        oom_count(&fs::read_to_string(self.dir().join("memory.events")).unwrap_or_default()) > 0
    }

    fn remove(&self) -> Result<(), Error> {
        remove_dir_retry(&self.dir())
    }

    fn version(&self) -> u8 {
        2
    }

    fn mount_sources(&self) -> Vec<(String, PathBuf)> {
        vec![(String::new(), self.dir())]
    }

    fn stats(&self) -> super::cgstats::Stats {
        super::cgstats::v2(&self.dir())
    }
}

/// What cgroup v2 has no knob for: refused with one line each, before anything is
/// created (Docker drops some of these with a warning; a silent no-op hides that
/// the limit is not there).
fn v2_refuse(r: &LinuxResources) -> Result<(), Error> {
    let no = |what: &str| {
        Err(Error::Unsupported {
            what: what.to_string(),
        })
    };
    if let Some(m) = r.memory() {
        if m.swappiness().is_some() {
            return no(
                "--memory-swappiness: cgroup v2 has no per-group swappiness; remove the flag",
            );
        }
        if m.disable_oom_killer() == Some(true) {
            return no("--oom-kill-disable: cgroup v2 cannot disable the OOM killer of a group; remove the flag");
        }
    }
    if let Some(c) = r.cpu() {
        if c.realtime_runtime().is_some() || c.realtime_period().is_some() {
            return no("--cpu-rt-runtime/--cpu-rt-period: cgroup v2 has no real-time group scheduling; use cgroup v1 or drop the flags");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::cglimits::w;
    use oci_spec::runtime::LinuxDeviceType;
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxMemoryBuilder,
        LinuxPidsBuilder, LinuxResourcesBuilder, LinuxThrottleDeviceBuilder,
    };

    fn resources() -> LinuxResources {
        LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(32 << 20)
                    .swap(64 << 20)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(1024u64)
                    .quota(50_000)
                    .period(100_000u64)
                    .cpus("0")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(20).build().unwrap())
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(500u16)
                    .throttle_read_bps_device(vec![LinuxThrottleDeviceBuilder::default()
                        .major(8)
                        .minor(0)
                        .rate(1_048_576u64)
                        .build()
                        .unwrap()])
                    .throttle_write_bps_device(vec![LinuxThrottleDeviceBuilder::default()
                        .major(8)
                        .minor(0)
                        .rate(2_097_152u64)
                        .build()
                        .unwrap()])
                    .build()
                    .unwrap(),
            )
            .devices(vec![
                LinuxDeviceCgroupBuilder::default()
                    .allow(false)
                    .access("rwm")
                    .build()
                    .unwrap(),
                LinuxDeviceCgroupBuilder::default()
                    .allow(true)
                    .typ(LinuxDeviceType::C)
                    .major(1)
                    .minor(3)
                    .access("rwm")
                    .build()
                    .unwrap(),
            ])
            .build()
            .unwrap()
    }

    #[test]
    fn v2_file_values() {
        let ws = v2_writes(&resources());
        let get = |f: &str| {
            ws.iter()
                .filter(|w| w.file == f)
                .map(|w| w.value.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("memory.max"), ["33554432"]);
        assert_eq!(get("memory.swap.max"), ["33554432"]);
        assert_eq!(get("cpu.max"), ["50000 100000"]);
        assert_eq!(get("cpu.weight"), ["39"]);
        assert_eq!(get("cpuset.cpus"), ["0"]);
        assert_eq!(get("pids.max"), ["20"]);
        assert_eq!(get("io.max"), ["8:0 rbps=1048576 wbps=2097152"]);
        assert_eq!(get("io.weight"), ["default 4950"]);
    }

    #[test]
    fn v1_file_values_and_device_rules() {
        let ws = v1_writes(&resources());
        assert_eq!(ws[0], w("devices", "devices.deny", "a *:* rwm"));
        assert_eq!(ws[1], w("devices", "devices.allow", "c 1:3 rwm"));
        assert!(ws.contains(&w("cpu", "cpu.cfs_quota_us", "50000")));
        assert!(ws.contains(&w("memory", "memory.limit_in_bytes", "33554432")));
        // The memory limit must be written before memory+swap.
        let lim = ws
            .iter()
            .position(|x| x.file == "memory.limit_in_bytes")
            .unwrap();
        let sw = ws
            .iter()
            .position(|x| x.file == "memory.memsw.limit_in_bytes")
            .unwrap();
        assert!(lim < sw);
    }

    #[test]
    fn weight_conversions_hit_the_ends() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
    }

    /// The v2 manager on a temp-dir stand-in for cgroupfs: directories, controller
    /// enabling, limit files, pid, OOM count and removal.
    #[test]
    fn v2_on_a_temp_dir_cgroupfs() {
        let root = tempfile::tempdir().unwrap();
        fs::write(
            root.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        fs::write(root.path().join("cgroup.subtree_control"), "").unwrap();
        fs::create_dir(root.path().join("imgctl")).unwrap();
        fs::write(root.path().join("imgctl/cgroup.subtree_control"), "").unwrap();
        let h = Hierarchy::V2 {
            root: root.path().to_path_buf(),
        };
        let g = h.group(Path::new("/imgctl/c1"));
        g.create(Some(&resources())).unwrap();
        let dir = root.path().join("imgctl/c1");
        assert_eq!(
            fs::read_to_string(dir.join("memory.max")).unwrap(),
            "33554432"
        );
        assert_eq!(fs::read_to_string(dir.join("pids.max")).unwrap(), "20");
        assert_eq!(
            fs::read_to_string(root.path().join("imgctl/cgroup.subtree_control")).unwrap(),
            "+cpuset +cpu +io +memory +pids"
        );
        g.add_pid(42).unwrap();
        assert_eq!(fs::read_to_string(dir.join("cgroup.procs")).unwrap(), "42");
        assert!(!g.oom_killed());
        fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert!(g.oom_killed());
        assert_eq!(g.version(), 2);
        // A real cgroupfs directory has only kernel files; the stand-in needs emptying.
        for e in fs::read_dir(&dir).unwrap() {
            fs::remove_file(e.unwrap().path()).unwrap();
        }
        g.remove().unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn detects_this_host() {
        let h = Hierarchy::detect(Path::new("/sys/fs/cgroup"));
        assert!(h.is_ok());
    }
}
