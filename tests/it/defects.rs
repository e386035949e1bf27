//! Regression tests for defects found in review (issue 8 item 5), each named after
//! what it fixes. Buildfile parser defects live in `buildfile.rs`.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::sandbox::{ready, rootfs, serial};
use crate::common::{imgctl, tempdir};

/// Run `cmd`, killing it after `limit`: a hang is a failure with a message, not a
/// stuck test run. Returns None when it had to be killed.
fn output_within(cmd: &mut Command, limit: Duration) -> Option<Output> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn imgctl");
    let start = Instant::now();
    while start.elapsed() < limit {
        if child.try_wait().expect("wait").is_some() {
            return Some(child.wait_with_output().expect("collect output"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn containers_in(store: &Path) -> Vec<String> {
    std::fs::read_dir(store.join("containers"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// An image whose /etc/passwd is a FIFO used to hang `run -u NAME` forever (the
/// host opened it for reading, waiting for a writer) and left the container's
/// state behind. Now: one line naming the file, exit 125, nothing left.
#[test]
fn run_with_a_fifo_passwd_fails_fast_and_leaves_no_state() {
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let store = t.path().join("store");
    let r = rootfs(t.path());
    for f in ["etc/passwd", "etc/group"] {
        std::fs::remove_file(r.join(f)).unwrap();
        nix::unistd::mkfifo(&r.join(f), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    }
    let mut c = imgctl(&store);
    c.args(["run", "--rm", "-u", "nobody", "--rootfs"])
        .arg(&r)
        .arg("/bin/true");
    let o = output_within(&mut c, Duration::from_secs(20))
        .expect("imgctl run hung on a FIFO /etc/passwd");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(125), "{err}");
    assert!(
        err.contains("/etc/passwd") && err.contains("not a regular file"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        containers_in(&store).is_empty(),
        "{:?}",
        containers_in(&store)
    );
}
