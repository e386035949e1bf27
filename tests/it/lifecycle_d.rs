//! Detached containers (issue 12): `run -d` and its monitor, `ps`, `logs`,
//! `exec`, `stop`, `kill`, `rm`, `start`, `restart`, `wait`, `attach`,
//! `inspect`, restart policies, healthchecks, a killed monitor, and what is
//! left after `rm` (nothing: no cgroup, mount, snapshot, state dir, lock file,
//! name). Busybox from the offline fixture (scripts/fixtures/busybox.sh).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::sandbox::{cgroup_parent, leftover_cgroups, serial};
use crate::common::{have, imgctl, is_root, ok, output, require, tempdir};
use crate::sandbox::{assert_valid, validator};

fn testdata() -> PathBuf {
    PathBuf::from(
        std::env::var("IMGCTL_TESTDATA").unwrap_or_else(|_| "/var/cache/imgctl-testdata".into()),
    )
}

/// A store holding busybox as `busybox` (copied with skopeo, not imgctl).
pub(crate) fn store_with_busybox(dir: &Path) -> Option<PathBuf> {
    let layout = testdata().join("busybox-oci");
    let ready = require(is_root(), "root (overlayfs, namespaces, cgroups)")
        && require(have("skopeo"), "skopeo")
        && require(
            layout.join("index.json").is_file(),
            &format!("fixture {} (scripts/fixtures/busybox.sh)", layout.display()),
        );
    if !ready {
        return None;
    }
    let store = dir.join("store");
    let out = output(
        Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(format!(
                "oci:{}:docker.io/library/busybox:latest",
                store.display()
            )),
    );
    assert!(
        out.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(store)
}

/// `imgctl run -d --cgroup-parent <test parent> FLAGS busybox CMD…`; the id.
pub(crate) fn run_d(store: &Path, flags: &[&str], cmd: &[&str]) -> String {
    let parent = cgroup_parent();
    let out = ok(imgctl(store)
        .args(["run", "-d", "--cgroup-parent", &parent])
        .args(flags)
        .arg("busybox")
        .args(cmd));
    let id = out.trim().to_string();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "run -d prints the full id, got {out:?}"
    );
    id
}

/// Wait until nobody holds container `id`'s owner lock. A SIGKILLed monitor
/// shows as a zombie once its main thread is done, while its other threads
/// may still be exiting with the lock's descriptor; the next command's reaper
/// skips a held lock (and tries again next time).
pub(crate) fn until_owner_released(store: &Path, id: &str) {
    let path = store.join("locks/containers").join(id);
    until(
        Duration::from_secs(10),
        "the owner lock to be released",
        || {
            let Ok(f) = std::fs::File::open(&path) else {
                return true;
            };
            // SAFETY: flock on a descriptor we own.
            unsafe {
                libc::flock(
                    std::os::fd::AsRawFd::as_raw_fd(&f),
                    libc::LOCK_SH | libc::LOCK_NB,
                ) == 0
            }
        },
    );
}

pub(crate) fn im(store: &Path, args: &[&str]) -> Output {
    output(imgctl(store).args(args))
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub(crate) fn inspect(store: &Path, c: &str) -> Value {
    let v: Value = serde_json::from_str(&ok(imgctl(store).args(["inspect", c]))).unwrap();
    let v = v[0].clone();
    assert_valid(
        &validator("container-inspect.schema.json"),
        &v,
        "inspect CONTAINER",
    );
    v
}

/// Poll `f` until true (or panic with `what` after `limit`).
pub(crate) fn until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Nothing of container `id` is left in the store, the mount table or cgroupfs.
pub(crate) fn assert_gone(store: &Path, id: &str) {
    for p in [
        store.join("containers").join(id),
        store.join("locks/containers").join(id),
        store.join("snapshots/active").join(format!("ctr-{id}")),
    ] {
        assert!(!p.exists(), "{} is left", p.display());
    }
    let names: Vec<String> = std::fs::read_dir(store.join("container-names"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| std::fs::read_to_string(e.path()).is_ok_and(|s| s.trim() == id))
        .map(|e| e.path().display().to_string())
        .collect();
    assert!(names.is_empty(), "name files left: {names:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let s = store.display().to_string();
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&s)).collect();
    assert!(left.is_empty(), "mounts left: {left:#?}");
    let cg: Vec<PathBuf> = leftover_cgroups()
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(id))
        .collect();
    assert!(cg.is_empty(), "cgroups left: {cg:?}");
}

