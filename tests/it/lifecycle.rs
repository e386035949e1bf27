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
