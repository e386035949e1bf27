//! The container process as Docker users see it: exit codes, signals and init, one-line
//! errors, leaked fds, `--user`, OCI bundles under crun, stored JSON, the terminal and the
//! image config's entrypoint/cmd/env/workdir/user.

use super::*;

#[test]
fn exit_codes_signals_and_init() {
    let Some((_g, t, r)) = ready_rootfs() else {
        return;
    };
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
    let Some((_g, t, r)) = ready_rootfs() else {
        return;
    };
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
    let Some((_g, t, r)) = ready_rootfs() else {
        return;
    };
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
fn user_flag_resolves_in_the_image() {
    let Some((_g, t, r)) = ready_rootfs() else {
        return;
    };
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

    let Some((_g, t, r)) = ready_rootfs() else {
        return;
    };
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
    let Some((_g, t, r)) = ready_rootfs() else {
        return;
    };
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
