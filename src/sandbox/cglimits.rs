//! cgroup limits as data: the file writes an OCI `LinuxResources` turns into, for
//! v1 ([`v1_writes`]) and v2 ([`v2_writes`]). Pure functions; the managers in
//! [`super::cgroup`] perform them.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

/// One file write in a cgroup: `(controller, file, value)`; the controller is
/// empty for v2, where all files live in one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub controller: &'static str,
    pub file: &'static str,
    pub value: String,
}

impl Write {
    /// The file name and value to write: hugetlb limits carry their page size in
    /// the value (`2MB 67108864`) and go to `hugetlb.2MB.limit_in_bytes` (v1) or
    /// `hugetlb.2MB.max` (v2).
    pub fn target(&self) -> (String, String) {
        if let Some(suffix) = self.file.strip_prefix("hugetlb.") {
            if let Some((size, limit)) = self.value.split_once(' ') {
                return (format!("hugetlb.{size}.{suffix}"), limit.to_string());
            }
        }
        (self.file.to_string(), self.value.clone())
    }
}

pub(crate) fn w(controller: &'static str, file: &'static str, value: impl ToString) -> Write {
    Write {
        controller,
        file,
        value: value.to_string(),
    }
}

fn device_rule(d: &LinuxDeviceCgroup) -> String {
    let typ = match d.typ() {
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => "c",
        Some(LinuxDeviceType::B) => "b",
        Some(LinuxDeviceType::P) => "p",
        Some(LinuxDeviceType::A) | None => "a",
    };
    let num = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_else(|| "*".into());
    let access = d.access().clone().unwrap_or_else(|| "rwm".into());
    format!("{typ} {}:{} {access}", num(d.major()), num(d.minor()))
}

/// The v1 file writes for `r`, in the order they must happen.
pub fn v1_writes(r: &LinuxResources) -> Vec<Write> {
    let mut out = Vec::new();
    if let Some(devs) = r.devices() {
        for d in devs {
            let file = if d.allow() {
                "devices.allow"
            } else {
                "devices.deny"
            };
            out.push(w("devices", file, device_rule(d)));
        }
    }
    if let Some(m) = r.memory() {
        if let Some(l) = m.limit() {
            out.push(w("memory", "memory.limit_in_bytes", l));
        }
        if let Some(s) = m.swap() {
            out.push(w("memory", "memory.memsw.limit_in_bytes", s));
        }
        if let Some(res) = m.reservation() {
            out.push(w("memory", "memory.soft_limit_in_bytes", res));
        }
        if let Some(s) = m.swappiness() {
            out.push(w("memory", "memory.swappiness", s));
        }
        if m.disable_oom_killer() == Some(true) {
            out.push(w("memory", "memory.oom_control", 1));
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares() {
            out.push(w("cpu", "cpu.shares", s));
        }
        if let Some(p) = c.period() {
            out.push(w("cpu", "cpu.cfs_period_us", p));
        }
        if let Some(q) = c.quota() {
            out.push(w("cpu", "cpu.cfs_quota_us", q));
        }
        if let Some(cpus) = c.cpus() {
            out.push(w("cpuset", "cpuset.cpus", cpus));
        }
        if let Some(mems) = c.mems() {
            out.push(w("cpuset", "cpuset.mems", mems));
        }
        // The period first: the runtime may not exceed it.
        if let Some(p) = c.realtime_period() {
            out.push(w("cpu", "cpu.rt_period_us", p));
        }
        if let Some(rt) = c.realtime_runtime() {
            out.push(w("cpu", "cpu.rt_runtime_us", rt));
        }
    }
    if let Some(p) = r.pids() {
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".into()
        };
        out.push(w("pids", "pids.max", v));
    }
    for h in r.hugepage_limits().iter().flatten() {
        out.push(Write {
            controller: "hugetlb",
            file: "hugetlb.limit_in_bytes",
            value: format!("{} {}", h.page_size(), h.limit()),
        });
    }
    if let Some(b) = r.block_io() {
        if let Some(weight) = b.weight() {
            out.push(w("blkio", "blkio.weight", weight));
        }
        for d in b.weight_device().iter().flatten() {
            if let Some(weight) = d.weight() {
                out.push(w(
                    "blkio",
                    "blkio.weight_device",
                    format!("{}:{} {weight}", d.major(), d.minor()),
                ));
            }
        }
        for t in b.throttle_read_bps_device().iter().flatten() {
            out.push(w(
                "blkio",
                "blkio.throttle.read_bps_device",
                format!("{}:{} {}", t.major(), t.minor(), t.rate()),
            ));
        }
        for t in b.throttle_write_bps_device().iter().flatten() {
            out.push(w(
                "blkio",
                "blkio.throttle.write_bps_device",
                format!("{}:{} {}", t.major(), t.minor(), t.rate()),
            ));
        }
        for t in b.throttle_read_iops_device().iter().flatten() {
            out.push(w(
                "blkio",
                "blkio.throttle.read_iops_device",
                format!("{}:{} {}", t.major(), t.minor(), t.rate()),
            ));
        }
        for t in b.throttle_write_iops_device().iter().flatten() {
            out.push(w(
                "blkio",
                "blkio.throttle.write_iops_device",
                format!("{}:{} {}", t.major(), t.minor(), t.rate()),
            ));
        }
    }
    out
}

