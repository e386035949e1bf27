//! The malicious-layer suite (SECURITY-TESTS A1-A17): hostile names, links, devices,
//! bombs and races are refused or contained, and a failed apply leaves nothing.

use super::*;

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
