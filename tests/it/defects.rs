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

/// `--root DIR` on an existing directory used to chmod it 0700, and read-only
/// commands created a store wherever they were pointed.
#[test]
fn root_is_never_chmodded_and_read_only_commands_create_no_store() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempdir();
    let shared = t.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let absent = t.path().join("absent");
    for root in [&shared, &absent] {
        for args in [
            &["images"][..],
            &["images", "--format", "json"],
            &["df"],
            &["prune"],
        ] {
            let o = crate::common::output(imgctl(root).args(args));
            assert!(
                o.status.success(),
                "{args:?} on {}: {}",
                root.display(),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let (code, err) = crate::common::fails(imgctl(root).args(["inspect", "nginx"]));
        assert_eq!(code, 125);
        assert!(err.contains("no such image: nginx"), "{err}");
        crate::common::fails(imgctl(root).args(["history", "nginx"]));
    }
    assert!(
        !absent.exists(),
        "a read-only command created {}",
        absent.display()
    );
    let mode = std::fs::metadata(&shared).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o1777, "the named directory keeps its mode");
    assert_eq!(
        std::fs::read_dir(&shared).unwrap().count(),
        0,
        "nothing created"
    );

    // A non-empty directory that is not a store is refused in one line.
    let home = t.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::write(home.join("notes.txt"), "mine").unwrap();
    let (code, err) = crate::common::fails(imgctl(&home).arg("images"));
    assert_eq!(code, 125);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("not an imgctl store"), "{err}");
    let (code, err) = crate::common::fails(imgctl(&home).args(["pull", "127.0.0.1:1/none:1"]));
    assert_eq!(code, 125);
    assert!(err.contains("not an imgctl store"), "{err}");
    assert_eq!(
        std::fs::read_dir(&home).unwrap().count(),
        1,
        "nothing created"
    );
}

/// A token server announcing `expires_in` = 2^64-1 made `pull` panic (Instant
/// overflow, exit 101). Absurd, negative and fractional lifetimes are survived:
/// the pull succeeds, never a panic.
#[test]
fn absurd_token_lifetimes_never_panic() {
    use crate::common::registry::*;
    if !registry_tools() {
        return;
    }
    let open = Registry::open();
    let t = tempdir();
    let img = Image::new(
        host_arch(),
        vec![layer(
            &[("hello", b"hello from a token-auth registry")],
            true,
        )],
    );
    push_image(
        &t.path().join("src"),
        &img,
        &open.addr,
        "public/lifetime:v1",
    );
    let issuer = TokenIssuer::start("u", "p");
    let reg = Registry::start(Auth::Token(&issuer), Some(&open.storage));
    let name = format!("{}/public/lifetime:v1", reg.addr);
    for (i, v) in [
        serde_json::json!(u64::MAX),
        serde_json::json!(u64::MAX / 1000),
        serde_json::json!(-1),
        serde_json::json!(1e300),
        serde_json::json!(30.5),
        serde_json::json!("3600"),
    ]
    .into_iter()
    .enumerate()
    {
        *issuer.expires_in.lock().unwrap() = v.clone();
        let root = t.path().join(format!("root{i}"));
        let o = output_within(
            imgctl(&root).args(["pull", "--quiet", &name]),
            Duration::from_secs(60),
        )
        .unwrap_or_else(|| panic!("pull hung with expires_in {v}"));
        assert!(
            o.status.success(),
            "expires_in {v}: exit {:?}: {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

fn overlay(t: &Path, lower: &Path) -> Option<std::path::PathBuf> {
    let (up, work, merged) = (t.join("up"), t.join("work"), t.join("merged"));
    for d in [&up, &work, &merged] {
        std::fs::create_dir_all(d).unwrap();
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        up.display(),
        work.display()
    );
    let st = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &data])
        .arg(&merged)
        .status()
        .unwrap();
    crate::common::require(st.success(), "overlayfs").then_some(merged)
}

fn cached_copies(store: &Path) -> usize {
    std::fs::read_dir(store.join("cache/userns"))
        .map(|rd| rd.count())
        .unwrap_or(0)
}

/// `--rootfs DIR` with a user namespace on an overlay used the shifted copy made
/// for the first run even after DIR changed. Each run now sees DIR as it is.
#[test]
fn userns_rootfs_dir_changes_are_seen() {
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let store = t.path().join("store");
    let lower = rootfs(t.path());
    std::fs::write(lower.join("etc/marker"), "one").unwrap();
    let Some(merged) = overlay(t.path(), &lower) else {
        return;
    };
    let cat = || {
        crate::common::sandbox::run(
            &store,
            &merged,
            &["--uidmap", "0:410000:65536"],
            &["/bin/cat", "/etc/marker"],
        )
    };
    let first = cat();
    std::fs::write(merged.join("etc/marker"), "two").unwrap();
    let second = cat();
    let _ = Command::new("umount").arg(&merged).status();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&first.stdout), "one");
    assert_eq!(String::from_utf8_lossy(&second.stdout), "two", "stale copy");
    assert_eq!(cached_copies(&store), 0, "a directory's copy is not kept");
}

/// `--userns=auto` on an image made a full rootfs copy per run, never reused or
/// deleted. Copies are now keyed by the image's content and the mapping, reused,
/// and `prune` removes those no container uses.
#[test]
fn userns_image_copies_are_shared_and_pruned() {
    if !ready() {
        return;
    }
    let layout = crate::common::fixture::busybox_layout();
    if !crate::common::fixture::require_layout(&layout, "busybox.sh") {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let store = t.path().join("store");
    let image = format!("oci:{}:latest", layout.display());
    let parent = crate::common::sandbox::cgroup_parent();
    for _ in 0..2 {
        let o = crate::common::output(imgctl(&store).args([
            "run",
            "--rm",
            "--cgroup-parent",
            &parent,
            "--uidmap",
            "0:420000:65536",
            &image,
            "/bin/sh",
            "-c",
            "stat -c %u /bin/busybox",
        ]));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "0");
    }
    assert_eq!(cached_copies(&store), 1, "one copy per (image, mapping)");
    // A container that is kept holds its copy through prune.
    let o = crate::common::output(imgctl(&store).args([
        "run",
        "--name",
        "kept",
        "--cgroup-parent",
        &parent,
        "--uidmap",
        "0:420000:65536",
        &image,
        "/bin/true",
    ]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    crate::common::ok(imgctl(&store).arg("prune"));
    assert_eq!(cached_copies(&store), 1, "in use by the kept container");
    for e in std::fs::read_dir(store.join("containers"))
        .unwrap()
        .flatten()
    {
        std::fs::remove_dir_all(e.path()).unwrap();
    }
    let out = crate::common::ok(imgctl(&store).arg("prune"));
    assert!(out.contains("user-namespace rootfs copies: 1"), "{out}");
    assert_eq!(cached_copies(&store), 0);
}
