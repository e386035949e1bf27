//! Integration tests: layer application (overlay and flatten), the malicious-layer
//! suite (SECURITY-TESTS A1-A17), diff round trips, overlay snapshots and mounts
//! compared with `umoci unpack`, copy-on-write isolation and file-level dedup.
//!
//! Shared fixtures and the mount comparisons here; the hostile layers in [`hostile`],
//! round trips, isolation, dedup and commits in [`snapshots`].

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use imgctl::image::{self, OciDir, UnpackOptions};
use imgctl::layer::{
    self, ApplyMode, ApplyOptions, Compression, DevicePolicy, DiffOptions, LayerError, Limits,
    WhiteoutFormat,
};
use imgctl::oci::Digest;
use imgctl::snapshot::{self, Overlay, Snapshotter};

use crate::common::layer::*;
use crate::common::{self, require};

mod hostile;
mod snapshots;

const NGINX: &str = "/var/cache/imgctl-testdata/nginx-oci";

/// A v2 `security.capability` value granting cap_net_bind_service (effective).
const CAP_NET_BIND: [u8; 20] = [1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

fn root_and_tools(tools: &[&str]) -> bool {
    if !require(
        common::is_root(),
        "root (overlayfs, chown, mknod, trusted xattrs)",
    ) {
        return false;
    }
    tools.iter().all(|t| require(common::have(t), t))
}

/// The generated fixture: three layers that delete files and directories, make an
/// opaque directory, replace a file with a directory and back (and a directory with a
/// file and back), and hardlink across the tree.
fn fixture_layers() -> Vec<Vec<u8>> {
    let l1 = tar_of(&[
        dir("etc"),
        file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
        dir("etc/conf.d"),
        file("etc/conf.d/a.conf", b"a=1\n"),
        file("etc/conf.d/b.conf", b"b=2\n").mode(0o600),
        dir("usr"),
        dir("usr/bin"),
        file("usr/bin/tool", b"#!/bin/sh\necho tool\n")
            .mode(0o755)
            .xattr("security.capability", &CAP_NET_BIND),
        file("usr/bin/su", b"su binary").mode(0o4755),
        hardlink("etc/tool-link", "usr/bin/tool"),
        symlink("bin", "usr/bin"),
        dir("usr/share"),
        dir("usr/share/doc"),
        file("usr/share/doc/old1.txt", b"old1"),
        dir("usr/share/doc/sub"),
        file("usr/share/doc/sub/old2.txt", b"old2"),
        dir("var"),
        dir("var/lib"),
        dir("var/lib/old"),
        file("var/lib/old/data", b"data"),
        dir("var/lib/old/nested"),
        file("var/lib/old/nested/deep", b"deep"),
        dir("home").mode(0o755),
        dir("home/user").mode(0o750).owner(1000, 1000),
        file("home/user/notes", b"notes")
            .owner(1000, 1000)
            .xattr("user.tag", b"blue"),
        dir("tmp").mode(0o1777),
        dir("opt"),
        file("opt/flip", b"first a file"),
        dir("opt/flop"),
        file("opt/flop/inside", b"first a dir"),
        dir("dev"),
        E {
            kind: K::Char(1, 3),
            mode: 0o666,
            ..file("dev/null", b"")
        },
        E {
            kind: K::Fifo,
            mode: 0o600,
            ..file("dev/fifo", b"")
        },
    ]);
    let l2 = tar_of(&[
        dir("etc"),
        dir("etc/conf.d"),
        whiteout("etc/conf.d/.wh.a.conf"),
        file("etc/conf.d/c.conf", b"c=3\n"),
        dir("usr"),
        dir("usr/share"),
        dir("usr/share/doc"),
        whiteout("usr/share/doc/.wh..wh..opq"),
        file("usr/share/doc/new.txt", b"new"),
        dir("var"),
        dir("var/lib"),
        whiteout("var/lib/.wh.old"),
        dir("opt"),
        dir("opt/flip"),
        file("opt/flip/now-a-dir", b"flip became a dir"),
        whiteout("opt/.wh.flop"),
        file("opt/flop", b"flop became a file"),
        dir("srv"),
        file("srv/shared", b"linked across the tree")
            .mode(0o640)
            .owner(33, 33),
        dir("srv/deep"),
        dir("srv/deep/er"),
        hardlink("srv/deep/er/link", "srv/shared"),
        hardlink("etc/shared-link", "srv/shared"),
    ]);
    let l3 = tar_of(&[
        dir("opt"),
        whiteout("opt/.wh.flip"),
        file("opt/flip", b"flip is a file again"),
        whiteout("opt/.wh.flop"),
        dir("opt/flop"),
        file("opt/flop/back", b"flop is a dir again"),
        dir("etc"),
        whiteout("etc/.wh.passwd"),
        symlink("etc/passwd", "../srv/shared"),
    ]);
    vec![l1, l2, l3]
}

/// The paths the fixture must show once mounted or flattened.
fn fixture_expected_paths() -> Vec<&'static str> {
    let mut v = vec![
        "bin",
        "dev",
        "dev/fifo",
        "dev/null",
        "etc",
        "etc/conf.d",
        "etc/conf.d/b.conf",
        "etc/conf.d/c.conf",
        "etc/passwd",
        "etc/shared-link",
        "etc/tool-link",
        "home",
        "home/user",
        "home/user/notes",
        "opt",
        "opt/flip",
        "opt/flop",
        "opt/flop/back",
        "srv",
        "srv/deep",
        "srv/deep/er",
        "srv/deep/er/link",
        "srv/shared",
        "tmp",
        "usr",
        "usr/bin",
        "usr/bin/su",
        "usr/bin/tool",
        "usr/share",
        "usr/share/doc",
        "usr/share/doc/new.txt",
        "var",
        "var/lib",
    ];
    v.sort();
    v
}

