//! Hostile layers against the real binary (issue 10 item 4): every snapshot backend
//! must refuse them quickly, with one clear line, in bounded memory.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use sha2::{Digest as _, Sha256};

use crate::common::layer::{write_oci_raw, RawLayer, Z};
use crate::common::{self, require};

/// Peak RSS allowed for an `imgctl` run on a header bomb.
const MAX_RSS: u64 = 64 << 20;

/// What the bomb's oversized header record is.
#[derive(Debug, Clone, Copy)]
enum Bomb {
    Pax,
    LongName,
    LongLink,
    Sparse,
}

/// Hashes what goes through into a compressor.
struct Hashed<W> {
    w: W,
    h: Sha256,
}

impl<W: Write> Write for Hashed<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.w.write(b)?;
        self.h.update(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

/// The tar of a bomb, written in pieces (its data part is far bigger than the
/// memory the extractor may use, and is never held whole here either).
fn write_bomb(kind: Bomb, w: &mut dyn Write) {
    const DATA: u64 = 160 << 20;
    let mut h = tar::Header::new_gnu();
    match kind {
        Bomb::Pax | Bomb::LongName | Bomb::LongLink => {
            h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
            h.set_entry_type(match kind {
                Bomb::Pax => tar::EntryType::XHeader,
                Bomb::LongName => tar::EntryType::GNULongName,
                _ => tar::EntryType::GNULongLink,
            });
            h.set_size(DATA);
            h.set_mode(0o644);
            h.set_cksum();
            w.write_all(h.as_bytes()).unwrap();
            // PAX records need not even parse: the tar crate reads them whole first.
            let chunk = vec![b'a'; 1 << 20];
            for _ in 0..DATA >> 20 {
                w.write_all(&chunk).unwrap();
            }
        }
        Bomb::Sparse => {
            // A sparse map of 32 Ki extension blocks of 21 regions each: 690 K
            // allocations in the tar crate.
            h.set_path("sparse").unwrap();
            h.set_entry_type(tar::EntryType::GNUSparse);
            h.set_size(0);
            h.set_mode(0o644);
            h.as_gnu_mut().unwrap().isextended[0] = 1;
            h.set_cksum();
            w.write_all(h.as_bytes()).unwrap();
            let blocks = 32 << 10;
            let mut off = 1u64;
            for b in 0..blocks {
                let mut ext = [0u8; 512];
                for r in 0..21 {
                    let o = format!("{off:011o}\0");
                    ext[r * 24..r * 24 + 12].copy_from_slice(o.as_bytes());
                    ext[r * 24 + 12..r * 24 + 24].copy_from_slice(b"00000000000\0");
                    off += 1;
                }
                ext[504] = u8::from(b + 1 < blocks);
                w.write_all(&ext).unwrap();
            }
        }
    }
    // An ordinary entry after it, then the end of the archive.
    let mut f = tar::Header::new_gnu();
    f.set_path("after").unwrap();
    f.set_size(0);
    f.set_mode(0o644);
    f.set_cksum();
    w.write_all(f.as_bytes()).unwrap();
    w.write_all(&[0u8; 1024]).unwrap();
}

fn bomb_layer(kind: Bomb, z: Z) -> RawLayer {
    let (blob, h) = match z {
        Z::Gzip => {
            let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let mut w = Hashed {
                w: enc,
                h: Sha256::new(),
            };
            write_bomb(kind, &mut w);
            (w.w.finish().unwrap(), w.h)
        }
        Z::Zstd => {
            let enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
            let mut w = Hashed {
                w: enc,
                h: Sha256::new(),
            };
            write_bomb(kind, &mut w);
            (w.w.finish().unwrap(), w.h)
        }
    };
    RawLayer {
        blob,
        compression: z,
        diff_id: format!("sha256:{}", hex::encode(h.finalize())),
    }
}

/// Run imgctl with `args` on `store` to its end; returns (exit code, stderr, peak RSS
/// in bytes of the imgctl process).
///
/// Measured by GNU time (wait4's rusage of a child it forks): the imgctl process must
/// not be forked from this test process, whose resident size the kernel would carry
/// into the child's `ru_maxrss` at exec (exec records the old mm's high-water mark;
/// with many tests running, that alone was 77 MiB).
fn run_measured(store: &Path, args: &[String]) -> (i32, String, u64) {
    let t = common::tempdir();
    let out = t.path().join("rss");
    let o = common::output(
        Command::new("/usr/bin/time")
            .arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&out)
            .arg(common::imgctl_bin())
            .args(args)
            .env("IMGCTL_ROOT", store)
            .env_remove("IMGCTL_REGISTRY_MIRROR")
            .stdout(Stdio::null()),
    );
    let report = std::fs::read_to_string(&out).unwrap();
    let kib: u64 = report
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("GNU time output: {report:?}"));
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        kib * 1024,
    )
}

