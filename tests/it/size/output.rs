//! Registry streaming, comparisons, golden output, refused layers, progress.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::layer::{dir, file, gzip, tar_of, whiteout};
use crate::common::registry::{noise, registry_tools, Registry};
use crate::common::*;
use crate::store::check_schema;

use super::fixtures::*;

fn listing(root: &Path) -> BTreeMap<PathBuf, (u64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            out.insert(
                e.path(),
                (m.len(), m.mtime_nsec() + m.mtime() * 1_000_000_000),
            );
            if m.is_dir() {
                todo.push(e.path());
            }
        }
    }
    out
}

fn max_rss_kib(cmd: &mut Command) -> (String, u64) {
    let dir = tempdir();
    let f = dir.path().join("rss");
    let mut t = Command::new("/usr/bin/time");
    t.arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&f)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => t.env(k, v),
            None => t.env_remove(k),
        };
    }
    let out = ok(&mut t);
    let rss = fs::read_to_string(&f).unwrap().trim().parse().unwrap();
    (out, rss)
}

#[test]
fn registry_images_stream_without_touching_the_store() {
    if !registry_tools() {
        return;
    }
    let have_nginx = require(
        Path::new(NGINX).join("index.json").is_file(),
        "nginx fixture",
    );
    let reg = Registry::open();
    let t = tempdir();
    let layout = t.path().join("img");
    waste_image(&layout);
    let push = |src: String, dest: &str| {
        ok(Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(src)
            .arg(format!("docker://{}/{dest}", reg.addr)));
    };
    push(format!("oci:{}:v1", layout.display()), "waste:v1");
    push(format!("oci:{}:v1", layout.display()), "other:v1");
    let remote = format!("{}/waste:v1", reg.addr);
    let other = format!("{}/other:v1", reg.addr);
    // Without a store, none is created.
    let root = t.path().join("store");
    let ours = size_json(&root, &other, &[]);
    assert!(!root.exists(), "a store was created");
    assert_eq!(ours["image"]["source"], "registry");
    let local = size_json(&root, &format!("oci:{}:v1", layout.display()), &[]);
    for k in ["dive", "wasted", "totals", "layers", "largest_files"] {
        assert_eq!(ours[k], local[k], "{k} differs between registry and layout");
    }
    // An image pulled into the store is analysed from there...
    ok(imgctl(&root).args(["pull", "--quiet", "--no-unpack", &remote]));
    let stored = size_json(&root, &remote, &[]);
    assert_eq!(stored["image"]["source"], "store");
    assert_eq!(stored["wasted"], local["wasted"]);
    // ...one that is not comes from the registry, with the store left untouched.
    let before = listing(&root);
    let ours = size_json(&root, &other, &[]);
    assert_eq!(listing(&root), before, "the store changed");
    assert_eq!(ours["image"]["source"], "registry");
    // docker:// forces the registry, also for a name the store has.
    let forced = size_json(&root, &format!("docker://{remote}"), &[]);
    assert_eq!(forced["image"]["source"], "registry");
    assert_eq!(forced["dive"], local["dive"]);
    assert_eq!(listing(&root), before, "the store changed");
    if have_nginx {
        push(format!("oci:{NGINX}:latest"), "nginx:latest");
        let (out, rss) = max_rss_kib(imgctl(&root).args([
            "size",
            "--format",
            "json",
            "--progress",
            "quiet",
            &format!("{}/nginx:latest", reg.addr),
        ]));
        assert_eq!(listing(&root), before, "the store changed");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["dive"]["inefficient_bytes"], 3483720);
        assert!(
            rss < 64 * 1024,
            "peak RSS {rss} KiB for nginx from a registry"
        );
        eprintln!("nginx from the registry: peak RSS {rss} KiB");
    }
}

