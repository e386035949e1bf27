//! The sandbox as a lifecycle handle (`imgctl::sandbox::Container`): from a
//! multi-threaded caller, with its own stdio, and without any imgctl process on
//! the host holding the runtime binary.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Command;

use imgctl::sandbox::{Container, Options, Outcome, Stdio};

use crate::common::sandbox::{cgroup_parent, leftover_cgroups, ready, rootfs, serial};
use crate::common::{imgctl_bin, require, tempdir};

/// The library used from this test binary re-executes imgctl's binary for the
/// container setup (it is what `/proc/self/exe` is inside imgctl).
fn use_imgctl_binary() {
    imgctl::sandbox::set_runtime_binary(imgctl_bin());
}

/// A runtime spec for `cmd` in `rootfs`, in this test's cgroup parent.
fn spec_for(
    rootfs: &Path,
    id: &str,
    cmd: &[&str],
    memory: i64,
    pids: i64,
) -> oci_spec::runtime::Spec {
    let flags = imgctl::container::RunFlags {
        id: id.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        memory: Some(memory),
        pids_limit: Some(pids),
        cgroup_parent: Some(cgroup_parent()),
        ..Default::default()
    };
    imgctl::container::runtime_spec(None, &flags, rootfs, vec![], None).expect("runtime spec")
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe")
}