fn have_erofs() -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .map(|s| s.contains("erofs"))
        .unwrap_or(false)
}

/// Snapshot backends to try: files always, EROFS where the kernel has it.
fn backends() -> Vec<&'static str> {
    let mut b = vec!["files"];
    if require(have_erofs(), "erofs in /proc/filesystems") {
        b.push("erofs");
    }
    b
}

fn assert_bomb_refused(store: &Path, layout: &Path, backend: &str, what: &str) {
    let (code, err, rss) = run_measured(
        store,
        &[
            "mount".into(),
            "--snapshotter".into(),
            backend.into(),
            format!("oci:{}:bomb", layout.display()),
        ],
    );
    assert!(
        rss < MAX_RSS,
        "{what} ({backend}): peak RSS {} MiB (limit {} MiB)",
        rss >> 20,
        MAX_RSS >> 20
    );
    assert_eq!(code, 125, "{what} ({backend}): exit code; stderr: {err}");
    assert!(
        err.contains("exceeds the limit") && err.trim().lines().count() == 1,
        "{what} ({backend}): one clear line, got: {err}"
    );
    eprintln!(
        "{what} ({backend}): refused, peak RSS {} KiB: {}",
        rss >> 10,
        err.trim()
    );
    let layers = store.join("snapshots/layers");
    let left: Vec<_> = std::fs::read_dir(&layers)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{what}: nothing left in layers/: {left:?}");
}

/// PAX, GNU long-name/long-link and GNU sparse header bombs (SECURITY-TESTS A16;
/// issue 10: a 510 KiB layer drove the tar crate to 537 MB): refused at the header,
/// peak RSS of the imgctl process < 64 MiB, for gzip and zstd layers, on every
/// snapshot backend.
#[test]
fn header_bombs_are_refused_in_bounded_memory() {
    if !require(common::is_root(), "root (imgctl mount)")
        || !require(
            Path::new("/usr/bin/time").is_file(),
            "GNU time (Debian package time)",
        )
    {
        return;
    }
    let t = common::tempdir();
    for z in [Z::Gzip, Z::Zstd] {
        for kind in [Bomb::Pax, Bomb::LongName, Bomb::LongLink, Bomb::Sparse] {
            let what = format!(
                "{kind:?} bomb, {}",
                match z {
                    Z::Gzip => "gzip",
                    Z::Zstd => "zstd",
                }
            );
            let layout = t.path().join(what.replace([' ', ','], "-"));
            let layer = bomb_layer(kind, z);
            assert!(layer.blob.len() < 8 << 20, "{what}: a small blob");
            write_oci_raw(&layout, "bomb", &[layer]);
            for backend in backends() {
                let store = t.path().join(format!("store-{backend}"));
                assert_bomb_refused(&store, &layout, backend, &what);
            }
            std::fs::remove_dir_all(&layout).unwrap();
        }
    }
}