#[test]
fn compare_reports_growth_layers_and_file_changes() {
    let t = tempdir();
    let a = t.path().join("a");
    let b = t.path().join("b");
    let base_layer = vec![
        dir("usr"),
        file("usr/keep", &noise(1000, 1)),
        file("usr/gone", &noise(300, 2)),
    ];
    write_image(&a, "v1", &[("ADD base", base_layer.clone())], &[]);
    write_image(
        &b,
        "v1",
        &[
            ("ADD base", base_layer),
            (
                "RUN change",
                vec![
                    dir("usr"),
                    whiteout("usr/.wh.gone"),
                    file("usr/new", &noise(5000, 3)),
                    file("usr/keep", &noise(1200, 4)),
                ],
            ),
        ],
        &[],
    );
    let r = size_json(
        t.path(),
        &format!("oci:{}:v1", b.display()),
        &["--compare", &format!("oci:{}:v1", a.display())],
    );
    let c = &r["compare"];
    assert_eq!(c["layers_shared"], 1);
    assert_eq!(c["layers_added"].as_array().unwrap().len(), 1);
    assert_eq!(c["layers_added"][0]["created_by"], "RUN change");
    assert_eq!(c["layers_removed"].as_array().unwrap().len(), 0);
    assert_eq!(
        (
            c["files_added"].as_u64(),
            c["files_removed"].as_u64(),
            c["files_changed"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    let files: Vec<(String, String, i64)> = c["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().into(),
                f["change"].as_str().unwrap().into(),
                f["delta"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        files,
        vec![
            ("/usr/new".to_string(), "added".to_string(), 5000),
            ("/usr/gone".to_string(), "removed".to_string(), -300),
            ("/usr/keep".to_string(), "changed".to_string(), 200),
        ]
    );
    let delta = r["totals"]["uncompressed_bytes"].as_i64().unwrap()
        - c["base_uncompressed_bytes"].as_i64().unwrap();
    assert_eq!(c["uncompressed_delta"].as_i64(), Some(delta));
}

fn bless() -> bool {
    std::env::var("IMGCTL_BLESS").is_ok_and(|v| v == "1")
}

fn golden(name: &str, got: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/size/waste")
        .join(name);
    if bless() {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, got).unwrap();
        return;
    }
    let want = fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "read {}: {e} (run with IMGCTL_BLESS=1 to create it)",
            path.display()
        )
    });
    assert_eq!(
        got,
        want,
        "{} differs (IMGCTL_BLESS=1 rewrites it)",
        path.display()
    );
}

#[test]
fn markdown_and_junit_match_golden_files() {
    let t = tempdir();
    let layout = t.path().join("img");
    waste_image(&layout);
    let base = t.path().join("base");
    whiteout_image(&base);
    let img = format!("oci:{}:v1", layout.display());
    let base_img = format!("oci:{}:v1", base.display());
    let rules = t.path().join("dive-ci");
    fs::write(&rules, "rules:\n  lowestEfficiency: 0.95\n  highestWastedBytes: 20MB\n  highestUserWastedPercent: 0.20\n").unwrap();
    for (format, name) in [
        ("markdown", "report.md"),
        ("junit", "report.junit.xml"),
        ("table", "report.txt"),
    ] {
        let out = output(
            imgctl(t.path())
                .args([
                    "size",
                    "--progress",
                    "quiet",
                    "--top",
                    "5",
                    "--format",
                    format,
                    "--compare",
                    &base_img,
                    "--max-wasted",
                    "10%",
                    "--rules",
                ])
                .arg(&rules)
                .arg(&img),
        );
        assert_eq!(out.status.code(), Some(RULE_FAILED));
        let text = String::from_utf8_lossy(&out.stdout)
            .replace(&t.path().display().to_string(), "TMP")
            .replace(&rules.display().to_string(), "TMP/dive-ci");
        golden(name, &text);
    }
}

