//! Integration tests: the sandbox and `imgctl run` / `imgctl bundle`, as root on the
//! real kernel. Each test runs the static probe (testdata/probe/probe.c) inside a
//! container and asserts what it reports, or asserts the exit status.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::common::sandbox::{
    leftover_cgroups, mounts_mentioning, probe, ready, rootfs, run, serial,
};
use crate::common::{fails, have, imgctl, output, require, tempdir};

/// Docker's default capability set as the kernel prints it in /proc/PID/status.
const DOCKER_CAPS: &str = "00000000a80425fb";
const EPERM: i64 = 1;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn pid1_hostname_private_mounts_and_only_lo() {
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
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
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
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
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
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
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
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
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
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
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
    let p = probe(t.path(), &r, &["--cpuset-cpus", "0"], &[]);
    assert_eq!(p["cpus_allowed_list"], "0");
    assert_eq!(p["cgroup"]["cpuset_cpus"], "0");
}

#[test]
fn capability_sets_default_and_drop_all() {
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
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
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
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
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
    assert_eq!(probe(t.path(), &r, &[], &[])["no_new_privs"], 0);
    let p = probe(t.path(), &r, &["--security-opt", "no-new-privileges"], &[]);
    assert_eq!(p["no_new_privs"], 1);
    assert_eq!(p["seccomp"], 2);
}