/// Issue 8: 20 containers created, started and waited for at once from a tokio
/// runtime with 8 worker threads, each with its own memory and pids limits, its
/// output on a pipe. Each sees its own limits from inside; all exit 0; no cgroup
/// is left.
#[test]
fn twenty_containers_from_eight_tokio_workers_each_with_own_limits() {
    if !ready() {
        return;
    }
    let _g = serial();
    use_imgctl_binary();
    let t = tempdir();
    let r = rootfs(t.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(8)
        .enable_all()
        .build()
        .unwrap();
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..20i64 {
            let r = r.clone();
            tasks.push(tokio::spawn(async move {
                let memory = (64 + i) << 20;
                let pids = 100 + i;
                let spec = spec_for(
                    &r,
                    &format!("life{i}"),
                    &[
                        "/bin/sh",
                        "-c",
                        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; echo err >&2",
                    ],
                    memory,
                    pids,
                );
                let (out_r, out_w) = pipe();
                let (err_r, err_w) = pipe();
                // Created and started on a tokio worker thread (the process has
                // many threads); waited for on a blocking thread.
                let mut c = Container::create(
                    &spec,
                    &r,
                    &Options::default(),
                    Stdio::Fds {
                        stdin: None,
                        stdout: out_w,
                        stderr: err_w,
                    },
                )
                .unwrap_or_else(|e| panic!("create {i}: {e}"));
                assert!(c.pid() > 0);
                c.start().unwrap_or_else(|e| panic!("start {i}: {e}"));
                let (outcome, out, err) = tokio::task::spawn_blocking(move || {
                    let mut out = String::new();
                    std::fs::File::from(out_r).read_to_string(&mut out).unwrap();
                    let mut err = String::new();
                    std::fs::File::from(err_r).read_to_string(&mut err).unwrap();
                    let o = c.wait().unwrap();
                    c.delete().unwrap();
                    (o, out, err)
                })
                .await
                .unwrap();
                (i, memory, pids, outcome, out, err)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.unwrap());
        }
        all
    });
    assert_eq!(results.len(), 20);
    for (i, memory, pids, outcome, out, err) in results {
        assert_eq!(outcome, Outcome::Exited(0), "container {i}: {out} {err}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            vec![memory.to_string(), pids.to_string()],
            "container {i} did not get its own limits"
        );
        assert_eq!(err, "err\n", "container {i}: stderr");
    }
    assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
}

/// Issue 8 / SECURITY-TESTS 43 without a foreground imgctl: the command is a
/// `#!/proc/self/exe` script, started through create/start from this test
/// process (no imgctl process on the host runs the binary). The payload,
/// preloaded in the runtime binary the kernel ran as interpreter, tries to open
/// it for writing, directly and through an O_PATH descriptor kept across an exec
/// into busybox (when nothing executes the binary any more). Every open fails and
/// imgctl's sha256 is unchanged.
#[test]
fn self_exe_script_without_a_foreground_imgctl_cannot_write_the_binary() {
    if !ready()
        || !require(
            crate::common::have("ldd"),
            "ldd (copies glibc into the test image)",
        )
    {
        return;
    }
    let _g = serial();
    use_imgctl_binary();
    let t = tempdir();
    let r = rootfs(t.path());
    crate::sandbox::add_imgctl_libs(&r);
    let before = crate::sandbox::imgctl_sha256();
    let so = Path::new(env!("CARGO_TARGET_TMPDIR")).join("evil-reexec.so");
    let st = Command::new("gcc")
        .args(["-shared", "-fPIC", "-DREEXEC", "-o"])
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
        let mut spec = spec_for(&r, &format!("selfexe{init}"), &["/evil"], 256 << 20, 100);
        if let Some(p) = spec.process_mut() {
            let mut env = p.env().clone().unwrap_or_default();
            env.push("LD_PRELOAD=/evil.so".into());
            p.set_env(Some(env));
        }
        let (out_r, out_w) = pipe();
        let (err_r, err_w) = pipe();
        let opts = Options {
            init,
            ..Options::default()
        };
        let mut c = Container::create(
            &spec,
            &r,
            &opts,
            Stdio::Fds {
                stdin: None,
                stdout: out_w,
                stderr: err_w,
            },
        )
        .unwrap();
        c.start().unwrap();
        let mut out = String::new();
        std::fs::File::from(out_r).read_to_string(&mut out).unwrap();
        let mut err = String::new();
        std::fs::File::from(err_r).read_to_string(&mut err).unwrap();
        let o = c.wait().unwrap();
        c.delete().unwrap();
        eprintln!("init={init}: {o:?} {out} {err}");
        let v: serde_json::Value = out
            .lines()
            .find(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap())
            .unwrap_or_else(|| panic!("init={init}: the payload did not run: {out} {err}"));
        for k in ["wronly", "rdwr", "reopen"] {
            let e = v[k].as_i64().unwrap_or_else(|| panic!("{v}"));
            assert_ne!(e, 0, "init={init}: {k} open of the binary succeeded: {v}");
        }
        // After the exec into busybox nothing runs the binary: only the read-only
        // mount it was executed through stands in the way.
        assert!(
            out.contains("reopen-after-exec: denied"),
            "init={init}: an open for writing after the exec succeeded or did not run: {out} {err}"
        );
    }
    assert_eq!(
        before,
        crate::sandbox::imgctl_sha256(),
        "imgctl's binary changed"
    );
    assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
}

fn busybox_layout() -> Option<std::path::PathBuf> {
    let dir = std::path::PathBuf::from(
        std::env::var("IMGCTL_TESTDATA").unwrap_or_else(|_| "/var/cache/imgctl-testdata".into()),
    )
    .join("busybox-oci");
    require(
        dir.join("index.json").is_file(),
        &format!("fixture {} (scripts/fixtures/busybox.sh)", dir.display()),
    )
    .then_some(dir)
}

/// What a container of the store at `store` can leave behind: mounts under the
/// store, cgroups under this test's parent, active snapshots, state directories,
/// owner lock files.
fn leftovers(store: &Path) -> Vec<String> {
    let mut out: Vec<String> = crate::common::sandbox::mounts_mentioning(store)
        .into_iter()
        .map(|m| format!("mount: {m}"))
        .collect();
    out.extend(
        leftover_cgroups()
            .into_iter()
            .map(|c| format!("cgroup: {}", c.display())),
    );
    for (what, dir) in [
        ("active snapshot", store.join("snapshots/active")),
        ("state dir", store.join("containers")),
        ("owner lock", store.join("locks/containers")),
    ] {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            out.push(format!("{what}: {}", e.path().display()));
        }
    }
    out
}