/// issue 10: a view mounted while another process detaches unused EROFS layers must
/// never get an empty lower (the check "is the layer mounted?" and the overlay mount
/// that uses it are ordered against the detach by the layer's mount lock). Two
/// mounters and one detacher loop; every view must show the layer's file.
#[test]
fn erofs_views_racing_layer_detach_always_see_their_layer() {
    use imgctl::image::{self, LayerFormat, MountOptions};
    use imgctl::snapshot::Overlay;
    if !require(common::is_root(), "root (mounts)")
        || !require(have_erofs(), "erofs in /proc/filesystems")
    {
        return;
    }
    let t = common::tempdir();
    let layout = t.path().join("oci");
    let tar = crate::common::layer::tar_of(&[
        crate::common::layer::dir("a"),
        crate::common::layer::file("a/marker", b"present"),
    ]);
    crate::common::layer::write_oci(&layout, "v1", &[tar], Z::Gzip);
    let store = t.path().join("store");
    let img = image::resolve_image(&store, &format!("oci:{}:v1", layout.display())).unwrap();
    let opts = MountOptions {
        dedup: true,
        snapshotter: Some(LayerFormat::Erofs),
    };
    // Unpack once up front, so the loops only mount.
    let v = image::mount(&store, &img, opts).unwrap();
    image::release(&store, &v.key).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let empty = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        let mounters: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..40 {
                        let v = image::mount(&store, &img, opts).unwrap();
                        if std::fs::read(v.merged.join("a/marker")).ok().as_deref()
                            != Some(&b"present"[..])
                        {
                            empty.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        image::release(&store, &v.key).unwrap();
                    }
                })
            })
            .collect();
        s.spawn(|| {
            let snaps = Overlay::open(&store).unwrap();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                snaps.unmount_unused_layers().unwrap();
            }
        });
        for m in mounters {
            m.join().unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    assert_eq!(
        empty.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "views that saw an empty EROFS layer"
    );
    Overlay::open(&store).unwrap().unmount_layers().unwrap();
}

/// ROOT/snapshots/config.json (the snapshotter setting and the cached probe) matches
/// schemas/snapshot-config.schema.json, and the probe result is kept: a second
/// unpack does not probe again (the file is not rewritten).
#[test]
fn snapshot_config_matches_its_schema_and_caches_the_probe() {
    use imgctl::image::{self, LayerFormat};
    let schema: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/snapshot-config.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let t = common::tempdir();
    let root = t.path();
    let chosen = image::layer_format(root, None).unwrap();
    let path = root.join("snapshots/config.json");
    let first = std::fs::read(&path).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&first).unwrap();
    assert!(validator.is_valid(&v), "{v}");
    assert_eq!(
        v["detected"]["erofs"].as_bool(),
        Some(chosen == LayerFormat::Erofs),
        "{v}"
    );
    if common::is_root() && have_erofs() {
        assert_eq!(
            chosen,
            LayerFormat::Erofs,
            "root on a kernel with EROFS: {v}"
        );
    }
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    assert_eq!(image::layer_format(root, None).unwrap(), chosen);
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);
    image::set_store_snapshotter(root, Some(LayerFormat::Files)).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(validator.is_valid(&v), "{v}");
    assert_eq!(image::layer_format(root, None).unwrap(), LayerFormat::Files);
    assert!(!validator.is_valid(&serde_json::json!({"snapshotter": "zfs"})));
}

