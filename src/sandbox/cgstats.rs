//! A cgroup's own usage counters, v1 and v2: CPU time, memory (now, limit,
//! peak), block I/O bytes, pids. Read from the files the kernel keeps; a missing
//! file (a controller the host lacks) reads as zero or "unknown".
//!
//! Memory "usage" is what `docker stats` shows: the charged bytes minus the
//! inactive page cache (v1 `total_inactive_file`, v2 `inactive_file`), which the
//! kernel drops first under pressure.

use std::fs;
use std::path::{Path, PathBuf};

/// Usage counters of one cgroup at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// CPU time used by the group, all CPUs, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory charged to the group minus inactive file cache, in bytes.
    pub memory: u64,
    /// The memory limit, `None` when unlimited.
    pub memory_limit: Option<u64>,
    /// The most memory ever charged to the group (v1 `memory.max_usage_in_bytes`,
    /// v2 `memory.peak`), `None` when the kernel does not keep it.
    pub memory_peak: Option<u64>,
    /// Bytes read from and written to block devices.
    pub io_read: u64,
    pub io_write: u64,
    /// Processes (tasks) in the group now.
    pub pids: u64,
    /// The most processes the group ever held (v2 `pids.peak`), when known.
    pub pids_peak: Option<u64>,
    pub pids_limit: Option<u64>,
}

fn read(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok()
}

fn num(p: &Path) -> Option<u64> {
    read(p)?.trim().parse().ok()
}

/// A limit file: `max` (v2) or a value near `i64::MAX` (v1's "unlimited") is none.
fn limit(p: &Path) -> Option<u64> {
    let t = read(p)?;
    let t = t.trim();
    if t == "max" {
        return None;
    }
    let v: u64 = t.parse().ok()?;
    (v < 1 << 60).then_some(v)
}

/// The value of `key` in a flat keyed file (`memory.stat`, `cpu.stat`).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// v1 `blkio.throttle.io_service_bytes(_recursive)`: `MAJ:MIN Read N` lines.
pub fn blkio_v1(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let [_, op, n] = f.as_slice() {
            let n: u64 = n.parse().unwrap_or(0);
            match *op {
                "Read" => r += n,
                "Write" => w += n,
                _ => {}
            }
        }
    }
    (r, w)
}

/// v2 `io.stat`: `MAJ:MIN rbytes=N wbytes=N …` lines.
pub fn io_v2(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for l in text.lines() {
        for kv in l.split_whitespace().skip(1) {
            match kv.split_once('=') {
                Some(("rbytes", n)) => r += n.parse::<u64>().unwrap_or(0),
                Some(("wbytes", n)) => w += n.parse::<u64>().unwrap_or(0),
                _ => {}
            }
        }
    }
    (r, w)
}

/// A v1 group; `dir(controller)` is its directory in that controller.
pub fn v1(dir: impl Fn(&str) -> PathBuf) -> Stats {
    let mem = dir("memory");
    let usage = num(&mem.join("memory.usage_in_bytes")).unwrap_or(0);
    let stat = read(&mem.join("memory.stat")).unwrap_or_default();
    let inactive = keyed(&stat, "total_inactive_file").unwrap_or(0);
    let blk = dir("blkio");
    let io = read(&blk.join("blkio.throttle.io_service_bytes_recursive"))
        .or_else(|| read(&blk.join("blkio.throttle.io_service_bytes")))
        .unwrap_or_default();
    let (io_read, io_write) = blkio_v1(&io);
    let pids = dir("pids");
    Stats {
        cpu_ns: num(&dir("cpuacct").join("cpuacct.usage")).unwrap_or(0),
        memory: usage.saturating_sub(inactive),
        memory_limit: limit(&mem.join("memory.limit_in_bytes")),
        memory_peak: num(&mem.join("memory.max_usage_in_bytes")),
        io_read,
        io_write,
        pids: num(&pids.join("pids.current")).unwrap_or(0),
        pids_peak: None,
        pids_limit: limit(&pids.join("pids.max")),
    }
}

/// A v2 group at `dir`.
pub fn v2(dir: &Path) -> Stats {
    let cpu = read(&dir.join("cpu.stat")).unwrap_or_default();
    let usage = num(&dir.join("memory.current")).unwrap_or(0);
    let stat = read(&dir.join("memory.stat")).unwrap_or_default();
    let inactive = keyed(&stat, "inactive_file").unwrap_or(0);
    let (io_read, io_write) = io_v2(&read(&dir.join("io.stat")).unwrap_or_default());
    Stats {
        cpu_ns: keyed(&cpu, "usage_usec").unwrap_or(0) * 1000,
        memory: usage.saturating_sub(inactive),
        memory_limit: limit(&dir.join("memory.max")),
        memory_peak: num(&dir.join("memory.peak")),
        io_read,
        io_write,
        pids: num(&dir.join("pids.current")).unwrap_or(0),
        pids_peak: num(&dir.join("pids.peak")),
        pids_limit: limit(&dir.join("pids.max")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters() {
        assert_eq!(
            blkio_v1("7:0 Read 4096\n7:0 Write 8192\n7:0 Sync 1\n8:0 Write 1\nTotal 12289\n"),
            (4096, 8193)
        );
        assert_eq!(
            io_v2("7:0 rbytes=10 wbytes=20 rios=1 wios=2\n8:0 rbytes=1 wbytes=2\n"),
            (11, 22)
        );
        assert_eq!(
            keyed("usage_usec 1500\nuser_usec 3\n", "usage_usec"),
            Some(1500)
        );
    }

    /// A v2 group on a temp dir stand-in: usage minus inactive cache, "max" limits.
    #[test]
    fn v2_files() {
        let d = tempfile::tempdir().unwrap();
        let w = |f: &str, v: &str| fs::write(d.path().join(f), v).unwrap();
        w("cpu.stat", "usage_usec 2000\n");
        w("memory.current", "10000\n");
        w("memory.stat", "anon 8000\ninactive_file 3000\n");
        w("memory.max", "max\n");
        w("memory.peak", "12000\n");
        w("pids.current", "3\n");
        w("pids.max", "2048\n");
        let s = v2(d.path());
        assert_eq!(s.cpu_ns, 2_000_000);
        assert_eq!(s.memory, 7000);
        assert_eq!(s.memory_limit, None);
        assert_eq!(s.memory_peak, Some(12000));
        assert_eq!((s.pids, s.pids_limit), (3, Some(2048)));
    }
}
