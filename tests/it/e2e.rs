//! End-to-end flows across modules: registry -> store -> snapshots -> sandbox.
//! Each pushes a fixture image with skopeo into a real docker-registry, pulls it with
//! imgctl (which unpacks into overlay snapshots) and uses it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::layer::{assert_same_tree, tree, umoci_unpack};
use crate::common::registry::{registry_tools, Registry};
use crate::common::{self, fails, imgctl, is_root, ok, output, require};

fn testdata() -> PathBuf {
    PathBuf::from(
        std::env::var("IMGCTL_TESTDATA").unwrap_or_else(|_| "/var/cache/imgctl-testdata".into()),
    )
}

/// Root, the registry tools, and the named fixture layout (built by scripts/fixtures).
fn ready(fixture: &str) -> Option<PathBuf> {
    let layout = testdata().join(fixture);
    let ok = require(is_root(), "root (overlayfs, namespaces)")
        && require(registry_tools(), "docker-registry and skopeo")
        && require(
            layout.join("index.json").is_file(),
            &format!("fixture {} (scripts/fixtures/)", layout.display()),
        );
    ok.then_some(layout)
}

fn push(layout: &Path, reg: &Registry, dest: &str) {
    let out = output(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(format!("docker://{}/{dest}", reg.addr)),
    );
    assert!(
        out.status.success(),
        "skopeo push failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn entries(dir: &Path) -> usize {
    fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Mounts under `root` in this mount namespace.
fn mounts_under(root: &Path) -> Vec<String> {
    let needle = root.to_string_lossy().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

#[test]
fn pulled_nginx_is_unpacked_and_mounts_like_umoci() {
    let Some(layout) = ready("nginx-oci") else {
        return;
    };
    if !require(common::have("umoci"), "umoci") {
        return;
    }
    let reg = Registry::open();
    push(&layout, &reg, "library/nginx:latest");
    let t = common::tempdir();
    let store = t.path().join("store");
    let image = format!("{}/library/nginx:latest", reg.addr);
    ok(imgctl(&store).args(["pull", "--quiet", &image]));
    // Pull unpacked both layers into snapshots.
    assert_eq!(
        entries(&store.join("snapshots/layers")),
        2,
        "two layer snapshots after pull"
    );

    let merged = PathBuf::from(ok(imgctl(&store).args(["mount", &image])).trim());
    let mounted = tree(&merged, false);
    let by_umoci = tree(
        &umoci_unpack(&layout, "latest", &t.path().join("bundle")),
        false,
    );
    assert!(
        mounted.len() > 5000,
        "nginx has thousands of paths, got {}",
        mounted.len()
    );
    assert_same_tree(
        &mounted,
        &by_umoci,
        "pulled nginx: imgctl mount vs umoci unpack",
    );
    ok(imgctl(&store).args(["umount"]).arg(&merged));
    assert!(
        mounts_under(&store.join("snapshots/active")).is_empty(),
        "umount leaves no view mounted"
    );
}

#[test]
fn run_on_a_pulled_image_and_clean_up() {
    let Some(layout) = ready("busybox-oci") else {
        return;
    };
    let _serial = common::sandbox::serial();
    let reg = Registry::open();
    push(&layout, &reg, "library/busybox:latest");
    let t = common::tempdir();
    let store = t.path().join("store");
    let image = format!("{}/library/busybox:latest", reg.addr);

    // --no-unpack stores blobs only; run unpacks on demand.
    ok(imgctl(&store).args(["pull", "--quiet", "--no-unpack", &image]));
    assert_eq!(entries(&store.join("snapshots/layers")), 0);
    let out = ok(imgctl(&store).args([
        "run",
        "--rm",
        "--hostname",
        "e2e",
        &image,
        "sh",
        "-c",
        "echo hi from $(hostname); echo $$",
    ]));
    assert_eq!(out, "hi from e2e\n1\n");
    assert_eq!(entries(&store.join("snapshots/layers")), 1);

    // The image's CMD (`sh`) runs when no command is given; stdin is empty, so it exits 0.
    ok(imgctl(&store).args(["run", "--rm", &image]));

    // Exit codes propagate; writes go to the container's own layer only.
    let st = output(imgctl(&store).args([
        "run",
        "--rm",
        &image,
        "sh",
        "-c",
        "echo x > /bin/busybox; exit 3",
    ]));
    assert_eq!(st.status.code(), Some(3));
    let out = ok(imgctl(&store).args([
        "run",
        "--rm",
        &image,
        "sh",
        "-c",
        "busybox true && echo intact",
    ]));
    assert_eq!(
        out, "intact\n",
        "a container's write did not reach the image"
    );

    // 127 for a missing command, 125 for an unknown image.
    let (code, err) = fails(imgctl(&store).args(["run", "--rm", &image, "no-such-command"]));
    assert_eq!(code, 127, "{err}");
    let (code, err) = fails(imgctl(&store).args(["run", "--rm", "no-such-image:1"]));
    assert_eq!(code, 125);
    assert!(
        err.contains("no such image") && err.lines().count() == 1,
        "{err}"
    );

    // Nothing left mounted, no active snapshot left behind.
    assert!(
        mounts_under(&store).is_empty(),
        "left mounted: {:?}",
        mounts_under(&store)
    );
    assert_eq!(
        entries(&store.join("snapshots/active")),
        0,
        "active snapshots left behind"
    );
}

#[test]
fn bundle_of_a_pulled_image_runs_under_runc() {
    let Some(layout) = ready("busybox-oci") else {
        return;
    };
    if !require(common::have("runc"), "runc") {
        return;
    }
    let _serial = common::sandbox::serial();
    let reg = Registry::open();
    push(&layout, &reg, "library/busybox:latest");
    let t = common::tempdir();
    let store = t.path().join("store");
    let image = format!("{}/library/busybox:latest", reg.addr);
    ok(imgctl(&store).args(["pull", "--quiet", &image]));
    let bundle = t.path().join("bundle");
    ok(imgctl(&store).arg("bundle").arg(&image).arg(&bundle).args([
        "sh",
        "-c",
        "echo bundled; cat /etc/hostname >/dev/null",
    ]));
    assert!(
        bundle.join("rootfs/bin/busybox").is_file(),
        "rootfs flattened into the bundle"
    );
    assert!(
        mounts_under(&store).is_empty(),
        "bundle leaves nothing mounted"
    );
    let id = format!("imgctl-e2e-{}", std::process::id());
    let out = output(
        Command::new("runc")
            .arg("run")
            .arg("-b")
            .arg(&bundle)
            .arg(&id),
    );
    let _ = Command::new("runc").args(["delete", "-f", &id]).output();
    assert!(
        out.status.success(),
        "runc run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "bundled\n");
}