/// With no_new_privs a setuid-root binary does not elevate (SECURITY-TESTS 44);
/// without it, it does (so the check can fail).
#[test]
fn no_new_privs_stops_setuid() {
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
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
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
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
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
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

#[test]
fn exit_codes_signals_and_init() {
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
    assert_eq!(
        run(t.path(), &r, &[], &["/probe", "exit", "42"])
            .status
            .code(),
        Some(42)
    );
    let p = probe(t.path(), &r, &["--init"], &[]);
    assert_eq!(p["ppid"], 1, "the command is a child of the init");
    assert_ne!(p["pid"], 1);
    // SIGTERM to imgctl reaches the command through the init: 128 + 15.
    let mut c = imgctl(t.path());
    c.args(["run", "--rm", "--init", "--rootfs"])
        .arg(&r)
        .args(["/bin/sleep", "30"]);
    let child = c.spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    let start = std::time::Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143));
    assert!(start.elapsed().as_secs() < 10);
    // The init is not writable through /proc/1/exe (CVE-2019-5736), and imgctl's
    // binary is unchanged.
    let before = std::fs::read(crate::common::imgctl_bin()).unwrap();
    let o = run(
        t.path(),
        &r,
        &["--init", "--cap-add", "SYS_PTRACE"],
        &["/bin/sh", "-c", "echo x >> /proc/1/exe"],
    );
    assert!(!o.status.success(), "writing /proc/1/exe succeeded");
    assert_eq!(before, std::fs::read(crate::common::imgctl_bin()).unwrap());
    // Even a container allowed to ptrace finds only a sealed in-memory copy
    // behind /proc/1/exe, never imgctl's file.
    let o = run(
        t.path(),
        &r,
        &["--init", "--cap-add", "SYS_PTRACE"],
        &[
            "/bin/sh",
            "-c",
            "readlink /proc/1/exe; grep -E '^(CapEff|NoNewPrivs)' /proc/1/status; \
             ls /proc/1/fd | tr '\\n' ' '; echo; ls /proc/1/cwd/probe /proc/1/root/probe",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("/memfd:imgctl-init"), "{out}");
    assert!(
        out.contains("CapEff:\t0000000000000000") && out.contains("NoNewPrivs:\t1"),
        "{out}"
    );
    // Its descriptors are stdio only; its cwd and root are the container's.
    assert!(out.contains("\n0 1 2 \n"), "{out}");
    assert!(
        out.contains("/proc/1/cwd/probe") && out.contains("/proc/1/root/probe"),
        "{out}"
    );
    // Without CAP_SYS_PTRACE the init cannot even be looked at.
    let o = run(
        t.path(),
        &r,
        &["--init"],
        &["/bin/sh", "-c", "readlink /proc/1/exe"],
    );
    assert!(
        !o.status.success(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn bad_input_one_line_errors_and_nothing_left_behind() {
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
    std::fs::create_dir(r.join("adir")).unwrap();
    let cases: &[(&[&str], &[&str], i32, &str)] = &[
        (&["--memory", "12q"], &["/probe"], 125, "--memory"),
        (&["--cpus", "-1"], &["/probe"], 125, "--cpus"),
        (&["--cap-add", "CAP_FLY"], &["/probe"], 125, "CAP_FLY"),
        (
            &["--security-opt", "seccomp=/nonexistent/p.json"],
            &["/probe"],
            125,
            "/nonexistent/p.json",
        ),
        (
            &["--security-opt", "apparmor=docker-default"],
            &["/probe"],
            125,
            "apparmor",
        ),
        (&[], &["/no/such/binary"], 127, "no such file"),
        (&[], &["nosuchcommand"], 127, "not found"),
        (&[], &["/adir"], 126, "permission denied"),
    ];
    for (flags, cmd, code, needle) in cases {
        let o = run(t.path(), &r, flags, cmd);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(*code), "{flags:?} {cmd:?}: {e}");
        assert_eq!(e.trim_end().lines().count(), 1, "one line: {e}");
        assert!(
            e.starts_with("imgctl: ") && e.contains(needle),
            "{flags:?}: {e}"
        );
    }
    let mut c = imgctl(t.path());
    c.args(["run", "--rm", "--pull", "never", "no-such-image"]);
    let (code, e) = fails(&mut c);
    assert_eq!(code, 125);
    assert!(e.contains("no-such-image"), "{e}");
    assert!(
        leftover_cgroups().is_empty(),
        "cgroups left: {:?}",
        leftover_cgroups()
    );
    assert!(
        mounts_mentioning(t.path()).is_empty(),
        "mounts left: {:?}",
        mounts_mentioning(t.path())
    );
    assert!(
        std::fs::read_dir(t.path().join("containers"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    );
}

#[test]
fn fd_leaks_and_proc_self_fd_workdir_are_refused() {
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
    // imgctl started with an inherited, non-close-on-exec descriptor 7 pointing at
    // a host directory (the CVE-2024-21626 set-up).
    let leak = |args: &[&str]| {
        use std::os::unix::process::CommandExt;
        let mut c = imgctl(t.path());
        c.args(["run", "--rm", "--rootfs"]).arg(&r).args(args);
        let host_dir = std::fs::File::open("/").unwrap();
        let raw = std::os::fd::AsRawFd::as_raw_fd(&host_dir);
        // SAFETY: dup2 in the child before exec.
        unsafe {
            c.pre_exec(move || {
                if libc::dup2(raw, 7) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let o = output(&mut c);
        drop(host_dir);
        o
    };
    let o = leak(&["/probe"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(p["fds"], serde_json::json!([0, 1, 2]));
    for n in [3, 7, 10] {
        let wd = format!("/proc/self/fd/{n}");
        let o = leak(&["-w", &wd, "/probe"]);
        assert_eq!(o.status.code(), Some(125), "workdir {wd}: {}", stderr(&o));
    }
}

#[test]
fn hostile_rootfs_with_proc_symlink_is_refused() {
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
    std::fs::create_dir(r.join("elsewhere")).unwrap();
    std::os::unix::fs::symlink("/elsewhere", r.join("proc")).unwrap();
    let o = run(t.path(), &r, &[], &["/probe"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("ordinary directory"), "{}", stderr(&o));
    assert!(mounts_mentioning(t.path()).is_empty());
    assert!(leftover_cgroups().is_empty());
}

#[test]
fn user_flag_resolves_in_the_image() {
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
    let p = probe(t.path(), &r, &["-u", "nobody"], &[]);
    assert_eq!(
        (p["uid"].as_i64(), p["gid"].as_i64()),
        (Some(65534), Some(65534))
    );
    // Non-root after exec keeps no effective capabilities.
    assert_eq!(p["caps"]["effective"], "0000000000000000");
    let o = run(t.path(), &r, &["-u", "4294967295"], &["/probe"]);
    assert_eq!(o.status.code(), Some(125));
}

/// The same bundle run by imgctl (via `run` with the same flags), by crun and by runc gives
/// the same report for namespaces, capabilities, seccomp and limits. crun 1.8
/// refuses this hybrid host ("cgroups in hybrid mode not supported"); it runs when
/// the hugetlb-only cgroup2 mount is unmounted in a private mount namespace.
#[test]
fn bundle_runs_the_same_under_crun() {
    if !ready() || !require(have("crun") && have("unshare"), "crun and unshare") {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
    let flags = [
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "--cpus",
        "0.5",
        "--cap-drop",
        "NET_RAW",
        "--hostname",
        "same",
        // A bundle carries no bridge endpoint (crun/runc would give it none): compare
        // with imgctl's own run without one.
        "--network",
        "none",
    ];
    let bundle = t.path().join("bundle");
    let mut c = imgctl(t.path());
    c.args(["bundle", "--rootfs"])
        .arg(&r)
        .args(flags)
        .arg(&bundle)
        .arg("/probe");
    crate::common::ok(&mut c);
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["root"]["path"], r.to_str().unwrap());

    let ours = probe(t.path(), &r, &flags, &[]);
    let script = "if grep -q ' /sys/fs/cgroup/unified ' /proc/self/mountinfo; then umount /sys/fs/cgroup/unified; fi; \
                  exec crun --cgroup-manager=cgroupfs run --bundle \"$0\" imgctl-test-crun";
    let o = Command::new("unshare")
        .args(["-m", "sh", "-c", script])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "crun failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let crun: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    same_report(&ours, &crun, "crun");
    // runc supports this hybrid host as it is.
    if have("runc") {
        let o = Command::new("runc")
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg("imgctl-test-runc")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "runc failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let runc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        same_report(&ours, &runc, "runc");
    }
}

/// The parts of two probe reports that must agree between runtimes.
fn same_report(ours: &serde_json::Value, theirs: &serde_json::Value, who: &str) {
    for k in [
        "pid",
        "hostname",
        "uid",
        "caps",
        "seccomp",
        "no_new_privs",
        "net_devices",
        "fds",
        "errno",
        "masked",
    ] {
        assert_eq!(ours[k], theirs[k], "{k} differs from {who}");
    }
    for k in ["memory_limit", "pids_max", "cpu_quota", "cpu_period"] {
        assert_eq!(
            ours["cgroup"][k], theirs["cgroup"][k],
            "cgroup {k} differs from {who}"
        );
    }
    let ns = |v: &serde_json::Value| {
        let host = |n: &str| {
            std::fs::read_link(format!("/proc/self/ns/{n}"))
                .unwrap()
                .to_string_lossy()
                .into_owned()
        };
        ["pid", "mnt", "uts", "ipc", "net", "cgroup", "user"]
            .iter()
            .map(|n| v["namespaces"][n].as_str().unwrap() == host(n))
            .collect::<Vec<bool>>()
    };
    assert_eq!(ns(ours), ns(theirs), "same namespaces shared with the host");
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

/// Every JSON imgctl stores for a container (config.json of `run` and of `bundle`)
/// and the seccomp profile it ships match the schemas in schemas/.
#[test]
fn stored_json_matches_schemas() {
    let profile: serde_json::Value =
        serde_json::from_str(imgctl::sandbox::seccomp::DEFAULT_PROFILE)
            .expect("default profile is JSON");
    assert_valid(
        &validator("seccomp-profile.schema.json"),
        &profile,
        "the default seccomp profile",
    );
    // A profile that is not in the format is rejected by the schema too.
    let bad = serde_json::json!({"defaultAction": "SCMP_ACT_MAYBE", "syscalls": []});
    assert!(!validator("seccomp-profile.schema.json").is_valid(&bad));

    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
    let cfg = validator("runtime-config.schema.json");
    let bundle = t.path().join("b");
    let mut c = imgctl(t.path());
    c.args(["bundle", "--rootfs"])
        .arg(&r)
        .args(["--uidmap", "0:300000:65536", "-u", "nobody"])
        .arg(&bundle)
        .args(["/probe", "x"]);
    crate::common::ok(&mut c);
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_valid(&cfg, &doc, "bundle config.json");

    // `run` without --rm keeps the container's config.json and exit code.
    let mut c = imgctl(t.path());
    c.args(["run", "--name", "kept", "--rootfs"])
        .arg(&r)
        .args(["/probe", "exit", "3"]);
    assert_eq!(output(&mut c).status.code(), Some(3));
    let dirs: Vec<_> = std::fs::read_dir(t.path().join("containers"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(dirs.len(), 1);
    let d = dirs[0].path();
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("config.json")).unwrap()).unwrap();
    assert_valid(&cfg, &doc, "stored config.json");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("state.json")).unwrap()).unwrap();
    assert_valid(
        &validator("container-state.schema.json"),
        &state,
        "stored state.json",
    );
    assert_eq!(state["exit_code"], 3);
    assert_eq!(state["name"], "kept");
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

/// `-t`: the command gets a pty as its controlling terminal and stdio; its exit
/// code comes back through imgctl.
#[test]
fn tty_gives_a_terminal() {
    if !ready()
        || !require(
            have("script"),
            "script (util-linux) to provide a host terminal",
        )
    {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
    let inner = format!(
        "{} run --rm -t --rootfs {} /bin/sh -c 'test -t 0 && test -t 1 && echo is-a-tty; exit 3'",
        crate::common::imgctl_bin().display(),
        r.display()
    );
    let mut c = Command::new("script");
    c.env("IMGCTL_ROOT", t.path())
        .args(["-qec", &inner, "/dev/null"]);
    let o = output(&mut c);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("is-a-tty"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(o.status.code(), Some(3));
    // Without -t, stdio are the pipes imgctl was given.
    let o = run(
        t.path(),
        &r,
        &[],
        &["/bin/sh", "-c", "test -t 1 || echo not-a-tty"],
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "not-a-tty");
}

/// An image config (ENTRYPOINT, CMD, ENV, WORKDIR, USER) drives the process, and
/// run flags override it as Docker does.
#[test]
fn image_config_entrypoint_cmd_env_workdir_user() {
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
    let cfg = t.path().join("config.json");
    std::fs::write(
        &cfg,
        r#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/bin/sh","-c"],"Cmd":["echo $GREETING $(pwd) $(id -u)"],"Env":["GREETING=hello"],"WorkingDir":"/srv/app","User":"nobody"}}"#,
    )
    .unwrap();
    let run_cfg = |extra: &[&str]| {
        let mut c = imgctl(t.path());
        c.args(["run", "--rm", "--rootfs"])
            .arg(&r)
            .arg("--image-config")
            .arg(&cfg)
            .args(extra);
        let o = output(&mut c);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(run_cfg(&[]), "hello /srv/app 65534");
    assert_eq!(
        run_cfg(&[
            "-e",
            "GREETING=hi",
            "-w",
            "/tmp",
            "-u",
            "0",
            "echo $GREETING $(pwd) $(id -u)"
        ]),
        "hi /tmp 0"
    );
    assert_eq!(run_cfg(&["--entrypoint", "/bin/echo", "plain"]), "plain");
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

/// SECURITY-TESTS 43 (CVE-2019-5736): nothing inside a container can open the
/// runtime's binary for writing: not `/proc/self/exe`, not `/proc/1/exe`, not any
/// process's exe, and not imgctl's own binary made to run inside the container by
/// a `#!/proc/self/exe` command (with an LD_PRELOAD payload in that process). No
/// imgctl process of the host is visible. imgctl's sha256 is unchanged.
#[test]
fn runtime_binary_cannot_be_opened_for_writing_from_inside() {
    if !ready() || !require(have("ldd"), "ldd (copies glibc into the test image)") {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let r = rootfs(t.path());
    let before = imgctl_sha256();
    let denied = |v: &serde_json::Value, what: &str| {
        for k in ["wronly", "rdwr", "reopen"] {
            let e = v[k].as_i64().unwrap_or_else(|| panic!("{what}: {v}"));
            assert_ne!(e, 0, "{what}: {k} open of the binary succeeded: {v}");
        }
    };
    for init in [false, true] {
        // Even with CAP_SYS_PTRACE, which lets /proc/PID/exe be opened at all.
        for extra in [&[][..], &["--cap-add", "SYS_PTRACE"][..]] {
            let mut flags: Vec<&str> = extra.to_vec();
            if init {
                flags.push("--init");
            }
            let p = probe(t.path(), &r, &flags, &["exe"]);
            let what = format!("{flags:?}");
            denied(&p["self"], &format!("{what} /proc/self/exe"));
            denied(&p["init"], &format!("{what} /proc/1/exe"));
            let procs = p["procs"].as_array().unwrap();
            let pids: Vec<i64> = procs.iter().map(|x| x["pid"].as_i64().unwrap()).collect();
            // Only the container's own processes: the probe, and the init.
            let expect: &[i64] = if init { &[1, 2] } else { &[1] };
            assert_eq!(pids, expect, "{what}: processes seen: {procs:?}");
            for x in procs {
                assert_ne!(x["wronly"], 0, "{what}: {x}");
                let exe = x["exe"].as_str().unwrap();
                let host_imgctl = crate::common::imgctl_bin();
                assert!(
                    !exe.starts_with(host_imgctl.to_str().unwrap()),
                    "{what}: a process runs imgctl's file: {x}"
                );
                if x["pid"] == 1 && init {
                    // execveat of the sealed memfd names it after the memfd.
                    let comm = x["comm"].as_str().unwrap();
                    assert!(comm.contains("imgctl-in"), "{what}: {x}");
                    assert!(
                        exe.is_empty() || exe.starts_with("/memfd:imgctl-init"),
                        "{x}"
                    );
                } else {
                    assert_eq!(x["comm"], "probe", "{what}: {x}");
                }
            }
        }
    }

    // `#!/proc/self/exe`: the kernel resolves the interpreter in the process that
    // calls execve. With glibc in the image, and the payload preloaded.
    add_imgctl_libs(&r);
    let so = Path::new(env!("CARGO_TARGET_TMPDIR")).join("evil.so");
    let st = Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/selfexe/evil.c"))
        .status()
        .unwrap();
    assert!(st.success(), "gcc failed to build evil.so");
    std::fs::copy(&so, r.join("evil.so")).unwrap();
    std::fs::write(r.join("evil"), "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(
        r.join("evil"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    for init in [false, true] {
        let mut flags = vec!["-e", "LD_PRELOAD=/evil.so"];
        if init {
            flags.push("--init");
        }
        let o = run(t.path(), &r, &flags, &["/evil"]);
        let out = String::from_utf8_lossy(&o.stdout);
        // Either the exec is refused, or whatever ran cannot write its binary.
        if let Some(line) = out.lines().find(|l| l.starts_with('{')) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            denied(&v, &format!("#!/proc/self/exe init={init}"));
        } else {
            assert!(!o.status.success(), "init={init}: {out} {}", stderr(&o));
        }
        eprintln!("#!/proc/self/exe init={init}: {} {out}", o.status);
    }
    assert_eq!(before, imgctl_sha256(), "imgctl's binary changed");
    assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
}

/// One entry of a [`snapshot`]: (path, mode, uid, gid, mtime, ino, contents).
type Entry = (String, u32, u32, u32, i64, u64, Vec<u8>);

/// What a host directory holds, deeply, to show a sentinel is unchanged.
fn snapshot(dir: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let m = std::fs::symlink_metadata(&d).unwrap();
        let data = if m.is_file() {
            std::fs::read(&d).unwrap()
        } else {
            Vec::new()
        };
        if m.is_dir() {
            for e in std::fs::read_dir(&d).unwrap() {
                todo.push(e.unwrap().path());
            }
        }
        out.push((
            d.display().to_string(),
            m.mode(),
            m.uid(),
            m.gid(),
            m.mtime(),
            m.ino(),
            data,
        ));
    }
    out.sort();
    out
}

/// A sentinel directory next to the rootfs, with a file in it.
fn sentinel(t: &Path) -> std::path::PathBuf {
    let s = t.join("host");
    std::fs::create_dir(&s).unwrap();
    std::fs::write(s.join("secret"), "host secret\n").unwrap();
    s
}

/// Host mounts on `/` (a mount landing on the host's root would add one).
fn host_root_mounts() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some("/"))
        .count()
}

/// The outcome every hostile-layout or raced start must have: success, or a
/// one-line `imgctl:` error.
fn clean_outcome(o: &std::process::Output, what: &str) {
    if o.status.success() {
        return;
    }
    let e = stderr(o);
    assert!(
        e.starts_with("imgctl: ") && e.trim_end().lines().count() == 1,
        "{what}: exit {} without a one-line error: {e:?}",
        o.status
    );
}

/// SECURITY-TESTS 40 (CVE-2019-16884, CVE-2023-28642, CVE-2025-52565): images
/// whose /dev, /dev/pts, /dev/shm, /dev/mqueue or /sys are symlinks out of the
/// rootfs. Each run fails with a one-line error or mounts inside the rootfs (a
/// destination that resolves to the root itself is refused, not stacked there);
/// nothing is mounted on the host, the sentinel next to the rootfs is unchanged,
/// and no cgroup is left.
#[test]
fn hostile_rootfs_dev_and_sys_symlinks_stay_inside() {
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let s = sentinel(t.path());
    let before = snapshot(&s);
    let roots = host_root_mounts();
    let up = "../../../../../../../..";
    let host = s.to_str().unwrap();
    // (link, target, the error it must give; None: may also succeed, since
    // the tmpfs on /dev hides what the image had under it).
    let root = Some("resolves to the container's root");
    let ordinary = Some("must be mounted on an ordinary directory");
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("dev", "/", root),
        ("dev", up, root),
        ("dev", host, Some("/dev")),
        ("dev/pts", "/", None),
        ("dev/pts", up, None),
        ("dev/shm", "/", None),
        ("dev/shm", host, None),
        ("dev/mqueue", up, None),
        ("sys", "/", ordinary),
        ("sys", up, ordinary),
        ("sys", host, ordinary),
    ];
    for (i, (link, to, err)) in cases.iter().enumerate() {
        let dir = t.path().join(format!("case{i}"));
        std::fs::create_dir(&dir).unwrap();
        let r = rootfs(&dir);
        let l = r.join(link);
        std::fs::create_dir_all(l.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(to, &l).unwrap();
        let o = run(&dir, &r, &[], &["/bin/cat", "/proc/self/mountinfo"]);
        let what = format!("/{link} -> {to}");
        clean_outcome(&o, &what);
        if let Some(needle) = err {
            assert_eq!(o.status.code(), Some(125), "{what}: {}", stderr(&o));
            assert!(stderr(&o).contains(needle), "{what}: {}", stderr(&o));
        }
        if o.status.success() {
            // What ran saw the host sentinel nowhere.
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(!out.contains(host), "{what}: {out}");
        }
        eprintln!("{what}: {} {}", o.status, stderr(&o).trim_end());
        // The link is still a link, with nothing mounted on the host side.
        assert!(
            std::fs::symlink_metadata(&l).unwrap().is_symlink(),
            "{what}"
        );
        assert!(
            mounts_mentioning(t.path()).is_empty(),
            "{what}: {:?}",
            mounts_mentioning(t.path())
        );
        assert_eq!(
            host_root_mounts(),
            roots,
            "{what}: a mount landed on the host's /"
        );
        assert_eq!(snapshot(&s), before, "{what}: sentinel changed");
        assert!(
            leftover_cgroups().is_empty(),
            "{what}: {:?}",
            leftover_cgroups()
        );
    }
}

/// A thread that swaps two paths with `renameat2(RENAME_EXCHANGE)` in a loop, as an
/// attacker racing the runtime's mount-target resolution would (CVE-2021-30465).
struct ExchangeRace {
    stop: Arc<AtomicBool>,
    swaps: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl ExchangeRace {
    fn start(a: &Path, b: &Path) -> ExchangeRace {
        let stop = Arc::new(AtomicBool::new(false));
        let swaps = Arc::new(AtomicU64::new(0));
        let a = std::ffi::CString::new(a.as_os_str().as_encoded_bytes()).unwrap();
        let b = std::ffi::CString::new(b.as_os_str().as_encoded_bytes()).unwrap();
        let thread = {
            let (stop, swaps) = (stop.clone(), swaps.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: two valid NUL-terminated paths.
                    let rc = unsafe {
                        libc::renameat2(
                            libc::AT_FDCWD,
                            a.as_ptr(),
                            libc::AT_FDCWD,
                            b.as_ptr(),
                            libc::RENAME_EXCHANGE,
                        )
                    };
                    if rc != 0 {
                        break;
                    }
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        ExchangeRace {
            stop,
            swaps,
            thread,
        }
    }

    /// Stop the racer; returns how many swaps it made.
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.swaps.load(Ordering::Relaxed)
    }
}

/// SECURITY-TESTS 41 (CVE-2021-30465, CVE-2019-19921, CVE-2024-45310): while
/// containers start with `-v VOL:/data`, another process swaps the rootfs's
/// `/data` directory and a symlink (to `/`, to the host sentinel, to `../..`)
/// with renameat2(RENAME_EXCHANGE) in a tight loop. Every start either binds VOL
/// on that directory inside the rootfs, read-only as asked (the container's
/// mountinfo shows it at /data or /swap, where the racer left it) or fails with
/// a one-line error; no mount ever appears on the host, and the sentinel is unchanged.
#[test]
fn bind_mount_target_swapped_by_a_racing_symlink_stays_inside() {
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let s = sentinel(t.path());
    let vol = t.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("marker"), "the volume\n").unwrap();
    let r = rootfs(t.path());
    let before = snapshot(&s);
    let vol_before = snapshot(&vol);
    let roots = host_root_mounts();
    let volspec = format!("{}:/data:ro", vol.display());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(18);
    let (mut ok, mut refused) = (0, 0);
    for to in ["/", s.to_str().unwrap(), "../../.."] {
        let data = r.join("data");
        let swap = r.join("swap");
        let _ = std::fs::remove_dir(&data);
        let _ = std::fs::remove_file(&data);
        let _ = std::fs::remove_file(&swap);
        let _ = std::fs::remove_dir(&swap);
        std::fs::create_dir(&data).unwrap();
        std::os::unix::fs::symlink(to, &swap).unwrap();
        let racer = ExchangeRace::start(&data, &swap);
        for n in 0..70 {
            // At least one start per target, even on a loaded machine.
            if n > 0 && std::time::Instant::now() > deadline {
                break;
            }
            let o = run(
                t.path(),
                &r,
                &["-v", &volspec],
                &["/bin/cat", "/proc/self/mountinfo"],
            );
            let what = format!("/data <-> symlink to {to}, start {n}");
            clean_outcome(&o, &what);
            if o.status.success() {
                // The volume is mounted on the directory, wherever the racer
                // has moved it: /data or /swap of the container, nowhere else.
                let out = String::from_utf8_lossy(&o.stdout);
                let volroot = vol.file_name().unwrap().to_str().unwrap();
                let lines: Vec<&str> = out
                    .lines()
                    .filter(|l| l.split(' ').nth(3).is_some_and(|r| r.ends_with(volroot)))
                    .collect();
                for l in &lines {
                    let opts = l.split(' ').nth(5).unwrap_or("");
                    assert!(
                        opts.split(',').any(|o| o == "ro"),
                        "{what}: the volume is not read-only: {l}"
                    );
                }
                let at: Vec<&str> = lines.iter().filter_map(|l| l.split(' ').nth(4)).collect();
                assert!(
                    at == ["/data"] || at == ["/swap"],
                    "{what}: volume at {at:?}: {out}"
                );
                ok += 1;
            } else {
                refused += 1;
            }
            assert!(
                mounts_mentioning(t.path()).is_empty(),
                "{what}: {:?}",
                mounts_mentioning(t.path())
            );
            assert_eq!(
                host_root_mounts(),
                roots,
                "{what}: a mount landed on the host's /"
            );
        }
        assert!(racer.finish() > 0, "the racer never swapped");
        assert_eq!(snapshot(&s), before, "sentinel changed (symlink to {to})");
    }
    eprintln!("raced starts: {ok} bound inside, {refused} refused");
    assert!(ok + refused > 0);
    assert_eq!(snapshot(&vol), vol_before, "the volume changed");
    assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
}

/// SECURITY-TESTS 41, the CVE-2021-30465 set-up: a volume shared with another
/// container, and a second volume mounted *inside* it (`-v VOL:/data -v
/// OTHER:/data/sub`). The other container (here a host thread working in VOL)
/// swaps VOL's `sub` directory and a symlink (to `/`, `/etc`, the host sentinel,
/// `../../..`) in a loop. OTHER (`:ro`) must land, read-only, on that directory
/// or on a path inside the rootfs the symlink names, or the start fails with a
/// one-line error (a re-resolved destination once left OTHER writable); no
/// host mount appears and the sentinel is unchanged.
#[test]
fn nested_bind_in_a_raced_shared_volume_stays_inside() {
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let s = sentinel(t.path());
    let vol = t.path().join("shared");
    let other = t.path().join("other");
    std::fs::create_dir(&vol).unwrap();
    std::fs::create_dir(&other).unwrap();
    let r = rootfs(t.path());
    std::fs::create_dir(r.join("data")).unwrap();
    let before = snapshot(&s);
    // A first, unraced run creates the /etc/hostname, hosts and resolv.conf
    // mount stubs; the image's /etc must not change after that.
    let o = run(t.path(), &r, &[], &["/bin/true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let etc_before = snapshot(&r.join("etc"));
    let roots = host_root_mounts();
    let v1 = format!("{}:/data", vol.display());
    let v2 = format!("{}:/data/sub:ro", other.display());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(18);
    let (mut ok, mut refused) = (0, 0);
    let mut seen = std::collections::BTreeMap::<String, u32>::new();
    for to in ["/", "/etc", s.to_str().unwrap(), "../../.."] {
        let sub = vol.join("sub");
        let link = vol.join("link");
        let _ = std::fs::remove_dir(&sub);
        let _ = std::fs::remove_file(&sub);
        let _ = std::fs::remove_file(&link);
        let _ = std::fs::remove_dir(&link);
        std::fs::create_dir(&sub).unwrap();
        std::os::unix::fs::symlink(to, &link).unwrap();
        let racer = ExchangeRace::start(&sub, &link);
        for n in 0..50 {
            // At least one start per target, even on a loaded machine.
            if n > 0 && std::time::Instant::now() > deadline {
                break;
            }
            let o = run(
                t.path(),
                &r,
                &["-v", &v1, "-v", &v2],
                &["/bin/cat", "/proc/self/mountinfo"],
            );
            let what = format!("/data/sub <-> symlink to {to}, start {n}");
            clean_outcome(&o, &what);
            if o.status.success() {
                let out = String::from_utf8_lossy(&o.stdout);
                let lines: Vec<&str> = out
                    .lines()
                    .filter(|l| l.split(' ').nth(3).is_some_and(|r| r.ends_with("/other")))
                    .collect();
                // `:ro` holds on OTHER itself, wherever it landed.
                for l in &lines {
                    let opts = l.split(' ').nth(5).unwrap_or("");
                    assert!(
                        opts.split(',').any(|o| o == "ro"),
                        "{what}: OTHER is not read-only: {l}\n{out}"
                    );
                }
                let at: Vec<&str> = lines.iter().filter_map(|l| l.split(' ').nth(4)).collect();
                let inside = ["/data/sub", "/data/link", "/etc"];
                assert!(
                    at.len() == 1 && inside.contains(&at[0]),
                    "{what}: OTHER at {at:?}: {out}"
                );
                *seen.entry(at[0].to_string()).or_insert(0) += 1;
                ok += 1;
            } else {
                let e = stderr(&o);
                let key = e.split(':').take(3).collect::<Vec<_>>().join(":");
                *seen.entry(key).or_insert(0) += 1;
                refused += 1;
            }
            assert!(
                mounts_mentioning(t.path()).is_empty(),
                "{what}: {:?}",
                mounts_mentioning(t.path())
            );
            assert_eq!(
                host_root_mounts(),
                roots,
                "{what}: a mount landed on the host's /"
            );
        }
        assert!(racer.finish() > 0, "the racer never swapped");
        assert_eq!(snapshot(&s), before, "sentinel changed (symlink to {to})");
    }
    eprintln!("raced nested starts: {ok} bound inside, {refused} refused: {seen:?}");
    assert!(ok + refused > 0);
    assert!(
        std::fs::read_dir(&other).unwrap().next().is_none(),
        "OTHER changed"
    );
    assert_eq!(
        snapshot(&r.join("etc")),
        etc_before,
        "the image's /etc changed"
    );
    assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
}
