//! Integration tests: layer application (overlay and flatten), the malicious-layer
//! suite (SECURITY-TESTS A1-A17), diff round trips, overlay snapshots and mounts
//! compared with `umoci unpack`, copy-on-write isolation and file-level dedup.

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

#[test]
fn malicious_names_are_refused() {
    if !root_and_tools(&[]) {
        return;
    }
    for mode in [ApplyMode::Overlay, ApplyMode::Flatten] {
        for name in [
            "../host/victim/x",
            "/../host/victim/x",
            "a/../../x",
            "./../x",
            "..",
            "a/..",
        ] {
            let c = Case::new();
            let r = c.guarded(|| c.apply(&tar_of(&[file(name, b"pwned")]), mode));
            expect_invalid(r, name);
        }
        // Root replacement (A5): only a directory may name the root.
        for name in [".", "./", "/", ""] {
            let c = Case::new();
            let r = c.guarded(|| c.apply(&tar_of(&[symlink(name, "/"), file("x", b"x")]), mode));
            expect_invalid(r, name);
            assert!(c.root.symlink_metadata().unwrap().is_dir());
        }
        // Whiteout escapes (A9) and an opaque marker used as a parent.
        for name in [
            ".wh..",
            ".wh...",
            "etc/.wh..",
            "etc/.wh...",
            ".wh.",
            "etc/../.wh.x",
            ".wh..wh..opq/x",
        ] {
            let c = Case::new();
            let r = c.guarded(|| c.apply(&tar_of(&[dir("etc"), whiteout(name)]), mode));
            expect_invalid(r, name);
        }
    }
}

#[test]
fn absolute_and_symlinked_writes_stay_inside() {
    if !root_and_tools(&[]) {
        return;
    }
    let c = Case::new();
    let host = c.host.display().to_string();
    let layer = tar_of(&[
        // A2: absolute names land under the root.
        file("/etc/passwd", b"image passwd"),
        // A3: symlinks planted by earlier entries of the same layer, written through.
        symlink("localetc", "/etc"),
        file("localetc/unbroken", b"x"),
        symlink("dotdot", "../../../../etc"),
        file("dotdot/through-dotdot", b"y"),
        symlink("hostlink", &format!("{host}/etc")),
        dir("chain"),
        symlink("chain/etc", "/etc"),
        symlink("chained", "./chain/etc"),
        file("chained/through-chain", b"z"),
        file("localetc/empty", b""),
    ]);
    let r = c.guarded(|| c.apply(&layer, ApplyMode::Flatten));
    r.unwrap();
    assert_eq!(
        fs::read(c.root.join("etc/passwd")).unwrap(),
        b"image passwd"
    );
    for f in ["unbroken", "through-dotdot", "through-chain", "empty"] {
        assert!(
            c.root.join("etc").join(f).is_file(),
            "{f} contained in <root>/etc"
        );
    }
    // A write through a link to the host path itself is contained or refused.
    let c2 = Case::new();
    let r = c2.guarded(|| {
        c2.apply(
            &tar_of(&[symlink("h", &format!("{host}/victim")), file("h/x", b"x")]),
            ApplyMode::Flatten,
        )
    });
    if r.is_ok() {
        assert!(c2
            .root
            .join(host.trim_start_matches('/'))
            .join("victim/x")
            .is_file());
    }
}

#[test]
fn symlink_planted_by_lower_layer_is_contained() {
    if !root_and_tools(&[]) {
        return;
    }
    let c = Case::new();
    let host = c.host.display().to_string();
    let lower = tar_of(&[
        symlink("etc", &format!("{host}/etc")),
        symlink("v", &format!("{host}/victim")),
    ]);
    let upper = tar_of(&[
        file("etc/x", b"x"),
        whiteout("v/.wh.hello"),
        file("v/hello", b"overwrite?"),
        file("v/new", b"n"),
    ]);
    c.guarded(|| {
        c.apply(&lower, ApplyMode::Flatten).unwrap();
        // Each op is contained (inside the root) or refused.
        let _ = c.apply(&upper, ApplyMode::Flatten);
        let _ = c.apply(
            &tar_of(&[hardlink("etc/z", "etc/passwd")]),
            ApplyMode::Flatten,
        );
        let _ = c.apply(&tar_of(&[hardlink("zz", "v/hello")]), ApplyMode::Flatten);
    });
    assert_eq!(fs::read(c.host.join("victim/hello")).unwrap(), b"hello");
}

#[test]
fn hardlinks_to_outside_are_refused_and_metadata_never_follows_links() {
    if !root_and_tools(&[]) {
        return;
    }
    let host = |c: &Case| c.host.display().to_string();
    for target in [
        "../host/victim/hello",
        "/../host/victim/hello",
        "../../host/etc/passwd",
    ] {
        let c = Case::new();
        let r = c.guarded(|| c.apply(&tar_of(&[hardlink("h", target)]), ApplyMode::Flatten));
        expect_invalid(r, "h");
    }
    // Through a symlinked directory and an absolute symlink to a host file: resolved
    // inside the root, where the target does not exist.
    let c = Case::new();
    let h = host(&c);
    let r = c.guarded(|| {
        c.apply(
            &tar_of(&[
                symlink("d", &format!("{h}/victim")),
                hardlink("x", "d/hello"),
            ]),
            ApplyMode::Flatten,
        )
    });
    assert!(
        r.is_err(),
        "hardlink through a symlinked dir must not reach the host"
    );
    let c = Case::new();
    let h = host(&c);
    c.guarded(|| {
        // A hardlink to a symlink links the symlink itself (A7): no host inode inside.
        c.apply(
            &tar_of(&[symlink("s", &format!("{h}/etc/passwd")), hardlink("x", "s")]),
            ApplyMode::Flatten,
        )
        .unwrap();
    });
    assert!(c
        .root
        .join("x")
        .symlink_metadata()
        .unwrap()
        .file_type()
        .is_symlink());
    // A8: chmod/chown/utimes/xattr entries on a path that is a link to a host 0400
    // file replace the link; the host file keeps mode, owner, mtime and xattrs.
    let c = Case::new();
    let h = host(&c);
    c.guarded(|| {
        c.apply(
            &tar_of(&[
                symlink("p", &format!("{h}/etc/passwd")),
                dir("p").mode(0o777).owner(12, 34).xattr("user.evil", b"1"),
                symlink("q", &format!("{h}/etc/passwd")),
                file("q", b"").mode(0o777).owner(12, 34),
            ]),
            ApplyMode::Flatten,
        )
        .unwrap();
    });
    assert!(c.root.join("p").symlink_metadata().unwrap().is_dir());
}

