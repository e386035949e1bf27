//! Whiteouts, apply/diff round trips, copy-on-write isolation of mounted views, shared
//! and deduplicated layers, snapshot metadata, commits and rootless export.

use super::*;

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
    // A layer directory's own mtime records when it was last used (LRU order of
    // `prune --keep-storage`, snapshot::gc::touch_layers): not image content.
    let without_fs = |v: Vec<std::collections::BTreeMap<String, Print>>| -> Vec<_> {
        v.into_iter()
            .map(|m| {
                m.into_iter()
                    .filter(|(k, _)| {
                        !flags.contains(&"erofs") || !(k == "fs" || k.starts_with("fs/"))
                    })
                    .map(|(k, mut p)| {
                        if k == "." {
                            p.3 = 0;
                        }
                        (k, p)
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
    // The last view gone, its layers are detached (as `image::release` does).
    snaps.unmount_unused_layers().unwrap();
    let left = common::mounts_under(&store);
    assert!(left.is_empty(), "{left:#?}");
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

/// Views of one image mounted and released by several processes at once: each EROFS
/// layer is mounted once however many of them find it unmounted at the same moment
/// (two stacked mounts outlived the one detach of the last user: a leak seen under
/// parallel `run --rm`), and nothing stays mounted once the last view is gone.
#[test]
fn erofs_views_made_in_parallel_leave_no_mount() {
    if !root_and_tools(&[]) || !have_erofs() {
        return;
    }
    let t = common::tempdir();
    let layout = t.path().join("oci");
    write_oci(&layout, "v1", &fixture_layers(), Z::Gzip);
    let store = t.path().join("store");
    let image = format!("oci:{}:v1", layout.display());
    let flags = ["--snapshotter", "erofs"];
    // Unpacked once, then every round starts from unmounted layers.
    let first = mount_image_with(&store, &image, &flags);
    umount(&store, &first);
    assert!(common::mounts_under(&store).is_empty());
    for round in 0..6 {
        let merged: Vec<PathBuf> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..6)
                .map(|_| s.spawn(|| mount_image_with(&store, &image, &flags)))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for m in &merged {
            assert_eq!(
                fs::read(m.join("usr/bin/tool")).unwrap(),
                b"#!/bin/sh\necho tool\n",
                "round {round}"
            );
        }
        // One mount per layer directory, however many views use it.
        let mut layer_mounts: Vec<String> = common::mounts_under(&store)
            .iter()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.contains("/snapshots/layers/"))
            .map(String::from)
            .collect();
        let all = layer_mounts.len();
        layer_mounts.sort();
        layer_mounts.dedup();
        assert_eq!(
            all,
            layer_mounts.len(),
            "round {round}: stacked layer mounts"
        );
        std::thread::scope(|s| {
            for m in &merged {
                s.spawn(|| umount(&store, m));
            }
        });
        let left = common::mounts_under(&store);
        assert!(left.is_empty(), "round {round}: {left:#?}");
    }
}
