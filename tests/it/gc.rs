//! Integration tests of issue 10 items 2-3 and issue 15 items 6 and 11: `imgctl
//! check [--repair]`, `prune` of layers/chains/pool/stale snapshots (`--dry-run`,
//! `--keep-storage`), `df` RECLAIMABLE, `rmi`'s refusals, a pull whose unpack fails,
//! and kill -9 at random points of pull and run.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::registry::*;
use crate::common::*;
use crate::registry::ic;
use crate::store::check_schema;

/// Every path under `dir` with its size, mtime and inode (what "nothing changed"
/// compares).
fn listing(dir: &Path) -> BTreeMap<PathBuf, (u64, i64, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let md = e.path().symlink_metadata().unwrap();
            if e.path().file_name().is_some_and(|n| n == "locks") {
                continue;
            }
            out.insert(e.path(), (md.len(), md.mtime(), md.ino()));
            if md.is_dir() {
                stack.push(e.path());
            }
        }
    }
    out
}

fn df(root: &Path, home: &Path) -> Value {
    let v = json_of(&ok(ic(root, home).args(["df", "--format", "json"])));
    check_schema("df", &v);
    v
}

fn mounts_under(root: &Path) -> Vec<String> {
    let root = root.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|m| m.starts_with(&root))
        .collect()
}

