//! `imgctl runtime`: the OCI runtime command line, driven as a conformance
//! tool drives runc: a bundle from the busybox fixture (`imgctl bundle`),
//! create → created → start → running → stopped → delete, the lifecycle
//! errors of runtime-spec runtime.md, signals, `--force`, the six hooks in
//! order with the state on stdin, and the console socket.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::fixture::{busybox_layout, require_layout};
use crate::common::{imgctl, imgctl_bin, is_root, ok, output, require, tempdir};

fn ready() -> Option<PathBuf> {
    let layout = busybox_layout();
    let ok =
        require(is_root(), "root (namespaces, cgroups)") && require_layout(&layout, "busybox.sh");
    ok.then_some(layout)
}

/// A bundle of the busybox fixture running `cmd`, config.json edited by `edit`.
fn bundle(t: &Path, layout: &Path, cmd: &[&str], edit: impl FnOnce(&mut Value)) -> PathBuf {
    let b = t.join("bundle");
    ok(imgctl(&t.join("store"))
        .arg("bundle")
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(&b)
        .args(cmd));
    let path = b.join("config.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut c);
    std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    b
}

struct Rt {
    root: PathBuf,
}

impl Rt {
    fn new(t: &Path) -> Rt {
        Rt {
            root: t.join("state"),
        }
    }
    fn cmd(&self) -> Command {
        let mut c = Command::new(imgctl_bin());
        c.arg("runtime").arg("--root").arg(&self.root);
        c.stdin(Stdio::null());
        c
    }
    /// `create`; the container inherits stdout/stderr: give it a file, never a
    /// pipe `output()` would wait on until the container ends.
    fn create(&self, bundle: &Path, id: &str, log: &Path) -> Output {
        let f = File::create(log).unwrap();
        output(
            self.cmd()
                .args(["create", "--bundle"])
                .arg(bundle)
                .arg("--pid-file")
                .arg(log.with_extension("pid"))
                .arg(id)
                .stdout(f.try_clone().unwrap())
                .stderr(f),
        )
    }
    fn run(&self, args: &[&str]) -> Output {
        output(self.cmd().args(args))
    }
    fn state(&self, id: &str) -> Value {
        let out = self.run(&["state", id]);
        assert!(
            out.status.success(),
            "state {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("state is JSON")
    }
    fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap_or("").to_string()
    }
    fn wait_status(&self, id: &str, want: &str) {
        let t0 = Instant::now();
        loop {
            let s = self.status(id);
            if s == want {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "{id} stayed {s}, never {want}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    /// Must fail with one line on stderr mentioning `needle`.
    fn fails(&self, args: &[&str], needle: &str) {
        let out = self.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err:?}");
    }
}

fn ok_out(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn schema(name: &str) -> jsonschema::Validator {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(name);
    let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    jsonschema::validator_for(&v).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn assert_valid(v: &jsonschema::Validator, doc: &Value, what: &str) {
    let errs: Vec<String> = v.iter_errors(doc).map(|e| e.to_string()).collect();
    assert!(
        errs.is_empty(),
        "{what} against its schema: {errs:?}\n{doc}"
    );
}

fn cgroup_of(bundle: &Path) -> String {
    let c: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    c["linux"]["cgroupsPath"].as_str().unwrap().to_string()
}

fn cgroup_exists(path: &str) -> bool {
    ["memory", "pids", "cpu", "unified"]
        .iter()
        .any(|c| Path::new(&format!("/sys/fs/cgroup/{c}{path}")).exists())
}

fn sha256(p: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

#[test]
fn create_start_state_until_stopped_then_delete() {
    let Some(layout) = ready() else { return };
    let _serial = crate::common::sandbox::serial();
    let t = tempdir();
    let b = bundle(
        t.path(),
        &layout,
        &["sh", "-c", "echo from-the-container"],
        |_| {},
    );
    let rt = Rt::new(t.path());
    let log = t.path().join("c.log");
    let host_sum = sha256(&imgctl_bin());

    ok_out(&rt.create(&b, "life", &log), "create");
    // `create` has exited; the container is still there, waiting.
    let st = rt.state("life");
    assert_valid(&schema("runtime-state.schema.json"), &st, "state");
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], "life");
    assert_eq!(st["bundle"], b.to_str().unwrap());
    let pid = st["pid"].as_i64().expect("pid while created");
    let pid_file = std::fs::read_to_string(log.with_extension("pid")).unwrap();
    assert_eq!(pid_file.trim(), pid.to_string(), "pid file");
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    // Its process runs no writable copy of the host binary (CVE-2019-5736).
    let w = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{pid}/exe"));
    assert!(w.is_err(), "the created process's exe opened for writing");
    let record: Value =
        serde_json::from_slice(&std::fs::read(rt.root.join("life/state.json")).unwrap()).unwrap();
    assert_valid(&schema("runtime-record.schema.json"), &record, "state.json");
    assert!(
        std::fs::read_to_string(&log).unwrap().is_empty(),
        "the command ran before start"
    );

    ok_out(&rt.run(&["start", "life"]), "start");
    rt.wait_status("life", "stopped");
    let st = rt.state("life");
    assert_valid(&schema("runtime-state.schema.json"), &st, "stopped state");
    assert!(st.get("pid").is_none(), "a stopped container has no pid");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "from-the-container\n"
    );
    let list = rt.run(&["list", "-q"]);
    assert_eq!(String::from_utf8_lossy(&list.stdout), "life\n");

    ok_out(&rt.run(&["delete", "life"]), "delete");
    rt.fails(&["state", "life"], "does not exist");
    assert!(!rt.root.join("life").exists(), "state dir left");
    assert!(!cgroup_exists(&cgroup_of(&b)), "cgroup left");
    assert_eq!(sha256(&imgctl_bin()), host_sum, "host binary changed");
}

#[test]
fn lifecycle_errors_signals_and_force() {
    let Some(layout) = ready() else { return };
    let _serial = crate::common::sandbox::serial();
    let t = tempdir();
    // PID 1 of its namespace gets a signal from outside only with a handler.
    let b = bundle(
        t.path(),
        &layout,
        &[
            "sh",
            "-c",
            "trap 'exit 7' TERM; while :; do sleep 0.1; done",
        ],
        |_| {},
    );
    let rt = Rt::new(t.path());
    let log = t.path().join("c.log");
    rt.fails(&["start", "nope"], "does not exist");
    rt.fails(&["kill", "nope"], "does not exist");
    rt.fails(&["state", "../x"], "invalid");

    ok_out(&rt.create(&b, "long", &log), "create");
    let again = rt.create(&b, "long", &log);
    assert!(
        !again.status.success(),
        "create of an existing ID succeeded"
    );
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("already exists"));
    assert_eq!(rt.status("long"), "created", "the failed create touched it");
    rt.fails(&["kill", "long", "NOSUCHSIG"], "unknown signal");

    ok_out(&rt.run(&["start", "long"]), "start");
    assert_eq!(rt.status("long"), "running");
    rt.fails(&["start", "long"], "is running");
    rt.fails(&["delete", "long"], "is running");
    assert_eq!(
        rt.status("long"),
        "running",
        "delete without --force killed it"
    );

    ok_out(&rt.run(&["kill", "long"]), "kill (default TERM)");
    rt.wait_status("long", "stopped");
    rt.fails(&["kill", "long", "KILL"], "is stopped");
    rt.fails(&["start", "long"], "is stopped");
    ok_out(&rt.run(&["delete", "long"]), "delete stopped");
    assert!(!cgroup_exists(&cgroup_of(&b)), "cgroup left");

    // By number; then --force on a running one.
    ok_out(&rt.create(&b, "nine", &log), "create");
    ok_out(&rt.run(&["start", "nine"]), "start");
    ok_out(&rt.run(&["kill", "nine", "9"]), "kill 9");
    rt.wait_status("nine", "stopped");
    ok_out(&rt.run(&["delete", "nine"]), "delete");

    ok_out(&rt.create(&b, "forced", &log), "create");
    ok_out(&rt.run(&["start", "forced"]), "start");
    let pid = rt.state("forced")["pid"].as_i64().unwrap();
    ok_out(&rt.run(&["delete", "--force", "forced"]), "delete --force");
    assert!(
        !Path::new(&format!("/proc/{pid}/exe")).exists() || {
            // Reaped by whoever reaps orphans; at most a zombie for a moment.
            let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            s.contains(") Z")
        }
    );
    rt.fails(&["state", "forced"], "does not exist");
    assert!(!cgroup_exists(&cgroup_of(&b)), "cgroup left after --force");

    // A created container may be deleted without --force: its process goes.
    ok_out(&rt.create(&b, "unstarted", &log), "create");
    let pid = rt.state("unstarted")["pid"].as_i64().unwrap();
    ok_out(&rt.run(&["delete", "unstarted"]), "delete created");
    let t0 = Instant::now();
    while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z")) {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "created process survived delete"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!cgroup_exists(&cgroup_of(&b)), "cgroup left");
}

/// A hook that appends `KIND<TAB>stdin` to `log`.
fn hook(kind: &str, sh: &str, log: &str) -> Value {
    serde_json::json!({
        "path": sh,
        "args": ["sh", "-c", format!("printf '%s\\t%s\\n' {kind} \"$(cat)\" >> {log}")],
        "timeout": 10
    })
}

#[test]
fn hooks_run_in_order_with_the_state_on_stdin() {
    let Some(layout) = ready() else { return };
    let _serial = crate::common::sandbox::serial();
    let t = tempdir();
    let shared = t.path().join("hooklog");
    std::fs::create_dir(&shared).unwrap();
    let host_log = shared.join("hooks.log");
    let host_log_s = host_log.to_str().unwrap().to_string();
    let b = bundle(t.path(), &layout, &["true"], |c| {
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/hooklog",
            "type": "bind",
            "source": shared.to_str().unwrap(),
            "options": ["rbind", "rw"]
        }));
        c["hooks"] = serde_json::json!({
            "prestart": [hook("prestart", "/bin/sh", &host_log_s)],
            "createRuntime": [hook("createRuntime", "/bin/sh", &host_log_s)],
            // Before pivot_root: the host's paths.
            "createContainer": [hook("createContainer", "/bin/sh", &host_log_s)],
            // In the container: its busybox, its view of the log.
            "startContainer": [hook("startContainer", "/bin/sh", "/hooklog/hooks.log")],
            "poststart": [hook("poststart", "/bin/sh", &host_log_s)],
            "poststop": [hook("poststop", "/bin/sh", &host_log_s)],
        });
    });
    let rt = Rt::new(t.path());
    let log = t.path().join("c.log");
    ok_out(&rt.create(&b, "hooked", &log), "create");
    let pid = rt.state("hooked")["pid"].as_i64().unwrap();
    ok_out(&rt.run(&["start", "hooked"]), "start");
    rt.wait_status("hooked", "stopped");
    ok_out(&rt.run(&["delete", "hooked"]), "delete");

    let text = std::fs::read_to_string(&host_log).unwrap();
    let lines: Vec<(&str, Value)> = text
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('\t').expect("KIND\\tSTATE");
            (
                k,
                serde_json::from_str(v).unwrap_or_else(|e| panic!("{k}: {e}: {v}")),
            )
        })
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        kinds,
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ],
        "{text}"
    );
    let v = schema("runtime-state.schema.json");
    for (k, st) in &lines {
        assert_valid(&v, st, k);
        assert_eq!(st["id"], "hooked", "{k}");
        assert_eq!(st["bundle"], b.to_str().unwrap(), "{k}");
        if *k != "poststop" {
            assert_eq!(st["pid"].as_i64(), Some(pid), "{k}: pid");
        }
    }
    assert_eq!(lines[0].1["status"], "creating");
    assert_eq!(lines[3].1["status"], "created");
    assert_eq!(lines[4].1["status"], "running");
    assert_eq!(lines[5].1["status"], "stopped");
}