pub(crate) fn json_file(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

const LOOP: &str = "i=0; while true; do echo out $i; echo err $i >&2; i=$((i+1)); sleep 0.1; done";

#[test]
fn detached_container_commands_end_to_end() {
    let t = tempdir();
    let Some(store) = store_with_busybox(t.path()) else {
        return;
    };
    let _g = serial();
    let id = run_d(
        &store,
        &["--name", "web", "-l", "tier=front"],
        &["sh", "-c", LOOP],
    );
    let dir = store.join("containers").join(&id);
    // ps: the row, -q, --no-trunc, filters, --format json (schema) and templates.
    let ps = ok(imgctl(&store).arg("ps"));
    assert!(ps.starts_with("CONTAINER ID"), "{ps}");
    assert!(
        ps.contains(&id[..12]) && ps.contains("web") && ps.contains("Up "),
        "{ps}"
    );
    assert_eq!(ok(imgctl(&store).args(["ps", "-q"])).trim(), &id[..12]);
    assert_eq!(
        ok(imgctl(&store).args(["ps", "-q", "--no-trunc"])).trim(),
        id
    );
    for (f, hit) in [
        ("name=we", true),
        ("name=db", false),
        ("status=running", true),
        ("status=exited", false),
        (&format!("id={}", &id[..5]) as &str, true),
        ("label=tier=front", true),
        ("label=tier=back", false),
        ("ancestor=busybox", true),
    ] {
        let out = ok(imgctl(&store).args(["ps", "-q", "--filter", f]));
        assert_eq!(!out.trim().is_empty(), hit, "--filter {f}: {out:?}");
    }
    let line = ok(imgctl(&store).args(["ps", "--format", "json"]));
    let row: Value = serde_json::from_str(line.trim()).unwrap();
    assert_valid(&validator("ps.schema.json"), &row, "ps --format json");
    assert_eq!(row["Names"], "web");
    assert_eq!(row["State"], "running");
    let tpl =
        ok(imgctl(&store).args(["ps", "--format", "{{.Names}}|{{upper .State}}|{{.Labels}}"]));
    assert_eq!(tpl.trim(), "web|RUNNING|tier=front");
    let table = ok(imgctl(&store).args(["ps", "--format", "table {{.Names}}\\t{{.State}}"]));
    assert_eq!(
        table
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["NAMES", "STATE"]
    );
    let bad = im(&store, &["ps", "--format", "{{.Nope}}"]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(
        stderr(&bad).contains("Nope") && stderr(&bad).lines().count() == 1,
        "{}",
        stderr(&bad)
    );

    // logs: both streams, --tail, -t, --since/--until; the stored lines match their schema.
    until(Duration::from_secs(10), "5 log lines", || {
        stdout(&im(&store, &["logs", "web"])).lines().count() >= 5
    });
    let l = im(&store, &["logs", "web"]);
    assert!(stdout(&l).starts_with("out 0\nout 1\n"), "{}", stdout(&l));
    assert!(stderr(&l).starts_with("err 0\nerr 1\n"), "{}", stderr(&l));
    assert!(!stdout(&l).contains("err"), "stderr kept apart");
    let tail = im(&store, &["logs", "--tail", "2", "web"]);
    assert_eq!(
        stdout(&tail).lines().count() + stderr(&tail).lines().count(),
        2
    );
    let ts = stdout(&im(&store, &["logs", "-t", "--tail", "4", "web"]));
    assert!(
        ts.lines().all(|l| l.len() > 31
            && &l[4..5] == "-"
            && l[..30].ends_with('Z')
            && &l[30..31] == " "),
        "{ts}"
    );
    assert!(stdout(&im(&store, &["logs", "--until", "2000-01-01", "web"])).is_empty());
    assert!(stdout(&im(&store, &["logs", "--since", "1m", "web"])).contains("out 0"));
    let v = validator("container-log-line.schema.json");
    for l in std::fs::read_to_string(dir.join("container.log"))
        .unwrap()
        .lines()
    {
        assert_valid(&v, &serde_json::from_str(l).unwrap(), "container.log line");
    }
    assert_valid(
        &validator("container-state.schema.json"),
        &json_file(&dir.join("state.json")),
        "state.json",
    );
    assert_valid(
        &validator("container-monitor.schema.json"),
        &json_file(&dir.join("monitor.json")),
        "monitor.json",
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join("monitor.sock"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "monitor.sock is 0600");

    // exec: exit code, joins every namespace and the cgroup, same caps/seccomp, -u -w -e.
    assert_eq!(
        im(&store, &["exec", "web", "sh", "-c", "exit 7"])
            .status
            .code(),
        Some(7)
    );
    let same = ok(imgctl(&store).args([
        "exec", "web", "sh", "-c",
        "for n in mnt pid net ipc uts cgroup user; do [ \"$(readlink /proc/self/ns/$n)\" = \"$(readlink /proc/1/ns/$n)\" ] || echo DIFF $n; done; \
         [ \"$(cat /proc/self/cgroup)\" = \"$(cat /proc/1/cgroup)\" ] || echo DIFF cgroup-membership; \
         for k in CapEff CapBnd CapInh CapAmb Seccomp NoNewPrivs; do [ \"$(grep ^$k: /proc/self/status)\" = \"$(grep ^$k: /proc/1/status)\" ] || echo DIFF $k; done; echo done",
    ]));
    assert_eq!(
        same.trim(),
        "done",
        "exec differs from the container's init: {same}"
    );
    assert_eq!(
        ok(imgctl(&store).args(["exec", "-u", "nobody", "web", "id", "-u"])).trim(),
        "65534"
    );
    assert_eq!(
        ok(imgctl(&store).args([
            "exec",
            "-w",
            "/tmp",
            "-e",
            "X=y",
            "web",
            "sh",
            "-c",
            "echo $PWD $X"
        ]))
        .trim(),
        "/tmp y"
    );
    // -t: a pty of the container's own devpts (the command can name it).
    let tty = ok(imgctl(&store).args(["exec", "-t", "web", "tty"]));
    assert!(tty.trim().starts_with("/dev/pts/"), "{tty:?}");
    // A working directory through a descriptor of imgctl's is refused (CVE-2024-21626).
    for n in 3..8 {
        let w = format!("/proc/self/fd/{n}");
        let e = im(&store, &["exec", "-w", &w, "web", "pwd"]);
        assert_eq!(e.status.code(), Some(125), "exec -w {w}: {}", stdout(&e));
    }
    let nf = im(&store, &["exec", "web", "no-such-cmd"]);
    assert_eq!(nf.status.code(), Some(127), "{}", stderr(&nf));
    // Names are unique; IDs by prefix; one-line errors for unknown references.
    let dup = output(imgctl(&store).args(["run", "-d", "--name", "web", "busybox", "true"]));
    assert_eq!(dup.status.code(), Some(125));
    assert!(stderr(&dup).contains("already used"), "{}", stderr(&dup));
    let unknown = im(&store, &["logs", "nosuch"]);
    assert_eq!(unknown.status.code(), Some(125));
    assert!(
        stderr(&unknown).contains("no such container: nosuch"),
        "{}",
        stderr(&unknown)
    );
    assert!(inspect(&store, &id[..6])["Name"] == "/web");

    // inspect: Docker's keys.
    let v = inspect(&store, "web");
    assert_eq!(v["Id"], id.as_str());
    assert_eq!(v["State"]["Status"], "running");
    assert_eq!(v["Config"]["Labels"]["tier"], "front");
    let pid = v["State"]["Pid"].as_u64().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(
        ok(imgctl(&store).args(["inspect", "--format", "{{.State.Status}} {{.Name}}", "web"]))
            .trim(),
        "running /web"
    );

    // rm of a running container needs -f.
    let rm = im(&store, &["rm", "web"]);
    assert_eq!(rm.status.code(), Some(1));
    assert!(
        stderr(&rm).contains("stop it first or use rm -f"),
        "{}",
        stderr(&rm)
    );

    // stop: sh as PID 1 ignores SIGTERM, so SIGKILL after -t 1.
    ok(imgctl(&store).args(["exec", "web", "sh", "-c", "echo kept > /marker"]));
    let t0 = Instant::now();
    ok(imgctl(&store).args(["stop", "-t", "1", "web"]));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "stop took {took:?}"
    );
    let v = inspect(&store, "web");
    assert_eq!(
        (
            v["State"]["Status"].as_str(),
            v["State"]["ExitCode"].as_i64()
        ),
        (Some("exited"), Some(137))
    );
    assert_eq!(ok(imgctl(&store).args(["wait", "web"])).trim(), "137");
    assert!(
        ok(imgctl(&store).args(["ps", "-a", "--format", "{{.Status}}"]))
            .starts_with("Exited (137)")
    );
    assert!(
        ok(imgctl(&store).arg("ps")).lines().count() == 1,
        "ps without -a hides it"
    );
    let k = im(&store, &["kill", "web"]);
    assert!(
        !k.status.success() && stderr(&k).contains("is not running"),
        "{}",
        stderr(&k)
    );

    // start keeps the container's filesystem; restart; wait sees a kill's code.
    ok(imgctl(&store).args(["start", "web"]));
    assert_eq!(
        ok(imgctl(&store).args(["exec", "web", "cat", "/marker"])).trim(),
        "kept"
    );
    ok(imgctl(&store).args(["restart", "-t", "0", "web"]));
    assert_eq!(inspect(&store, "web")["State"]["Status"], "running");
    let waiter = imgctl(&store)
        .args(["wait", "web"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    ok(imgctl(&store).args(["kill", "-s", "KILL", "web"]));
    let w = waiter.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&w.stdout).trim(), "137");

    ok(imgctl(&store).args(["rm", "web"]));
    assert_gone(&store, &id);
    assert!(ok(imgctl(&store).args(["ps", "-aq"])).trim().is_empty());
}

#[test]
fn stop_signal_of_the_container_then_its_exit_code() {
    let t = tempdir();
    let Some(store) = store_with_busybox(t.path()) else {
        return;
    };
    let _g = serial();
    // A trap for USR1 (the --stop-signal) ends it with 5 long before the timeout.
    let id = run_d(
        &store,
        &["--stop-signal", "USR1", "--rm"],
        &[
            "sh",
            "-c",
            "trap 'exit 5' USR1; while true; do sleep 0.1; done",
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    ok(imgctl(&store).args(["stop", "-t", "20", &id]));
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "stop waited for the timeout"
    );
    // --rm: gone with everything once stopped.
    assert_gone(&store, &id);
}

#[test]
fn killed_monitor_reads_exited_unknown_and_rm_cleans() {
    let t = tempdir();
    let Some(store) = store_with_busybox(t.path()) else {
        return;
    };
    let _g = serial();
    let id = run_d(&store, &["--name", "orphan"], &["sleep", "1000"]);
    let owner = json_file(&store.join("locks/containers").join(&id));
    let monitor = owner["pid"].as_i64().unwrap() as i32;
    let cpid = inspect(&store, &id)["State"]["Pid"].as_i64().unwrap() as i32;
    assert_ne!(monitor, cpid);
    // SAFETY: kill with plain integers.
    assert_eq!(unsafe { libc::kill(monitor, libc::SIGKILL) }, 0);
    until(Duration::from_secs(5), "the monitor to die", || {
        !Path::new(&format!("/proc/{monitor}")).exists()
            || std::fs::read_to_string(format!("/proc/{monitor}/stat"))
                .is_ok_and(|s| s.contains(") Z"))
    });
    until_owner_released(&store, &id);
    let st = ok(imgctl(&store).args(["ps", "-a", "--format", "{{.Names}} {{.Status}}"]));
    assert!(st.starts_with("orphan Exited (unknown)"), "{st}");
    assert_eq!(inspect(&store, "orphan")["State"]["ExitCode"], -1);
    until(
        Duration::from_secs(5),
        "the container's process to be gone",
        || {
            std::fs::read_to_string(format!("/proc/{cpid}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true)
        },
    );
    ok(imgctl(&store).args(["rm", "orphan"]));
    assert_gone(&store, &id);
}

#[test]
fn killed_container_is_restarted_on_failure_and_stop_is_not_a_failure() {
    let t = tempdir();
    let Some(store) = store_with_busybox(t.path()) else {
        return;
    };
    let _g = serial();
    let id = run_d(&store, &["--restart", "on-failure"], &["sleep", "1000"]);
    let first = inspect(&store, &id)["State"]["Pid"].as_i64().unwrap() as i32;
    // SAFETY: kill with plain integers.
    assert_eq!(unsafe { libc::kill(first, libc::SIGKILL) }, 0);
    until(Duration::from_secs(10), "a restart with a new pid", || {
        let v = inspect(&store, &id);
        v["RestartCount"] == 1
            && v["State"]["Status"] == "running"
            && v["State"]["Pid"]
                .as_i64()
                .is_some_and(|p| p as i32 != first && p > 0)
    });
    ok(imgctl(&store).args(["stop", "-t", "0", &id]));
    std::thread::sleep(Duration::from_millis(500));
    let v = inspect(&store, &id);
    assert_eq!(v["State"]["Status"], "exited", "a stop is not restarted");
    assert_eq!(v["RestartCount"], 1);
    // on-failure:2 with a command that fails: two restarts, then it stays down.
    let id2 = run_d(
        &store,
        &["--restart", "on-failure:2"],
        &["sh", "-c", "echo run; exit 3"],
    );
    until(Duration::from_secs(10), "the retries to run out", || {
        let v = inspect(&store, &id2);
        v["State"]["Status"] == "exited"
            && v["RestartCount"] == 2
            && !Path::new(&store.join("locks/containers").join(&id2)).exists()
    });
    assert_eq!(ok(imgctl(&store).args(["logs", &id2])), "run\nrun\nrun\n");
    assert_eq!(inspect(&store, &id2)["State"]["ExitCode"], 3);
    // always: a command that keeps failing shows `Restarting (1)` during its
    // growing back-off, and a stop then ends it for good.
    let id3 = run_d(&store, &["--restart", "always"], &["false"]);
    // (ps and inspect polled together: between the two, the back-off may end
    // and the command run again for a moment.)
    until(
        Duration::from_secs(15),
        "Restarting in ps and inspect",
        || {
            let s = ok(imgctl(&store).args(["ps", "--format", "{{.Status}}|{{.State}}"]));
            s.lines()
                .any(|l| l.starts_with("Restarting (1) ") && l.ends_with("|restarting"))
                && inspect(&store, &id3)["State"]["Restarting"] == true
        },
    );
    ok(imgctl(&store).args(["stop", &id3]));
    let v = inspect(&store, &id3);
    assert_eq!(
        (
            v["State"]["Status"].as_str(),
            v["State"]["Restarting"].as_bool()
        ),
        (Some("exited"), Some(false))
    );
    ok(imgctl(&store).args(["rm", &id, &id2, &id3]));
    assert_gone(&store, &id);
    assert_gone(&store, &id2);
    assert_gone(&store, &id3);
}

#[test]
fn healthcheck_from_the_image_turns_unhealthy_and_a_passing_one_healthy() {
    let t = tempdir();
    let Some(store) = store_with_busybox(t.path()) else {
        return;
    };
    let _g = serial();
    let ctx = t.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Buildfile"),
        "FROM busybox\nHEALTHCHECK --interval=200ms --timeout=2s --retries=2 CMD test -f /tmp/ok\n",
    )
    .unwrap();
    let b = output(
        imgctl(&store)
            .args(["build", "-q", "-t", "hc", "-f"])
            .arg(ctx.join("Buildfile"))
            .arg(&ctx),
    );
    assert!(b.status.success(), "build: {}", stderr(&b));
    let parent = cgroup_parent();
    let bad = ok(imgctl(&store).args([
        "run",
        "-d",
        "--cgroup-parent",
        &parent,
        "hc",
        "sleep",
        "1000",
    ]));
    let bad = bad.trim().to_string();
    let good = run_d(
        &store,
        &["--health-cmd", "true", "--health-interval", "200ms"],
        &["sleep", "1000"],
    );
    assert_eq!(inspect(&store, &bad)["Config"]["Healthcheck"]["Retries"], 2);
    until(Duration::from_secs(15), "unhealthy and healthy", || {
        let s = ok(imgctl(&store).args(["ps", "--no-trunc", "--format", "{{.ID}} {{.Status}}"]));
        s.lines()
            .any(|l| l.starts_with(&bad) && l.ends_with("(unhealthy)"))
            && s.lines()
                .any(|l| l.starts_with(&good) && l.ends_with("(healthy)"))
    });
    let h = &inspect(&store, &bad)["State"]["Health"];
    assert_eq!(h["Status"], "unhealthy");
    assert!(h["FailingStreak"].as_u64().unwrap() >= 2);
    assert_eq!(h["Log"][0]["ExitCode"], 1);
    // The check passes once the file exists.
    ok(imgctl(&store).args(["exec", &bad, "touch", "/tmp/ok"]));
    until(Duration::from_secs(10), "healthy after the fix", || {
        inspect(&store, &bad)["State"]["Health"]["Status"] == "healthy"
    });
    // --no-healthcheck disables the image's.
    let none = run_d(&store, &["--no-healthcheck"], &["true"]);
    ok(imgctl(&store).args(["wait", &none]));
    assert!(inspect(&store, &none)["State"].get("Health").is_none());
    ok(imgctl(&store).args(["rm", "-f", &bad, &good, &none]));
    for id in [&bad, &good, &none] {
        assert_gone(&store, id);
    }
}

#[test]
fn logs_rotate_at_the_size_limit_and_follow_ends_with_the_container() {
    let t = tempdir();
    let Some(store) = store_with_busybox(t.path()) else {
        return;
    };
    let _g = serial();
    let id = run_d(
        &store,
        &["--log-opt", "max-size=2k", "--log-opt", "max-file=3"],
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done; sleep 1; echo last",
        ],
    );
    // -f follows until the container ends, then returns.
    let f = ok(imgctl(&store).args(["logs", "-f", &id]));
    assert!(
        f.ends_with("line 299\nlast\n"),
        "{}",
        &f[f.len().saturating_sub(100)..]
    );
    let dir = store.join("containers").join(&id);
    let mut logs: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .filter(|n| n.starts_with("container.log"))
        .collect();
    logs.sort();
    assert_eq!(
        logs,
        ["container.log", "container.log.1", "container.log.2"]
    );
    for n in &logs {
        let len = std::fs::metadata(dir.join(n)).unwrap().len();
        assert!(len <= 2048, "{n} is {len} bytes");
    }
    let all = ok(imgctl(&store).args(["logs", &id]));
    assert!(
        !all.contains("line 0\n"),
        "the oldest lines were rotated away"
    );
    let nums: Vec<u32> = all
        .lines()
        .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
        .collect();
    assert!(
        nums.windows(2).all(|w| w[1] == w[0] + 1),
        "in order, none lost between files"
    );
    ok(imgctl(&store).args(["rm", &id]));
    assert_gone(&store, &id);
}

#[test]
fn twenty_detached_containers_in_ps_and_attach() {
    let t = tempdir();
    let Some(store) = store_with_busybox(t.path()) else {
        return;
    };
    let _g = serial();
    let ids: Vec<String> = (0..20)
        .map(|i| run_d(&store, &["--name", &format!("c{i}")], &["sleep", "1000"]))
        .collect();
    let q = ok(imgctl(&store).args(["ps", "-q", "--no-trunc"]));
    let mut listed: Vec<&str> = q.lines().collect();
    listed.sort_unstable();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(listed, want);
    // Ambiguous prefix: one line, exit 125 (20 ids share a first hex digit at most 16 ways,
    // so some one-digit prefix is shared).
    let shared = (0..16u8)
        .map(|d| format!("{d:x}"))
        .find(|p| ids.iter().filter(|i| i.starts_with(p.as_str())).count() > 1)
        .unwrap();
    let amb = im(&store, &["inspect", "--type", "container", &shared]);
    assert_eq!(amb.status.code(), Some(125));
    assert!(stderr(&amb).contains("ambiguous"), "{}", stderr(&amb));
    // attach: the output of a container that speaks later, and its exit code.
    let a = run_d(
        &store,
        &[],
        &["sh", "-c", "sleep 1; echo hello; echo oops >&2; exit 4"],
    );
    let out = im(&store, &["attach", &a]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(stdout(&out), "hello\n");
    assert_eq!(stderr(&out), "oops\n");
    // attach to a `-i` container: what is typed reaches its stdin.
    let b = run_d(
        &store,
        &["-i"],
        &["sh", "-c", "read x; echo got $x; exit 3"],
    );
    let mut child = imgctl(&store)
        .args(["attach", &b])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.as_mut().unwrap().write_all(b"yo\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got yo\n");
    let mut all = ids.clone();
    all.push(a.clone());
    all.push(b.clone());
    let mut args = vec!["rm".to_string(), "-f".to_string()];
    args.extend(all.iter().cloned());
    ok(imgctl(&store).args(&args));
    for id in &all {
        assert_gone(&store, id);
    }
}

#[test]
fn foreground_run_records_its_pid_and_exec_joins_it() {
    let t = tempdir();
    let Some(store) = store_with_busybox(t.path()) else {
        return;
    };
    let _g = serial();
    let parent = cgroup_parent();
    let mut fg = imgctl(&store)
        .args([
            "run",
            "--name",
            "fg",
            "--cgroup-parent",
            &parent,
            "busybox",
            "sleep",
            "3",
        ])
        .spawn()
        .unwrap();
    until(Duration::from_secs(10), "the pid in state.json", || {
        im(&store, &["inspect", "--format", "{{.State.Pid}}", "fg"])
            .status
            .success()
            && stdout(&im(
                &store,
                &["inspect", "--format", "{{.State.Pid}}", "fg"],
            ))
            .trim()
                != "0"
    });
    assert_eq!(
        ok(imgctl(&store).args(["exec", "fg", "hostname"]))
            .trim()
            .len(),
        12
    );
    assert!(ok(imgctl(&store).arg("ps")).contains("fg"));
    assert!(fg.wait().unwrap().success());
    assert_eq!(ok(imgctl(&store).args(["wait", "fg"])).trim(), "0");
    let id = inspect(&store, "fg")["Id"].as_str().unwrap().to_string();
    ok(imgctl(&store).args(["rm", "fg"]));
    assert_gone(&store, &id);
}

/// Issue 12's first "done when" on busybox (nginx is measured by the lead after
/// the merge): `run -d -p H:80` answers on 127.0.0.1:H, `logs` shows the access
/// line, `exec` works, `stop` within the timeout, and after `rm` the veth is gone
/// with everything else.
#[test]
fn published_port_of_a_detached_container_answers_and_rm_leaves_no_veth() {
    let t = tempdir();
    let Some(store) = store_with_busybox(t.path()) else {
        return;
    };
    let _g = serial();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let id = run_d(
        &store,
        &["--name", "web", "-p", &format!("{port}:80")],
        &[
            "sh",
            "-c",
            "mkdir -p /w && echo hello > /w/index.html && exec httpd -f -v -p 80 -h /w",
        ],
    );
    let v = inspect(&store, "web");
    let published = v["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"].clone();
    assert_eq!(published, port.to_string().as_str());
    let state = json_file(&store.join("containers").join(&id).join("state.json"));
    let host_veth = state["network"]["host_veth"].as_str().unwrap().to_string();
    assert!(Path::new("/sys/class/net").join(&host_veth).exists());
    let mut body = String::new();
    until(Duration::from_secs(10), "httpd to answer", || {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.write_all(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n");
        body.clear();
        let _ = s.read_to_string(&mut body);
        body.contains("hello")
    });
    assert!(
        body.starts_with("HTTP/1.") && body.contains(" 200 "),
        "{body}"
    );
    assert!(ok(imgctl(&store).args(["ps", "--format", "{{.Ports}}"]))
        .contains(&format!("{port}->80/tcp")));
    until(
        Duration::from_secs(5),
        "the access line in the logs",
        || stderr(&im(&store, &["logs", "web"])).contains("response:200"),
    );
    assert_eq!(
        im(&store, &["exec", "web", "ls", "/w/index.html"])
            .status
            .code(),
        Some(0)
    );
    let t0 = Instant::now();
    ok(imgctl(&store).args(["stop", "-t", "2", "web"]));
    assert!(t0.elapsed() < Duration::from_secs(6));
    ok(imgctl(&store).args(["rm", "web"]));
    assert_gone(&store, &id);
    // Its namespace died with it: the kernel unregisters the veth pair in
    // the background, moments later (docs/network.md "Teardown").
    until(Duration::from_secs(5), "the veth to go", || {
        !Path::new("/sys/class/net").join(&host_veth).exists()
    });
}