fn check_fixture_tree(t: &std::collections::BTreeMap<String, Node>, root: &Path, what: &str) {
    let got: Vec<&str> = t.keys().map(|s| s.as_str()).collect();
    assert_eq!(got, fixture_expected_paths(), "{what}: paths");
    assert_eq!(t["opt/flip"].kind, "file");
    assert_eq!(t["opt/flop"].kind, "dir");
    assert_eq!(
        t["etc/passwd"].link.as_deref(),
        Some(Path::new("../srv/shared"))
    );
    assert_eq!(
        t["usr/bin/su"].mode, 0o4755,
        "{what}: setuid survives chown"
    );
    assert_eq!(t["tmp"].mode, 0o1777);
    assert_eq!(
        (t["home/user"].uid, t["home/user"].gid, t["home/user"].mode),
        (1000, 1000, 0o750)
    );
    assert!(t["usr/bin/tool"]
        .xattrs
        .iter()
        .any(|(k, v)| k == "security.capability" && v.as_slice() == CAP_NET_BIND));
    assert_eq!(
        t["home/user/notes"].xattrs,
        vec![("user.tag".to_string(), b"blue".to_vec())]
    );
    assert_eq!(t["dev/null"].rdev, libc::makedev(1, 3));
    assert_eq!(
        fs::read(root.join("srv/deep/er/link")).unwrap(),
        b"linked across the tree"
    );
    assert_eq!(
        fs::read(root.join("etc/tool-link")).unwrap(),
        b"#!/bin/sh\necho tool\n"
    );
    let a = fs::metadata(root.join("srv/shared")).unwrap();
    let b = fs::metadata(root.join("etc/shared-link")).unwrap();
    assert_eq!(
        (a.dev(), a.ino()),
        (b.dev(), b.ino()),
        "{what}: hardlinks share an inode"
    );
}

fn mount_image(store: &Path, image: &str) -> PathBuf {
    mount_image_with(store, image, &[])
}

fn mount_image_with(store: &Path, image: &str, flags: &[&str]) -> PathBuf {
    let out = common::ok(common::imgctl(store).arg("mount").args(flags).arg(image));
    PathBuf::from(out.trim())
}

fn umount(store: &Path, merged: &Path) {
    common::ok(common::imgctl(store).arg("umount").arg(merged));
}

fn have_erofs() -> bool {
    require(
        fs::read_to_string("/proc/filesystems")
            .map(|s| s.contains("erofs"))
            .unwrap_or(false),
        "erofs in /proc/filesystems (file-backed EROFS mounts, Linux 6.12+)",
    )
}

/// Mount the generated fixture with `flags` and compare it with the expected tree and
/// with `umoci unpack`; also flatten it (export path) and compare.
fn fixture_matches(flags: &[&str]) {
    let t = common::tempdir();
    let layout = t.path().join("oci");
    write_oci(&layout, "v1", &fixture_layers(), Z::Gzip);
    let store = t.path().join("store");
    let merged = mount_image_with(&store, &format!("oci:{}:v1", layout.display()), flags);
    let mounted = tree(&merged, true);
    check_fixture_tree(&mounted, &merged, "mounted");

    let rootfs = umoci_unpack(&layout, "v1", &t.path().join("bundle"));
    let by_umoci = tree(&rootfs, true);
    assert_same_tree(&mounted, &by_umoci, "imgctl mount vs umoci unpack");

    // Flatten mode (export) gives the same tree too.
    let oci = OciDir::open(&layout).unwrap();
    let m = oci.manifest_for(Some("v1")).unwrap();
    let flat = t.path().join("flat");
    fs::create_dir(&flat).unwrap();
    image::flatten_into(&oci, &m, &flat, Limits::default()).unwrap();
    let flattened = tree(&flat, true);
    check_fixture_tree(&flattened, &flat, "flattened");
    assert_same_tree(&flattened, &by_umoci, "flatten vs umoci unpack");
    umount(&store, &merged);
    Overlay::open(&store).unwrap().unmount_layers().unwrap();
}