#[test]
fn a_failing_hook_fails_the_operation_and_leaves_nothing() {
    let Some(layout) = ready() else { return };
    let _serial = crate::common::sandbox::serial();
    let t = tempdir();
    let fail = serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]});
    let b = bundle(t.path(), &layout, &["true"], |c| {
        c["hooks"] = serde_json::json!({ "createRuntime": [fail] });
    });
    let rt = Rt::new(t.path());
    let log = t.path().join("c.log");
    let out = rt.create(&b, "badhook", &log);
    assert!(
        !out.status.success(),
        "create with a failing hook succeeded"
    );
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(err.contains("createRuntime hook /bin/sh"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    rt.fails(&["state", "badhook"], "does not exist");
    assert!(!cgroup_exists(&cgroup_of(&b)), "cgroup left");

    // A startContainer hook that times out fails `start`; the container stops.
    let slow =
        serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", "sleep 30"], "timeout": 1});
    let b2 = b.clone();
    let path = b2.join("config.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    c["hooks"] = serde_json::json!({ "startContainer": [slow] });
    std::fs::write(&path, serde_json::to_vec(&c).unwrap()).unwrap();
    ok_out(&rt.create(&b2, "slowhook", &log), "create");
    let out = rt.run(&["start", "slowhook"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "start with a timed-out hook succeeded"
    );
    assert!(
        err.contains("startContainer hook") && err.contains("timed out"),
        "{err}"
    );
    rt.wait_status("slowhook", "stopped");
    ok_out(&rt.run(&["delete", "slowhook"]), "delete");
}

#[test]
fn console_socket_receives_the_pty_master() {
    use std::os::unix::net::UnixListener;
    let Some(layout) = ready() else { return };
    let _serial = crate::common::sandbox::serial();
    let t = tempdir();
    let b = bundle(
        t.path(),
        &layout,
        &["sh", "-c", "tty >/dev/null && echo on-a-tty"],
        |c| c["process"]["terminal"] = Value::Bool(true),
    );
    let rt = Rt::new(t.path());
    let log = t.path().join("c.log");
    // Without a console socket a terminal container is refused.
    let out = rt.create(&b, "tty", &log);
    assert!(!out.status.success());
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("--console-socket"));

    let sock = t.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let receiver = std::thread::spawn(move || {
        use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
        let (conn, _) = listener.accept().unwrap();
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut buf = RecvAncillaryBuffer::new(&mut space);
        let mut name = [0u8; 64];
        let r = rustix::net::recvmsg(
            &conn,
            &mut [std::io::IoSliceMut::new(&mut name)],
            &mut buf,
            RecvFlags::CMSG_CLOEXEC,
        )
        .unwrap();
        let name = String::from_utf8_lossy(&name[..r.bytes]).into_owned();
        let fd = buf
            .drain()
            .find_map(|m| match m {
                RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
                _ => None,
            })
            .expect("a descriptor");
        (name, fd)
    });
    let out = output(
        rt.cmd()
            .args(["create", "--bundle"])
            .arg(&b)
            .arg("--console-socket")
            .arg(&sock)
            .arg("tty"),
    );
    ok_out(&out, "create with a console socket");
    let (name, master) = receiver.join().unwrap();
    assert!(name.starts_with("/dev/pts/"), "pty name {name:?}");
    ok_out(&rt.run(&["start", "tty"]), "start");
    rt.wait_status("tty", "stopped");
    let mut text = Vec::new();
    let mut f = File::from(master);
    let mut chunk = [0u8; 256];
    // EIO once the last slave is closed.
    while let Ok(n) = std::io::Read::read(&mut f, &mut chunk) {
        if n == 0 {
            break;
        }
        text.extend_from_slice(&chunk[..n]);
    }
    assert!(
        String::from_utf8_lossy(&text).contains("on-a-tty"),
        "{:?}",
        String::from_utf8_lossy(&text)
    );
    ok_out(&rt.run(&["delete", "tty"]), "delete");
}