/// SECURITY-TESTS B21 and A17: a layer whose bytes were replaced (valid gzip, wrong
/// content), cut short, or corrupted fails with the layer named, exit 125, never a
/// panic or a hang.
#[test]
fn tampered_truncated_and_corrupt_layers_are_refused() {
    let t = tempdir();
    let layout = t.path().join("img");
    waste_image(&layout);
    let idx: Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mhex = idx["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let m: Value =
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(&mhex)).unwrap())
            .unwrap();
    let lhex = m["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let blob = layout.join("blobs/sha256").join(&lhex);
    let good = fs::read(&blob).unwrap();
    let img = format!("oci:{}:v1", layout.display());
    let other = gzip(&tar_of(&[file("x", b"not the layer")]));
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    for (what, bytes, needle) in [
        ("replaced", other, "digest mismatch"),
        ("truncated", good[..good.len() / 2].to_vec(), &lhex[..12]),
        ("corrupt", flipped, &lhex[..12]),
    ] {
        fs::write(&blob, &bytes).unwrap();
        let (code, err) = exit_of(imgctl(t.path()).args(["size", "--progress", "quiet", &img]));
        assert_eq!(code, 125, "{what}: {err}");
        assert!(
            err.contains(needle) && !err.contains("panicked"),
            "{what}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{what}: one line: {err}");
    }
}

#[test]
fn progress_plain_reports_each_layer_and_quiet_says_nothing() {
    let t = tempdir();
    let layout = t.path().join("img");
    waste_image(&layout);
    let img = format!("oci:{}:v1", layout.display());
    let out = output(imgctl(t.path()).args(["size", "--progress", "plain", &img]));
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 5, "{err}");
    for n in 1..=5 {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("layer {n}/5 "))),
            "{err}"
        );
    }
    let out = output(imgctl(t.path()).args(["size", "--progress", "quiet", &img]));
    assert!(out.status.success() && out.stderr.is_empty());
}

/// A store image's layers are decompressed once: the first report records each
/// layer's index under cache/size (schema-checked), the next reads it instead (a
/// doctored index shows in the report, so it is really what is read), a damaged
/// index is ignored, and the figures never change.
#[test]
fn store_reports_read_the_layer_index() {
    if !require(registry_tools(), "skopeo") {
        return;
    }
    let t = tempdir();
    let layout = t.path().join("img");
    waste_image(&layout);
    let root = t.path().join("store");
    ok(imgctl(&root).arg("images"));
    ok(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("oci:{}:waste:v1", root.display())));
    let first = size_json(&root, "waste:v1", &[]);
    assert_eq!(first["image"]["source"], "store");
    let dir = root.join("cache/size");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let layers = first["layers"].as_array().unwrap();
    assert_eq!(files.len(), layers.len(), "one index per layer blob");
    for f in &files {
        let v: Value = serde_json::from_slice(&fs::read(f).unwrap()).unwrap();
        check_schema("size-layer-index", &v);
    }
    let second = size_json(&root, "waste:v1", &[]);
    for k in ["dive", "wasted", "totals", "layers", "largest_files"] {
        assert_eq!(first[k], second[k], "{k} differs on the second report");
    }
    // Doctor the index of the layer holding /copy/one: the report follows it.
    let biggest = first["largest_files"][0]["path"].as_str().unwrap();
    let name = biggest.trim_start_matches('/');
    let doctored = files
        .iter()
        .find(|f| {
            let v: Value = serde_json::from_slice(&fs::read(f).unwrap()).unwrap();
            v["entries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e[0] == name)
        })
        .expect("an index lists the largest file");
    let mut v: Value = serde_json::from_slice(&fs::read(doctored).unwrap()).unwrap();
    for e in v["entries"].as_array_mut().unwrap() {
        if e[0] == name {
            e[2] = Value::from(123_456_789u64);
        }
    }
    fs::write(doctored, serde_json::to_vec(&v).unwrap()).unwrap();
    let third = size_json(&root, "waste:v1", &[]);
    assert_eq!(third["largest_files"][0]["bytes"], 123_456_789u64);
    // A damaged index is read past: the layer is decompressed again and re-indexed.
    fs::write(doctored, b"{\"version\": 1, \"entr").unwrap();
    let fourth = size_json(&root, "waste:v1", &[]);
    assert_eq!(fourth["largest_files"], first["largest_files"]);
    let v: Value = serde_json::from_slice(&fs::read(doctored).unwrap()).unwrap();
    check_schema("size-layer-index", &v);
    // The index goes with its blob.
    ok(imgctl(&root).args(["rmi", "waste:v1"]));
    ok(imgctl(&root).args(["prune", "-f"]));
    assert_eq!(
        fs::read_dir(&dir).unwrap().count(),
        0,
        "index outlived its blob"
    );
}