#[test]
fn devices_where_not_allowed_and_bombs_are_refused() {
    if !root_and_tools(&[]) {
        return;
    }
    let c = Case::new();
    let mut o = c.opts(ApplyMode::Overlay);
    o.devices = DevicePolicy::Reject;
    let tar = tar_of(&[E {
        kind: K::Block(8, 0),
        mode: 0o600,
        ..file("sda", b"")
    }]);
    let r = c.guarded(|| layer::apply(&tar[..], Compression::None, &c.root, &o));
    match r {
        Err(e @ LayerError::InvalidEntry { .. }) => {
            assert!(e.to_string().contains("device"), "{e}")
        }
        other => panic!("device accepted: {other:?}"),
    }
    assert!(!c.root.join("sda").exists());

    // Entry-count bomb.
    let many: Vec<E> = (0..500).map(|i| file(&format!("f{i}"), b"")).collect();
    let c = Case::new();
    let mut o = c.opts(ApplyMode::Overlay);
    o.limits.max_entries = 100;
    let r = c.guarded(|| layer::apply(&tar_of(&many)[..], Compression::None, &c.root, &o));
    assert!(
        matches!(
            r,
            Err(LayerError::LimitExceeded {
                what: "entry count",
                ..
            })
        ),
        "{r:?}"
    );

    // Size bomb: a 256 MiB file of zeros, gzip-compressed to a few hundred KiB.
    let mut big = Tar::new();
    big.add(&file("zeros", &vec![0u8; 256 << 20]));
    let gz = gzip_best(&big.finish());
    assert!(gz.len() < 2 << 20, "{}", gz.len());
    let c = Case::new();
    let mut o = c.opts(ApplyMode::Overlay);
    o.limits.max_bytes = 16 << 20;
    let start = std::time::Instant::now();
    let r = c.guarded(|| layer::apply(&gz[..], Compression::Gzip, &c.root, &o));
    assert!(matches!(r, Err(LayerError::LimitExceeded { .. })), "{r:?}");
    // A gzip of pure zeros (no tar headers at all) is caught while draining.
    let bomb = gzip_best(&vec![0u8; 256 << 20]);
    let r = c.guarded(|| layer::apply(&bomb[..], Compression::Gzip, &c.root, &o));
    assert!(matches!(r, Err(LayerError::LimitExceeded { .. })), "{r:?}");
    assert!(start.elapsed().as_secs() < 60);

    // Truncated archive: a header promising more data than the stream holds (A16/A17).
    let mut t = tar_of(&[file("big", &vec![7u8; 100_000])]);
    t.truncate(20_000);
    let c = Case::new();
    let r = c.guarded(|| c.apply(&t, ApplyMode::Overlay));
    assert!(r.is_err(), "truncated layer accepted");
    // Corrupt gzip.
    let mut g = gzip(&tar_of(&[file("a", b"hello world")]));
    let n = g.len();
    g[n - 6] ^= 0xff;
    let r = c.guarded(|| {
        layer::apply(
            &g[..],
            Compression::Gzip,
            &c.root,
            &c.opts(ApplyMode::Overlay),
        )
    });
    assert!(r.is_err(), "corrupt gzip accepted");
    // Declared gzip but plain tar (magic check).
    let r = layer::apply(
        &tar_of(&[file("a", b"x")])[..],
        Compression::Gzip,
        &c.root,
        &c.opts(ApplyMode::Overlay),
    );
    assert!(
        matches!(r, Err(LayerError::CompressionMismatch { .. })),
        "{r:?}"
    );
}

#[test]
fn failed_unpack_leaves_nothing_and_diff_id_is_checked() {
    if !root_and_tools(&[]) {
        return;
    }
    let c = Case::new();
    let dest = c.base.join("layer");
    let tar = tar_of(&[dir("a"), file("a/b", b"b"), file("../escape", b"x")]);
    let r = c.guarded(|| {
        layer::unpack_new(
            &tar[..],
            Compression::None,
            &dest,
            &c.opts(ApplyMode::Overlay),
        )
    });
    expect_invalid(r, "../escape");
    let good = tar_of(&[dir("a"), file("a/b", b"b")]);
    let mut o = c.opts(ApplyMode::Overlay);
    o.expected_diff_id = Some(Digest::of(b"something else"));
    let r = layer::unpack_new(&good[..], Compression::None, &dest, &o);
    assert!(matches!(r, Err(LayerError::DiffIdMismatch { .. })), "{r:?}");
    assert!(!dest.exists());
    let names: Vec<_> = fs::read_dir(&c.base)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "no temp dirs left behind: {names:?}");
    o.expected_diff_id = Some(Digest::of(&good));
    let applied = layer::unpack_new(&good[..], Compression::None, &dest, &o).unwrap();
    assert_eq!(applied.diff_id, Digest::of(&good));
    assert_eq!(fs::read(dest.join("a/b")).unwrap(), b"b");
}