#[test]
fn fixture_mounts_to_expected_tree_and_matches_umoci_and_flatten() {
    if !root_and_tools(&["umoci"]) {
        return;
    }
    fixture_matches(&["--snapshotter", "files"]);
}

#[test]
fn erofs_fixture_mounts_to_expected_tree_and_matches_umoci() {
    if !root_and_tools(&["umoci"]) || !have_erofs() {
        return;
    }
    fixture_matches(&["--snapshotter", "erofs"]);
}

fn nginx_matches(flags: &[&str]) {
    let t = common::tempdir();
    let store = t.path().join("store");
    let merged = mount_image_with(&store, &format!("oci:{NGINX}:latest"), flags);
    let mounted = tree(&merged, false);
    let rootfs = umoci_unpack(Path::new(NGINX), "latest", &t.path().join("bundle"));
    let by_umoci = tree(&rootfs, false);
    assert!(
        mounted.len() > 5000,
        "nginx has thousands of paths, got {}",
        mounted.len()
    );
    assert_same_tree(&mounted, &by_umoci, "nginx: imgctl mount vs umoci unpack");
    assert!(merged.join("usr/sbin/nginx").is_file());
    // Content too, for a sample of files.
    for p in [
        "usr/sbin/nginx",
        "etc/nginx/nginx.conf",
        "usr/lib/x86_64-linux-gnu/libc.so.6",
        "etc/passwd",
    ] {
        if rootfs.join(p).is_file() {
            assert_eq!(
                fs::read(merged.join(p)).unwrap(),
                fs::read(rootfs.join(p)).unwrap(),
                "{p}"
            );
        }
    }
    umount(&store, &merged);
    assert!(!merged.exists(), "umount removes the view");
    // The last user gone, no layer stays mounted.
    let snaps = Overlay::open(&store).unwrap();
    for e in fs::read_dir(snaps.dir().join("layers")).unwrap() {
        let fsdir = e.unwrap().path().join("fs");
        assert!(
            !imgctl::sys::fs::is_mount_point(&fsdir).unwrap(),
            "{} still mounted",
            fsdir.display()
        );
    }
    snaps.unmount_layers().unwrap();
}

#[test]
fn erofs_nginx_mount_matches_umoci() {
    if !root_and_tools(&["umoci"])
        || !have_erofs()
        || !require(
            Path::new(NGINX).join("index.json").is_file(),
            "nginx fixture (scripts/fixtures/nginx.sh)",
        )
    {
        return;
    }
    nginx_matches(&["--snapshotter", "erofs"]);
}

#[test]
fn nginx_mount_matches_umoci() {
    if !root_and_tools(&["umoci"])
        || !require(
            Path::new(NGINX).join("index.json").is_file(),
            "nginx fixture (scripts/fixtures/nginx.sh)",
        )
    {
        return;
    }
    nginx_matches(&["--snapshotter", "files"]);
}

/// Layout of a malicious-layer case: `$T/root` is extracted into, `$T/host` is the
/// sentinel next to it that must never change.
struct Case {
    _t: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    host: PathBuf,
}

impl Case {
    fn new() -> Case {
        let t = common::tempdir();
        let base = t.path().to_path_buf();
        let root = base.join("root");
        let host = base.join("host");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(host.join("victim")).unwrap();
        fs::create_dir_all(host.join("etc")).unwrap();
        fs::write(host.join("victim/hello"), b"hello").unwrap();
        fs::write(host.join("etc/passwd"), b"host passwd").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(host.join("etc/passwd"), fs::Permissions::from_mode(0o400)).unwrap();
        Case {
            _t: t,
            base,
            root,
            host,
        }
    }

    fn opts(&self, mode: ApplyMode) -> ApplyOptions {
        ApplyOptions::new(mode, "sha256:test-layer")
    }

    fn apply(&self, tar: &[u8], mode: ApplyMode) -> Result<layer::Applied, LayerError> {
        layer::apply(tar, Compression::None, &self.root, &self.opts(mode))
    }

