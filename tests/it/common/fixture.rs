//! The offline fixture images that scripts/fixtures/*.sh build under `IMGCTL_TESTDATA`
//! (busybox, nginx as OCI layouts), and the two ways tests hand them to imgctl: copied
//! into a store, or pushed to a test registry, both by skopeo (an independent writer).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{have, is_root, output, require};

/// Where scripts/fixtures/ put their layouts: `IMGCTL_TESTDATA`, by default
/// /var/cache/imgctl-testdata.
pub fn testdata() -> PathBuf {
    PathBuf::from(
        std::env::var("IMGCTL_TESTDATA").unwrap_or_else(|_| "/var/cache/imgctl-testdata".into()),
    )
}

/// The busybox OCI layout (scripts/fixtures/busybox.sh).
pub fn busybox_layout() -> PathBuf {
    testdata().join("busybox-oci")
}

/// The nginx OCI layout (scripts/fixtures/nginx.sh).
pub fn nginx_layout() -> PathBuf {
    testdata().join("nginx-oci")
}

/// Whether the fixture layout is built ([`require`]: skips, or fails under
/// `IMGCTL_TEST_STRICT=1`); `script` names the scripts/fixtures/ file that builds it.
#[must_use]
pub fn require_layout(layout: &Path, script: &str) -> bool {
    require(
        layout.join("index.json").is_file(),
        &format!("fixture {} (scripts/fixtures/{script})", layout.display()),
    )
}

/// Root, skopeo and the busybox fixture: a store at `dir`/store holding busybox as
/// `docker.io/library/busybox:latest`, or None (skip) when a prerequisite is missing.
pub fn store_with_busybox(dir: &Path) -> Option<PathBuf> {
    let layout = busybox_layout();
    let ready = require(is_root(), "root (overlayfs, namespaces, cgroups)")
        && require(have("skopeo"), "skopeo")
        && require_layout(&layout, "busybox.sh");
    if !ready {
        return None;
    }
    let store = dir.join("store");
    std::fs::create_dir_all(dir).expect("create the test dir");
    seed_store(&layout, &store, "docker.io/library/busybox:latest");
    Some(store)
}

/// Copy `layout`'s `latest` into the store at `store` (an OCI layout) as `name`.
pub fn seed_store(layout: &Path, store: &Path, name: &str) {
    skopeo_copy(
        &[],
        &format!("oci:{}:latest", layout.display()),
        &format!("oci:{}:{name}", store.display()),
    );
}

/// Push `layout`'s `latest` to `registry` (host:port, plain HTTP) as `dest` (repo:tag).
pub fn push_layout(layout: &Path, registry: &str, dest: &str) {
    skopeo_copy(
        &["--dest-tls-verify=false"],
        &format!("oci:{}:latest", layout.display()),
        &format!("docker://{registry}/{dest}"),
    );
}

/// `skopeo copy --quiet [flags] SRC DEST`, which must succeed.
pub fn skopeo_copy(flags: &[&str], src: &str, dest: &str) {
    let out = output(
        Command::new("skopeo")
            .args(["copy", "--quiet"])
            .args(flags)
            .args([src, dest]),
    );
    assert!(
        out.status.success(),
        "skopeo copy {src} {dest}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The multistage Buildfile of testdata/build/multistage (the build bench's, as in
/// /work/shared/bench) and its files, copied to `dir`/ctx; returns that context dir.
pub fn multistage_context(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/build/multistage");
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).expect("create the context dir");
    for f in ["Buildfile", "hello.txt"] {
        std::fs::copy(src.join(f), ctx.join(f)).expect("copy the multistage context");
    }
    ctx
}