#[test]
fn whiteouts_and_opaque_markers_hide_lower_layers_only() {
    if !root_and_tools(&[]) {
        return;
    }
    // A11: the marker before or after its siblings gives the same tree; a same-layer
    // whiteout does not delete a same-layer entry.
    let lower = tar_of(&[dir("a"), file("a/old", b"old"), file("keep", b"k")]);
    let before = tar_of(&[
        dir("a"),
        whiteout("a/.wh..wh..opq"),
        file("a/new", b"n"),
        file("x", b"x"),
        whiteout(".wh.x"),
    ]);
    let after = tar_of(&[
        dir("a"),
        file("a/new", b"n"),
        whiteout("a/.wh..wh..opq"),
        whiteout(".wh.x"),
        file("x", b"x"),
    ]);
    let mut trees = Vec::new();
    for upper in [&before, &after] {
        let c = Case::new();
        c.apply(&lower, ApplyMode::Flatten).unwrap();
        c.apply(upper, ApplyMode::Flatten).unwrap();
        let t = tree(&c.root, true);
        assert!(
            t.contains_key("a/new")
                && !t.contains_key("a/old")
                && t.contains_key("x")
                && t.contains_key("keep")
        );
        trees.push(t);
    }
    assert_same_tree(&trees[0], &trees[1], "opaque marker order");
    // Overlay mode: whiteout device and opaque xattr.
    let c = Case::new();
    c.apply(&before, ApplyMode::Overlay).unwrap();
    let md = fs::symlink_metadata(c.root.join("x")).unwrap();
    assert!(
        md.is_file(),
        "a same-layer entry wins over the same-layer whiteout"
    );
    let t = tree(&c.root, false);
    assert!(
        !t["a"].xattrs.is_empty() || {
            let v = imgctl::sys::fs::xattrs_of(&c.root.join("a")).unwrap();
            v.iter()
                .any(|(k, v)| k == "trusted.overlay.opaque" && v == b"y")
        }
    );
    let c = Case::new();
    c.apply(&tar_of(&[whiteout(".wh.gone")]), ApplyMode::Overlay)
        .unwrap();
    let md = fs::symlink_metadata(c.root.join("gone")).unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(
        md.file_type().is_char_device() && md.rdev() == 0,
        "whiteout device"
    );
    // 10^5 repeated opaque markers stay fast (linear).
    let mut t = Tar::new();
    t.add(&dir("d"));
    for _ in 0..100_000 {
        t.add(&whiteout("d/.wh..wh..opq"));
    }
    let c = Case::new();
    let start = std::time::Instant::now();
    c.apply(&t.finish(), ApplyMode::Flatten).unwrap();
    assert!(start.elapsed().as_secs() < 30);
}

/// A layer exercising every entry kind, for the round trip.
fn rich_layer() -> Vec<u8> {
    let long = format!("deep/{}/{}", "d".repeat(120), "f".repeat(140));
    tar_of(&[
        dir("deep"),
        dir(&format!("deep/{}", "d".repeat(120))),
        file(&long, b"long name"),
        dir("etc").mode(0o755),
        file("etc/a", b"aaaa").mode(0o600).owner(5, 6),
        file("etc/cap", b"cap")
            .mode(0o755)
            .xattr("security.capability", &CAP_NET_BIND)
            .xattr("user.k", b"v"),
        file("etc/suid", b"s").mode(0o4755),
        hardlink("etc/a-link", "etc/a"),
        symlink("etc/s", "a"),
        symlink("etc/long-target", &"t".repeat(150)),
        E {
            kind: K::Fifo,
            mode: 0o644,
            ..file("etc/fifo", b"")
        },
        E {
            kind: K::Char(4, 64),
            mode: 0o620,
            ..file("etc/tty", b"")
        },
        dir("opaque"),
        whiteout("opaque/.wh..wh..opq"),
        file("opaque/kept", b"k"),
        whiteout(".wh.removed"),
        dir("empty").mode(0o700),
    ])
}

/// Entries of a tar as comparable tuples (sorted by name).
/// (name, type byte, mode, uid, gid, content sha256, link target, xattrs)
type Entry = (
    String,
    u8,
    u32,
    u64,
    u64,
    String,
    Option<String>,
    Vec<(String, Vec<u8>)>,
);

fn entries(tar: &[u8]) -> Vec<Entry> {
    let mut ar = tar::Archive::new(tar);
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8_lossy(&e.path_bytes())
            .trim_end_matches('/')
            .to_string();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        let mut xs = Vec::new();
        if let Some(exts) = e.pax_extensions().unwrap() {
            for x in exts {
                let x = x.unwrap();
                if let Some(k) = x.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xs.push((k.to_string(), x.value_bytes().to_vec()));
                }
            }
        }
        xs.sort();
        let h = e.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        let kind = h.entry_type().as_byte();
        out.push((
            name,
            kind,
            h.mode().unwrap() & 0o7777,
            h.uid().unwrap(),
            h.gid().unwrap(),
            sha256_hex(&data),
            link,
            xs,
        ));
    }
    out.sort();
    out
}