/// issue 10: names up to the kernel's 255-byte limit unpack on every snapshotter,
/// also when dedup links identical files under them (dedup's temporary name used to
/// add to the file's name: "File name too long"); a longer component (the EROFS
/// writer used to loop forever on one past 4084 bytes) fails fast with one line.
#[test]
fn long_names_work_up_to_name_max_and_fail_fast_beyond() {
    use crate::common::layer::{dir, file, tar_of, write_oci};
    if !require(common::is_root(), "root (imgctl mount)") {
        return;
    }
    let t = common::tempdir();
    let longest = "n".repeat(255);
    let other = "m".repeat(254);
    let big = vec![7u8; 64 << 10];
    let layout = t.path().join("oci");
    write_oci(
        &layout,
        "ok",
        &[tar_of(&[
            dir(&longest),
            file(&format!("{longest}/{longest}"), &big),
            file(&format!("{longest}/{other}"), &big),
        ])],
        Z::Gzip,
    );
    for (tag, name) in [("long256", "x".repeat(256)), ("long5000", "y".repeat(5000))] {
        write_oci(&layout, tag, &[tar_of(&[file(&name, b"z")])], Z::Zstd);
    }
    for backend in backends() {
        let store = t.path().join(format!("store-{backend}"));
        let merged = common::ok(
            common::imgctl(&store)
                .args(["mount", "--snapshotter", backend])
                .arg(format!("oci:{}:ok", layout.display())),
        );
        let merged = Path::new(merged.trim());
        for n in [&longest, &other] {
            assert_eq!(
                std::fs::read(merged.join(&longest).join(n)).unwrap(),
                big,
                "{backend}: {}-byte name",
                n.len()
            );
        }
        common::ok(common::imgctl(&store).arg("umount").arg(merged));
        for tag in ["long256", "long5000"] {
            let started = std::time::Instant::now();
            let (code, err) = common::fails(
                common::imgctl(&store)
                    .args(["mount", "--snapshotter", backend])
                    .arg(format!("oci:{}:{tag}", layout.display())),
            );
            assert_eq!(code, 125, "{backend} {tag}: {err}");
            assert!(
                err.contains("NAME_MAX") && err.trim().lines().count() == 1,
                "{backend} {tag}: one clear line: {err}"
            );
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "{backend} {tag}: fails fast"
            );
        }
    }
}

/// issue 10: a directory replaced by a file (or a symlink) later in the same layer
/// gives the same tree whatever the number of writer threads (it failed with "Is a
/// directory" when a worker wrote the file), and the same as flatten mode.
#[test]
fn dir_replaced_by_file_in_one_layer_is_independent_of_worker_count() {
    use crate::common::layer::{dir, file, symlink, tar_of, tree};
    use imgctl::layer::{self, ApplyMode, ApplyOptions, Compression};
    let tar = tar_of(&[
        dir("a"),
        dir("a/sub"),
        file("a/x", b"small file in the directory"),
        file("a/sub/y", b"deeper"),
        file("a", b"now a file"),
        dir("l"),
        file("l/z", b"z"),
        symlink("l", "a"),
        file("big", &vec![1u8; 300 << 10]),
        dir("big"),
        file("big/in", b"in"),
    ]);
    let t = common::tempdir();
    let mut trees = Vec::new();
    for (mode, workers) in [
        (ApplyMode::Overlay, 0),
        (ApplyMode::Overlay, 1),
        (ApplyMode::Overlay, 4),
        (ApplyMode::Flatten, 0),
    ] {
        let target = t.path().join(format!("{mode:?}-{workers}"));
        std::fs::create_dir(&target).unwrap();
        let mut o = ApplyOptions::new(mode, "dir-to-file");
        o.workers = workers;
        layer::apply(&tar[..], Compression::None, &target, &o)
            .unwrap_or_else(|e| panic!("{mode:?} with {workers} workers: {e}"));
        assert_eq!(
            std::fs::read(target.join("a")).unwrap(),
            b"now a file",
            "{mode:?}/{workers}"
        );
        assert_eq!(
            std::fs::read_link(target.join("l")).unwrap(),
            Path::new("a"),
            "{mode:?}/{workers}"
        );
        assert_eq!(
            std::fs::read(target.join("big/in")).unwrap(),
            b"in",
            "{mode:?}/{workers}"
        );
        trees.push(((mode, workers), tree(&target, true)));
    }
    for (k, tr) in &trees[1..] {
        crate::common::layer::assert_same_tree(&trees[0].1, tr, &format!("{k:?} vs 0 workers"));
    }
}