fn code(cmd: &mut Command) -> (i32, String, String) {
    let o = output(cmd);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `ic` with the snapshotter chosen (`files` or `erofs`).
fn icb(root: &Path, home: &Path, backend: &str) -> Command {
    let mut c = ic(root, home);
    c.env("IMGCTL_SNAPSHOTTER", backend);
    c
}

fn layer_dir(root: &Path, diff_id: &str) -> PathBuf {
    root.join("snapshots/layers")
        .join(diff_id.trim_start_matches("sha256:"))
}

/// A registry holding `fixture/a:1` (a base layer with a pooled 64 KiB file and
/// small files, plus a top layer) and `fixture/b:1` (one layer of its own).
struct Fixture {
    reg: Registry,
    a: Image,
    b: Image,
    t: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let reg = Registry::open();
    let t = tempdir();
    let big = noise(64 * 1024, 7);
    let base = layer(
        &[
            ("etc/hostname", b"fixture\n"),
            ("usr/lib/big.so", &big),
            ("usr/share/doc/readme", b"read me\n"),
        ],
        true,
    );
    let a = Image::new(host_arch(), vec![base, layer(&[("a/top", b"a")], true)]);
    let b = Image::new(
        host_arch(),
        vec![layer(&[("b/data", &noise(200 * 1024, 9))], true)],
    );
    let mut layout = Layout::new(&t.path().join("src"));
    layout.add_image("a", &a);
    layout.add_image("b", &b);
    layout.push("a", &reg.addr, "fixture/a:1");
    layout.push("b", &reg.addr, "fixture/b:1");
    Fixture { reg, a, b, t }
}

fn ready() -> bool {
    registry_tools() && require(is_root(), "root (overlayfs, EROFS mounts)")
}

#[test]
fn check_finds_and_repairs_a_truncated_file_a_flipped_blob_byte_and_a_missing_erofs_image() {
    if !ready() {
        return;
    }
    let Fixture { reg, a, b, t } = fixture();
    let home = t.path();
    let root = t.path().join("root");
    let na = format!("{}/fixture/a:1", reg.addr);
    let nb = format!("{}/fixture/b:1", reg.addr);
    ok(icb(&root, home, "files").args(["pull", &na]));
    let (c, out, _) = code(icb(&root, home, "files").arg("check"));
    assert_eq!(c, 0, "{out}");

    // 1. A file of an unpacked layer cut short (what a power loss without fsync gives).
    let base = layer_dir(&root, &a.layers[0].diff_id).join("fs");
    let big = base.join("usr/lib/big.so");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&big)
        .unwrap()
        .set_len(100)
        .unwrap();
    let (c, out, _) = code(icb(&root, home, "files").arg("check"));
    assert_eq!(c, 1, "{out}");
    let bad: Vec<&str> = out.lines().filter(|l| l.starts_with("layer ")).collect();
    assert_eq!(bad.len(), 1, "{out}");
    assert!(
        bad[0].contains(&a.layers[0].diff_id)
            && bad[0].contains("usr/lib/big.so: 100 bytes, the layer has 65536"),
        "{out}"
    );
    let (c, out, _) = code(icb(&root, home, "files").args(["check", "--repair"]));
    assert_eq!(c, 1, "problems found, all repaired: {out}");
    assert!(out.contains("re-created from blob"), "{out}");
    assert_eq!(std::fs::read(&big).unwrap(), noise(64 * 1024, 7));
    let (c, out, _) = code(icb(&root, home, "files").arg("check"));
    assert_eq!(c, 0, "{out}");

    // 2. A flipped byte in a layer blob: found, removed and fetched again.
    let blob = root
        .join("blobs/sha256")
        .join(a.layers[1].digest.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[20] ^= 0x40;
    std::fs::set_permissions(&blob, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::write(&blob, &bytes).unwrap();
    let (c, out, _) = code(icb(&root, home, "files").args(["check", "--format", "json"]));
    assert_eq!(c, 1, "{out}");
    let v = json_of(&out);
    check_schema("check", &v);
    let problems = v["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["kind"] == "blob" && p["id"] == a.layers[1].digest.as_str()),
        "{v:#}"
    );
    let (c, out, _) = code(icb(&root, home, "files").args(["check", "--repair"]));
    assert_eq!(c, 1, "{out}");
    assert!(out.contains("fetched again from"), "{out}");
    assert_eq!(
        sha256_hex(&std::fs::read(&blob).unwrap()),
        a.layers[1].digest.trim_start_matches("sha256:")
    );
    let (c, out, _) = code(icb(&root, home, "files").arg("check"));
    assert_eq!(c, 0, "{out}");

    // 3. A layer kept as an EROFS image whose image file is gone.
    ok(ic(&root, home).args(["pull", "--no-unpack", &nb]));
    let merged = ok(ic(&root, home).args(["mount", "--erofs", &nb]));
    ok(ic(&root, home).args(["umount", merged.trim()]));
    let lb = layer_dir(&root, &b.layers[0].diff_id);
    assert!(lb.join("layer.erofs.sha256").is_file(), "digest recorded");
    std::fs::remove_file(lb.join("layer.erofs")).unwrap();
    let (c, out, _) = code(ic(&root, home).args(["check", &nb]));
    assert_eq!(c, 1, "{out}");
    assert!(out.contains("EROFS image missing"), "{out}");
    let (c, out, _) = code(ic(&root, home).args(["check", "--repair", &nb]));
    assert_eq!(c, 1, "{out}");
    let (c, out, _) = code(ic(&root, home).arg("check"));
    assert_eq!(c, 0, "{out}");
    let merged = ok(ic(&root, home).args(["mount", &nb]));
    assert_eq!(
        std::fs::read(Path::new(merged.trim()).join("b/data")).unwrap(),
        noise(200 * 1024, 9)
    );
    ok(ic(&root, home).args(["umount", merged.trim()]));
    assert!(mounts_under(&root).is_empty(), "{:?}", mounts_under(&root));
}

#[test]
fn prune_after_rmi_of_every_image_leaves_no_layer_pool_file_or_blob_and_dry_run_changes_nothing() {
    if !ready() {
        return;
    }
    for backend in ["files", "erofs"] {
        prune_after_rmi(backend);
    }
}

fn prune_after_rmi(backend: &str) {
    let files = backend == "files";
    let Fixture { reg, a, b, t } = fixture();
    let home = t.path();
    let root = t.path().join("root");
    let na = format!("{}/fixture/a:1", reg.addr);
    let nb = format!("{}/fixture/b:1", reg.addr);
    ok(icb(&root, home, backend).args(["pull", &na]));
    ok(icb(&root, home, backend).args(["pull", &nb]));
    let v = df(&root, home);
    assert_eq!(v["layers"], 3, "{v:#}");
    assert!(!files || v["pool_files"].as_u64().unwrap() >= 2, "{v:#}");
    assert_eq!(v["reclaimable"]["layers"], 0, "{v:#}");
    assert_eq!(v["reclaimable"]["blob_bytes"], 0, "{v:#}");
    // Leftovers of a killed unpack and of a killed `mount`.
    let tmp = root.join("snapshots/layers/.tmp-0123456789ab-4000000000-0/fs");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("half"), vec![1u8; 5000]).unwrap();
    std::fs::create_dir_all(root.join("snapshots/active/mount-0123456789ab/upper")).unwrap();

    // Only b goes: a keeps its layers, chains and pool files.
    ok(icb(&root, home, backend).args(["rmi", &nb]));
    let v = df(&root, home);
    assert_eq!(v["reclaimable"]["layers"], 1, "{v:#}");
    let lb = v["reclaimable"]["layer_bytes"].as_u64().unwrap();
    assert!(
        if files {
            lb == 200 * 1024
        } else {
            lb >= 200 * 1024
        },
        "{backend}: {v:#}"
    );
    let table = ok(icb(&root, home, backend).arg("df"));
    assert!(
        table.lines().next().unwrap().contains("RECLAIMABLE"),
        "{table}"
    );
    ok(icb(&root, home, backend).args(["prune", "-f"]));
    assert!(!layer_dir(&root, &b.layers[0].diff_id).exists());
    let kept = layer_dir(&root, &a.layers[0].diff_id);
    assert!(if files {
        kept.join("fs/usr/lib/big.so").is_file()
    } else {
        kept.join("layer.erofs").is_file()
    });
    assert!(!tmp.exists() && !root.join("snapshots/active/mount-0123456789ab").exists());
    let (c, out, _) = code(icb(&root, home, backend).arg("check"));
    assert_eq!(c, 0, "{out}");
    let m = ok(icb(&root, home, backend).args(["mount", &na]));
    assert_eq!(
        std::fs::read(Path::new(m.trim()).join("a/top")).unwrap(),
        b"a"
    );
    ok(icb(&root, home, backend).args(["umount", m.trim()]));

    // Then every image: a dry run lists it all with bytes and changes nothing.
    ok(icb(&root, home, backend).args(["rmi", &na]));
    let before = listing(&root);
    let out = ok(icb(&root, home, backend).args(["prune", "--dry-run", "--format", "json"]));
    let v = json_of(&out);
    check_schema("prune", &v);
    assert_eq!(v["dry_run"], true);
    let kinds: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    for k in ["blob", "layer", "chain", "pool-file"] {
        if k == "pool-file" && !files {
            continue;
        }
        assert!(kinds.contains(&k), "{backend}: {k} missing: {v:#}");
    }
    let layer_bytes: u64 = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "layer")
        .map(|i| i["bytes"].as_u64().unwrap())
        .sum();
    assert!(layer_bytes >= 64 * 1024, "{v:#}");
    assert_eq!(listing(&root), before, "--dry-run changed the store");
    let text = ok(icb(&root, home, backend).args(["prune", "--dry-run"]));
    assert!(text.contains("Total reclaimable space"), "{text}");
    assert_eq!(listing(&root), before, "--dry-run changed the store");

    let out = ok(icb(&root, home, backend).args(["prune", "-f", "--format", "json"]));
    let done = json_of(&out);
    check_schema("prune", &done);
    assert_eq!(
        done["total_bytes"], v["total_bytes"],
        "dry run said otherwise"
    );
    let v = df(&root, home);
    for (k, want) in [
        ("layers", 0),
        ("pool_files", 0),
        ("pool_bytes", 0),
        ("blobs", 0),
        ("layer_on_disk_bytes", 0),
    ] {
        assert_eq!(v[k], want, "{k}: {v:#}");
    }
    for d in ["layers", "chains", "active", "pool"] {
        let left: Vec<_> = walk_files(&root.join("snapshots").join(d));
        assert!(left.is_empty(), "{d}: {left:?}");
    }
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    listing(dir)
        .into_iter()
        .filter(|(p, _)| !p.is_dir())
        .map(|(p, _)| p)
        .collect()
}