/// cgroup v1 `cpu.shares` (2..262144) to v2 `cpu.weight` (1..10000), the
/// conversion the OCI runtimes agree on.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// blkio weight (10..1000) to v2 `io.weight` (1..10000).
pub fn blkio_to_io_weight(w: u16) -> u64 {
    1 + (u64::from(w).clamp(10, 1000) - 10) * 9999 / 990
}

/// The v2 file writes for `r`. The device allow-list is not a file in v2 (it is an
/// eBPF program) and is not part of this list; see `cgroup::V2::create`.
pub fn v2_writes(r: &LinuxResources) -> Vec<Write> {
    let mut out = Vec::new();
    if let Some(m) = r.memory() {
        if let Some(l) = m.limit() {
            out.push(w(
                "",
                "memory.max",
                if l < 0 { "max".into() } else { l.to_string() },
            ));
            if let Some(s) = m.swap() {
                // OCI (like v1) counts memory+swap; v2 counts swap alone.
                let v = if s < 0 {
                    "max".into()
                } else {
                    (s - l).max(0).to_string()
                };
                out.push(w("", "memory.swap.max", v));
            }
        }
        if let Some(res) = m.reservation() {
            out.push(w("", "memory.low", res));
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares() {
            out.push(w("", "cpu.weight", shares_to_weight(s)));
        }
        if c.quota().is_some() || c.period().is_some() {
            let q = match c.quota() {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".into(),
            };
            out.push(w(
                "",
                "cpu.max",
                format!("{q} {}", c.period().unwrap_or(100_000)),
            ));
        }
        if let Some(cpus) = c.cpus() {
            out.push(w("", "cpuset.cpus", cpus));
        }
        if let Some(mems) = c.mems() {
            out.push(w("", "cpuset.mems", mems));
        }
    }
    if let Some(p) = r.pids() {
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".into()
        };
        out.push(w("", "pids.max", v));
    }
    for h in r.hugepage_limits().iter().flatten() {
        out.push(Write {
            controller: "",
            file: "hugetlb.max",
            value: format!("{} {}", h.page_size(), h.limit()),
        });
    }
    if let Some(b) = r.block_io() {
        if let Some(weight) = b.weight() {
            out.push(w(
                "",
                "io.weight",
                format!("default {}", blkio_to_io_weight(weight)),
            ));
        }
        for d in b.weight_device().iter().flatten() {
            if let Some(weight) = d.weight() {
                out.push(w(
                    "",
                    "io.weight",
                    format!("{}:{} {}", d.major(), d.minor(), blkio_to_io_weight(weight)),
                ));
            }
        }
        let mut per_dev: Vec<((i64, i64), String)> = Vec::new();
        let lists = [
            ("rbps", b.throttle_read_bps_device()),
            ("wbps", b.throttle_write_bps_device()),
            ("riops", b.throttle_read_iops_device()),
            ("wiops", b.throttle_write_iops_device()),
        ];
        for (key, list) in lists {
            for t in list.iter().flatten() {
                let dev = (t.major(), t.minor());
                let item = format!("{key}={}", t.rate());
                match per_dev.iter_mut().find(|(d, _)| *d == dev) {
                    Some((_, s)) => {
                        s.push(' ');
                        s.push_str(&item);
                    }
                    None => per_dev.push((dev, item)),
                }
            }
        }
        for ((maj, min), s) in per_dev {
            out.push(w("", "io.max", format!("{maj}:{min} {s}")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxHugepageLimitBuilder, LinuxMemoryBuilder,
        LinuxResourcesBuilder, LinuxThrottleDeviceBuilder, LinuxWeightDeviceBuilder,
    };

    fn issue14() -> LinuxResources {
        let t = |rate: u64| {
            vec![LinuxThrottleDeviceBuilder::default()
                .major(7)
                .minor(0)
                .rate(rate)
                .build()
                .unwrap()]
        };
        LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .disable_oom_killer(true)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .realtime_runtime(95_000)
                    .realtime_period(1_000_000u64)
                    .build()
                    .unwrap(),
            )
            .block_io(
                LinuxBlockIoBuilder::default()
                    .throttle_read_iops_device(t(100))
                    .throttle_write_iops_device(t(20))
                    .weight_device(vec![LinuxWeightDeviceBuilder::default()
                        .major(8)
                        .minor(0)
                        .weight(500u16)
                        .build()
                        .unwrap()])
                    .build()
                    .unwrap(),
            )
            .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
                .page_size("2MB")
                .limit(8 << 20)
                .build()
                .unwrap()])
            .build()
            .unwrap()
    }

    #[test]
    fn v1_issue14_files() {
        let ws = v1_writes(&issue14());
        let targets: Vec<(String, String)> = ws.iter().map(|w| w.target()).collect();
        let has = |f: &str, v: &str| targets.iter().any(|(a, b)| a == f && b == v);
        assert!(has("memory.oom_control", "1"), "{targets:?}");
        assert!(has("cpu.rt_period_us", "1000000") && has("cpu.rt_runtime_us", "95000"));
        let period = targets.iter().position(|t| t.0 == "cpu.rt_period_us");
        let runtime = targets.iter().position(|t| t.0 == "cpu.rt_runtime_us");
        assert!(period < runtime, "the period is written first");
        assert!(has("blkio.throttle.read_iops_device", "7:0 100"));
        assert!(has("blkio.throttle.write_iops_device", "7:0 20"));
        assert!(has("blkio.weight_device", "8:0 500"));
        assert!(has("hugetlb.2MB.limit_in_bytes", "8388608"), "{targets:?}");
    }

    #[test]
    fn v2_issue14_files() {
        let ws = v2_writes(&issue14());
        let targets: Vec<(String, String)> = ws.iter().map(|w| w.target()).collect();
        assert!(targets.contains(&("io.max".into(), "7:0 riops=100 wiops=20".into())));
        assert!(targets.contains(&("io.weight".into(), "8:0 4950".into())));
        assert!(targets.contains(&("hugetlb.2MB.max".into(), "8388608".into())));
        // No v2 file for what v2 lacks (the manager refuses those first).
        assert!(!targets
            .iter()
            .any(|t| t.0.contains("rt_") || t.0.contains("oom")));
    }
}