fn run_cmd(store: &Path, layout: &Path, cmd: &[&str]) -> Command {
    let mut c = crate::common::imgctl(store);
    c.args(["run", "--rm", "--cgroup-parent", &cgroup_parent()])
        .arg(format!("oci:{}:latest", layout.display()))
        .args(cmd);
    c
}

/// Issue 8: `imgctl run` SIGKILLed at 10 points from its start to a running
/// container (spread over its start-up, plus jitter). The next imgctl command
/// (`images`) leaves no mount under the store, no cgroup, no active snapshot, no
/// state directory and no owner lock; and no process of the container survives.
#[test]
fn kill_9_during_run_leaves_nothing_after_the_next_command() {
    let Some(layout) = busybox_layout() else {
        return;
    };
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let store = t.path().join("store");
    // Unpacked once, so the kills land in the container's own start-up.
    let o = crate::common::output(&mut run_cmd(&store, &layout, &["true"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // How long a start takes here, to spread the kill points over it.
    let t0 = std::time::Instant::now();
    let o = crate::common::output(&mut run_cmd(&store, &layout, &["true"]));
    assert!(o.status.success());
    let startup = t0.elapsed().as_millis() as u64;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    // A duration no other process on a shared machine is likely to sleep for.
    let nap = format!("30.{}", std::process::id() % 100_000);
    let mut phases = Vec::new();
    for i in 0..10u64 {
        let jitter = (seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(i * 1442695040888963407)
            >> 33)
            % (startup / 10 + 1);
        let delay = startup * i / 9 + jitter;
        let mut child = run_cmd(&store, &layout, &["sleep", &nap])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let seen = leftovers(&store).len();
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        phases.push((delay, seen));
        let o = crate::common::output(crate::common::imgctl(&store).arg("images"));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let left = leftovers(&store);
        if !left.is_empty() {
            let ps = Command::new("ps")
                .args(["-eo", "pid,ppid,stat,wchan:24,args"])
                .output()
                .unwrap();
            let ps = String::from_utf8_lossy(&ps.stdout)
                .lines()
                .filter(|l| l.contains("imgctl") || l.contains(&format!("sleep {nap}")))
                .map(String::from)
                .collect::<Vec<_>>();
            panic!(
                "kill at {delay} ms (start-up {startup} ms): after `imgctl images` ({}): {left:#?}\nprocesses: {ps:#?}\nlocks: {}",
                String::from_utf8_lossy(&o.stderr),
                std::fs::read_to_string("/proc/locks").unwrap_or_default()
            );
        }
        let procs = Command::new("pgrep")
            .args(["-f", &format!("^sleep {}$", nap.replace('.', "[.]"))])
            .output()
            .unwrap();
        assert!(
            procs.stdout.is_empty(),
            "kill at {delay} ms: a container process survived: {}",
            String::from_utf8_lossy(&procs.stdout)
        );
    }
    eprintln!("kill points (ms, leftovers seen before the kill): {phases:?}");
    // The kills must have hit both early (nothing made yet) and late (running).
    assert!(
        phases.iter().any(|p| p.1 > 0),
        "no kill hit a started container: {phases:?}"
    );
}

/// Issue 8 defect: liveness is not judged by pid. A container started by an
/// imgctl in another PID namespace (`unshare --pid --fork --mount-proc`), where
/// its pid means nothing here, survives `imgctl images` run here; and one
/// started here survives an `imgctl images` run in a new PID namespace (where no
/// host pid is visible). Both finish normally and leave nothing.
#[test]
fn leftovers_are_judged_across_pid_namespaces() {
    let Some(layout) = busybox_layout() else {
        return;
    };
    if !ready() || !require(crate::common::have("unshare"), "unshare (util-linux)") {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let store = t.path().join("store");
    let o = crate::common::output(&mut run_cmd(&store, &layout, &["true"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let unshared = |args: &[&str]| {
        let mut c = Command::new("unshare");
        c.args(["--pid", "--fork", "--mount-proc"])
            .arg(imgctl_bin())
            .env("IMGCTL_ROOT", &store)
            .args(args);
        c
    };
    let wait_started = |what: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            // Started: the container's process is in its (fully made) cgroup.
            let running = std::fs::read_dir(store.join("containers"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| {
                    let procs = Path::new("/sys/fs/cgroup/pids")
                        .join(cgroup_parent())
                        .join(e.file_name())
                        .join("cgroup.procs");
                    std::fs::read_to_string(procs).is_ok_and(|p| !p.trim().is_empty())
                });
            if running {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let parent = cgroup_parent();
    let image = format!("oci:{}:latest", layout.display());
    let cases: [(&str, Command, Command); 2] = [
        (
            "container in a new PID namespace, reaper here",
            unshared(&[
                "run",
                "--rm",
                "--cgroup-parent",
                &parent,
                &image,
                "sleep",
                "2",
            ]),
            {
                let mut c = crate::common::imgctl(&store);
                c.arg("images");
                c
            },
        ),
        (
            "container here, reaper in a new PID namespace",
            run_cmd(&store, &layout, &["sleep", "2"]),
            unshared(&["images"]),
        ),
    ];
    for (what, mut run, mut reaper) in cases {
        let child = run
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_started(what);
        // The owner's lock file, as stored, matches its schema.
        for e in std::fs::read_dir(store.join("locks/containers"))
            .unwrap()
            .flatten()
        {
            let doc: serde_json::Value =
                serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
            crate::sandbox::assert_valid(
                &crate::sandbox::validator("container-owner.schema.json"),
                &doc,
                "stored owner lock",
            );
        }
        let before = leftovers(&store);
        let o = crate::common::output(&mut reaper);
        assert!(
            o.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let during = leftovers(&store);
        assert_eq!(
            before, during,
            "{what}: the reaper removed a live container's work"
        );
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{what}: the run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let left = leftovers(&store);
        assert!(left.is_empty(), "{what}: {left:#?}");
    }
}

/// Issue 15 item 1: `run` on a tmpfs store used to refuse to start ("refusing to
/// fork: this process has 2 threads") when a finished unpack thread was still
/// listed. 30 runs of a fresh store's first unpack and then `run --rm IMAGE true`
/// on tmpfs: every one starts.
#[test]
fn run_on_a_tmpfs_store_always_starts() {
    let Some(layout) = busybox_layout() else {
        return;
    };
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let mnt = t.path().join("tmpfs");
    std::fs::create_dir(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _u = Unmount(mnt.clone());
    let mut failures = Vec::new();
    for i in 0..30 {
        // Every 10th run on a fresh store: the unpack threads run just before.
        let store = mnt.join(format!("store{}", i / 10));
        let o = crate::common::output(&mut run_cmd(&store, &layout, &["true"]));
        if !o.status.success() {
            failures.push(format!("run {i}: {}", String::from_utf8_lossy(&o.stderr)));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
}

/// The handle's lifecycle edges: a created container runs nothing until start;
/// one thread waits while another signals it (through a pidfd, so after the
/// reap a signal fails instead of reaching a recycled pid); a container deleted
/// without being started leaves no cgroup; a command that does not exist fails
/// at start with 127.
#[test]
fn handle_created_started_signalled_from_another_thread_and_deleted() {
    if !ready() {
        return;
    }
    let _g = serial();
    use_imgctl_binary();
    let t = tempdir();
    let r = rootfs(t.path());
    let marker = r.join("tmp/started");
    let spec = spec_for(
        &r,
        "edge1",
        &["/bin/sh", "-c", "touch /tmp/started; exec sleep 30"],
        64 << 20,
        50,
    );
    let mut c = Container::create(&spec, &r, &Options::default(), Stdio::Null).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!marker.exists(), "the command ran before start");
    c.start().unwrap();
    let sig = c.signaller().unwrap();
    let waiter = std::thread::spawn(move || {
        let o = c.wait().unwrap();
        (o, c)
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !marker.exists() {
        assert!(std::time::Instant::now() < deadline, "never started");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    sig.signal(libc::SIGKILL).unwrap();
    let (o, c) = waiter.join().unwrap();
    assert_eq!(o, Outcome::Signaled(libc::SIGKILL));
    assert!(
        sig.signal(libc::SIGKILL).is_err(),
        "a signal after the reap went somewhere"
    );
    c.delete().unwrap();

    // Created, never started, deleted.
    let c = Container::create(
        &spec_for(&r, "edge2", &["true"], 64 << 20, 50),
        &r,
        &Options::default(),
        Stdio::Null,
    )
    .unwrap();
    assert!(!leftover_cgroups().is_empty());
    c.delete().unwrap();
    assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());

    // Not found: 127 from start.
    let mut c = Container::create(
        &spec_for(&r, "edge3", &["/no/such/cmd"], 64 << 20, 50),
        &r,
        &Options::default(),
        Stdio::Null,
    )
    .unwrap();
    match c.start() {
        Err(e) => assert_eq!(e.exit_code(), 127, "{e}"),
        Ok(()) => panic!("a missing command started"),
    }
    c.delete().unwrap();
    assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
}

/// The container's process joins its v1 cgroups itself, right after the clone
/// (`Cgroup::self_join_files`: it writes `0` to each `tasks` file, which moves
/// its one thread without the kernel's global lock). Seen from the host: in
/// every controller the whole process and what it forks are in the
/// container's group, the creating process (multi-threaded) is not, and the
/// group's limits count them.
#[test]
fn the_container_joins_every_v1_controller_whole_and_alone() {
    if !ready() {
        return;
    }
    let v1 = Path::new("/sys/fs/cgroup/memory").is_dir();
    let _ = require(v1, "cgroup v1 controllers (a hybrid host)");
    if !v1 {
        return;
    }
    let _g = serial();
    use_imgctl_binary();
    let t = tempdir();
    let r = rootfs(t.path());
    let spec = spec_for(
        &r,
        "join1",
        &["/bin/sh", "-c", "sleep 30 & exec sleep 31"],
        64 << 20,
        50,
    );
    let mut c = Container::create(&spec, &r, &Options::default(), Stdio::Null).unwrap();
    c.start().unwrap();
    let pid = c.pid();
    let group = format!("/{}/join1", cgroup_parent());
    let controllers = [
        "memory", "cpu", "cpuacct", "cpuset", "pids", "blkio", "devices", "freezer",
    ];
    // Both processes exist (the forked sleep and the exec'd one).
    let procs = |ctl: &str| -> Vec<i32> {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{ctl}{group}/cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while procs("pids").len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "never forked: {:?}",
            procs("pids")
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let host = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let me = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    for ctl in controllers {
        if !Path::new("/sys/fs/cgroup").join(ctl).is_dir() {
            continue;
        }
        let line = host
            .lines()
            .find(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|c| c.split(',').any(|c| c == ctl))
            })
            .unwrap_or_else(|| panic!("no {ctl} line in\n{host}"));
        assert!(line.ends_with(&group), "{ctl}: {line} (want {group})");
        let mine = me
            .lines()
            .find(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|c| c.split(',').any(|c| c == ctl))
            })
            .unwrap();
        assert!(!mine.ends_with(&group), "the creator joined too: {mine}");
        let p = procs(ctl);
        assert_eq!(p.len(), 2, "{ctl}: {p:?}");
        assert!(p.contains(&pid), "{ctl}: {p:?} lacks {pid}");
    }
    let current =
        std::fs::read_to_string(format!("/sys/fs/cgroup/pids{group}/pids.current")).unwrap();
    assert_eq!(current.trim(), "2");
    c.signal(libc::SIGKILL).unwrap();
    assert_eq!(c.wait().unwrap(), Outcome::Signaled(libc::SIGKILL));
    c.delete().unwrap();
    assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
}
