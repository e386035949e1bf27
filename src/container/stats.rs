//! What containers use: live figures for `imgctl stats` and the final figures of
//! a foreground run (`run --stats-file`, `size --probe`).
//!
//! Running containers are found through their state (`<root>/containers/<id>`,
//! status running) and the cgroup their `config.json` names; the figures are the
//! cgroup's own counters ([`crate::sandbox::cgstats`], v1 and v2). CPU % is the
//! CPU time used between two samples over the wall time between them (100% = one
//! CPU busy, as `docker stats`); net I/O is the container's network namespace's
//! interfaces other than `lo` (`/proc/PID/net/dev` of a process in the group).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::state::{self, State, Status};
use super::Error;
use crate::sandbox::{self, cgroup, cgstats};

/// One container's figures at one moment (`stats --format json`, one object per
/// line; `schemas/stats.schema.json`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sample {
    pub id: String,
    pub name: String,
    /// CPU time over wall time between two samples, in percent of one CPU.
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    /// The memory limit, or the host's memory when unlimited (as Docker).
    pub memory_limit_bytes: u64,
    pub memory_percent: f64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    pub block_read_bytes: u64,
    pub block_write_bytes: u64,
    pub pids: u64,
}

/// The final figures of a foreground run (`run --stats-file`;
/// `schemas/run-stats.schema.json`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FinalStats {
    pub id: String,
    pub exit_code: u8,
    pub oom_killed: bool,
    /// From the container's creation to its process reaped, in seconds.
    pub wall_seconds: f64,
    /// CPU time of every process of the container, in nanoseconds.
    pub cpu_ns: u64,
    /// The most memory the cgroup ever held (v1 `memory.max_usage_in_bytes`,
    /// v2 `memory.peak`); absent when the kernel does not keep it.
    pub memory_peak_bytes: Option<u64>,
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    /// The most processes at once (v2 `pids.peak`); absent on v1, which keeps no peak.
    pub pids_peak: Option<u64>,
    pub cgroup_version: u8,
}

impl FinalStats {
    /// From a run's outcome and report (`None` without a cgroup).
    pub fn from_report(
        id: &str,
        outcome: &sandbox::Outcome,
        report: &sandbox::RunReport,
    ) -> Option<FinalStats> {
        let s = report.stats.as_ref()?;
        Some(FinalStats {
            id: id.to_string(),
            exit_code: outcome.exit_code(),
            oom_killed: *outcome == sandbox::Outcome::OomKilled,
            wall_seconds: report.took.as_secs_f64(),
            cpu_ns: s.cpu_ns,
            memory_peak_bytes: s.memory_peak,
            io_read_bytes: s.io_read,
            io_write_bytes: s.io_write,
            pids_peak: s.pids_peak,
            cgroup_version: report.cgroup_version.unwrap_or(0),
        })
    }
}

/// `run --stats-file FILE`: the final figures as JSON, written atomically.
pub fn write_file(
    file: &Path,
    id: &str,
    outcome: &sandbox::Outcome,
    report: &sandbox::RunReport,
) -> Result<(), Error> {
    let Some(s) = FinalStats::from_report(id, outcome, report) else {
        return Err(Error::Spec(format!(
            "--stats-file {}: the container had no cgroup",
            file.display()
        )));
    };
    let mut body = serde_json::to_vec_pretty(&s).map_err(|e| Error::Spec(e.to_string()))?;
    body.push(b'\n');
    crate::store::write_atomic(file, &body, 0o644).map_err(|source| Error::Io {
        path: file.to_path_buf(),
        source,
    })
}

/// A running container and where its cgroup is.
#[derive(Debug, Clone)]
pub struct Running {
    pub state: State,
    pub cgroup_path: PathBuf,
}

fn cgroup_path_of(dir: &Path) -> Option<PathBuf> {
    let body = std::fs::read(dir.join("config.json")).ok()?;
    let spec: oci_spec::runtime::Spec = serde_json::from_slice(&body).ok()?;
    spec.linux().as_ref()?.cgroups_path().clone()
}