#[test]
fn prune_keep_storage_removes_least_recently_used_unreferenced_layers_first() {
    if !ready() {
        return;
    }
    let Fixture { reg, a, b, t } = fixture();
    let home = t.path();
    let root = t.path().join("root");
    let na = format!("{}/fixture/a:1", reg.addr);
    let nb = format!("{}/fixture/b:1", reg.addr);
    // a is pulled first but used last.
    ok(icb(&root, home, "files").args(["pull", &na]));
    ok(icb(&root, home, "files").args(["pull", &nb]));
    std::thread::sleep(Duration::from_millis(1100));
    let m = ok(icb(&root, home, "files").args(["mount", &na]));
    ok(icb(&root, home, "files").args(["umount", m.trim()]));
    ok(icb(&root, home, "files").args(["rmi", &na, &nb]));
    // Blobs go in any case; the layers (a: ~64 KiB, b: 200 KiB) fit in 150 KiB only
    // without b's.
    ok(icb(&root, home, "files").args(["prune", "-f", "--keep-storage", "150k"]));
    assert!(
        !layer_dir(&root, &b.layers[0].diff_id).exists(),
        "b was least recently used"
    );
    assert!(layer_dir(&root, &a.layers[0].diff_id)
        .join("fs/usr/lib/big.so")
        .is_file());
    let v = df(&root, home);
    assert_eq!(v["blobs"], 0, "{v:#}");
    assert_eq!(v["layers"], 2, "{v:#}");
    // A re-pull of a uses the layers kept.
    ok(icb(&root, home, "files").args(["pull", &na]));
    let (c, out, _) = code(icb(&root, home, "files").arg("check"));
    assert_eq!(c, 0, "{out}");
    ok(icb(&root, home, "files").args(["prune", "-f"]));
    assert_eq!(df(&root, home)["layers"], 2);
}

