//! What `run --rm` skips to start fast, checked for what it must keep: its
//! overlay is mounted `volatile` (no sync of the store's filesystem at unmount,
//! the largest start-up cost measured on a busy host), a kept container's is not.

use std::path::PathBuf;
use std::process::Command;

use crate::common::{imgctl, is_root, ok, require, tempdir};

fn layout() -> Option<PathBuf> {
    let l = PathBuf::from(
        std::env::var("IMGCTL_TESTDATA").unwrap_or_else(|_| "/var/cache/imgctl-testdata".into()),
    )
    .join("busybox-oci");
    let ready = require(is_root(), "root (overlayfs, namespaces)")
        && require(
            l.join("index.json").is_file(),
            &format!("fixture {} (scripts/fixtures/busybox.sh)", l.display()),
        );
    ready.then_some(l)
}

/// The mount options of the container's `/`, as it sees them.
fn root_mount(cmd: &mut Command) -> String {
    let out = ok(cmd.args(["cat", "/proc/self/mountinfo"]));
    out.lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap_or_else(|| panic!("no / in {out}"))
        .to_string()
}

#[test]
fn run_rm_overlay_is_volatile_a_kept_container_is_not() {
    let Some(layout) = layout() else { return };
    let _serial = crate::common::sandbox::serial();
    let t = tempdir();
    let store = t.path().join("store");
    let image = format!("oci:{}:latest", layout.display());
    let rm = root_mount(imgctl(&store).args(["run", "--rm", "--network", "none", &image]));
    assert!(rm.contains(" - overlay "), "{rm}");
    assert!(
        rm.contains("volatile"),
        "run --rm overlay not volatile: {rm}"
    );
    let kept = root_mount(imgctl(&store).args(["run", "--network", "none", &image]));
    assert!(kept.contains(" - overlay "), "{kept}");
    assert!(
        !kept.contains("volatile"),
        "a kept container's overlay is volatile: {kept}"
    );
    // --rm left nothing; the kept one is still listed in the store.
    let active = std::fs::read_dir(store.join("snapshots/active"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .count()
        })
        .unwrap_or(0);
    assert!(
        active <= 1,
        "{active} active snapshots left by two runs, one --rm"
    );
}
