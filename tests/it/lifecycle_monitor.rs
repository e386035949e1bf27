//! Detached containers, issue 12's leftovers: the end of `attach`'s input closes
//! a `run -di` container's stdin, and a container whose monitor was SIGKILLed
//! keeps its files for `restart`, and with `--restart always` is started again
//! by the next imgctl command (a new monitor that applies the policy in turn).
//! Helpers shared with `lifecycle_d`.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::sandbox::serial;
use crate::common::{imgctl, ok, tempdir};
use crate::lifecycle_d::{
    assert_gone, im, inspect, json_file, run_d, stdout, store_with_busybox, until,
    until_owner_released,
};

/// Wait for `child` at most `limit`; kill it and panic with `what` after.
fn wait_or_kill(mut child: Child, limit: Duration, what: &str) -> std::process::Output {
    let end = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn status(store: &Path, c: &str) -> String {
    inspect(store, c)["State"]["Status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn attach_eof_closes_the_stdin_of_a_run_di_container() {
    let t = tempdir();
    let Some(store) = store_with_busybox(t.path()) else {
        return;
    };
    let _g = serial();
    let id = run_d(
        &store,
        &["-i", "--network", "none"],
        &["sh", "-c", "cat; echo cat-ended; exit 7"],
    );
    // An attach that does not forward its input (--no-stdin) leaves the
    // container's stdin open when it goes away.
    let quiet = imgctl(&store)
        .args(["attach", "--no-stdin", &id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut quiet = quiet;
    let _ = quiet.kill();
    let _ = quiet.wait();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(status(&store, &id), "running", "cat ended without EOF");
    // Input, then EOF: cat echoes it, sees the end and the container exits.
    let mut child = imgctl(&store)
        .args(["attach", &id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"abc\n").unwrap(); // dropped: EOF
    let out = wait_or_kill(child, Duration::from_secs(20), "attach after EOF");
    assert_eq!(stdout(&out), "abc\ncat-ended\n");
    assert_eq!(out.status.code(), Some(7), "attach ends with its code");
    assert_eq!(ok(imgctl(&store).args(["wait", &id])).trim(), "7");
    assert_eq!(status(&store, &id), "exited");
    ok(imgctl(&store).args(["rm", &id]));
    assert_gone(&store, &id);
}

/// SIGKILL the monitor of `id` and wait until it is gone.
fn kill_monitor(store: &Path, id: &str) {
    let monitor = json_file(&store.join("locks/containers").join(id))["pid"]
        .as_i64()
        .unwrap() as i32;
    // SAFETY: kill with plain integers.
    assert_eq!(unsafe { libc::kill(monitor, libc::SIGKILL) }, 0);
    until(Duration::from_secs(5), "the monitor to die", || {
        std::fs::read_to_string(format!("/proc/{monitor}/stat"))
            .map(|s| s.contains(") Z"))
            .unwrap_or(true)
    });
    until_owner_released(store, id);
}

fn pid(store: &Path, c: &str) -> i32 {
    inspect(store, c)["State"]["Pid"].as_i64().unwrap_or(0) as i32
}

#[test]
fn restart_after_a_killed_monitor_and_restart_always_resumes() {
    let t = tempdir();
    let Some(store) = store_with_busybox(t.path()) else {
        return;
    };
    let _g = serial();
    // No policy: the next command records it as exited (unknown) and keeps its
    // view, unmounted; `restart` mounts it again, the files it made included.
    let plain = run_d(
        &store,
        &["--name", "plain", "--network", "none"],
        &["sleep", "1000"],
    );
    ok(imgctl(&store).args(["exec", "plain", "touch", "/kept"]));
    kill_monitor(&store, &plain);
    let st = im(
        &store,
        &[
            "--log-level",
            "debug",
            "ps",
            "-a",
            "--format",
            "{{.Names}} {{.Status}}",
        ],
    );
    let (out, log) = (
        String::from_utf8_lossy(&st.stdout),
        String::from_utf8_lossy(&st.stderr),
    );
    assert!(out.contains("plain Exited (unknown)"), "{out}\n{log}");
    let r = im(&store, &["restart", "plain"]);
    assert!(
        r.status.success(),
        "restart: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(status(&store, "plain"), "running");
    ok(imgctl(&store).args(["exec", "plain", "ls", "/kept"]));

    // --restart always: the next imgctl command that finds the monitor dead
    // starts it again with a new monitor, as Docker does when its daemon comes
    // back; that monitor applies the policy in turn.
    let phoenix = run_d(
        &store,
        &[
            "--name",
            "phoenix",
            "--restart",
            "always",
            "--network",
            "none",
        ],
        &["sleep", "1000"],
    );
    ok(imgctl(&store).args(["exec", "phoenix", "touch", "/kept"]));
    let first = pid(&store, "phoenix");
    kill_monitor(&store, &phoenix);
    let st = ok(imgctl(&store).args(["ps", "--format", "{{.Names}} {{.Status}}"]));
    assert!(st.contains("phoenix Up"), "resumed by that ps: {st}");
    let second = pid(&store, "phoenix");
    assert!(second != 0 && second != first, "a new process");
    ok(imgctl(&store).args(["exec", "phoenix", "ls", "/kept"]));
    // SAFETY: kill with plain integers.
    assert_eq!(unsafe { libc::kill(second, libc::SIGKILL) }, 0);
    until(
        Duration::from_secs(10),
        "a restart by the new monitor",
        || {
            let v = inspect(&store, "phoenix");
            v["State"]["Status"] == "running"
                && v["State"]["Pid"]
                    .as_i64()
                    .is_some_and(|p| p as i32 != second)
        },
    );
    ok(imgctl(&store).args(["rm", "-f", "plain", "phoenix"]));
    assert_gone(&store, &plain);
    assert_gone(&store, &phoenix);
}

/// `start -ai` (and `start -i`, which implies -a) of a `create -i` container:
/// this process's stdin reaches the container's, its EOF closes it, the output
/// comes back (also what the container writes before reading) with the exit
/// code.
#[test]
fn start_ai_sends_stdin_and_returns_output_and_exit_code() {
    let t = tempdir();
    let Some(store) = store_with_busybox(t.path()) else {
        return;
    };
    let _g = serial();
    let made = ok(imgctl(&store).args([
        "create",
        "-i",
        "--name",
        "asker",
        "--network",
        "none",
        "--cgroup-parent",
        &crate::common::sandbox::cgroup_parent(),
        "busybox",
        "sh",
        "-c",
        "echo first; read x; echo got:$x; cat; exit 5",
    ]));
    assert_eq!(made.trim().len(), 64, "{made}");
    for flags in [["-ai"], ["-i"]] {
        let mut child = imgctl(&store)
            .arg("start")
            .args(flags)
            .arg("asker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // dropped after the write: EOF ends `cat`, then the container.
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"hello\nmore\n")
            .unwrap();
        let out = wait_or_kill(child, Duration::from_secs(30), "start -ai");
        assert_eq!(
            stdout(&out),
            "first\ngot:hello\nmore\n",
            "{flags:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(5), "{flags:?}");
    }
    ok(imgctl(&store).args(["rm", "asker"]));
}

/// A `--userns=auto` container holds its id range again when started: a
/// created (or stopped) one does not hold it, so another container may be
/// given it meanwhile; `start` is then refused in one line rather than run two
/// containers on the same ids, and works once the range is free again.
#[test]
fn start_of_a_userns_auto_container_takes_its_id_range_again() {
    let t = tempdir();
    let Some(store) = store_with_busybox(t.path()) else {
        return;
    };
    let _g = serial();
    let base = |id: &str| -> u64 {
        let spec = json_file(&store.join("containers").join(id.trim()).join("config.json"));
        spec["linux"]["uidMappings"][0]["hostID"].as_u64().unwrap()
    };
    let parent = crate::common::sandbox::cgroup_parent();
    let common = [
        "--userns=auto",
        "--network",
        "none",
        "--cgroup-parent",
        &parent,
    ];
    let x = ok(imgctl(&store)
        .args(["create", "--name", "x"])
        .args(common)
        .args(["busybox", "sleep", "60"]));
    let y = ok(imgctl(&store)
        .args(["run", "-d", "--name", "y"])
        .args(common)
        .args(["busybox", "sleep", "60"]));
    assert_eq!(base(&x), base(&y), "y was not given x's free range");
    let refused = im(&store, &["start", "x"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    // Docker's `start` ends with 1 when a container cannot be started.
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(!err.contains("runtime spec"), "{err}");
    assert!(err.contains("held by another running container"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    ok(imgctl(&store).args(["rm", "-f", "y"]));
    ok(imgctl(&store).args(["start", "x"]));
    assert_eq!(status(&store, "x"), "running");
    ok(imgctl(&store).args(["rm", "-f", "x"]));
}
