//! Helpers for the sandbox tests: the probe program (built once with
//! `gcc -static`), a busybox rootfs with the probe in it, and a lock that runs the
//! cgroup-creating tests one at a time so "no cgroup left behind" is checkable.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock};

use super::{have, is_root, require, tempdir};

/// Serialises the tests that create containers.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The compiled probe, or None (with a skip message) when gcc is missing.
pub fn probe_bin() -> Option<PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        if !have("gcc") {
            return None;
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/probe/probe.c");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("probe");
        let st = Command::new("gcc")
            .args(["-static", "-O2", "-o"])
            .arg(&out)
            .arg(&src)
            .status()
            .expect("run gcc");
        assert!(
            st.success(),
            "gcc -static failed to build {}",
            src.display()
        );
        Some(out)
    })
    .clone()
}

/// Prerequisites of every sandbox test: root, gcc for the probe, busybox-static.
pub fn ready() -> bool {
    require(is_root(), "root (namespaces, cgroups, mounts)")
        && require(have("gcc"), "gcc (builds the static probe)")
        && require(
            Path::new("/bin/busybox").is_file(),
            "busybox-static at /bin/busybox",
        )
        && require(
            Path::new("/sys/fs/cgroup").is_dir(),
            "cgroupfs at /sys/fs/cgroup",
        )
}

/// A fresh rootfs: busybox, a few applet links, /etc/passwd and group, the probe.
pub fn rootfs(dir: &Path) -> PathBuf {
    let r = dir.join("rootfs");
    for d in ["bin", "etc", "tmp"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", r.join("bin/busybox")).unwrap();
    for a in [
        "sh", "ls", "cat", "echo", "true", "sleep", "id", "touch", "chown",
    ] {
        std::os::unix::fs::symlink("busybox", r.join("bin").join(a)).unwrap();
    }
    std::fs::copy(probe_bin().expect("probe"), r.join("probe")).unwrap();
    std::fs::write(
        r.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
    )
    .unwrap();
    std::fs::write(r.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    std::process::Command::new("chmod")
        .arg("1777")
        .arg(r.join("tmp"))
        .status()
        .unwrap();
    r
}

/// What most sandbox tests start from: the prerequisites ([`ready`]), the sandbox lock
/// ([`serial`]), a temp dir and a rootfs in it holding the probe ([`rootfs`]). None
/// (skip) when a prerequisite is missing. Bind as `(_g, t, r)` so the rootfs and the
/// dir go before the lock, as separate `let`s would.
pub fn ready_rootfs() -> Option<(MutexGuard<'static, ()>, tempfile::TempDir, PathBuf)> {
    if !ready() {
        return None;
    }
    let g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
    Some((g, t, r))
}

/// The parent cgroup of this test process's containers, so leftovers are
/// checked only among them (other tests may run containers meanwhile).
pub fn cgroup_parent() -> String {
    format!("imgctl-test-{}", std::process::id())
}

/// `imgctl run --rm --rootfs ROOTFS --cgroup-parent <test parent> <flags> <cmd>`.
pub fn run(store: &Path, rootfs: &Path, flags: &[&str], cmd: &[&str]) -> Output {
    let parent = cgroup_parent();
    let mut c = super::imgctl(store);
    c.args(["run", "--rm", "--cgroup-parent", &parent, "--rootfs"])
        .arg(rootfs)
        .args(flags)
        .args(cmd);
    let out = super::output(&mut c);
    // An empty parent goes; one with a leftover child stays for the checks.
    for c in CONTROLLERS {
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(c).join(&parent));
    }
    out
}

/// Where a container's cgroup directories can be: v1 controllers, the hybrid
/// cgroup2 mount, the v2 root.
const CONTROLLERS: [&str; 10] = [
    "memory", "cpu", "cpuacct", "cpuset", "pids", "blkio", "devices", "freezer", "unified", "",
];

/// Run the probe and parse its report; panics with stderr when it fails.
pub fn probe(store: &Path, rootfs: &Path, flags: &[&str], mode: &[&str]) -> serde_json::Value {
    let mut cmd = vec!["/probe"];
    cmd.extend_from_slice(mode);
    let out = run(store, rootfs, flags, &cmd);
    assert!(
        out.status.success(),
        "probe {flags:?} {mode:?} failed with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "probe output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Container cgroups left under this test process's parent, in every v1
/// controller (or the v2 root and the hybrid cgroup2 mount). Empty parents are
/// removed on the way.
pub fn leftover_cgroups() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let parent = cgroup_parent();
    for c in CONTROLLERS {
        let dir = Path::new("/sys/fs/cgroup").join(c).join(&parent);
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.push(e.path());
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }
    out
}

/// Host mounts whose path mentions `needle`.
pub fn mounts_mentioning(needle: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle.to_string_lossy().as_ref()))
        .map(String::from)
        .collect()
}