/// Containers whose state says running and whose cgroup holds a process.
pub fn running(root: &Path, cgroup_root: &Path) -> Result<Vec<Running>, Error> {
    let h = cgroup::Hierarchy::detect(cgroup_root)?;
    let mut out = Vec::new();
    let dir = state::containers_dir(root);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(out);
    };
    for e in rd.flatten() {
        let d = e.path();
        let Ok(st) = State::load(&d) else { continue };
        if st.status != Status::Running {
            continue;
        }
        let Some(cg) = cgroup_path_of(&d) else {
            continue;
        };
        if first_pid(h.group(&cg).as_ref()).is_none() {
            continue;
        }
        out.push(Running {
            state: st,
            cgroup_path: cg,
        });
    }
    out.sort_by(|a, b| {
        a.state
            .created
            .cmp(&b.state.created)
            .then(a.state.id.cmp(&b.state.id))
    });
    Ok(out)
}

fn first_pid(g: &dyn cgroup::Cgroup) -> Option<u32> {
    g.mount_sources().iter().find_map(|(_, dir)| {
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .ok()?
            .lines()
            .find_map(|l| l.trim().parse().ok())
    })
}

/// Received and sent bytes of the interfaces other than `lo` in `/proc/net/dev` text.
pub fn net_dev(text: &str) -> (u64, u64) {
    let (mut rx, mut tx) = (0, 0);
    for l in text.lines().skip(2) {
        let Some((name, rest)) = l.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        if f.len() >= 9 {
            rx += f[0];
            tx += f[8];
        }
    }
    (rx, tx)
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let kb: u64 = l
                    .strip_prefix("MemTotal:")?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()?;
                Some(kb * 1024)
            })
        })
        .unwrap_or(0)
}

/// Pick the containers named by id, id prefix or name (all running ones when
/// `names` is empty).
fn select(all: Vec<Running>, names: &[String]) -> Result<Vec<Running>, Error> {
    if names.is_empty() {
        return Ok(all);
    }
    let mut out = Vec::new();
    for n in names {
        let hits: Vec<&Running> = all
            .iter()
            .filter(|r| {
                r.state.name.as_deref() == Some(n.as_str()) || r.state.id.starts_with(n.as_str())
            })
            .collect();
        match hits.as_slice() {
            [one] => out.push((*one).clone()),
            [] => {
                return Err(Error::Spec(format!(
                    "no running container {n:?} (imgctl stats shows running containers only)"
                )))
            }
            _ => {
                return Err(Error::Spec(format!(
                    "{n:?} matches several running containers; give more of the id"
                )))
            }
        }
    }
    Ok(out)
}

/// Sample the containers `names` (all running ones when empty) twice, `interval`
/// apart, and return their figures (containers gone meanwhile are left out).
pub fn sample(
    root: &Path,
    cgroup_root: &Path,
    names: &[String],
    interval: Duration,
) -> Result<Vec<Sample>, Error> {
    let h = cgroup::Hierarchy::detect(cgroup_root)?;
    let list = select(running(root, cgroup_root)?, names)?;
    let groups: Vec<_> = list.iter().map(|r| h.group(&r.cgroup_path)).collect();
    let t0 = Instant::now();
    let first: Vec<cgstats::Stats> = groups.iter().map(|g| g.stats()).collect();
    std::thread::sleep(interval);
    let wall = t0.elapsed().as_nanos().max(1) as f64;
    let host_mem = host_memory();
    let mut out = Vec::new();
    for ((r, g), a) in list.iter().zip(&groups).zip(first) {
        let Some(pid) = first_pid(g.as_ref()) else {
            continue;
        };
        let b = g.stats();
        let (rx, tx) =
            net_dev(&std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default());
        let limit = b.memory_limit.unwrap_or(host_mem).min(host_mem.max(1));
        out.push(Sample {
            id: r.state.id.clone(),
            name: r.state.name.clone().unwrap_or_default(),
            cpu_percent: b.cpu_ns.saturating_sub(a.cpu_ns) as f64 / wall * 100.0,
            memory_bytes: b.memory,
            memory_limit_bytes: limit,
            memory_percent: if limit > 0 {
                b.memory as f64 / limit as f64 * 100.0
            } else {
                0.0
            },
            net_rx_bytes: rx,
            net_tx_bytes: tx,
            block_read_bytes: b.io_read,
            block_write_bytes: b.io_write,
            pids: b.pids,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_skips_lo() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  eth0:    2000      10    0    0    0     0          0         0      3000      12    0    0    0     0       0          0\n";
        assert_eq!(net_dev(text), (2000, 3000));
    }
}
