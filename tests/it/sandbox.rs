//! Integration tests: the sandbox and `imgctl run` / `imgctl bundle`, as root on the
//! real kernel. Each test runs the static probe (testdata/probe/probe.c) inside a
//! container and asserts what it reports, or asserts the exit status.
//!
//! Isolation, limits, capabilities, seccomp and user namespaces here; the process as
//! Docker users see it in [`process`], hostile root file systems and races in [`escape`].

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::common::sandbox::{
    leftover_cgroups, mounts_mentioning, probe, ready, ready_rootfs, rootfs, run, serial,
};
use crate::common::{fails, have, imgctl, output, require, tempdir};

mod escape;
mod process;

/// Docker's default capability set as the kernel prints it in /proc/PID/status.
const DOCKER_CAPS: &str = "00000000a80425fb";
const EPERM: i64 = 1;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn pid1_hostname_private_mounts_and_only_lo() {
    let Some((_g, t, r)) = ready_rootfs() else {
        return;
    };
    let p = probe(
        t.path(),
        &r,
        &["--hostname", "box1", "--network", "none"],
        &[],
    );
    assert_eq!(p["pid"], 1);
    assert_eq!(p["hostname"], "box1");
    assert_eq!(p["net_devices"], serde_json::json!(["lo"]));
    // Only the container's own mounts: nothing from the host's tree (the temp dir,
    // /work, /var, /home, /boot...) and the root is the first entry.
    let mounts: Vec<&str> = p["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].as_str().unwrap())
        .collect();
    assert_eq!(mounts[0], "/");
    let allowed = [
        "/",
        "/proc",
        "/dev",
        "/sys",
        "/etc/hostname",
        "/etc/hosts",
        "/etc/resolv.conf",
    ];
    for m in &mounts {
        assert!(
            allowed
                .iter()
                .any(|a| m == a || (a.len() > 1 && m.starts_with(&format!("{a}/")))),
            "unexpected mount {m} in {mounts:?}"
        );
    }
    // No host descriptor leaked in (CVE-2024-21626).
    assert_eq!(p["fds"], serde_json::json!([0, 1, 2]));
    // Each namespace is new except user (none asked).
    let host_ns = |n: &str| {
        std::fs::read_link(format!("/proc/self/ns/{n}"))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    for n in ["pid", "mnt", "uts", "ipc", "net", "cgroup"] {
        assert_ne!(
            p["namespaces"][n].as_str().unwrap(),
            host_ns(n),
            "{n} namespace is the host's"
        );
    }
    assert_eq!(p["namespaces"]["user"].as_str().unwrap(), host_ns("user"));
}

#[test]
fn network_host_shares_the_host_devices() {
    let Some((_g, t, r)) = ready_rootfs() else {
        return;
    };
    let host_devices = || {
        std::fs::read_to_string("/proc/net/dev")
            .unwrap()
            .lines()
            .count()
            - 2
    };
    // Other containers' veths come and go on a shared host (and the kernel
    // removes an ended container's pair moments after it ends): compare only
    // when the host's count held still across the probe.
    for attempt in 0.. {
        let before = host_devices();
        let p = probe(t.path(), &r, &["--network", "host"], &[]);
        let n = p["net_devices"].as_array().unwrap().len();
        if before == host_devices() || attempt == 4 {
            assert_eq!(n, before);
            break;
        }
    }
}

#[test]
fn memory_limit_oom_kill_exits_137() {
    let Some((_g, t, r)) = ready_rootfs() else {
        return;
    };
    let o = run(
        t.path(),
        &r,
        &["--memory", "32m", "--memory-swap", "32m"],
        &["/probe", "alloc", "64"],
    );
    assert_eq!(o.status.code(), Some(137), "stderr: {}", stderr(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("survived"));
    assert!(stderr(&o).contains("out of memory"), "{}", stderr(&o));
    // The same allocation fits without the limit: the limit is what killed it.
    let o = run(
        t.path(),
        &r,
        &["--memory", "128m"],
        &["/probe", "alloc", "64"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let Some((_g, t, r)) = ready_rootfs() else {
        return;
    };
    let o = run(
        t.path(),
        &r,
        &["--pids-limit", "20"],
        &["/probe", "forkbomb", "200"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["forked"].as_i64().unwrap() < 20, "{v}");
    assert_eq!(v["errno"], libc::EAGAIN as i64, "{v}");
}

#[test]
fn cpus_half_is_throttled() {
    let Some((_g, t, r)) = ready_rootfs() else {
        return;
    };
    // The largest cpu.shares keeps the group competitive on a busy host, so only
    // the quota holds it back.
    let p = probe(
        t.path(),
        &r,
        &["--cpus", "0.5", "--cpu-shares", "262144"],
        &["burn", "400"],
    );
    assert_eq!(p["cgroup"]["cpu_quota"], "50000", "{}", p["cgroup"]);
    let stat = p["cgroup"]["cpu_stat"].as_str().unwrap();
    let throttled: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("nr_throttled "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(throttled > 0, "no throttling in cpu.stat: {stat}");
}

#[test]
fn cpuset_cpus_pins_the_process() {
    let Some((_g, t, r)) = ready_rootfs() else {
        return;
    };
    let p = probe(t.path(), &r, &["--cpuset-cpus", "0"], &[]);
    assert_eq!(p["cpus_allowed_list"], "0");
    assert_eq!(p["cgroup"]["cpuset_cpus"], "0");
}

#[test]
fn capability_sets_default_and_drop_all() {
    let Some((_g, t, r)) = ready_rootfs() else {
        return;
    };
    // SECURITY-TESTS 37: bounding = effective = permitted = Docker's set; no
    // inheritable, no ambient.
    let p = probe(t.path(), &r, &[], &[]);
    for set in ["bounding", "effective", "permitted"] {
        assert_eq!(p["caps"][set], DOCKER_CAPS, "{set}");
    }
    assert_eq!(p["caps"]["inheritable"], "0000000000000000");
    assert_eq!(p["caps"]["ambient"], "0000000000000000");
    assert_eq!(p["errno"]["chown"], 0);

    let p = probe(t.path(), &r, &["--cap-drop", "ALL"], &[]);
    for set in [
        "bounding",
        "effective",
        "permitted",
        "inheritable",
        "ambient",
    ] {
        assert_eq!(p["caps"][set], "0000000000000000", "{set}");
    }
    assert_eq!(p["errno"]["chown"], EPERM);

    let p = probe(
        t.path(),
        &r,
        &["--cap-drop", "ALL", "--cap-add", "chown"],
        &[],
    );
    assert_eq!(p["caps"]["effective"], "0000000000000001");
    assert_eq!(p["errno"]["chown"], 0);
}

#[test]
fn default_seccomp_blocks_with_eperm_and_unconfined_does_not() {
    let Some((_g, t, r)) = ready_rootfs() else {
        return;
    };
    let p = probe(t.path(), &r, &[], &[]);
    assert_eq!(p["seccomp"], 2, "filter mode");
    for call in [
        "unshare_user",
        "unshare_mount",
        "mount",
        "keyctl",
        "io_uring_setup",
    ] {
        assert_eq!(p["errno"][call], EPERM, "{call}: {}", p["errno"]);
    }
    // The 32-bit and x32 entry points are filtered too (SECURITY-TESTS 38).
    if cfg!(target_arch = "x86_64") {
        assert_eq!(p["errno"]["unshare_user_i386"], EPERM, "{}", p["errno"]);
        assert_eq!(p["errno"]["unshare_user_x32"], EPERM, "{}", p["errno"]);
    }
    let p = probe(t.path(), &r, &["--security-opt", "seccomp=unconfined"], &[]);
    assert_eq!(p["seccomp"], 0);
    // Unfiltered, the calls reach the kernel (the filter is what refused them).
    assert_ne!(p["errno"]["unshare_user"], EPERM);
    if cfg!(target_arch = "x86_64") {
        assert_ne!(p["errno"]["unshare_user_i386"], EPERM);
    }
    // keyctl is then answered by the kernel itself (a real keyring id or ENOKEY),
    // not refused by a filter.
    assert_ne!(p["errno"]["keyctl"], EPERM);

    // A profile file in Docker's format: deny only uname... by allowing all else.
    let prof = t.path().join("profile.json");
    std::fs::write(
        &prof,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["keyctl"],"action":"SCMP_ACT_ERRNO","errnoRet":38}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", prof.display());
    let p = probe(t.path(), &r, &["--security-opt", &opt], &[]);
    assert_eq!(p["seccomp"], 2);
    assert_eq!(p["errno"]["keyctl"], 38);
}

#[test]
fn no_new_privs_only_with_the_option() {
    let Some((_g, t, r)) = ready_rootfs() else {
        return;
    };
    assert_eq!(probe(t.path(), &r, &[], &[])["no_new_privs"], 0);
    let p = probe(t.path(), &r, &["--security-opt", "no-new-privileges"], &[]);
    assert_eq!(p["no_new_privs"], 1);
    assert_eq!(p["seccomp"], 2);
}

/// With no_new_privs a setuid-root binary does not elevate (SECURITY-TESTS 44);
/// without it, it does (so the check can fail).
#[test]
fn no_new_privs_stops_setuid() {
    let Some((_g, t, r)) = ready_rootfs() else {
        return;
    };
    std::fs::copy(r.join("probe"), r.join("probe-suid")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        r.join("probe-suid"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    let p = probe(t.path(), &r, &["-u", "nobody"], &[]);
    assert_eq!(p["euid"], 65534);
    let o = run(t.path(), &r, &["-u", "nobody"], &["/probe-suid"]);
    let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(p["euid"], 0, "setuid works without no_new_privs");
    let o = run(
        t.path(),
        &r,
        &["-u", "nobody", "--security-opt", "no-new-privileges"],
        &["/probe-suid"],
    );
    let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(p["euid"], 65534, "no_new_privs keeps the caller's uid");
}

#[test]
fn userns_root_inside_is_unprivileged_outside() {
    let Some((_g, t, r)) = ready_rootfs() else {
        return;
    };
    let vol = t.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    Command::new("chmod")
        .arg("1777")
        .arg(&vol)
        .status()
        .unwrap();
    let bind = format!("{}:/vol", vol.display());
    let p = probe(t.path(), &r, &["--uidmap", "0:200000:65536"], &[]);
    assert_eq!(p["uid"], 0);
    let map: Vec<&str> = p["uid_map"].as_str().unwrap().split_whitespace().collect();
    assert_eq!(map, ["0", "200000", "65536"]);
    assert_ne!(
        p["namespaces"]["user"].as_str().unwrap(),
        std::fs::read_link("/proc/self/ns/user")
            .unwrap()
            .to_str()
            .unwrap()
    );
    let o = run(
        t.path(),
        &r,
        &["--uidmap", "0:200000:65536", "-v", &bind],
        &["/probe", "touch", "/vol/made-inside"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let inside: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(inside["uid"], 0, "root owns it inside");
    let meta = std::fs::metadata(vol.join("made-inside")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (200000, 200000),
        "an unprivileged uid owns it outside"
    );
    // The image's files (owned by 0 on disk) belong to the container's root.
    let o = run(
        t.path(),
        &r,
        &["--userns", "auto"],
        &["/bin/sh", "-c", "touch /tmp/x && stat -c %u /probe"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "0");
    assert_eq!(
        std::fs::metadata(r.join("tmp/x")).unwrap().uid(),
        0,
        "idmapped rootfs: written as 0 on disk"
    );
}

#[test]
fn masked_and_readonly_proc_paths_and_no_way_out() {
    let Some((_g, t, r)) = ready_rootfs() else {
        return;
    };
    let marker = t.path().join("host-marker");
    std::fs::write(&marker, "host").unwrap();
    let env = format!("PROBE_MARKER={}", marker.display());
    let p = probe(t.path(), &r, &["-e", &env], &[]);
    assert_eq!(p["masked"]["/proc/keys"], 0, "masked file reads empty");
    assert_eq!(p["masked"]["/proc/timer_list"], 0);
    assert_eq!(
        p["masked"]["/sys/firmware entries"], 0,
        "masked dir is empty"
    );
    assert_ne!(
        p["errno"]["sysrq_open"], 0,
        "/proc/sysrq-trigger must not be writable"
    );
    assert_eq!(
        p["errno"]["proc_sys_write"],
        libc::EROFS as i64,
        "/proc/sys is read-only"
    );
    assert_eq!(p["errno"]["mount"], EPERM);
    assert_eq!(p["errno"]["umount_proc"], EPERM);
    assert_eq!(p["host_marker_visible"], 0);
    assert_eq!(
        p["host_marker_after_chroot_escape"], 0,
        "a chroot escape ends in the container's root"
    );
}

pub(crate) fn validator(name: &str) -> jsonschema::Validator {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(name);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    jsonschema::validator_for(&v).unwrap_or_else(|e| panic!("{name} is not a valid schema: {e}"))
}

pub(crate) fn assert_valid(v: &jsonschema::Validator, doc: &serde_json::Value, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match its schema: {errors:#?}"
    );
}

/// The cgroup v2 device filter (an eBPF program) on the real kernel. On this hybrid
/// host the hugetlb-only cgroup2 mount still runs device programs, so a process in
/// a cgroup2 group with Docker's allow-list may use /dev/null but not /dev/kmsg (1:11).
#[test]
fn cgroup2_device_filter_enforces_the_allow_list() {
    let unified = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .map(Path::new)
        .find(|p| {
            p.join("cgroup.procs").exists()
                && nix::sys::statfs::statfs(*p).is_ok_and(|s| s.filesystem_type().0 == 0x6367_7270)
        });
    if !ready() || !require(unified.is_some(), "a cgroup2 mount") {
        return;
    }
    let dir = unified
        .unwrap()
        .join(format!("imgctl-test-devfilter-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    let attached =
        imgctl::sandbox::devfilter::attach(&dir, &imgctl::container::default_device_rules());
    let res = attached.as_ref().ok().map(|_| {
        use std::os::unix::process::CommandExt;
        let procs = dir.join("cgroup.procs");
        let mut c = Command::new("/bin/busybox");
        c.args(["sh", "-c", "echo x > /dev/null && echo null-ok; dd if=/dev/kmsg of=/dev/null count=0 2>/dev/null && echo kmsg-ok; true"]);
        // SAFETY: only a write(2) of our own pid between fork and exec.
        unsafe {
            c.pre_exec(move || std::fs::write(&procs, std::process::id().to_string()));
        }
        output(&mut c)
    });
    let _ = std::fs::remove_dir(&dir);
    attached.expect("attach the device filter");
    let out = String::from_utf8_lossy(&res.expect("ran").stdout).into_owned();
    assert!(out.contains("null-ok"), "/dev/null must stay usable: {out}");
    assert!(!out.contains("kmsg-ok"), "/dev/kmsg must be denied: {out}");
    // Outside the group the same open works: the filter is what denied it.
    let o = output(Command::new("/bin/busybox").args([
        "dd",
        "if=/dev/kmsg",
        "of=/dev/null",
        "count=0",
    ]));
    assert!(o.status.success());
}

/// overlayfs cannot take an idmapped mount: with a user namespace the rootfs is a
/// cached copy with shifted owners, under a per-container overlay, so writes of
/// one container never reach the next.
#[test]
fn userns_on_an_overlay_rootfs() {
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let lower = rootfs(t.path());
    let (up, work, merged) = (
        t.path().join("up"),
        t.path().join("work"),
        t.path().join("merged"),
    );
    for d in [&up, &work, &merged] {
        std::fs::create_dir(d).unwrap();
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        up.display(),
        work.display()
    );
    let st = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &data])
        .arg(&merged)
        .status()
        .unwrap();
    if !require(st.success(), "overlayfs") {
        return;
    }
    let flags = ["--uidmap", "0:400000:65536"];
    let first = run(
        t.path(),
        &merged,
        &flags,
        &[
            "/bin/sh",
            "-c",
            "stat -c %u /probe && touch /tmp/mine && echo wrote",
        ],
    );
    let second = run(
        t.path(),
        &merged,
        &flags,
        &[
            "/bin/sh",
            "-c",
            "test -e /tmp/mine && echo leaked || echo clean",
        ],
    );
    let _ = Command::new("umount").arg(&merged).status();
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(
        String::from_utf8_lossy(&first.stdout),
        "0\nwrote\n",
        "image files belong to the container's root"
    );
    assert_eq!(String::from_utf8_lossy(&second.stdout).trim(), "clean");
    assert!(
        !up.join("tmp/mine").exists(),
        "the shared overlay upper was not written"
    );
    // A directory's copy is private to its container and went with it (`--rm`);
    // nothing cheap tells whether the directory changed, so it is not cached.
    let cache = std::fs::read_dir(t.path().join("cache/userns"))
        .map(|rd| rd.count())
        .unwrap_or(0);
    assert_eq!(cache, 0, "no shared copy of a --rootfs directory");
    assert!(
        mounts_mentioning(t.path()).is_empty(),
        "{:?}",
        mounts_mentioning(t.path())
    );
}

/// The cgroup v2 manager on the real kernel: on this hybrid host the cgroup2 mount
/// at /sys/fs/cgroup/unified (hugetlb only) serves as the root. The group is made,
/// the process joins it (its /proc/self/cgroup is "0::/" in its cgroup namespace),
/// the eBPF device filter denies a node made with mknod unless --privileged, and
/// the group is gone afterwards.
#[test]
fn cgroup2_manager_on_the_real_kernel() {
    let unified = Path::new("/sys/fs/cgroup/unified");
    let is_v2 =
        |p: &Path| nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type().0 == 0x6367_7270);
    if !ready()
        || !require(
            is_v2(unified),
            "a cgroup2 mount at /sys/fs/cgroup/unified (hybrid host)",
        )
    {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
    let script = "mknod /tmp/kmsg c 1 11 && dd if=/tmp/kmsg of=/dev/null count=0 2>/dev/null && echo opened; \
                  rm -f /tmp/kmsg; grep '^0::' /proc/self/cgroup";
    let base = [
        "--cgroup-root",
        "/sys/fs/cgroup/unified",
        "--pids-limit",
        "-1",
    ];
    let o = run(t.path(), &r, &base, &["/bin/sh", "-c", script]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "0::/\n",
        "denied by the device filter"
    );
    let mut privileged = base.to_vec();
    privileged.push("--privileged");
    let o = run(t.path(), &r, &privileged, &["/bin/sh", "-c", script]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "opened\n0::/\n",
        "{}",
        stderr(&o)
    );
    // The groups were made under the test's parent on the cgroup2 mount, and are gone.
    assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
}

/// Regression: with a user namespace, a rootfs and a volume under a 0700 directory
/// (umoci bundles, private stores) are still reached: they are opened before the
/// child becomes root of its namespace, and mounted through those descriptors.
#[test]
fn userns_with_everything_under_a_private_directory() {
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let private = t.path().join("private");
    std::fs::create_dir(&private).unwrap();
    let r = rootfs(&private);
    let vol = private.join("vol");
    std::fs::create_dir(&vol).unwrap();
    Command::new("chmod")
        .arg("1777")
        .arg(&vol)
        .status()
        .unwrap();
    Command::new("chmod")
        .arg("0700")
        .arg(&private)
        .status()
        .unwrap();
    let bind = format!("{}:/vol", vol.display());
    let o = run(
        t.path(),
        &r,
        &["--uidmap", "0:500000:65536", "-v", &bind],
        &["/bin/sh", "-c", "touch /vol/ok && stat -c %u /probe"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "0");
    assert_eq!(std::fs::metadata(vol.join("ok")).unwrap().uid(), 500000);
}

/// sha256 of the imgctl binary under test.
pub(crate) fn imgctl_sha256() -> String {
    let bytes = std::fs::read(crate::common::imgctl_bin()).unwrap();
    imgctl::oci::Digest::of(&bytes).to_string()
}

/// Copy the host's dynamic loader and the libraries imgctl links against into
/// the rootfs, at the same paths, so imgctl's binary can run inside it (as it
/// would in any glibc image).
pub(crate) fn add_imgctl_libs(r: &Path) {
    let out = Command::new("ldd")
        .arg(crate::common::imgctl_bin())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for lib in text
        .split_whitespace()
        .filter(|w| w.starts_with('/') && Path::new(w).is_file())
    {
        let dst = r.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(lib, dst).unwrap();
    }
}
