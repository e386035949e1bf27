//! `imgctl create` as Docker's (issue 15): the image is pulled per `--pull`, the
//! container is made but not started (`ps -a` shows it Created), `start` runs
//! it, `start -a` shows its output and exit code, `rm` removes it, also before
//! it ever ran.

use std::path::Path;
use std::process::Command;

use crate::common::registry::{registry_tools, Registry};
use crate::common::{self, fails, imgctl, is_root, ok, output, require};

fn ps_row(store: &Path, name: &str) -> Option<String> {
    ok(imgctl(store).args(["ps", "-a"]))
        .lines()
        .find(|l| l.split_whitespace().last() == Some(name))
        .map(str::to_string)
}

fn containers(store: &Path) -> usize {
    std::fs::read_dir(store.join("containers"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Unmounts what a store under its directory still has mounted (layer images,
/// a container's view) when the test ends, also when it fails half-way.
struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| Path::new(p).starts_with(self.0))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = Command::new("umount").args(["-l", p]).status();
        }
    }
}

#[test]
fn create_makes_a_container_that_start_runs_and_rm_removes() {
    let layout = std::path::PathBuf::from(
        std::env::var("IMGCTL_TESTDATA").unwrap_or_else(|_| "/var/cache/imgctl-testdata".into()),
    )
    .join("busybox-oci");
    if !(require(is_root(), "root (overlayfs, namespaces)")
        && require(registry_tools(), "docker-registry and skopeo")
        && require(layout.join("index.json").is_file(), "busybox fixture"))
    {
        return;
    }
    let _serial = common::sandbox::serial();
    let reg = Registry::open();
    let out = output(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(format!("docker://{}/library/busybox:latest", reg.addr)),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = common::tempdir();
    let _unmount = Unmount(t.path());
    let store = t.path().join("store");
    let image = format!("{}/library/busybox:latest", reg.addr);

    // --pull never on an empty store: one line, nothing made.
    let (code, err) = fails(imgctl(&store).args(["create", "--pull", "never", &image, "true"]));
    assert_eq!(code, 125, "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert_eq!(containers(&store), 0);

    // The missing image is pulled (default --pull missing); the ID is printed.
    let out = output(imgctl(&store).args([
        "create",
        "--name",
        "made",
        "--network",
        "none",
        &image,
        "sh",
        "-c",
        "echo hello; echo oops >&2; exit 3",
    ]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(id.len(), 64, "one ID on stdout: {id:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unable to find image"));
    let row = ps_row(&store, "made").expect("ps -a lists the created container");
    assert!(
        row.starts_with(&id[..12]) && row.contains("Created"),
        "{row}"
    );
    // Not running: plain `ps` does not list it, and it has no logs yet.
    assert!(!ok(imgctl(&store).arg("ps")).contains("made"));
    assert_eq!(ok(imgctl(&store).args(["logs", "made"])), "");

    // `wait` on a created container waits for it to be started and to end.
    let waiter = imgctl(&store)
        .args(["wait", "made"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut waiter = waiter;
    assert!(
        waiter.try_wait().unwrap().is_none(),
        "wait returned before the container was started"
    );
    ok(imgctl(&store).args(["start", "made"]));
    let w = waiter.wait_with_output().unwrap();
    assert!(w.status.success(), "{}", String::from_utf8_lossy(&w.stderr));
    assert_eq!(String::from_utf8_lossy(&w.stdout).trim(), "3");
    assert_eq!(ok(imgctl(&store).args(["wait", "made"])).trim(), "3");
    let logs = output(imgctl(&store).args(["logs", "made"]));
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "hello\n", "{logs:?}");
    assert_eq!(String::from_utf8_lossy(&logs.stderr), "oops\n");
    let row = ps_row(&store, "made").unwrap();
    assert!(row.contains("Exited (3)"), "{row}");

    // start -a: this run's output on the caller's stdout/stderr, its exit code.
    let out = output(imgctl(&store).args(["start", "-a", "made"]));
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");

    ok(imgctl(&store).args(["rm", "made"]));
    assert!(ps_row(&store, "made").is_none());
    assert_eq!(containers(&store), 0);

    // create --rm: start -a shows the output and exit code, then it is gone.
    ok(imgctl(&store).args([
        "create",
        "--rm",
        "--name",
        "once",
        "--network",
        "none",
        &image,
        "sh",
        "-c",
        "echo bye; exit 4",
    ]));
    let out = output(imgctl(&store).args(["start", "-a", "once"]));
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "bye\n");
    let gone = std::time::Instant::now();
    while ps_row(&store, "once").is_some() {
        assert!(gone.elapsed().as_secs() < 10, "--rm container still listed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // A command that cannot run: start fails in one line and the container
    // stays, created, for `rm` (Docker's way).
    ok(imgctl(&store).args([
        "create",
        "--name",
        "bad",
        "--network",
        "none",
        &image,
        "nosuchcmd",
    ]));
    let (code, err) = fails(imgctl(&store).args(["start", "bad"]));
    assert_ne!(code, 0);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("nosuchcmd"), "{err}");
    assert!(ps_row(&store, "bad").is_some_and(|r| r.contains("Created")));
    ok(imgctl(&store).args(["rm", "bad"]));

    // Created and removed without ever running; the name is free again.
    let id2 = ok(imgctl(&store).args(["create", "--name", "made", &image, "true"]));
    assert_ne!(id2.trim(), id);
    ok(imgctl(&store).args(["rm", "made"]));
    assert_eq!(containers(&store), 0);
    let views: Vec<_> = std::fs::read_dir(store.join("snapshots/active"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ctr-"))
        .collect();
    assert!(views.is_empty(), "views left: {views:?}");
}
