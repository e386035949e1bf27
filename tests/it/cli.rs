//! Command-line behaviour a new user meets first (issue 8 item 5): unknown flags,
//! a closed stdout, the permissions of what `bundle` and `export` write.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;

use crate::common::layer::{dir, file, tar_of, write_oci, Z};
use crate::common::{fails, imgctl, is_root, ok, output, require, tempdir};

/// Flags Docker has and imgctl does not: each must be refused as an unknown flag
/// (exit 125), never taken as the image name ("no such image: -d").
#[test]
fn unknown_flags_are_reported_as_unknown_flags_not_as_an_image() {
    let t = tempdir();
    let store = t.path().join("store");
    let cases: &[&[&str]] = &[
        &["run", "-P", "busybox"],
        &["run", "--gpus", "all", "busybox"],
        &["run", "--mac-address", "02:42:ac:11:00:02", "busybox"],
        &["run", "--sig-proxy", "false", "busybox"],
        &["run", "--rm", "-d", "--publish-all", "busybox", "true"],
        &["bundle", "-d", "busybox", "/tmp/x"],
        &["bundle", "--isolation", "default", "busybox", "/tmp/x"],
        &["images", "--bogus"],
        &["pull", "--bogus", "busybox"],
        &["mount", "--bogus", "busybox"],
        &["export", "--bogus", "busybox", "-o", "/dev/null"],
        &["inspect", "-x", "busybox"],
    ];
    for args in cases {
        let (code, err) = fails(imgctl(&store).args(*args));
        assert_eq!(code, 125, "{args:?}: {err}");
        assert!(
            err.contains("unexpected argument"),
            "{args:?} not reported as an unknown flag: {err}"
        );
        assert!(!err.contains("no such image"), "{args:?}: {err}");
    }
    assert!(
        !store.join("containers").exists(),
        "a refused command left container state"
    );
}

/// A store holding one image named `docker.io/library/tiny:latest`, written as the
/// OCI layout the store is.
fn store_with_an_image(store: &Path) {
    let layer = tar_of(&[dir("etc"), file("etc/motd", b"hello\n")]);
    write_oci(store, "docker.io/library/tiny:latest", &[layer], Z::Gzip);
}

/// A pipe whose read end is already closed: every write to it fails with EPIPE.
fn closed_pipe() -> OwnedFd {
    let (r, w) = nix::unistd::pipe().expect("pipe");
    drop(r);
    w
}

/// `imgctl images --format json | head -1` used to end with exit 125 "Broken pipe"
/// when the error came wrapped in serde_json's. A closed stdout ends quietly.
#[test]
fn a_closed_stdout_ends_quietly_wherever_the_error_is_wrapped() {
    let t = tempdir();
    let store = t.path().join("store");
    store_with_an_image(&store);
    ok(imgctl(&store).args(["images"]));
    let cases: &[&[&str]] = &[
        &["images", "--format", "json"],
        &["images"],
        &["inspect", "tiny"],
        &["history", "--format", "json", "tiny"],
        &["df", "--format", "json"],
    ];
    for args in cases {
        let w = closed_pipe();
        // SAFETY: a new fd duplicated from one we own, handed to the child once.
        let dup = unsafe { OwnedFd::from_raw_fd(libc::dup(w.as_raw_fd())) };
        let out = output(
            imgctl(&store)
                .args(*args)
                .stdout(Stdio::from(dup))
                .stderr(Stdio::piped()),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?} printed on a closed stdout: {err}");
    }
}

/// An image whose `./` entry is 0777 owned by uid 1000, with a setuid-root file.
fn hostile_root_layout(at: &Path) {
    let layer = tar_of(&[
        dir("./").mode(0o777).owner(1000, 1000),
        dir("bin"),
        file("bin/su", b"#!/bin/sh\n").mode(0o4755),
        dir("etc"),
        file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
    ]);
    write_oci(at, "latest", &[layer], Z::Gzip);
}