#[test]
fn apply_then_diff_round_trips_and_diff_is_deterministic() {
    if !root_and_tools(&[]) {
        return;
    }
    let t = common::tempdir();
    let src = rich_layer();
    let dir = t.path().join("l");
    fs::create_dir(&dir).unwrap();
    layer::apply(
        &src[..],
        Compression::None,
        &dir,
        &ApplyOptions::new(ApplyMode::Overlay, "rich"),
    )
    .unwrap();
    let opts = DiffOptions {
        compression: Compression::None,
        source_date_epoch: None,
        whiteouts: WhiteoutFormat::Overlay,
    };
    let mut out = Vec::new();
    let o1 = layer::write_layer(&dir, &mut out, &opts).unwrap();
    assert_eq!(o1.diff_id, Digest::of(&out));
    assert_eq!(
        o1.digest, o1.diff_id,
        "uncompressed: blob digest == diff id"
    );
    let mut want = entries(&src);
    let got = entries(&out);
    // The whiteout entry's and the opaque marker's header fields are normalised on
    // the way back; compare those by name and kind only.
    let norm = |v: &mut Vec<Entry>| {
        for e in v.iter_mut() {
            if e.0.rsplit('/').next().unwrap_or("").starts_with(".wh.") {
                e.2 = 0;
            }
            // A hardlink header's mode and owner mean nothing (A7): the target's count.
            if e.1 == b'1' {
                (e.2, e.3, e.4) = (0, 0, 0);
            }
        }
    };
    norm(&mut want);
    let mut got_n = got.clone();
    norm(&mut got_n);
    assert_eq!(got_n, want, "apply then diff reproduces the entries");

    for c in [Compression::Gzip, Compression::Zstd] {
        let opts = DiffOptions {
            compression: c,
            source_date_epoch: Some(1_600_000_000),
            whiteouts: WhiteoutFormat::Overlay,
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let oa = layer::write_layer(&dir, &mut a, &opts).unwrap();
        let ob = layer::write_layer(&dir, &mut b, &opts).unwrap();
        assert_eq!(a, b, "{c:?}: same upper dir, byte-identical layers");
        assert_eq!(oa, ob);
        assert_eq!(oa.digest, Digest::of(&a));
        assert_eq!(oa.size, a.len() as u64);
        // The diff ID is the digest of the decompressed stream.
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut layer::decoder(&a[..], c, "x").unwrap(), &mut plain)
            .unwrap();
        assert_eq!(oa.diff_id, Digest::of(&plain));
        // Apply the produced layer again: the same tree.
        let again = t.path().join(format!("again-{c:?}"));
        fs::create_dir(&again).unwrap();
        layer::apply(
            &a[..],
            c,
            &again,
            &ApplyOptions::new(ApplyMode::Overlay, "again"),
        )
        .unwrap();
        let (t1, t2) = (tree(&dir, true), tree(&again, true));
        let strip_times = |m: std::collections::BTreeMap<String, Node>| m;
        assert_same_tree(&strip_times(t1), &strip_times(t2), "re-applied layer");
    }
}

fn checksum_dirs(dirs: &[PathBuf]) -> Vec<std::collections::BTreeMap<String, Print>> {
    dirs.iter().map(|d| fingerprint(d)).collect()
}

#[test]
fn writes_in_a_mounted_view_go_only_to_its_upper_dir() {
    if !root_and_tools(&[]) {
        return;
    }
    writes_isolated(&["--snapshotter", "files"]);
}

#[test]
fn erofs_writes_in_a_mounted_view_go_only_to_its_upper_dir() {
    if !root_and_tools(&[]) || !have_erofs() {
        return;
    }
    writes_isolated(&["--snapshotter", "erofs"]);
}