#[test]
fn a_pull_that_fails_while_unpacking_leaves_no_name_and_prune_reclaims_it() {
    if !ready() {
        return;
    }
    let reg = Registry::open();
    let t = tempdir();
    let home = t.path();
    // 32 MiB of zeros: a ~32 KiB blob that cannot unpack on a 8 MiB file system.
    let zeros = vec![0u8; 32 << 20];
    let img = Image::new(
        host_arch(),
        vec![layer(&[("big/zeros", &zeros), ("etc/ok", b"ok")], true)],
    );
    push_image(&t.path().join("src"), &img, &reg.addr, "fixture/z:1");
    let root = t.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs"])
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success());
    struct Umount(PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _u = Umount(root.clone());
    let name = format!("{}/fixture/z:1", reg.addr);
    let (c, _, err) = code(icb(&root, home, "files").args(["pull", &name]));
    assert_eq!(c, 125, "{err}");
    assert!(
        err.contains("No space left on device") && err.trim().lines().count() == 1,
        "{err}"
    );
    let images = ok(icb(&root, home, "files").args(["images", "-q"]));
    assert!(images.trim().is_empty(), "the image is listed: {images}");
    let (c, _, err) =
        code(icb(&root, home, "files").args(["run", "--rm", "--pull", "never", &name, "true"]));
    assert_eq!(c, 125, "{err}");
    let tmp: Vec<_> = std::fs::read_dir(root.join("snapshots/layers"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        tmp.is_empty(),
        "a layer or its temporary dir is left: {tmp:?}"
    );
    let v = df(&root, home);
    assert!(
        v["reclaimable"]["blob_bytes"].as_u64().unwrap() > 0,
        "{v:#}"
    );
    ok(icb(&root, home, "files").args(["prune", "-f"]));
    let v = df(&root, home);
    assert_eq!(v["blobs"], 0, "{v:#}");
    assert_eq!(v["layers"], 0, "{v:#}");
}

#[test]
fn rmi_refuses_an_image_a_container_uses_until_container_prune_or_force() {
    let _g = crate::common::sandbox::serial();
    let t = tempdir();
    let Some(root) = fixture::store_with_busybox(t.path()) else {
        return;
    };
    let parent = crate::common::sandbox::cgroup_parent();
    ok(imgctl(&root).args(["run", "--cgroup-parent", &parent, "busybox", "true"]));
    // -a removes images no container uses: this one is used.
    ok(imgctl(&root).args(["image", "prune", "-a", "-f"]));
    let ids = ok(imgctl(&root).args(["image", "ls", "-q"]));
    assert_eq!(ids.trim().lines().count(), 1, "{ids}");
    let (c, _, err) = code(imgctl(&root).args(["rmi", "busybox"]));
    assert_eq!(c, 125, "{err}");
    assert!(
        err.contains(
            "conflict: unable to remove repository reference \"busybox:latest\" (must force)"
        ) && err.contains("is using its referenced image"),
        "{err}"
    );
    ok(imgctl(&root).args(["tag", "busybox", "bb:2"]));
    let (c, _, err) = code(imgctl(&root).args(["rmi", "busybox:latest"]));
    assert_eq!(c, 0, "another name remains, so untagging is fine: {err}");
    let ls = ok(imgctl(&root).args(["container", "ls", "-a", "-q"]));
    assert_eq!(ls.trim().lines().count(), 1, "{ls}");
    let out = ok(imgctl(&root).args(["container", "prune", "-f"]));
    assert!(out.contains("Deleted Containers:"), "{out}");
    assert!(std::fs::read_dir(root.join("containers"))
        .unwrap()
        .next()
        .is_none());
    assert!(ok(imgctl(&root).args(["container", "ls", "-a", "-q"]))
        .trim()
        .is_empty());
    let out = ok(imgctl(&root).args(["image", "prune", "-a", "-f"]));
    assert!(out.contains("Untagged: docker.io/library/bb:2"), "{out}");
    assert!(ok(imgctl(&root).args(["image", "ls", "-q"]))
        .trim()
        .is_empty());
    ok(imgctl(&root).args(["system", "prune", "-f"]));
    let v = json_of(&ok(imgctl(&root).args(["system", "df", "--format", "json"])));
    assert_eq!(v["layers"], 0, "{v:#}");
    assert_eq!(v["blobs"], 0, "{v:#}");
    assert!(mounts_under(&root).is_empty());
}

/// A pseudo-random number from the clock (the seed is printed for a re-run).
fn rand_below(seed: &mut u64, n: u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed % n.max(1)
}

/// After a kill -9: no layer is half-published (every layer directory verifies
/// against its blob), every active snapshot has a live owner once the next command
/// reaped the dead ones, and nothing stays mounted under the store.
/// A layer of the fixture with the files it holds.
type Expected<'a> = (&'a Layer, &'a [(&'a str, &'a [u8])]);

fn assert_consistent(root: &Path, home: &Path, what: &str, layers: &[Expected<'_>]) {
    // `check` (like every command) reaps what dead owners left first.
    let (c, out, err) = code(ic(root, home).arg("check"));
    assert_eq!(c, 0, "{what}: {out}{err}");
    let active = root.join("snapshots/active");
    let left: Vec<_> = std::fs::read_dir(&active)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "{what}: active snapshots without an owner: {left:?}"
    );
    let layers_dir = root.join("snapshots/layers");
    for e in std::fs::read_dir(&layers_dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        let n = e.file_name().to_string_lossy().into_owned();
        assert!(
            !n.starts_with('.') || n.starts_with(".tmp-"),
            "{what}: unexpected {n}"
        );
        if !n.starts_with('.') {
            assert!(e.path().join("fs").is_dir(), "{what}: {n} has no fs");
        }
    }
    // Whether or not an image names them yet, published layers are whole.
    for (l, files) in layers {
        let base = layer_dir(root, &l.diff_id);
        if !base.exists() {
            continue;
        }
        if base.join("layer.erofs").exists() {
            assert!(
                base.join("layer.erofs.sha256").is_file(),
                "{what}: EROFS layer without its digest"
            );
            continue;
        }
        let dir = base.join("fs");
        for (p, content) in files.iter() {
            let got = std::fs::read(dir.join(p)).unwrap_or_default();
            assert!(got == *content, "{what}: {p} in a published layer differs");
        }
    }
    assert!(
        mounts_under(root).is_empty(),
        "{what}: {:?}",
        mounts_under(root)
    );
}

#[test]
fn kill_9_at_random_points_of_pull_and_run_leaves_no_half_published_layer_or_mount() {
    if !ready() {
        return;
    }
    let _g = crate::common::sandbox::serial();
    let reg = Registry::open();
    let t = tempdir();
    let home = t.path();
    // Layers with many files, so the kill often lands mid-extraction.
    let files: Vec<(String, Vec<u8>)> = (0..1500)
        .map(|i| {
            (
                format!("d{}/f{i}", i % 30),
                noise(64 + (i % 7) * 300, i as u64),
            )
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_slice()))
        .collect();
    let (l1, l2) = refs.split_at(750);
    let img = Image::new(host_arch(), vec![layer(l1, true), layer(l2, true)]);
    let expect = [(&img.layers[0], l1), (&img.layers[1], l2)];
    push_image(&t.path().join("src"), &img, &reg.addr, "fixture/k:1");
    let name = format!("{}/fixture/k:1", reg.addr);
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill -9 seed {seed}");
    let root = t.path().join("root");
    for i in 0..6 {
        let backend = if i % 2 == 0 { "files" } else { "erofs" };
        let mut child = icb(&root, home, backend)
            .args(["pull", &name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let ms = rand_below(&mut seed, 1500);
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill();
        let _ = child.wait();
        assert_consistent(
            &root,
            home,
            &format!("pull #{i} killed after {ms} ms"),
            &expect,
        );
        if i % 2 == 1 {
            // Start again from nothing now and then, so early points recur.
            let _ = output(ic(&root, home).args(["rmi", &name]));
            ok(ic(&root, home).args(["prune", "-f"]));
        }
    }
    ok(ic(&root, home).args(["pull", &name]));
    let parent = crate::common::sandbox::cgroup_parent();
    for i in 0..4 {
        let mut child = ic(&root, home)
            .args(["run", "--rm", "--cgroup-parent", &parent, &name, "/nothing"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let ms = rand_below(&mut seed, 300);
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill();
        let _ = child.wait();
        assert_consistent(
            &root,
            home,
            &format!("run #{i} killed after {ms} ms"),
            &expect,
        );
    }
}

/// `prune` on a terminal (made by script(1)) asks first: "n" keeps everything and
/// exits 1, "y" removes; `-f` never asks; off a terminal it does not ask.
#[test]
fn prune_asks_on_a_terminal_unless_forced() {
    if !require(have("script"), "script (util-linux)") {
        return;
    }
    let t = tempdir();
    let Some(root) = fixture::store_with_busybox(t.path()) else {
        return;
    };
    ok(imgctl(&root).args(["rmi", "busybox"]));
    let blobs = || {
        std::fs::read_dir(root.join("blobs/sha256"))
            .unwrap()
            .count()
    };
    let before = blobs();
    assert!(before > 0);
    let on_tty = |args: &str, typed: &[u8]| {
        use std::io::Write;
        let cmd = format!("{} prune {args}", imgctl_bin().display());
        let mut c = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env("IMGCTL_ROOT", &root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn script");
        let mut input = c.stdin.take().expect("stdin");
        input.write_all(typed).expect("type");
        drop(input);
        let o = c.wait_with_output().expect("wait script");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let (c, out) = on_tty("", b"n\n");
    assert_eq!(c, Some(1), "{out}");
    assert!(
        out.contains("WARNING! This will remove") && out.contains("[y/N]"),
        "{out}"
    );
    assert_eq!(blobs(), before, "answered no: {out}");
    let (c, out) = on_tty("", b"y\n");
    assert_eq!(c, Some(0), "{out}");
    assert_eq!(blobs(), 0, "{out}");
    // Nothing to ask with -f, even on a terminal.
    let (c, out) = on_tty("-f", b"");
    assert_eq!(c, Some(0), "{out}");
    assert!(!out.contains("WARNING"), "{out}");
}

/// A prune looping beside pulls and mounts never deletes what they are about to use
/// (their leases hold it off): every pull, mount and read succeeds and `check` stays
/// clean.
#[test]
fn prune_racing_pulls_and_mounts_deletes_nothing_they_use() {
    if !ready() {
        return;
    }
    let Fixture { reg, a, t, .. } = fixture();
    let home = t.path().to_path_buf();
    let root = t.path().join("root");
    let na = format!("{}/fixture/a:1", reg.addr);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pruner = {
        let (root, home, stop) = (root.clone(), home.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let o = output(ic(&root, &home).args(["prune", "-f"]));
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                n += 1;
            }
            n
        })
    };
    for i in 0..5 {
        ok(ic(&root, &home).args(["pull", &na]));
        let m = ok(ic(&root, &home).args(["mount", &na]));
        let big = std::fs::read(Path::new(m.trim()).join("usr/lib/big.so")).unwrap();
        assert_eq!(big, noise(64 * 1024, 7), "round {i}");
        ok(ic(&root, &home).args(["umount", m.trim()]));
        if i % 2 == 0 {
            ok(ic(&root, &home).args(["rmi", &na]));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let prunes = pruner.join().unwrap();
    assert!(prunes > 0);
    let (c, out, _) = code(ic(&root, &home).arg("check"));
    assert_eq!(c, 0, "{out}");
    let _ = a;
}