/// `imgctl bundle IMAGE DIR` as root left DIR 0755 and applied the image's `./`
/// entry to DIR/rootfs (0777, uid 1000): every local user could reach (and the
/// image's owner could replace) its setuid-root files. Now DIR is 0700 and
/// DIR/rootfs keeps the root-owned 0755 it was created with.
#[test]
fn bundle_dir_is_private_and_the_image_root_entry_is_not_applied_to_it() {
    if !require(is_root(), "root (chown of extracted files)") {
        return;
    }
    let t = tempdir();
    let store = t.path().join("store");
    let layout = t.path().join("layout");
    hostile_root_layout(&layout);
    let bundle = t.path().join("bundle");
    ok(imgctl(&store)
        .args(["bundle", &format!("oci:{}", layout.display())])
        .arg(&bundle)
        .arg("/bin/su"));
    let b = std::fs::metadata(&bundle).unwrap();
    assert_eq!(b.permissions().mode() & 0o7777, 0o700, "bundle dir mode");
    let r = std::fs::metadata(bundle.join("rootfs")).unwrap();
    assert_eq!((r.uid(), r.gid()), (0, 0), "rootfs owner");
    assert_eq!(r.permissions().mode() & 0o7777, 0o755, "rootfs mode");
    // The image's content is there, setuid bit included (it is the image's).
    let su = std::fs::metadata(bundle.join("rootfs/bin/su")).unwrap();
    assert_eq!(su.permissions().mode() & 0o7777, 0o4755);
    assert!(bundle.join("config.json").is_file());
    // The image is flattened, never mounted: no overlay was made (and dropped).
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(&*t.path().to_string_lossy()),
        "bundle left a mount: {mountinfo}"
    );
    for d in ["snapshots/active", "snapshots/layers"] {
        let p = store.join(d);
        assert!(
            std::fs::read_dir(&p).map_or(true, |mut d| d.next().is_none()),
            "bundle unpacked or prepared snapshots in {}",
            p.display()
        );
    }
}

/// `imgctl export -o FILE` writes every file of the image (including ones it keeps
/// from other users): the output is created 0600, whatever the umask.
#[test]
fn export_output_is_private() {
    let t = tempdir();
    let store = t.path().join("store");
    let layout = t.path().join("layout");
    hostile_root_layout(&layout);
    let out = t.path().join("rootfs.tar");
    ok(imgctl(&store)
        .args(["export", &format!("oci:{}", layout.display()), "-o"])
        .arg(&out));
    let m = std::fs::metadata(&out).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    assert!(m.len() > 0);
}

/// `imgctl --help` says what the tool does today, and `run --help` no longer
/// promises image lookup "until image lookup lands".
#[test]
fn help_describes_the_tool_as_it_is() {
    let t = tempdir();
    let top = ok(imgctl(t.path()).arg("--help"));
    assert!(top.contains("pull images"), "{top}");
    assert!(top.contains("run commands in containers"), "{top}");
    assert!(top.contains("build images"), "{top}");
    let run = ok(imgctl(t.path()).args(["run", "--help"]));
    assert!(!run.contains("until image lookup lands"), "{run}");
    assert!(run.contains("--rootfs"), "{run}");
}

/// A container run without `--rm` keeps `state.json` (schemas/container-state),
/// written atomically; its `--name` is reserved, so a second run with the same
/// name is refused before anything starts.
#[test]
fn run_records_state_and_reserves_the_name() {
    use crate::common::sandbox::{ready, rootfs, serial};
    if !ready() {
        return;
    }
    let _g = serial();
    let t = tempdir();
    let store = t.path().join("store");
    let r = rootfs(t.path());
    let out = output(
        imgctl(&store)
            .args(["run", "--name", "web", "--rootfs"])
            .arg(&r)
            .args(["/bin/sh", "-c", "exit 3"]),
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let ids: Vec<_> = std::fs::read_dir(store.join("containers"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(ids.len(), 1);
    let dir = ids[0].path();
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
    crate::store::check_schema("container-state", &state);
    assert_eq!(state["status"], "stopped");
    assert_eq!(state["exit_code"], 3);
    assert_eq!(state["name"], "web");
    assert!(state["finished"].as_u64() >= state["started"].as_u64());
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    let (code, err) = fails(
        imgctl(&store)
            .args(["run", "--rm", "--name", "web", "--rootfs"])
            .arg(&r)
            .arg("/bin/true"),
    );
    assert_eq!(code, 125);
    assert!(err.contains("already used"), "{err}");
    assert_eq!(
        std::fs::read_dir(store.join("containers")).unwrap().count(),
        1,
        "the refused run made a container"
    );
}