fn writes_isolated(flags: &[&str]) {
    let t = common::tempdir();
    let layout = t.path().join("oci");
    write_oci(&layout, "v1", &fixture_layers(), Z::Gzip);
    let store = t.path().join("store");
    let merged = mount_image_with(&store, &format!("oci:{}:v1", layout.display()), flags);
    let snaps = Overlay::open(&store).unwrap();
    let layer_dirs: Vec<PathBuf> = fs::read_dir(snaps.dir().join("layers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(layer_dirs.len(), 3);
    let before = checksum_dirs(&layer_dirs);

    fs::write(merged.join("etc/conf.d/b.conf"), b"changed").unwrap();
    fs::write(merged.join("usr/bin/tool"), b"overwritten").unwrap();
    fs::write(merged.join("srv/shared"), b"through a hardlink").unwrap();
    fs::remove_file(merged.join("etc/tool-link")).unwrap();
    fs::remove_dir_all(merged.join("usr/share")).unwrap();
    fs::create_dir(merged.join("new-dir")).unwrap();
    fs::write(merged.join("new-dir/f"), b"new").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(merged.join("usr/bin/su"), fs::Permissions::from_mode(0o755)).unwrap();

    assert_eq!(
        checksum_dirs(&layer_dirs),
        before,
        "image snapshots changed"
    );
    let key = snaps.key_for_merged(&merged).unwrap();
    let upper = snaps.upper_dir(&key);
    assert_eq!(
        fs::read(upper.join("etc/conf.d/b.conf")).unwrap(),
        b"changed"
    );
    assert!(upper.join("new-dir/f").is_file());

    let diff = common::ok(common::imgctl(&store).arg("diff").arg(&merged));
    for line in [
        "C /etc/conf.d/b.conf",
        "D /etc/tool-link",
        "D /usr/share",
        "A /new-dir",
        "A /new-dir/f",
        "C /usr/bin/su",
    ] {
        assert!(
            diff.lines().any(|l| l == line),
            "diff lacks {line:?}:\n{diff}"
        );
    }
    // A second view of the same image sees the original content.
    let merged2 = mount_image_with(&store, &format!("oci:{}:v1", layout.display()), flags);
    assert_eq!(
        fs::read(merged2.join("usr/bin/tool")).unwrap(),
        b"#!/bin/sh\necho tool\n"
    );
    assert_eq!(
        fs::read(merged2.join("srv/shared")).unwrap(),
        b"linked across the tree"
    );
    umount(&store, &merged2);
    umount(&store, &merged);
    // EROFS layers are unmounted with their last user: compare the images then.
    let without_fs = |v: Vec<std::collections::BTreeMap<String, Print>>| -> Vec<_> {
        v.into_iter()
            .map(|m| {
                m.into_iter()
                    .filter(|(k, _)| {
                        !flags.contains(&"erofs") || !(k == "fs" || k.starts_with("fs/"))
                    })
                    .collect::<std::collections::BTreeMap<_, _>>()
            })
            .collect()
    };
    assert_eq!(without_fs(checksum_dirs(&layer_dirs)), without_fs(before));
    // Export writes the flattened image.
    let out = t.path().join("rootfs.tar");
    common::ok(
        common::imgctl(&store)
            .args(["export", &format!("oci:{}:v1", layout.display()), "-o"])
            .arg(&out),
    );
    let names: Vec<String> = entries(&fs::read(&out).unwrap())
        .into_iter()
        .map(|e| e.0)
        .collect();
    let mut want: Vec<String> = fixture_expected_paths()
        .iter()
        .map(|s| s.to_string())
        .collect();
    want.sort();
    assert_eq!(names, want);
    Overlay::open(&store).unwrap().unmount_layers().unwrap();
}

#[test]
fn shared_diff_ids_unpack_once_and_deep_images_mount() {
    if !root_and_tools(&[]) {
        return;
    }
    let t = common::tempdir();
    let layers = fixture_layers();
    let layout = t.path().join("oci");
    write_oci(&layout, "gz", &layers, Z::Gzip);
    write_oci(&layout, "zst", &layers, Z::Zstd);
    let store = t.path().join("store");
    let oci = OciDir::open(&layout).unwrap();
    let opts = UnpackOptions {
        dedup: false,
        ..UnpackOptions::default()
    };
    let a =
        image::unpack_with(&oci, &oci.manifest_for(Some("gz")).unwrap(), &store, &opts).unwrap();
    assert_eq!(a.layers_unpacked, 3);
    let b =
        image::unpack_with(&oci, &oci.manifest_for(Some("zst")).unwrap(), &store, &opts).unwrap();
    assert_eq!(
        b.layers_unpacked, 0,
        "a zstd blob of the same tar shares the snapshot"
    );
    assert_eq!(a.chain_id, b.chain_id);

    // 80 layers under a long store path: far beyond one page of mount options.
    let deep_store = t.path().join("s".repeat(100)).join("t".repeat(100));
    let many: Vec<Vec<u8>> = (0..80)
        .map(|i| tar_of(&[file(&format!("layer-{i:02}"), format!("{i}").as_bytes())]))
        .collect();
    write_oci(&layout, "deep", &many, Z::Gzip);
    let u = image::unpack(&oci, &oci.manifest_for(Some("deep")).unwrap(), &deep_store).unwrap();
    let snaps = Overlay::open(&deep_store).unwrap();
    let mounts = snaps.prepare("deep", u.chain_id.as_ref()).unwrap();
    assert!(mounts[0].options().1.len() > 4096);
    let target = snaps.merged_dir("deep");
    snapshot::mount_all(&mounts, &target).unwrap();
    let n = fs::read_dir(&target).unwrap().count();
    imgctl::sys::fs::unmount(&target, false).unwrap();
    snaps.remove("deep").unwrap();
    assert_eq!(n, 80);
}

#[test]
fn identical_files_across_images_are_stored_once() {
    if !root_and_tools(&[]) {
        return;
    }
    let t = common::tempdir();
    let layout = t.path().join("oci");
    let big = vec![b'x'; 300_000];
    let files = |extra: &str| {
        tar_of(&[
            dir("usr"),
            file("usr/big", &big),
            file("usr/other", b"other content"),
            file(extra, extra.as_bytes()),
        ])
    };
    write_oci(&layout, "a", &[files("a-only")], Z::Gzip);
    write_oci(&layout, "b", &[files("b-only")], Z::Zstd);
    let store = t.path().join("store");
    let oci = OciDir::open(&layout).unwrap();
    // File-level dedup is the files snapshotter's (docs/layers.md).
    let opts = UnpackOptions {
        dedup_min_size: 1,
        format: Some(image::LayerFormat::Files),
        ..UnpackOptions::default()
    };
    image::unpack_with(&oci, &oci.manifest_for(Some("a")).unwrap(), &store, &opts).unwrap();
    let b = image::unpack_with(&oci, &oci.manifest_for(Some("b")).unwrap(), &store, &opts).unwrap();
    assert_eq!(b.dedup.linked, 2);
    assert_eq!(b.dedup.bytes_saved, big.len() as u64 + 13);
    let snaps = Overlay::open(&store).unwrap();
    let dirs: Vec<PathBuf> = fs::read_dir(snaps.dir().join("layers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let usage = snapshot::dedup::disk_usage(&dirs).unwrap();
    assert_eq!(usage.saved_bytes, big.len() as u64 + 13);
    // Copy-up still isolates: writing through image b's view leaves image a intact.
    let mb = mount_image(&store, &format!("oci:{}:b", layout.display()));
    fs::write(mb.join("usr/big"), b"changed in b").unwrap();
    let ma = mount_image(&store, &format!("oci:{}:a", layout.display()));
    assert_eq!(fs::read(ma.join("usr/big")).unwrap(), big);
    umount(&store, &ma);
    umount(&store, &mb);
}

/// Regression: a parent resolved through a symlink must not be reused after the
/// symlink is replaced by a directory (A12: the link is replaced, never written
/// through).
#[test]
fn replaced_symlink_parent_is_not_reused() {
    if !root_and_tools(&[]) {
        return;
    }
    let c = Case::new();
    let layer = tar_of(&[
        dir("x"),
        dir("x/b"),
        symlink("a", "x"),
        file("a/b/through-link", b"1"),
        dir("a"),
        file("a/b/in-new-dir", b"2"),
        symlink("l", "x"),
        file("l", b"now a file"),
    ]);
    c.guarded(|| c.apply(&layer, ApplyMode::Flatten)).unwrap();
    assert!(c.root.join("x/b/through-link").is_file());
    assert!(!c.root.join("x/b/in-new-dir").exists());
    assert!(c.root.join("a").symlink_metadata().unwrap().is_dir());
    assert_eq!(fs::read(c.root.join("a/b/in-new-dir")).unwrap(), b"2");
    assert!(c.root.join("l").symlink_metadata().unwrap().is_file());
    assert!(c.root.join("x").is_dir(), "the link target is untouched");
}

/// A20 (CVE-2018-15664 class): while a layer is applied, another thread keeps
/// exchanging a directory of the root with a symlink to `/`. Every entry must land
/// inside the root; nothing is created on the host.
#[test]
fn live_symlink_exchange_race_stays_inside() {
    if !root_and_tools(&[]) {
        return;
    }
    let c = Case::new();
    fs::create_dir(c.root.join("a")).unwrap();
    std::os::unix::fs::symlink("/", c.root.join("b")).unwrap();
    let tag = format!("imgctl-race-{}", std::process::id());
    let n = 3000;
    let es: Vec<E> = (0..n)
        .map(|i| file(&format!("a/{tag}-{i}"), b"x"))
        .collect();
    let layer = tar_of(&es);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swaps = {
        let stop = stop.clone();
        let root = c.root.clone();
        std::thread::spawn(move || {
            let dir = imgctl::sys::fs::open_dir_path(&root).unwrap();
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                rustix::fs::renameat_with(&dir, "a", &dir, "b", rustix::fs::RenameFlags::EXCHANGE)
                    .unwrap();
                swaps += 1;
            }
            swaps
        })
    };
    let (r, swaps) = c.guarded(|| {
        let r = c.apply(&layer, ApplyMode::Flatten);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (r, swaps.join().unwrap())
    });
    assert!(swaps > 100, "the race ran ({swaps} exchanges)");
    // Contained (inside the root, possibly in the root itself via the `/` link) or
    // refused; never on the host's `/`.
    let _ = r;
    for i in 0..n {
        let host_path = Path::new("/").join(format!("{tag}-{i}"));
        assert!(
            !host_path.exists(),
            "{} written on the host",
            host_path.display()
        );
    }
}

/// A16: an oversized PAX header is refused with a limit error; A14: the snapshot
/// store is private (0700).
#[test]
fn pax_bomb_is_refused_and_store_is_private() {
    if !root_and_tools(&[]) {
        return;
    }
    let c = Case::new();
    let big = file("p", b"x").xattr("user.big", &vec![b'v'; 2 << 20]);
    let mut o = c.opts(ApplyMode::Overlay);
    o.limits.max_pax_bytes = 1 << 20;
    let r = c.guarded(|| layer::apply(&tar_of(&[big])[..], Compression::None, &c.root, &o));
    assert!(
        matches!(
            r,
            Err(LayerError::LimitExceeded {
                what: "PAX header size",
                ..
            })
        ),
        "{r:?}"
    );
    let t = common::tempdir();
    let snaps = Overlay::open(&t.path().join("store")).unwrap();
    assert_eq!(fs::metadata(snaps.dir()).unwrap().mode() & 0o777, 0o700);
    assert_eq!(
        fs::metadata(t.path().join("store")).unwrap().mode() & 0o777,
        0o700
    );
}

/// A12 regression fixtures: a busybox `env` symlink replaced by a real file (the link
/// is replaced, its target untouched), a self-referencing `dash -> dash`, and the
/// Corretto-style deep relative link, which must unpack as is.
#[test]
fn type_changes_replace_links_and_odd_links_unpack() {
    if !root_and_tools(&[]) {
        return;
    }
    let c = Case::new();
    let l1 = tar_of(&[
        dir("bin"),
        file("bin/busybox", b"busybox"),
        dir("usr"),
        dir("usr/bin"),
        symlink("usr/bin/env", "/bin/busybox"),
        symlink("bin/dash", "dash"),
        dir("usr/lib"),
        symlink("usr/lib/cacerts", "../../../../../../etc/pki/java/cacerts"),
    ]);
    let l2 = tar_of(&[
        file("usr/bin/env", b"coreutils env"),
        file("bin/dash", b"dash binary"),
    ]);
    c.guarded(|| {
        c.apply(&l1, ApplyMode::Flatten).unwrap();
        c.apply(&l2, ApplyMode::Flatten).unwrap();
    });
    assert_eq!(fs::read(c.root.join("bin/busybox")).unwrap(), b"busybox");
    assert_eq!(
        fs::read(c.root.join("usr/bin/env")).unwrap(),
        b"coreutils env"
    );
    assert!(c
        .root
        .join("usr/bin/env")
        .symlink_metadata()
        .unwrap()
        .is_file());
    assert_eq!(fs::read(c.root.join("bin/dash")).unwrap(), b"dash binary");
    assert_eq!(
        fs::read_link(c.root.join("usr/lib/cacerts")).unwrap(),
        Path::new("../../../../../../etc/pki/java/cacerts")
    );
}

/// The EROFS writer refuses the same hostile names as the file extractor (A1, A5, A9)
/// and limits bombs the same way; nothing but the image file is ever written.
#[test]
fn erofs_writer_refuses_malicious_layers() {
    if !root_and_tools(&[]) {
        return;
    }
    let c = Case::new();
    let image = c.root.join("layer.erofs");
    let o = c.opts(ApplyMode::Overlay);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            tar_of(&[file("../host/victim/x", b"x")]),
            "../host/victim/x",
        ),
        (tar_of(&[file("a/../../x", b"x")]), "a/../../x"),
        (tar_of(&[symlink(".", "/")]), "."),
        (tar_of(&[dir("etc"), whiteout("etc/.wh..")]), "etc/.wh.."),
        (tar_of(&[whiteout(".wh..wh..opq/x")]), ".wh..wh..opq/x"),
        (tar_of(&[hardlink("h", "../host/victim/hello")]), "h"),
        (
            tar_of(&[symlink("l", "/etc"), file("l/passwd", b"x")]),
            "l/passwd",
        ),
    ];
    for (tar, entry) in cases {
        let r = c.guarded(|| layer::write_erofs(&tar[..], Compression::None, &image, &o));
        expect_invalid(r, entry);
    }
    let many: Vec<E> = (0..300).map(|i| file(&format!("f{i}"), b"")).collect();
    let mut o2 = c.opts(ApplyMode::Overlay);
    o2.limits.max_entries = 100;
    let r = layer::write_erofs(&tar_of(&many)[..], Compression::None, &image, &o2);
    assert!(matches!(r, Err(LayerError::LimitExceeded { .. })), "{r:?}");
    let names: Vec<_> = fs::read_dir(&c.root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("layer.erofs")]);
}

