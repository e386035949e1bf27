//! Layers indexed as they enter the store (pull's unpack with either snapshotter, a
//! build's new layers): the first report reads no layer blob, and its figures equal
//! a report that decompresses every layer.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::registry::{noise, registry_tools, Registry};
use crate::common::*;
use crate::store::check_schema;

use super::fixtures::*;

/// The figures a report is made of (everything but where the image came from).
const FIGURES: [&str; 7] = [
    "dive",
    "wasted",
    "totals",
    "layers",
    "empty_layers",
    "largest_files",
    "largest_dirs",
];

fn layer_digests(report: &Value) -> Vec<String> {
    report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

fn blob(root: &Path, digest: &str) -> PathBuf {
    root.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn index_file(root: &Path, digest: &str) -> PathBuf {
    root.join("cache/size")
        .join(format!("{}.json", digest.replace(':', "-")))
}

/// With every layer blob of `report` moved out of the store, `image` is reported
/// from the indexes alone with the same figures as `report`; with the indexes gone
/// too the report fails (so the blobs were really out of reach). Blobs and indexes
/// are put back.
fn report_reads_no_blob(root: &Path, image: &str, report: &Value) {
    let aside = root.join("../aside");
    fs::create_dir_all(&aside).unwrap();
    let digests = layer_digests(report);
    for d in &digests {
        let idx = index_file(root, d);
        assert!(idx.is_file(), "no index for layer {d}");
        let v: Value = serde_json::from_slice(&fs::read(&idx).unwrap()).unwrap();
        check_schema("size-layer-index", &v);
        fs::rename(blob(root, d), aside.join(d)).unwrap();
    }
    let from_index = size_json(root, image, &[]);
    for k in FIGURES {
        assert_eq!(
            from_index[k], report[k],
            "{k} differs when read from the index"
        );
    }
    let idx_aside = root.join("../aside-index");
    fs::rename(root.join("cache/size"), &idx_aside).unwrap();
    let (code, err) = fails(imgctl(root).args(["size", "--progress", "quiet", image]));
    assert_eq!(code, 125, "without index and blobs: {err}");
    fs::rename(&idx_aside, root.join("cache/size")).unwrap();
    for d in &digests {
        fs::rename(aside.join(d), blob(root, d)).unwrap();
    }
}

/// After a pull (files and EROFS snapshotters) every layer's index is in the store;
/// the report reads no blob and equals the report of the same image read from its
/// OCI layout (decompressing each layer: the path the dive tests compare with the
/// real dive); `rmi` + `prune` removes the indexes with the blobs.
#[test]
fn a_pull_indexes_layers_for_the_size_report() {
    if !registry_tools() {
        return;
    }
    let t = tempdir();
    let layout = t.path().join("img");
    waste_image(&layout);
    let reg = Registry::open();
    let remote = format!("{}/waste:v1", reg.addr);
    ok(Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker://{remote}")));
    let cold = size_json(
        &t.path().join("no-store"),
        &format!("oci:{}:v1", layout.display()),
        &[],
    );
    for snapshotter in ["files", "erofs"] {
        let root = t.path().join(snapshotter).join("store");
        ok(imgctl(&root).args(["pull", "--quiet", "--snapshotter", snapshotter, &remote]));
        report_reads_no_blob(&root, &remote, &cold);
        // The index written at pull is the one a report would write: dropping it
        // and reporting again (blobs back in place) rewrites the same figures.
        fs::remove_dir_all(root.join("cache/size")).unwrap();
        let again = size_json(&root, &remote, &[]);
        for k in FIGURES {
            assert_eq!(again[k], cold[k], "{k} ({snapshotter})");
        }
        ok(imgctl(&root).args(["rmi", &remote]));
        ok(imgctl(&root).args(["prune", "-f"]));
        let left = fs::read_dir(root.join("cache/size")).unwrap().count();
        assert_eq!(left, 0, "an index outlived its blob ({snapshotter})");
    }
}

/// Check the indexes `root` holds for `image` against the blobs: the report made
/// with them set aside (every layer decompressed) equals the one made from them, with
/// the blobs out of reach. Returns the report.
fn indexes_match_the_blobs(root: &Path, image: &str) -> Value {
    let kept = root.join("../kept-index");
    fs::rename(root.join("cache/size"), &kept).unwrap();
    let cold = size_json(root, image, &[]);
    fs::remove_dir_all(root.join("cache/size")).unwrap();
    fs::rename(&kept, root.join("cache/size")).unwrap();
    report_reads_no_blob(root, image, &cold);
    cold
}

/// A build records the index of each layer it writes.
#[test]
fn a_build_indexes_its_new_layers() {
    let t = tempdir();
    let ctx = t.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("big"), noise(300_000, 7)).unwrap();
    fs::write(ctx.join("small"), b"small\n").unwrap();
    fs::write(
        ctx.join("Buildfile"),
        "FROM scratch\nCOPY big /data/big\nCOPY small big /data/again/\nCOPY small /data/big\n",
    )
    .unwrap();
    let root = t.path().join("store");
    ok(imgctl(&root).args(["build", "-q", "-t", "idx:1"]).arg(&ctx));
    let cold = indexes_match_the_blobs(&root, "idx:1");
    // /data/big overwritten, and the same content under /data/again: real waste.
    assert_eq!(cold["totals"]["layers"], 3);
    assert!(cold["wasted"]["bytes"].as_u64().unwrap() >= 300_000);
}

/// A load records the index of each layer it brings in, compressed (oci-archive,
/// gzip layers) or not (docker-archive as skopeo writes it, plain tar layers).
#[test]
fn a_load_indexes_its_layers() {
    if !require(have("skopeo"), "skopeo") {
        return;
    }
    let t = tempdir();
    let layout = t.path().join("img");
    waste_image(&layout);
    let src = format!("oci:{}:v1", layout.display());
    let want = size_json(&t.path().join("no-store"), &src, &[]);
    for (i, format) in ["docker-archive", "oci-archive"].iter().enumerate() {
        let file = t.path().join(format!("{format}.tar"));
        ok(Command::new("skopeo")
            .args(["copy", "--quiet", &src])
            .arg(format!("{format}:{}:example.test/waste:v1", file.display())));
        let root = t.path().join(format!("store{i}"));
        ok(imgctl(&root).arg("load").arg("-i").arg(&file));
        let got = indexes_match_the_blobs(&root, "example.test/waste:v1");
        for k in ["dive", "wasted", "largest_files", "largest_dirs"] {
            assert_eq!(got[k], want[k], "{k} ({format})");
        }
    }
}

/// An import records the index of its one layer (from the walk that checks the tar).
#[test]
fn an_import_indexes_its_layer() {
    use crate::common::layer::{dir, file, hardlink, tar_of};
    let t = tempdir();
    let data = noise(100_000, 3);
    let tar = tar_of(&[
        dir("etc"),
        file("etc/a", &data),
        file("etc/b", &data),
        hardlink("etc/c", "etc/a"),
    ]);
    let f = t.path().join("rootfs.tar");
    fs::write(&f, &tar).unwrap();
    let root = t.path().join("store");
    ok(imgctl(&root)
        .arg("import")
        .arg(&f)
        .arg("example.test/imp:1"));
    let cold = indexes_match_the_blobs(&root, "example.test/imp:1");
    assert_eq!(cold["layers"][0]["uncompressed_bytes"], tar.len() as u64);
    // etc/b holds the same content as etc/a: a visible duplicate.
    assert_eq!(cold["wasted"]["bytes"], 100_000);
}
