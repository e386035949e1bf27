//! Hostile root file systems and races (SECURITY-TESTS): symlinked /proc, /dev and /sys,
//! the runtime binary opened from inside, and bind targets or volumes swapped by a racing
//! symlink all stay inside the container.

use super::*;

#[test]
fn hostile_rootfs_with_proc_symlink_is_refused() {
    let Some((_g, t, r)) = ready_rootfs() else {
        return;
    };
    std::fs::create_dir(r.join("elsewhere")).unwrap();
    std::os::unix::fs::symlink("/elsewhere", r.join("proc")).unwrap();
    let o = run(t.path(), &r, &[], &["/probe"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("ordinary directory"), "{}", stderr(&o));
    assert!(mounts_mentioning(t.path()).is_empty());
    assert!(leftover_cgroups().is_empty());
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