/// The snapshot metadata imgctl stores matches schemas/snapshot-info.schema.json.
#[test]
fn stored_snapshot_metadata_matches_its_schema() {
    let schema_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/snapshot-info.schema.json");
    let schema: serde_json::Value =
        serde_json::from_slice(&fs::read(schema_path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let t = common::tempdir();
    let snaps = Overlay::open(t.path()).unwrap();
    let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
    for d in [&a, &b] {
        snaps.ensure_layer(d, &mut |_: &Path| Ok(())).unwrap();
    }
    let ca = snaps.commit_chain(None, &a).unwrap();
    let cb = snaps.commit_chain(Some(&ca), &b).unwrap();
    snaps.prepare("c-1", Some(&cb)).unwrap();
    snaps.view("v.1", None).unwrap();
    let mut checked = 0;
    for sub in ["chains", "active"] {
        for e in fs::read_dir(snaps.dir().join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().map(|x| x == "json").unwrap_or(false) {
                let v: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
                let errors: Vec<String> =
                    validator.iter_errors(&v).map(|e| e.to_string()).collect();
                assert!(errors.is_empty(), "{}: {errors:?}", p.display());
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 4);
    // And a document that breaks it is caught (the check can fail).
    let bad = serde_json::json!({"key": "../x", "kind": "active", "parent": null, "diff_id": null});
    assert!(!validator.is_valid(&bad));
}

/// A17: NUL padding after the gzip member is accepted (and hashed); a missing
/// end-of-archive block is tolerated like GNU tar does, a truncated member is not.
#[test]
fn gzip_trailing_padding_and_truncation() {
    if !root_and_tools(&[]) {
        return;
    }
    let tar = tar_of(&[file("a", b"hello")]);
    let mut gz = gzip(&tar);
    gz.extend_from_slice(&[0u8; 1024]);
    let c = Case::new();
    let r = c.guarded(|| {
        layer::apply(
            &gz[..],
            Compression::Gzip,
            &c.root,
            &c.opts(ApplyMode::Overlay),
        )
    });
    let applied = r.unwrap();
    assert_eq!(applied.diff_id, Digest::of(&tar));
    assert_eq!(fs::read(c.root.join("a")).unwrap(), b"hello");
    let gz = gzip(&tar);
    let cut = &gz[..gz.len() - 12];
    let c = Case::new();
    let r =
        c.guarded(|| layer::apply(cut, Compression::Gzip, &c.root, &c.opts(ApplyMode::Overlay)));
    assert!(r.is_err(), "a truncated gzip member is an error");
}

/// prepare -> write through the mount -> diff -> commit -> a view of the new chain
/// shows the change (what `build` will do for each RUN step).
#[test]
fn commit_an_active_snapshot_as_a_new_layer() {
    if !root_and_tools(&[]) {
        return;
    }
    let t = common::tempdir();
    let layout = t.path().join("oci");
    write_oci(&layout, "v1", &fixture_layers(), Z::Gzip);
    let store = t.path().join("store");
    let oci = OciDir::open(&layout).unwrap();
    let u = image::unpack(&oci, &oci.manifest_for(Some("v1")).unwrap(), &store).unwrap();
    let snaps = Overlay::open(&store).unwrap();
    let base = u.chain_id.unwrap();
    let mounts = snaps.prepare("step-1", Some(&base)).unwrap();
    let target = snaps.merged_dir("step-1");
    snapshot::mount_all(&mounts, &target).unwrap();
    fs::write(target.join("etc/built"), b"by a build step").unwrap();
    fs::remove_file(target.join("etc/conf.d/b.conf")).unwrap();
    imgctl::sys::fs::unmount(&target, false).unwrap();

    let mut blob = Vec::new();
    let out = layer::write_layer(
        &snaps.upper_dir("step-1"),
        &mut blob,
        &DiffOptions::default(),
    )
    .unwrap();
    let names: Vec<String> = entries(&{
        let mut plain = Vec::new();
        std::io::Read::read_to_end(
            &mut layer::decoder(&blob[..], Compression::Gzip, "x").unwrap(),
            &mut plain,
        )
        .unwrap();
        plain
    })
    .into_iter()
    .map(|e| e.0)
    .collect();
    assert!(names.contains(&"etc/built".to_string()), "{names:?}");
    assert!(
        names.contains(&"etc/conf.d/.wh.b.conf".to_string()),
        "{names:?}"
    );
    let chain = snaps.commit("step-1", &out.diff_id).unwrap();
    assert_eq!(
        chain,
        imgctl::oci::chain_id(&[base.clone(), out.diff_id.clone()]).unwrap()
    );
    assert!(
        snaps.stat("step-1").unwrap().is_none(),
        "the active snapshot is gone"
    );
    assert_eq!(snaps.refs(&base).unwrap(), 1);

    let mounts = snaps.view("check", Some(&chain)).unwrap();
    let target = snaps.merged_dir("check");
    snapshot::mount_all(&mounts, &target).unwrap();
    let built = fs::read(target.join("etc/built"));
    let removed = target.join("etc/conf.d/b.conf").exists();
    imgctl::sys::fs::unmount(&target, false).unwrap();
    snaps.remove("check").unwrap();
    assert_eq!(built.unwrap(), b"by a build step");
    assert!(!removed, "the whiteout hides the lower file");
    snaps.remove(&chain.to_string()).unwrap();
    assert_eq!(snaps.refs(&base).unwrap(), 0);
    snaps.remove(&base.to_string()).unwrap();
}

/// A18: non-UTF-8 names, 255-byte components and GNU long names unpack and survive a
/// diff round trip byte for byte; a 256-byte component is a clean error.
#[test]
fn odd_names_round_trip_and_overlong_components_fail_cleanly() {
    if !root_and_tools(&[]) {
        return;
    }
    let c = Case::new();
    let max = "n".repeat(255);
    let mut latin1 = file("x", b"latin-1 name");
    latin1.name = b"caf\xe9".to_vec();
    let layer = tar_of(&[
        dir("d"),
        file(&format!("d/{max}"), b"long component"),
        latin1,
        symlink("deep-link", &format!("{max}/{max}")),
    ]);
    let r = c.guarded(|| c.apply(&layer, ApplyMode::Overlay));
    r.unwrap();
    assert_eq!(
        fs::read(c.root.join("d").join(&max)).unwrap(),
        b"long component"
    );
    use std::os::unix::ffi::OsStrExt;
    let weird = c.root.join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
    assert_eq!(fs::read(&weird).unwrap(), b"latin-1 name");
    let opts = DiffOptions {
        compression: Compression::None,
        source_date_epoch: Some(0),
        whiteouts: WhiteoutFormat::Overlay,
    };
    let mut once = Vec::new();
    layer::write_layer(&c.root, &mut once, &opts).unwrap();
    let again_dir = c.base.join("again");
    fs::create_dir(&again_dir).unwrap();
    layer::apply(
        &once[..],
        Compression::None,
        &again_dir,
        &c.opts(ApplyMode::Overlay),
    )
    .unwrap();
    let mut twice = Vec::new();
    layer::write_layer(&again_dir, &mut twice, &opts).unwrap();
    assert_eq!(once, twice, "pack -> unpack -> pack is byte-identical");
    fs::remove_dir_all(&again_dir).unwrap();

    let c = Case::new();
    let too_long = "m".repeat(256);
    let r = c.guarded(|| c.apply(&tar_of(&[file(&too_long, b"x")]), ApplyMode::Overlay));
    match r {
        Err(e @ LayerError::InvalidEntry { .. }) => {
            assert!(e.to_string().contains("NAME_MAX"), "{e}")
        }
        other => panic!("256-byte name: {other:?}"),
    }
}

/// C31: `kill -9` in the middle of an unpack leaves no layer visible under its real
/// name; the next unpack removes the leftovers and succeeds.
#[test]
fn killed_unpack_is_never_visible_and_is_cleaned_up() {
    if !root_and_tools(&[])
        || !require(
            Path::new(NGINX).join("index.json").is_file(),
            "nginx fixture (scripts/fixtures/nginx.sh)",
        )
    {
        return;
    }
    let t = common::tempdir();
    let store = t.path().join("store");
    let image = format!("oci:{NGINX}:latest");
    let mut child = common::imgctl(&store)
        .args(["mount", "--no-dedup", &image])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let layers = store.join("snapshots/layers");
    // Wait until extraction is under way, then kill it.
    let start = std::time::Instant::now();
    while start.elapsed().as_secs() < 30 {
        let busy = fs::read_dir(&layers)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            })
            .unwrap_or(false);
        if busy {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    let names: Vec<String> = fs::read_dir(&layers)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !status.success() && names.iter().any(|n| n.starts_with(".tmp-")),
        "the unpack was not interrupted mid-way ({status}, {names:?})"
    );
    let snaps = Overlay::open(&store).unwrap();
    if !status.success() {
        // Whatever finished is complete; no chain points at a missing layer.
        assert!(snaps
            .list()
            .unwrap()
            .iter()
            .all(|i| i.kind != snapshot::Kind::Active));
    }
    for n in &names {
        if !n.starts_with(".tmp-") {
            assert!(
                layers.join(n).join("fs").is_dir(),
                "{n} published incomplete"
            );
        }
    }
    let merged = mount_image(&store, &image);
    let left: Vec<String> = fs::read_dir(&layers)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(left.is_empty(), "leftovers: {left:?}");
    assert!(merged.join("usr/sbin/nginx").is_file());
    umount(&store, &merged);
}

/// A13: rootless (inside `unshare -r`, only uid 0 mapped) the same image still
/// flattens: devices are skipped and unmapped owners left to the mapped user, with
/// warnings, while everything else (names, modes, content, hostile-name refusals)
/// is as for root.
#[test]
fn rootless_export_skips_devices_and_unmapped_owners() {
    if !root_and_tools(&["unshare"]) {
        return;
    }
    let t = common::tempdir();
    let layout = t.path().join("oci");
    write_oci(&layout, "v1", &fixture_layers(), Z::Gzip);
    let store = t.path().join("store");
    let out_tar = t.path().join("rootfs.tar");
    let out = common::output(
        std::process::Command::new("unshare")
            .arg("-r")
            .arg(common::imgctl_bin())
            .arg("--root")
            .arg(&store)
            .args(["export", &format!("oci:{}:v1", layout.display()), "-o"])
            .arg(&out_tar),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rootless export failed: {stderr}");
    assert!(stderr.contains("skipping device node"), "{stderr}");
    let es = entries(&fs::read(&out_tar).unwrap());
    let names: Vec<&str> = es.iter().map(|e| e.0.as_str()).collect();
    let want: Vec<&str> = fixture_expected_paths()
        .into_iter()
        .filter(|p| *p != "dev/null")
        .collect();
    assert_eq!(names, want);
    let su = es.iter().find(|e| e.0 == "usr/bin/su").unwrap();
    assert_eq!(su.2, 0o4755);
    let notes = es.iter().find(|e| e.0 == "home/user/notes").unwrap();
    assert_eq!(
        (notes.3, notes.4),
        (0, 0),
        "unmapped owner falls back to the mapped root"
    );

    // Hostile names are refused the same way rootless.
    let bad = t.path().join("bad");
    write_oci(&bad, "v1", &[tar_of(&[file("../escape", b"x")])], Z::Gzip);
    let out = common::output(
        std::process::Command::new("unshare")
            .arg("-r")
            .arg(common::imgctl_bin())
            .arg("--root")
            .arg(&store)
            .args(["export", &format!("oci:{}:v1", bad.display()), "-o"])
            .arg(t.path().join("bad.tar")),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("'..'"));
    assert!(!t.path().join("escape").exists());
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