    /// Run `f` and check the sentinel is unchanged and nothing new appeared next to
    /// the root.
    fn guarded<T>(&self, f: impl FnOnce() -> T) -> T {
        let before = fingerprint(&self.host);
        let siblings: Vec<_> = fs::read_dir(&self.base)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let r = f();
        assert_eq!(fingerprint(&self.host), before, "sentinel changed");
        let after: Vec<_> = fs::read_dir(&self.base)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            siblings.len(),
            after.len(),
            "something was created next to the root: {after:?}"
        );
        // No inode inside the root is a sentinel inode (hardlink escapes, A6).
        let host_inodes: Vec<u64> = fingerprint(&self.host).values().map(|v| v.6).collect();
        for (p, v) in fingerprint(&self.root) {
            assert!(
                !host_inodes.contains(&v.6) || p == ".",
                "{p} shares an inode with the sentinel"
            );
        }
        r
    }
}

fn expect_invalid(r: Result<layer::Applied, LayerError>, entry: &str) {
    match r {
        Err(e @ LayerError::InvalidEntry { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("sha256:test-layer"),
                "error names the layer: {msg}"
            );
            assert!(
                msg.contains(entry),
                "error names the entry {entry:?}: {msg}"
            );
        }
        other => panic!("entry {entry:?}: expected InvalidEntry, got {other:?}"),
    }
}

/// issue 10: files are pooled while they are written. Whatever a layer then does to
/// a pooled path (writes it again, hardlinks it, writes the same bytes elsewhere), the
/// tree is what the tar says and every pool entry still holds the content and
/// metadata its name stands for; with 0 and 2 writer threads, large files (main
/// thread) and small ones (workers).
#[test]
fn pooled_files_keep_their_key_when_a_layer_rewrites_or_links_their_path() {
    if !root_and_tools(&[]) {
        return;
    }
    let (a, b, c) = (vec![b'a'; 300_000], vec![b'b'; 300_001], vec![b'c'; 20_000]);
    let tar = tar_of(&[
        dir("usr"),
        file("usr/a", &a),
        file("usr/s", &vec![b's'; 20_000]),
        file("usr/a", &b),
        file("usr/s", &c),
        hardlink("usr/h", "usr/s"),
        file("usr/x", &a),
        file("usr/small", b"under the threshold"),
    ]);
    for workers in [0, 2] {
        let t = common::tempdir();
        let (root, pool) = (t.path().join("root"), t.path().join("pool"));
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&pool).unwrap();
        let mut opts = ApplyOptions::new(ApplyMode::Overlay, "sha256:test-layer");
        opts.workers = workers;
        opts.dedup = Some(layer::PoolDedup {
            pool: pool.clone(),
            min_size: 16 * 1024,
        });
        let applied = layer::apply(&tar[..], Compression::None, &root, &opts).unwrap();
        let what = format!("{workers} workers");
        assert_eq!(fs::read(root.join("usr/a")).unwrap(), b, "{what}");
        assert_eq!(fs::read(root.join("usr/s")).unwrap(), c, "{what}");
        assert_eq!(fs::read(root.join("usr/x")).unwrap(), a, "{what}");
        let ino = |p: &str| fs::metadata(root.join(p)).unwrap().ino();
        assert_eq!(ino("usr/h"), ino("usr/s"), "{what}");
        // usr/x has the bytes and metadata of the first usr/a: linked to its copy.
        assert_eq!(applied.pooled.files, 5, "{what}");
        assert_eq!(applied.pooled.linked, 1, "{what}");
        assert_eq!(applied.pooled.bytes_saved, a.len() as u64, "{what}");
        let mut names = Vec::new();
        for shard in fs::read_dir(&pool).unwrap() {
            for e in fs::read_dir(shard.unwrap().path()).unwrap() {
                let e = e.unwrap();
                let md = fs::symlink_metadata(e.path()).unwrap();
                let content = fs::read(e.path()).unwrap();
                let key = imgctl::sys::fs::dedup_key(
                    &hex::decode(sha256_hex(&content)).unwrap(),
                    md.mode(),
                    md.uid(),
                    md.gid(),
                    md.mtime(),
                    md.len(),
                    &imgctl::sys::fs::xattrs_of(&e.path()).unwrap(),
                );
                assert_eq!(e.file_name().to_str().unwrap(), key, "{what}");
                names.push(key);
            }
        }
        // The first usr/a (also usr/x), the first usr/s, usr/a and usr/s as written last.
        assert_eq!(names.len(), 4, "{what}: {names:?}");
        assert!(!root.join("usr").read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".dedup-")));
    }
}
