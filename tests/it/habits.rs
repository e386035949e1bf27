//! A Docker user's habits (issue 15): `run` pulls a missing image (`--pull`),
//! stdin and TTY like Docker, and a third Ctrl-C kills the container.
//! Images are pushed offline from the fixtures into a real docker-registry.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::registry::{registry_tools, Proxy, Registry};
use crate::common::{self, fails, imgctl, is_root, ok, output, require};

fn busybox_layout() -> Option<PathBuf> {
    let layout = PathBuf::from(
        std::env::var("IMGCTL_TESTDATA").unwrap_or_else(|_| "/var/cache/imgctl-testdata".into()),
    )
    .join("busybox-oci");
    let ok = require(is_root(), "root (overlayfs, namespaces)")
        && require(registry_tools(), "docker-registry and skopeo")
        && require(
            layout.join("index.json").is_file(),
            &format!("fixture {} (scripts/fixtures/busybox.sh)", layout.display()),
        );
    ok.then_some(layout)
}

/// A registry holding busybox as `library/busybox:latest`.
fn registry_with_busybox(layout: &Path) -> Registry {
    let reg = Registry::open();
    let out = output(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(format!("docker://{}/library/busybox:latest", reg.addr)),
    );
    assert!(
        out.status.success(),
        "skopeo push failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    reg
}

fn image_names(store: &Path) -> String {
    ok(imgctl(store).args(["images", "--format", "json"]))
}

fn manifest_requests(proxy: &Proxy) -> usize {
    proxy
        .requests()
        .iter()
        .filter(|h| h.path.contains("/manifests/"))
        .count()
}

#[test]
fn run_pulls_a_missing_image_as_the_pull_policy_says() {
    let Some(layout) = busybox_layout() else {
        return;
    };
    let _serial = common::sandbox::serial();
    let reg = registry_with_busybox(&layout);
    let proxy = Proxy::start(&reg.addr);
    let t = common::tempdir();
    let store = t.path().join("store");
    let image = format!("{}/library/busybox:latest", proxy.addr);

    // --pull never on an empty store: one line, exit 125, nothing fetched.
    let (code, err) =
        fails(imgctl(&store).args(["run", "--rm", "--pull", "never", &image, "true"]));
    assert_eq!(code, 125, "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains("no such image"), "{err}");
    assert_eq!(
        manifest_requests(&proxy),
        0,
        "--pull never asked the registry"
    );

    // An invalid policy is a flag error.
    let (code, err) = fails(imgctl(&store).args(["run", "--pull", "sometimes", &image, "true"]));
    assert_eq!(code, 125, "{err}");

    // Default (missing): pulls, then runs; the progress goes to stderr, stdout is
    // the container's alone.
    let out = output(imgctl(&store).args(["run", "--rm", &image, "echo", "ran"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
    assert!(err.contains("resolved to sha256:"), "pull progress: {err}");
    assert!(
        err.starts_with(&format!("Unable to find image '{image}' locally\n")),
        "{err}"
    );
    assert!(manifest_requests(&proxy) > 0, "nothing was pulled");
    assert!(
        image_names(&store).contains("library/busybox"),
        "the pulled image is not listed"
    );

    // Present now: the default does not ask the registry again...
    proxy.reset_counters();
    let out = output(imgctl(&store).args(["run", "--rm", &image, "true"]));
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(manifest_requests(&proxy), 0, "--pull missing re-checked");
    // ...--pull always does (and downloads no blob it has)...
    ok(imgctl(&store).args(["run", "--rm", "--pull", "always", &image, "true"]));
    assert!(
        manifest_requests(&proxy) > 0,
        "--pull always did not re-check"
    );
    assert_eq!(proxy.blob_bytes(), 0, "--pull always fetched stored blobs");
    // ...and --pull never runs what is there.
    ok(imgctl(&store).args(["run", "--rm", "--pull", "never", &image, "true"]));

    // A name the registry does not have: one line, 125.
    let missing = format!("{}/library/nothere:1", proxy.addr);
    let (code, err) = fails(imgctl(&store).args(["run", "--rm", &missing, "true"]));
    assert_eq!(code, 125, "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains("nothere"), "{err}");
}

/// Run `imgctl run ARGS` with `input` on its stdin; returns (exit code, stdout, stderr).
fn with_stdin(store: &Path, args: &[&str], input: &[u8]) -> (Option<i32>, String, String) {
    let mut child = imgctl(store)
        .arg("run")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn imgctl");
    let mut stdin = child.stdin.take().expect("stdin");
    // The container may never read: a closed pipe is fine.
    let _ = stdin.write_all(input);
    drop(stdin);
    let out = child.wait_with_output().expect("wait imgctl");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn stdin_reaches_the_container_only_with_dash_i() {
    let Some(layout) = busybox_layout() else {
        return;
    };
    let _serial = common::sandbox::serial();
    let reg = registry_with_busybox(&layout);
    let t = common::tempdir();
    let store = t.path().join("store");
    let image = format!("{}/library/busybox:latest", reg.addr);
    ok(imgctl(&store).args(["pull", "--quiet", &image]));

    // Without -i the container reads /dev/null.
    let (code, out, err) = with_stdin(&store, &["--rm", &image, "cat"], b"x\n");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "", "stdin reached the container without -i");
    // With -i it gets it.
    let (code, out, err) = with_stdin(&store, &["--rm", "-i", &image, "cat"], b"x\n");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "x\n");

    // -it with a pipe for stdin: Docker's one line, exit 1, before anything is
    // made (no container state) or pulled (an image not in the store).
    let fresh = t.path().join("fresh");
    let (code, _, err) = with_stdin(&fresh, &["--rm", "-it", &image, "cat"], b"x\n");
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.trim_end(), "imgctl: the input device is not a TTY");
    assert!(!fresh.join("blobs").exists(), "-it with a pipe pulled");
    let (code, _, err) = with_stdin(&store, &["--rm", "-it", &image, "cat"], b"x\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        !store.join("containers").exists()
            || std::fs::read_dir(store.join("containers"))
                .map(|d| d.count())
                .unwrap_or(0)
                == 0,
        "-it with a pipe left container state"
    );

    // -t without -i: a terminal with no input; the output still comes through.
    let (code, out, err) = with_stdin(&store, &["--rm", "-t", &image, "echo", "tty"], b"x\n");
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim_end(), "tty");
    let (code, out, err) = with_stdin(
        &store,
        &["--rm", "-t", &image, "sh", "-c", "test -t 0 && echo term"],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim_end(), "term", "stdin is not a terminal with -t");

    // -it on a terminal (made by script(1)): what is typed reaches the shell.
    if require(common::have("script"), "script (util-linux)") {
        let cmd = format!("{} run --rm -it {image} sh", common::imgctl_bin().display());
        let mut c = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env("IMGCTL_ROOT", &store)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn script");
        let mut input = c.stdin.take().expect("stdin");
        input
            .write_all(b"echo typed-$((40+2)); exit 4\n")
            .expect("type");
        drop(input);
        let o = c.wait_with_output().expect("wait script");
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(4), "{out}");
        assert!(out.contains("typed-42"), "{out}");
    }

    // A shell loop over lines: no line eaten by a container, even one that reads.
    let script = format!(
        "while read l; do {bin} run --rm {image} cat; {bin} run --rm {image} true; echo \"got $l\"; done",
        bin = common::imgctl_bin().display()
    );
    let mut sh = Command::new("sh")
        .args(["-c", &script])
        .env("IMGCTL_ROOT", &store)
        .env_remove("IMGCTL_REGISTRY_MIRROR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let mut input = sh.stdin.take().expect("stdin");
    input.write_all(b"one\ntwo\nthree\n").expect("write lines");
    drop(input);
    let o = sh.wait_with_output().expect("wait sh");
    assert!(
        o.status.success(),
        "loop failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "got one\ngot two\ngot three\n"
    );
}

/// The pid of a child of `parent` whose command line starts with `prog`.
fn child_running(parent: u32, prog: &str) -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // ppid is the second field after the ")" closing the command name.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(parent) {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmd.starts_with(prog.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

#[test]
fn a_third_interrupt_within_three_seconds_kills_the_container() {
    let Some(layout) = busybox_layout() else {
        return;
    };
    let _serial = common::sandbox::serial();
    let reg = registry_with_busybox(&layout);
    let t = common::tempdir();
    let store = t.path().join("store");
    let image = format!("{}/library/busybox:latest", reg.addr);
    ok(imgctl(&store).args(["pull", "--quiet", &image]));

    let mut child = imgctl(&store)
        .args(["run", "--rm", &image, "sleep", "100"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn imgctl");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child_running(child.id(), "sleep").is_none() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("imgctl ended before the container ran: {st}");
        }
        assert!(Instant::now() < deadline, "the container never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let sigint = || nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("kill");
    // One interrupt is forwarded, and PID 1 `sleep` without a handler ignores it.
    sigint();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "one SIGINT ended the container"
    );
    sigint();
    std::thread::sleep(Duration::from_millis(100));
    sigint();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("three SIGINTs did not end `run --rm … sleep 100`");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = child
        .wait_with_output()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    assert_eq!(status.code(), Some(137), "killed: 128+SIGKILL; {err}");
    assert!(err.contains("third interrupt"), "{err}");
    // --rm: nothing left.
    let left = std::fs::read_dir(store.join("containers"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "container state left after --rm");
}

/// `-v HOST:CTR` creates a missing host directory (Docker) and the container writes
/// into it; `--mount type=bind` with a missing source is one line naming the path,
/// exit 125, and creates nothing.
#[test]
fn dash_v_creates_a_missing_host_dir_and_mount_names_the_missing_path() {
    let Some(layout) = busybox_layout() else {
        return;
    };
    let _serial = common::sandbox::serial();
    let t = common::tempdir();
    let store = t.path().join("store");
    ok(imgctl(&store).arg("images"));
    ok(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(format!(
            "oci:{}:docker.io/library/busybox:latest",
            store.display()
        )));
    let host = t.path().join("made/by/dash-v");
    let spec = format!("{}:/data", host.display());
    ok(imgctl(&store).args([
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &spec,
        "busybox",
        "sh",
        "-c",
        "echo hi > /data/f",
    ]));
    assert!(host.is_dir(), "-v did not create {}", host.display());
    assert_eq!(std::fs::read_to_string(host.join("f")).unwrap(), "hi\n");

    let missing = t.path().join("not/there");
    let m = format!("type=bind,source={},target=/d", missing.display());
    let (code, err) = fails(imgctl(&store).args([
        "run",
        "--rm",
        "--network",
        "none",
        "--mount",
        &m,
        "busybox",
        "true",
    ]));
    assert_eq!(code, 125, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert!(!missing.exists(), "--mount created its source");
}
