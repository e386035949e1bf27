//! Issue 14: resource and device controls, asserted from inside the container
//! (the probe) or from the cgroup, on this host's kernel: real-time CPU, I/O
//! operation limits on a loop device, device passthrough and rules,
//! `--privileged` devices, hugetlb on the cgroup2 mount, the v2 refusals, and bad
//! values (one line, exit 125, nothing left behind).

use std::path::Path;
use std::process::Command;

use crate::common::sandbox::{leftover_cgroups, probe, ready, ready_rootfs, rootfs, run, serial};
use crate::common::{fixture, require, tempdir};

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "run failed with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// A loop device over a file in `dir`, detached on drop.
pub(crate) struct Loop(pub(crate) String);

impl Loop {
    pub(crate) fn new(dir: &Path) -> Option<Loop> {
        let f = dir.join("loop.img");
        std::fs::write(&f, vec![0u8; 4 << 20]).unwrap();
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&f)
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        Some(Loop(
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        ))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

fn v1_cpu_rt() -> bool {
    Path::new("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").is_file()
}

/// The one line an imgctl error prints, with exit 125; nothing is left behind.
fn refused(store: &Path, r: &Path, flags: &[&str], needle: &str) {
    let out = run(store, r, flags, &["/probe"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{flags:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{flags:?}: one line: {err}");
    assert!(err.contains(needle), "{flags:?}: {err}");
    assert!(leftover_cgroups().is_empty(), "{flags:?}: cgroup left");
    let left: Vec<_> = std::fs::read_dir(store.join("containers"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .collect();
    assert!(left.is_empty(), "{flags:?}: state left: {left:?}");
}

/// `--cpu-rt-runtime 95000 --cap-add SYS_NICE`: a SCHED_FIFO thread starts;
/// without the budget, or without the capability, it is refused (EPERM).
#[test]
fn sched_fifo_needs_rt_budget_and_sys_nice() {
    if !ready()
        || !require(
            v1_cpu_rt(),
            "cgroup v1 cpu.rt_runtime_us (RT group scheduling)",
        )
    {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
    let store = t.path().join("store");
    let ok = probe(
        &store,
        &r,
        &["--cpu-rt-runtime", "95000", "--cap-add", "SYS_NICE"],
        &["fifo"],
    );
    assert_eq!(ok["fifo"], 0, "{ok}");
    let no_budget = probe(&store, &r, &["--cap-add", "SYS_NICE"], &["fifo"]);
    assert_eq!(no_budget["fifo"], libc::EPERM, "{no_budget}");
    let no_cap = probe(
        &store,
        &r,
        &["--cpu-rt-runtime", "95000", "--ulimit", "rtprio=0"],
        &["fifo"],
    );
    assert_eq!(no_cap["fifo"], libc::EPERM, "{no_cap}");
    assert!(leftover_cgroups().is_empty());
}

/// O_DIRECT writes to a loop device for 2 s: at most ~25 IOPS worth under
/// `--device-write-iops DEV:20`, far more without.
#[test]
fn write_iops_limit_on_a_loop_device() {
    if !ready() || !require(crate::common::have("losetup"), "losetup") {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
    let store = t.path().join("store");
    let Some(lo) = Loop::new(t.path()) else {
        assert!(!crate::common::strict(), "losetup failed");
        eprintln!("SKIP: no free loop device");
        return;
    };
    let dev = format!("{}:/dev/xvda", lo.0);
    let limited = json(&run(
        &store,
        &r,
        &[
            "--device",
            &dev,
            "--device-write-iops",
            &format!("{}:20", lo.0),
        ],
        &["/probe", "dwrite", "/dev/xvda", "2000"],
    ));
    let free = json(&run(
        &store,
        &r,
        &["--device", &dev],
        &["/probe", "dwrite", "/dev/xvda", "2000"],
    ));
    assert_eq!(limited["errno"], 0, "{limited}");
    let n = limited["writes"].as_i64().unwrap();
    let m = free["writes"].as_i64().unwrap();
    assert!(n <= 25 * 2 + 5, "limited: {n} writes in 2 s");
    assert!(n >= 10, "limited: only {n} writes in 2 s");
    eprintln!("O_DIRECT 4 KiB writes in 2 s: {n} under DEV:20, {m} without");
    assert!(m > 4 * n, "unlimited {m} writes vs limited {n}");
    assert!(leftover_cgroups().is_empty());
}

/// `--device /dev/null:/dev/mynull` reads and writes; a node not passed in is
/// refused by the device cgroup (EPERM) even though it can be made.
#[test]
fn device_passthrough_and_refusal() {
    let Some((_g, t, r)) = ready_rootfs() else {
        return;
    };
    let store = t.path().join("store");
    let v = json(&run(
        &store,
        &r,
        &["--device", "/dev/null:/dev/mynull"],
        &["/probe", "open", "/dev/mynull"],
    ));
    assert_eq!(
        (&v["open"], &v["write"], &v["read"]),
        (&0.into(), &0.into(), &0.into()),
        "{v}"
    );
    // Access is what the flag says: read-only refuses a read-write open of a
    // device outside Docker's default list.
    if Path::new("/dev/loop-control").exists() {
        let rw = json(&run(
            &store,
            &r,
            &["--device", "/dev/loop-control:/dev/lc:rw"],
            &["/probe", "open", "/dev/lc"],
        ));
        assert_eq!(rw["open"], 0, "{rw}");
        let ro = json(&run(
            &store,
            &r,
            &["--device", "/dev/loop-control:/dev/lc:r"],
            &["/probe", "open", "/dev/lc"],
        ));
        assert_eq!(ro["open"], libc::EPERM, "{ro}");
    }
    let other = json(&run(
        &store,
        &r,
        &["--device", "/dev/null:/dev/mynull"],
        &["/probe", "mknod", "/dev/lc", "c", "10", "237"],
    ));
    assert_eq!(other["open"], libc::EPERM, "{other}");
    // A block device made inside (SECURITY-TESTS 13): mknod is allowed, opening
    // it is not.
    let block = json(&run(
        &store,
        &r,
        &[],
        &["/probe", "mknod", "/dev/blk", "b", "7", "0"],
    ));
    assert_eq!(
        (&block["mknod"], &block["open"]),
        (&0.into(), &libc::EPERM.into()),
        "{block}"
    );
    assert!(leftover_cgroups().is_empty());
}

/// `--device-cgroup-rule 'c 10:229 rwm'` allows exactly that class: a node made
/// inside opens; another minor of the same major does not.
#[test]
fn device_cgroup_rule_allows_exactly_its_class() {
    if !ready() || !require(Path::new("/dev/fuse").exists(), "/dev/fuse (fuse driver)") {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
    let store = t.path().join("store");
    let rule = ["--device-cgroup-rule", "c 10:229 rwm"];
    let yes = json(&run(
        &store,
        &r,
        &rule,
        &["/probe", "mknod", "/dev/f", "c", "10", "229"],
    ));
    assert_eq!(
        (&yes["mknod"], &yes["open"]),
        (&0.into(), &0.into()),
        "{yes}"
    );
    let no = json(&run(
        &store,
        &r,
        &[],
        &["/probe", "mknod", "/dev/f", "c", "10", "229"],
    ));
    assert_eq!(no["open"], libc::EPERM, "{no}");
    let other = json(&run(
        &store,
        &r,
        &rule,
        &["/probe", "mknod", "/dev/l", "c", "10", "237"],
    ));
    assert_eq!(other["open"], libc::EPERM, "{other}");
    assert!(leftover_cgroups().is_empty());
}

/// `--privileged` sees and opens a host device (as Docker: the host's /dev
/// nodes); without it the node is not there.
#[test]
fn privileged_sees_host_devices() {
    if !ready() || !require(Path::new("/dev/loop-control").exists(), "/dev/loop-control") {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
    let store = t.path().join("store");
    let p = json(&run(
        &store,
        &r,
        &["--privileged"],
        &["/probe", "open", "/dev/loop-control"],
    ));
    assert_eq!(p["open"], 0, "{p}");
    let n = json(&run(
        &store,
        &r,
        &[],
        &["/probe", "open", "/dev/loop-control"],
    ));
    assert_eq!(n["open"], libc::ENOENT, "{n}");
    assert!(leftover_cgroups().is_empty());
}

/// `--hugetlb 2MB:8m` writes the limit on the host's cgroup2 mount (hybrid) or
/// the v2 root, and the container reads it in its own /sys/fs/cgroup.
#[test]
fn hugetlb_limit_on_cgroup2() {
    let unified = Path::new("/sys/fs/cgroup/unified/cgroup.controllers");
    let has = std::fs::read_to_string(unified)
        .or_else(|_| std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers"))
        .is_ok_and(|c| c.split_whitespace().any(|x| x == "hugetlb"));
    if !ready()
        || !require(has, "a hugetlb controller on cgroup2")
        || !require(
            Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").is_dir(),
            "2 MB huge pages",
        )
    {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
    let store = t.path().join("store");
    let inside = if unified.exists() {
        "/sys/fs/cgroup/unified/hugetlb.2MB.max"
    } else {
        "/sys/fs/cgroup/hugetlb.2MB.max"
    };
    let out = run(&store, &r, &["--hugetlb", "2MB:8m"], &["/bin/cat", inside]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "8388608");
    assert!(leftover_cgroups().is_empty());
    if unified.exists() {
        // The same mount driven by the v2 manager itself (it holds no pids
        // controller, hence no pids limit): hugetlb.2MB.max written by the v2 code
        // on a real kernel, the eBPF device filter attached, the group seen inside.
        let out = run(
            &store,
            &r,
            &[
                "--cgroup-root",
                "/sys/fs/cgroup/unified",
                "--pids-limit",
                "-1",
                "--hugetlb",
                "2MB:6m",
            ],
            &["/bin/cat", "/sys/fs/cgroup/hugetlb.2MB.max"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "6291456");
        assert!(leftover_cgroups().is_empty());
    }
    refused(&store, &r, &["--hugetlb", "3MB:8m"], "--hugetlb");
}

/// A v2 manager (this host's real cgroup2 mount at /sys/fs/cgroup/unified, or the
/// v2 root) refuses what v2 has no knob for, with one line and nothing made.
#[test]
fn v2_refuses_swappiness_and_realtime() {
    let v2 = if Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() {
        "/sys/fs/cgroup/unified"
    } else {
        "/sys/fs/cgroup"
    };
    if !ready()
        || !require(
            Path::new(v2).join("cgroup.controllers").exists(),
            "a cgroup2 mount",
        )
    {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
    let store = t.path().join("store");
    for (flag, val) in [("--memory-swappiness", "10"), ("--cpu-rt-runtime", "95000")] {
        refused(&store, &r, &["--cgroup-root", v2, flag, val], flag);
    }
    refused(
        &store,
        &r,
        &["--cgroup-root", v2, "--oom-kill-disable"],
        "--oom-kill-disable",
    );
}

/// Bad values: one line, exit 125, no cgroup and no state directory.
#[test]
fn bad_resource_values_are_one_line_errors() {
    let Some((_g, t, r)) = ready_rootfs() else {
        return;
    };
    let store = t.path().join("store");
    let cases: &[(&[&str], &str)] = &[
        (&["--device", "/etc/passwd"], "--device"),
        (&["--device", "/dev/nope"], "--device"),
        (
            &["--device-write-iops", "/dev/loop0:x"],
            "--device-write-iops",
        ),
        (&["--device-write-iops", "/dev/null:20"], "block device"),
        (
            &["--device-cgroup-rule", "x 1:3 rwm"],
            "--device-cgroup-rule",
        ),
        (&["--kernel-memory", "4m"], "deprecated"),
        (&["--cpuset-mems", "63"], "--cpuset-mems"),
        (&["--hugetlb", "2MB"], "--hugetlb"),
        (&["--blkio-weight-device", "/dev/null:500"], "block device"),
    ];
    for (flags, needle) in cases {
        refused(&store, &r, flags, needle);
    }
}

/// `--oom-score-adj` and `--shm-size` as seen from inside.
#[test]
fn oom_score_adj_and_shm_size() {
    let Some((_g, t, r)) = ready_rootfs() else {
        return;
    };
    let store = t.path().join("store");
    let out = run(
        &store,
        &r,
        &["--oom-score-adj", "500", "--shm-size", "8m"],
        &[
            "/bin/sh",
            "-c",
            "cat /proc/self/oom_score_adj; cat /proc/self/mountinfo",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().next(), Some("500"), "{text}");
    let shm = text
        .lines()
        .find(|l| l.contains(" /dev/shm "))
        .unwrap_or_else(|| panic!("no /dev/shm: {text}"));
    assert!(shm.contains("size=8192k"), "{shm}");
    assert!(leftover_cgroups().is_empty());
}

/// `imgctl build --device` (Docker allows it on build): every RUN step has the
/// node; without the flag the same step fails; `--shm-size` reaches the steps.
#[test]
fn build_run_steps_get_devices_and_shm_size() {
    let layout = fixture::busybox_layout();
    if !ready()
        || !require(crate::common::have("skopeo"), "skopeo")
        || !fixture::require_layout(&layout, "busybox.sh")
        || !require(Path::new("/dev/loop-control").exists(), "/dev/loop-control")
    {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let store = t.path().join("store");
    fixture::seed_store(&layout, &store, "docker.io/library/busybox:latest");
    let ctx = t.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Buildfile"),
        "FROM busybox\nRUN test -c /dev/lc && grep ' /dev/shm ' /proc/mounts > /shm\n",
    )
    .unwrap();
    let build = |extra: &[&str], tag: &str| {
        let mut c = crate::common::imgctl(&store);
        c.args(["build", "--no-cache", "-t", tag])
            .args(extra)
            .arg(&ctx);
        crate::common::output(&mut c)
    };
    let out = build(
        &["--device", "/dev/loop-control:/dev/lc", "--shm-size", "4m"],
        "dev:1",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shm = crate::common::ok(
        crate::common::imgctl(&store).args(["run", "--rm", "dev:1", "cat", "/shm"]),
    );
    assert!(shm.contains("size=4096k"), "{shm}");
    let out = build(&[], "dev:2");
    assert!(!out.status.success(), "the step passed without --device");
    let (code, err) = crate::common::fails(
        crate::common::imgctl(&store)
            .args(["build", "--device", "/etc/passwd", "-t", "dev:3"])
            .arg(&ctx),
    );
    assert_eq!(code, 125, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--device"), "{err}");
}

/// `run --help` lists every resource and device control with its cgroup v1/v2
/// support, and the README's table names each of them.
#[test]
fn help_and_readme_list_every_control_with_v1_v2_support() {
    let help = crate::common::ok(Command::new(crate::common::imgctl_bin()).args(["run", "--help"]));
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let flags = [
        "--memory",
        "--memory-reservation",
        "--memory-swap",
        "--memory-swappiness",
        "--oom-kill-disable",
        "--oom-score-adj",
        "--kernel-memory",
        "--cpus",
        "--cpu-shares",
        "--cpu-period",
        "--cpu-quota",
        "--cpu-rt-runtime",
        "--cpu-rt-period",
        "--cpuset-cpus",
        "--cpuset-mems",
        "--pids-limit",
        "--blkio-weight",
        "--blkio-weight-device",
        "--device-read-bps",
        "--device-write-bps",
        "--device-read-iops",
        "--device-write-iops",
        "--device",
        "--device-cgroup-rule",
        "--privileged",
        "--hugetlb",
        "--shm-size",
    ];
    // clap's long help: the flag line, then its indented description.
    let mut blocks: Vec<String> = Vec::new();
    for line in help.lines() {
        let indent = line.len() - line.trim_start().len();
        if line.trim_start().starts_with('-') && indent <= 6 {
            blocks.push(String::new());
        }
        if let Some(b) = blocks.last_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    for f in flags {
        let block = blocks
            .iter()
            .find(|b| b.split_whitespace().any(|w| w.trim_end_matches(',') == f))
            .unwrap_or_else(|| panic!("run --help has no {f}"));
        let says = block.contains("v1")
            || block.contains("v2")
            || block.contains("any cgroup")
            || block.contains("as Docker");
        assert!(
            says,
            "run --help: {f} does not say its cgroup v1/v2 support: {block}"
        );
        let in_readme = ["`", ",", " "]
            .iter()
            .any(|end| readme.contains(&format!("{f}{end}")));
        assert!(in_readme, "README has no {f}");
    }
}
